"""The jobs' own S3 calls, made under the template's task-role policies with IAM enforced (moto):
a permission the code needs and the role lacks fails here, not in production."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication

from common.errors import StorageError
from common.io import storage
from common.io.lake import beside, report_uri
from common.io.results import summary_uri
from common.settings import Settings
from common.usecases.reporting import SAMPLES_FILE
from orchestration.config import Config
from orchestration.dispatch import execution_input
from tests.aws_stack import RESOURCES

STACK, ACCOUNT, REGION = "ecom-pipeline", "123456789012", "us-east-1"
BUCKET = f"{STACK}-data-{ACCOUNT}-{REGION}"  # the template's DataBucket name
PSEUDO = {"AWS::Partition": "aws", "AWS::StackName": STACK, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION}


def _resolved(value: Any) -> Any:
    """A policy value with its ``!Sub`` of pseudo parameters resolved (other references become
    an ARN of this account that no S3 call can match)."""
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO.get(m.group(1), m.group(1)), value["Fn::Sub"])
    if isinstance(value, dict) and ("Ref" in value or "Fn::GetAtt" in value):
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{json.dumps(value)}"
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    return value


def _policy(role: str) -> dict[str, Any]:
    """The role's inline policies as one document (the two-task layout)."""
    statements = [
        _resolved(s)
        for policy in RESOURCES[role]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture
def as_role(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A function that makes the process's credentials those of a user holding ``role``'s policy,
    on a moto account where the stack's bucket exists; IAM is enforced from then on."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ECOM_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws(), disable_iam_authentication():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for uri in (_paths()["manifest"], _paths()["raw"]):  # what the dispatcher and the shop put
            location = storage.parse_s3(uri)
            s3.put_object(Bucket=location.bucket, Key=location.key, Body=b"order_id\n1\n")

        def become(role: str) -> None:
            with disable_iam_authentication():
                iam = boto3.client("iam", region_name=REGION)
                iam.create_user(UserName=role)
                document = json.dumps(_policy(role))
                iam.put_user_policy(UserName=role, PolicyName="task", PolicyDocument=document)
                key = iam.create_access_key(UserName=role)["AccessKey"]
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
            monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found

        with enable_iam_authentication():
            yield become


def _paths() -> dict[str, str]:
    """What the dispatcher hands a batch's execution, and the files the jobs put beside it."""
    config = Config(ingestion_table="i", chunks_table="c", bucket=BUCKET)
    given = execution_input("b-1", config)
    result = given["result_uri"]
    return {
        "manifest": given["manifest_uri"],
        "raw": f"s3://{BUCKET}/{config.raw_prefix}orders/part-1.csv",
        "result": result,
        "summary": summary_uri(result),
        "samples": beside(result, SAMPLES_FILE),
        "report": report_uri(result),
    }


def test_the_paths_the_jobs_write_are_those_the_state_machine_reads() -> None:
    config = Config(ingestion_table="i", chunks_table="c", bucket=BUCKET)
    given = execution_input("b-1", config)
    paths = _paths()
    assert paths["summary"] == f"s3://{BUCKET}/{given['summary_key']}"
    assert paths["report"] == given["report_uri"]


def test_validate_writes_its_result_summary_samples_and_report(as_role: Any) -> None:
    settings = Settings(lake_root=f"s3://{BUCKET}/lake")
    paths = _paths()
    as_role("ValidateTaskRole")
    assert storage.read_text(paths["manifest"], settings)
    assert storage.read_head(paths["raw"], 8, settings)[1] == 11  # the header look, and the size
    for name in ("result", "summary", "samples", "report"):
        storage.write_text(paths[name], "{}", settings)  # raises StorageError when denied


def test_transform_reads_the_validation_and_rewrites_the_report_with_its_part(as_role: Any) -> None:
    settings = Settings(lake_root=f"s3://{BUCKET}/lake")
    paths = _paths()
    as_role("ValidateTaskRole")
    for name in ("result", "samples", "report"):
        storage.write_text(paths[name], "{}", settings)
    as_role("TransformTaskRole")
    assert storage.read_text(paths["result"], settings) == "{}"
    assert storage.read_text(paths["samples"], settings) == "{}"
    storage.write_text(paths["report"], "<html></html>", settings, content_type="text/html")
    # and nothing else under results/: the result JSON stays validate's
    with pytest.raises(StorageError):
        storage.write_text(paths["result"], "{}", settings)
