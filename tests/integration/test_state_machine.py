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
from jobs import run, transform, validate
from tests.aws_stack import BUCKET, CHUNKS_TABLE, DATA_QUALITY_FAILED, Stack, create_stack, dispatch_tick
from tests.conftest import read_s3_with
from tests.moto_server import moto_server
from tests.sfn_harness import (
    REGION,
    Fargate,
    emulate_ecs_run_task_sync,
    environment,
    read_sdk_streams,
    states_entered,
    wait_for_execution,
)

pytestmark = pytest.mark.integration
JOBS = {"validate": validate.main, "transform": transform.main, "run": run.main}


@pytest.fixture(scope="module")
def s3_endpoint(spark: SparkSession) -> Iterator[str]:
    """moto's HTTP server in this process: it serves the same state as ``mock_aws``, so Spark (S3A)
    reads the raw files the test put in the mocked bucket."""
    with moto_server() as url:
        read_s3_with(spark, url, BUCKET)
        yield url


@pytest.fixture
def aws(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    spark: SparkSession,
    s3_endpoint: str,
) -> Iterator[tuple[Stack, Path, Fargate]]:
    """The stack, deployed in the two-task layout, with the real jobs in its containers."""
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


def _queue_batch(stack: Stack, tmp_path: Path, batch_id: str, defect_rate: float = 0.0) -> None:
    """Upload a generated batch and queue its chunk, as the batcher would."""
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
    item = {"batch_id": batch_id, "files": paths, "status": "pending", "attempt": 0}
    boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE).put_item(Item=item)


def _start_batch(stack: Stack, tmp_path: Path, batch_id: str, defect_rate: float) -> str:
    """Queue a generated batch and let the dispatcher start it; returns the execution ARN."""
    _queue_batch(stack, tmp_path, batch_id, defect_rate)
    return dispatch_tick(stack)


@pytest.mark.slow  # both real jobs through the real ASL (~27 s): `make drills`; the other two run validate
def test_a_clean_batch_is_validated_transformed_and_completed(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    """The real jobs in the two-task layout (the one-task layout's paths, with jobs.run's outcome
    scripted, are in tests/unit/test_state_machine_paths.py; jobs.run itself in test_run_job.py)."""
    stack, lake, agent = aws
    arn = _start_batch(stack, tmp_path, "20261122T010000Z-ok", defect_rate=0.0)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "SUCCEEDED"
    assert states_entered(stack.sfn, arn) == [
        "Start",
        "Claim",
        "SizeTasks",
        "SmallTasks",
        "RunValidate",
        "Validate",
        "ReadValidationResult",
        "HasPark",  # order_items parks rows: the park's figures become metrics
        "RecordPark",
        "HasNotices",
        "CheckValidationStatus",
        "RunTransform",
        "Transform",
        "MarkCompleted",
        "Done",
    ]
    assert [(r["job"], r["exit_code"]) for r in agent.runs] == [("validate", 0), ("transform", 0)]
    assert stack.batch("20261122T010000Z-ok")["status"] == "completed"
    assert (lake / "kpi" / "order_daily" / "_delta_log").is_dir()
    transform = json.loads((lake / "_results" / "20261122T010000Z-ok" / "transform.json").read_text())
    assert transform["status"] == "SUCCEEDED"
    assert stack.alerts() == []


def test_data_quality_failure_marks_the_batch_failed_and_alerts_with_the_summary(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    """validate exits 0 having written a FAILED result: not retried, the written summary is read
    and the alert says why (jobs.run's exit 4 in the one-task layout: the scripted paths)."""
    stack, lake, agent = aws
    batch_id = "20261122T020000Z-bad"
    arn = _start_batch(stack, tmp_path, batch_id, defect_rate=0.3)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "FAILED"
    entered = states_entered(stack.sfn, arn)
    assert entered[-len(DATA_QUALITY_FAILED) :] == DATA_QUALITY_FAILED
    assert "Transform" not in entered and [(r["job"], r["exit_code"]) for r in agent.runs] == [
        ("validate", 0)
    ]
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
    report_key = f"results/{batch_id}/report.html"  # the alert names the report the job wrote
    assert f"Report: s3://{BUCKET}/{report_key}" in message
    report = stack.s3.get_object(Bucket=BUCKET, Key=report_key)
    assert report["ContentType"].startswith("text/html") and batch_id in report["Body"].read().decode()
    assert not (lake / "validated").exists() and not (lake / "kpi").exists()


def test_an_alert_never_quotes_the_files_contents(
    aws: tuple[Stack, Path, Fargate], spark: SparkSession, tmp_path: Path
) -> None:
    """A data row where the orders header should be: the alert names the file and the expected
    columns, not the row (the e-mail goes to people who may not see the data)."""
    stack, _, _ = aws
    batch_id = "20261122T050000Z-leak"
    _queue_batch(stack, tmp_path, batch_id)
    key = next(k for k in _keys(stack, f"raw/orders/{batch_id}/"))
    body = stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    row = "4242,alice@example.com,SECRET-VALUE,2025-01-01,a,b,c,1"
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=(row + "\n" + body.split("\n", 1)[1]).encode())
    assert wait_for_execution(stack.sfn, dispatch_tick(stack))["status"] == "FAILED"
    [alert] = stack.alerts()
    assert "missing required column(s)" in alert["Message"] and key in alert["Message"]
    assert "secret" not in alert["Message"].lower() and "alice" not in alert["Message"]
    assert "secret" not in stack.batch(batch_id)["failure"].lower()


def _keys(stack: Stack, prefix: str) -> list[str]:
    return [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
