"""The Step Functions definition in infra/ executed on moto, with the real jobs in the containers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from jobs import transform, validate
from orchestration.config import Config
from orchestration.dispatch import build_manifest, execution_input
from tests.aws_stack import BUCKET, CHUNKS_TABLE, Stack, create_stack
from tests.conftest import read_s3_with
from tests.moto_server import moto_server
from tests.sfn_harness import (
    Fargate,
    emulate_ecs_run_task_sync,
    environment,
    read_sdk_streams,
    states_entered,
    wait_for_execution,
)

pytestmark = pytest.mark.integration
JOBS = {"validate": validate.main, "transform": transform.main}


@pytest.fixture(scope="module")
def s3_endpoint(spark: SparkSession) -> Iterator[str]:
    """moto's HTTP server in this process: it serves the same state as ``mock_aws``, so Spark (S3A)
    reads the raw files the test put in the mocked bucket."""
    with moto_server() as url:
        read_s3_with(spark, url, BUCKET)
        yield url


@pytest.fixture
def aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spark: SparkSession, s3_endpoint: str
) -> Iterator[tuple[Stack, Path, Fargate]]:
    lake = tmp_path / "lake"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = create_stack(
            {
                "ECOM_LAKE_ROOT": str(lake),
                "ECOM_LOG_FORMAT": "json",
                "ECOM_SPARK_SHUFFLE_PARTITIONS": "2",
                "ECOM_S3_ENDPOINT_URL": s3_endpoint,
            }
        )
        with Fargate(stack.ecs, _runner(spark)) as fargate:
            emulate_ecs_run_task_sync(monkeypatch, fargate)
            read_sdk_streams(monkeypatch)
            yield stack, lake, fargate


def _runner(spark: SparkSession) -> Any:
    def run(job: str, args: list[str], env: dict[str, str]) -> int:
        with environment(env):
            return JOBS[job](args, spark=spark)

    return run


def _start_batch(stack: Stack, tmp_path: Path, batch_id: str, defect_rate: float) -> str:
    """Upload a generated batch, record its chunk as the dispatcher would, start the execution."""
    generate_batch(
        tmp_path / batch_id,
        GeneratorConfig(items=400, parts=2, seed=4, defect_rate=defect_rate, warning_rate=0),
    )
    files = json.loads((tmp_path / batch_id / "manifest.json").read_text())["files"]
    paths = []
    for dataset, locals_ in files.items():
        for local in locals_:
            key = f"raw/{dataset}/{batch_id}/{Path(local).name}"
            stack.s3.upload_file(local, BUCKET, key)
            paths.append(f"s3://{BUCKET}/{key}")
    config = Config(
        ingestion_table="unused",
        chunks_table=CHUNKS_TABLE,
        bucket=BUCKET,
        state_machine_arn=stack.state_machine_arn,
    )
    batch = {"batch_id": batch_id, "files": paths, "status": "processing"}
    boto3.resource("dynamodb", region_name="us-east-1").Table(CHUNKS_TABLE).put_item(Item=batch)
    stack.s3.put_object(
        Bucket=BUCKET,
        Key=f"manifests/{batch_id}.json",
        Body=json.dumps(build_manifest(batch, config)).encode(),
    )
    return str(
        stack.sfn.start_execution(
            stateMachineArn=stack.state_machine_arn,
            name=batch_id,
            input=json.dumps(execution_input(batch_id, config)),
        )["executionArn"]
    )


def test_success_runs_validate_then_transform_and_completes(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    stack, lake, agent = aws
    arn = _start_batch(stack, tmp_path, "20261122T010000Z-ok", defect_rate=0.0)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "SUCCEEDED"
    assert states_entered(stack.sfn, arn) == [
        "Validate",
        "ReadValidationResult",
        "CheckValidationStatus",
        "Transform",
        "MarkCompleted",
        "Done",
    ]
    assert [(r["job"], r["exit_code"]) for r in agent.runs] == [("validate", 0), ("transform", 0)]
    assert stack.batch("20261122T010000Z-ok")["status"] == "completed"
    assert (lake / "kpi" / "order_daily" / "_delta_log").is_dir()
    assert stack.alerts() == []


def test_data_quality_failure_marks_the_batch_failed_and_alerts_with_the_summary(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    stack, lake, agent = aws
    batch_id = "20261122T020000Z-bad"
    arn = _start_batch(stack, tmp_path, batch_id, defect_rate=0.3)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "FAILED"
    entered = states_entered(stack.sfn, arn)
    assert entered[-6:] == [
        "DataQualityFailed",
        "ValidateResultFailed",
        "DescribeFailure",
        "MarkFailed",
        "NotifyFailure",
        "Failed",
    ]
    assert "Transform" not in entered and [r["job"] for r in agent.runs] == ["validate"]
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "CheckValidationStatus")
    [alert] = stack.alerts()
    assert alert["Subject"] == "ecom-pipeline batch failed"
    message = alert["Message"]
    assert f"Batch {batch_id} failed at step CheckValidationStatus" in message
    assert (
        "DataQualityFailed" in message
        and '"rows_quarantined"' in message
        and "above the threshold" in message
    )
    assert not (lake / "validated").exists()


def test_a_task_failing_after_its_retries_is_caught(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    stack, lake, agent = aws
    lake.parent.mkdir(parents=True, exist_ok=True)
    lake.write_text("a file where the lake directory should be: every validate run exits 1")
    batch_id = "20261122T030000Z-crash"
    arn = _start_batch(stack, tmp_path, batch_id, defect_rate=0.0)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "FAILED"
    assert [(r["job"], r["exit_code"]) for r in agent.runs] == [("validate", 1)] * 3  # first try + 2 retries
    assert states_entered(stack.sfn, arn)[-5:] == [
        "ValidateFailed",
        "DescribeFailure",
        "MarkFailed",
        "NotifyFailure",
        "Failed",
    ]
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "Validate")
    assert batch["failure"].startswith("States.TaskFailed: ")
    [alert] = stack.alerts()
    assert f"Batch {batch_id} failed at step Validate. Error: States.TaskFailed" in alert["Message"]


def test_containers_get_exactly_the_settings_the_jobs_read(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    """Contract: names the state machine passes == names the jobs read, with the values they need."""
    from common.settings import load_settings

    stack, _, agent = aws
    wait_for_execution(stack.sfn, _start_batch(stack, tmp_path, "20261122T040000Z-env", defect_rate=0.0))
    validate_env, transform_env = agent.runs[0]["env"], agent.runs[1]["env"]
    for env in (validate_env, transform_env):
        with environment(env):
            settings = load_settings([])
        fields = {f"ECOM_{name.upper()}" for name in type(settings).model_fields}
        assert set(env) <= fields, f"names no job reads: {set(env) - fields}"
    with environment(validate_env):
        settings = load_settings([])
    assert settings.batch_id == "20261122T040000Z-env"
    assert settings.manifest == f"s3://{BUCKET}/manifests/20261122T040000Z-env.json"
    assert settings.result_uri == f"s3://{BUCKET}/results/20261122T040000Z-env/validate.json"
    with environment(transform_env):
        settings = load_settings([])
    assert settings.validation_result == f"s3://{BUCKET}/results/20261122T040000Z-env/validate.json"
