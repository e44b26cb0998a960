"""The jobs' own S3 calls, made under the template's task-role policies with IAM enforced (moto):
a permission the code needs and the role lacks fails here, not in production."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.authorization import disable_iam_authentication, enable_iam_authentication
from moto.iam.access_control import IAMPolicy, IAMPolicyStatement, PermissionResult

from common.errors import StorageError
from common.io import storage
from common.io.dynamo import batch_write, dynamodb_client
from common.io.lake import Lake, beside, report_uri
from common.io.lease import lake_lease
from common.io.manifest import Batch, pin_versions
from common.io.results import summary_uri
from common.io.storage import ObjectVersion
from common.settings import Settings
from common.usecases.report.publish import SAMPLES_FILE
from orchestration.config import Config
from orchestration.dispatch import execution_input
from tests.aws_stack import RESOURCES

STACK, ACCOUNT, REGION = "ecom-pipeline", "123456789012", "us-east-1"
BUCKET = f"{STACK}-data-{ACCOUNT}-{REGION}"  # the template's DataBucket name
PSEUDO = {"AWS::Partition": "aws", "AWS::StackName": STACK, "AWS::AccountId": ACCOUNT, "AWS::Region": REGION}


def _resolved(value: Any) -> Any:
    """A policy value with its ``!Sub`` of pseudo parameters resolved; ``!GetAtt T.Arn`` becomes
    the ARN of a table named ``T`` (other references: an ARN no call can match)."""
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO.get(m.group(1), m.group(1)), value["Fn::Sub"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:  # a table's ARN: the test names it by its id
        attribute = value["Fn::GetAtt"]
        logical = attribute.split(".")[0] if isinstance(attribute, str) else attribute[0]
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical}"
    if isinstance(value, dict) and "Ref" in value:
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


def test_validate_reads_the_version_of_a_raw_file_that_arrived_after_it_changed(as_role: Any) -> None:
    """The batch's file was overwritten after it arrived: validate copies the recorded version
    into the lake (s3:GetObjectVersion on raw/, a write under lake/) and reads the copy."""
    settings = Settings(lake_root=f"s3://{BUCKET}/lake")
    raw = storage.parse_s3(_paths()["raw"])
    with disable_iam_authentication():
        s3 = boto3.client("s3", region_name=REGION)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        put = s3.put_object(Bucket=raw.bucket, Key=raw.key, Body=b"order_id\n1\n")
        s3.put_object(Bucket=raw.bucket, Key=raw.key, Body=b"order_id\n2\n")
    recorded = ObjectVersion(put["VersionId"], put["ETag"].strip('"'))
    as_role("ValidateTaskRole")
    batch = Batch("b-1", {"orders": [_paths()["raw"]]}, {_paths()["raw"]: recorded})
    pinned = pin_versions(batch, partial(Lake(settings.lake_root).pinned, "b-1"), settings)
    assert storage.read_head(pinned.read_from[_paths()["raw"]], 64, settings)[0] == b"order_id\n1\n"
    # moto checks a CopyObject against its target only; AWS also wants s3:GetObjectVersion on a
    # source named by version (and on HeadObject of one): the grant, by moto's own evaluator
    source = f"arn:aws:s3:::{raw.bucket}/{raw.key}"
    policy = IAMPolicy(json.dumps(_policy("ValidateTaskRole")))
    assert policy.is_action_permitted("s3:GetObjectVersion", source) == PermissionResult.PERMITTED


def test_transform_reads_the_validation_and_rewrites_the_report_with_its_part(as_role: Any) -> None:
    settings = Settings(lake_root=f"s3://{BUCKET}/lake")
    paths = _paths()
    as_role("ValidateTaskRole")
    for name in ("result", "samples", "report"):
        storage.write_text(paths[name], "{}", settings)
    as_role("TransformTaskRole")
    settings = Settings(lake_root=f"s3://{BUCKET}/lake")  # another job run: its own settings and clients
    assert storage.read_text(paths["result"], settings) == "{}"
    assert storage.read_text(paths["samples"], settings) == "{}"
    storage.write_text(paths["report"], "<html></html>", settings, content_type="text/html")
    # and nothing else under results/: the result JSON stays validate's
    with pytest.raises(StorageError):
        storage.write_text(paths["result"], "{}", settings)


def _dynamodb_calls(hook_into: Any) -> list[tuple[str, str, str | None]]:
    """Record each DynamoDB call botocore sends through ``hook_into`` (a session's events):
    (operation, table, the partition key's value for an item call)."""
    calls: list[tuple[str, str, str | None]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        item = params.get("Key") or params.get("Item") or {}
        key = next((v["S"] for v in item.values() if "S" in v), None)
        for table in [params["TableName"]] if "TableName" in params else list(params.get("RequestItems", {})):
            calls.append((model.name, table, key))

    hook_into.register("provide-client-params.dynamodb", record)
    return calls


def _granted(role: str, operation: str, table: str, key: str | None) -> bool:
    """Whether ``role``'s policy allows the call: its action on its table by moto's evaluator, and
    an item's partition key within a statement's ``dynamodb:LeadingKeys`` (moto's IAM enforces
    neither for DynamoDB: it checks other services' calls against no resource, and knows no
    ``ForAllValues``)."""
    resource = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    for statement in _policy(role)["Statement"]:
        condition = statement.get("Condition", {}).get("ForAllValues:StringEquals", {})
        unconditioned = {k: v for k, v in statement.items() if k != "Condition"}
        check = IAMPolicyStatement(unconditioned).is_action_permitted(f"dynamodb:{operation}", resource)
        if check == PermissionResult.PERMITTED and (
            "dynamodb:LeadingKeys" not in condition or key in condition["dynamodb:LeadingKeys"]
        ):
            return True
    return False


def test_the_jobs_dynamodb_calls_are_granted_by_their_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each job's DynamoDB calls as botocore sends them: the lake's lease (validate, transform,
    maintain) on the lake root the template gives them, and transform's KPI puts and deletes."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "ECOM_DYNAMODB_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        for table in ("LakeLockTable", "OrderKpiTable", "CategoryKpiTable"):
            properties = RESOURCES[table]["Properties"]
            boto3.client("dynamodb", region_name=REGION).create_table(
                TableName=table,
                AttributeDefinitions=properties["AttributeDefinitions"],
                KeySchema=properties["KeySchema"],
                BillingMode="PAY_PER_REQUEST",
            )
        session = boto3.session.Session(region_name=REGION)  # the jobs' clients come from it
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
        calls = _dynamodb_calls(session.events)
        settings = Settings(
            lake_root=f"s3://{BUCKET}/lake", lake_lock_table="LakeLockTable", aws_region=REGION
        )
        made: dict[str, list[tuple[str, str, str | None]]] = {}
        for job in ("validate", "transform", "maintain"):
            with lake_lease(settings, job):
                if job == "transform":
                    client = dynamodb_client(settings)
                    batch_write(client, "OrderKpiTable", [{"order_date": "2026-11-22"}], [], ["order_date"])
                    key = {"category": "toys", "order_date": "2026-11-21"}
                    batch_write(client, "CategoryKpiTable", [], [key], ["category", "order_date"])
            made[job], calls[:] = list(calls), []
    assert {op for ops in made.values() for op, _, _ in ops} >= {"PutItem", "DeleteItem", "BatchWriteItem"}
    for job, ops in made.items():
        role = f"{job.capitalize()}TaskRole"
        refused = [call for call in ops if not _granted(role, *call)]
        assert refused == [], f"{role} lacks {refused}"
