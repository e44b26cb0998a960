"""infra/template.yaml: linted (cfn-lint, checkov) and checked against the code it deploys."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.settings import Settings
from orchestration import batcher
from orchestration.config import Config
from tests.aws_stack import RESOURCES

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = ROOT / "infra" / "template.yaml"
ASL = (ROOT / "infra" / "statemachine.asl.json").read_text()
BIN = Path(sys.executable).parent


def _of_type(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def test_cfn_lint_passes() -> None:
    done = subprocess.run(
        [str(BIN / "cfn-lint"), str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_passes_with_only_the_documented_skips() -> None:
    checkov = ROOT / ".venv-tools" / "bin" / "checkov"
    assert checkov.exists(), "run `make tools` (make test does)"
    done = subprocess.run(
        [str(checkov), "-f", str(TEMPLATE_PATH), "--config-file", str(ROOT / "infra" / "checkov.yaml")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Failed checks: 0" in done.stdout
    assert "prismacloud" not in done.stderr  # --skip-download: no calls to the vendor's API


def test_every_placeholder_in_the_state_machine_is_substituted_and_no_more() -> None:
    placeholders = set(re.findall(r"\$\{([A-Za-z]+)\}", ASL))
    substitutions = set(RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert placeholders == substitutions


def test_state_machine_container_name_matches_the_task_definitions() -> None:
    name = RESOURCES["StateMachine"]["Properties"]["DefinitionSubstitutions"]["ContainerName"]
    for task in _of_type("AWS::ECS::TaskDefinition").values():
        props = task["Properties"]
        assert [c["Name"] for c in props["ContainerDefinitions"]] == [name]
        assert props["RequiresCompatibilities"] == ["FARGATE"] and props["NetworkMode"] == "awsvpc"


def test_task_definition_environment_names_are_settings_the_jobs_read() -> None:
    known = {f"ECOM_{field.upper()}" for field in Settings.model_fields}
    for name, task in _of_type("AWS::ECS::TaskDefinition").items():
        container = task["Properties"]["ContainerDefinitions"][0]
        names = {e["Name"] for e in container["Environment"]}
        assert names <= known, f"{name}: {names - known}"
        assert container["Command"][0] in {"validate", "transform"}
    overrides = re.findall(r'"Name": "(ECOM_[A-Z_]+)"', ASL)
    assert overrides and set(overrides) <= known


def test_lambda_environment_names_are_read_by_the_lambda_config() -> None:
    source = (ROOT / "infra" / "lambdas" / "orchestration" / "config.py").read_text()
    read = set(re.findall(r'env(?:\.get)?[\[(]"(ECOM_[A-Z_]+)"', source))
    for name, function in _of_type("AWS::Lambda::Function").items():
        variables = set(function["Properties"]["Environment"]["Variables"])
        assert variables <= read, f"{name}: {variables - read}"
        module, handler = function["Properties"]["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), handler))
        assert function["Properties"]["Code"] == "lambdas/"


def test_tables_have_the_keys_ttl_and_stream_the_code_expects() -> None:
    ingestion = RESOURCES["IngestionTable"]["Properties"]
    assert [k["AttributeName"] for k in ingestion["KeySchema"]] == ["group_key", "file_id"]
    assert ingestion["TimeToLiveSpecification"] == {"AttributeName": batcher.TTL_ATTRIBUTE, "Enabled": True}
    assert [i["IndexName"] for i in ingestion["GlobalSecondaryIndexes"]] == ["pending-index"]
    chunks = RESOURCES["ChunksTable"]["Properties"]
    assert chunks["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert [i["IndexName"] for i in chunks["GlobalSecondaryIndexes"]] == ["status-index"]
    assert [k["AttributeName"] for k in RESOURCES["CategoryKpiTable"]["Properties"]["KeySchema"]] == [
        "category",
        "order_date",
    ]


def test_bucket_is_encrypted_and_private() -> None:
    bucket = RESOURCES["DataBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statement = RESOURCES["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def test_nothing_account_or_region_specific_is_hard_coded() -> None:
    text = TEMPLATE_PATH.read_text()
    assert not re.search(r"\b\d{12}\b", text)
    assert not re.search(
        r"\b(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|northeast|southeast)-\d\b", text
    )
    assert "YOUR_" not in text and "TODO" not in text


def _statements() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, role in _of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
    return out


def test_iam_is_least_privilege() -> None:
    for role, statement in _statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a != "*" and not a.endswith(":*") for a in actions), (role, actions)
        if statement.get("Resource") == "*":
            # only CloudWatch Logs delivery, which AWS defines on "*"
            assert all(a.startswith("logs:") for a in actions), (role, actions)


@pytest.mark.parametrize("job", ["validate", "transform"])
def test_the_state_machine_passes_each_job_what_it_needs(job: str) -> None:
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    state = definition["States"][job.capitalize()]
    override = state["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert override["Command"] == [job]
    names = {e["Name"] for e in override["Environment"]}
    assert names == (
        {"ECOM_BATCH_ID", "ECOM_MANIFEST", "ECOM_RESULT_URI"}
        if job == "validate"
        else {"ECOM_BATCH_ID", "ECOM_VALIDATION_RESULT"}
    )
    assert state["Catch"][0]["ResultPath"] == "$.error" and state["TimeoutSeconds"] == 1


def test_every_catch_keeps_the_input_and_every_task_has_a_timeout() -> None:
    definition = json.loads(re.sub(r":\s*\$\{[A-Za-z]+\}", ": 1", ASL))
    for name, state in definition["States"].items():
        for catch in state.get("Catch", []):
            assert catch.get("ResultPath", "").startswith("$."), name
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state, name


def test_lambda_config_reads_what_the_template_sets() -> None:
    variables = RESOURCES["BatcherFunction"]["Properties"]["Environment"]["Variables"]
    env = {k: "60" if isinstance(v, dict) else v for k, v in variables.items()}
    env.update(ECOM_INGESTION_TABLE="t1", ECOM_CHUNKS_TABLE="t2", ECOM_BUCKET="b")
    assert Config.from_env(env).debounce_seconds == 60
