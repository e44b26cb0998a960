"""The Step Functions definition in infra/ executed on moto, with the real jobs in the containers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from jobs import run, transform, validate
from orchestration import ops
from orchestration.config import Config
from orchestration.dispatch import Dispatcher
from tests.aws_stack import BUCKET, CHUNKS_TABLE, Stack, create_stack
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
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    spark: SparkSession,
    s3_endpoint: str,
) -> Iterator[tuple[Stack, Path, Fargate]]:
    """The stack, deployed in the two-task layout unless a test asks for another (``indirect``)."""
    lake = tmp_path / "lake"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = create_stack(
            {
                "ECOM_LAKE_ROOT": str(lake),
                "ECOM_LOG_FORMAT": "json",
                "ECOM_SPARK_SHUFFLE_PARTITIONS": "2",
                "ECOM_S3_ENDPOINT_URL": s3_endpoint,
            },
            layout=getattr(request, "param", "two-tasks"),
        )
        with Fargate(stack.ecs, _runner(spark)) as fargate:
            emulate_ecs_run_task_sync(monkeypatch, fargate)
            read_sdk_streams(monkeypatch)
            yield stack, lake, fargate


# (layout, the states a clean batch goes through between Validate and MarkCompleted, the tasks run)
LAYOUTS = [
    ("two-tasks", ["Transform"], [("validate", 0), ("transform", 0)]),
    ("one-task", [], [("run", 0)]),  # jobs.run in the validate task did both
]


def _runner(spark: SparkSession) -> Any:
    def run(job: str, args: list[str], env: dict[str, str]) -> int:
        with environment(env):
            return JOBS[job](args, spark=spark)

    return run


def _lambda_config(stack: Stack) -> Config:
    return Config(
        ingestion_table="unused",
        chunks_table=CHUNKS_TABLE,
        bucket=BUCKET,
        state_machine_arn=stack.state_machine_arn,
    )


def _dispatch(stack: Stack) -> str:
    """One dispatcher tick (as the Lambda runs it); returns the in-flight batch's execution ARN."""
    config = _lambda_config(stack)
    dispatcher = Dispatcher(boto3.resource("dynamodb", region_name=REGION), stack.sfn, stack.s3, config)
    batch_id = dispatcher.tick()
    assert batch_id is not None
    return str(stack.batch(batch_id)["execution_arn"])


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
    return _dispatch(stack)


@pytest.mark.parametrize(
    ("aws", "between", "tasks"), LAYOUTS, indirect=["aws"], ids=["two-tasks", "one-task"]
)
def test_a_clean_batch_is_validated_transformed_and_completed(
    aws: tuple[Stack, Path, Fargate],
    between: list[str],
    tasks: list[tuple[str, int]],
    spark: SparkSession,
    tmp_path: Path,
) -> None:
    stack, lake, agent = aws
    arn = _start_batch(stack, tmp_path, "20261122T010000Z-ok", defect_rate=0.0)
    execution = wait_for_execution(stack.sfn, arn)
    assert execution["status"] == "SUCCEEDED"
    assert states_entered(stack.sfn, arn) == [
        "Start",
        "Validate",
        "ReadValidationResult",
        "CheckValidationStatus",
        *between,
        "MarkCompleted",
        "Done",
    ]
    assert [(r["job"], r["exit_code"]) for r in agent.runs] == tasks
    assert stack.batch("20261122T010000Z-ok")["status"] == "completed"
    assert (lake / "kpi" / "order_daily" / "_delta_log").is_dir()
    transform = json.loads((lake / "_results" / "20261122T010000Z-ok" / "transform.json").read_text())
    assert transform["status"] == "SUCCEEDED"
    assert stack.alerts() == []


@pytest.mark.parametrize(
    ("aws", "task"), [("two-tasks", ("validate", 0)), ("one-task", ("run", 4))], indirect=["aws"]
)
def test_data_quality_failure_marks_the_batch_failed_and_alerts_with_the_summary(
    aws: tuple[Stack, Path, Fargate], task: tuple[str, int], spark: SparkSession, tmp_path: Path
) -> None:
    """validate exits 0 having written a FAILED result; jobs.run (one-task layout) exits 4 after
    writing it: neither is retried, the written summary is read and the alert says why."""
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
    assert "Transform" not in entered and [(r["job"], r["exit_code"]) for r in agent.runs] == [task]
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
    assert states_entered(stack.sfn, arn)[-8:] == [
        "ValidateExitCode",
        "ValidateCrashed",
        "ValidateCanRetry",
        "ValidateFailed",
        "DescribeFailure",
        "MarkFailed",
        "NotifyFailure",
        "Failed",
    ]
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "Validate")
    assert (
        batch["failure"] == "JobCrashed: the validate container exited with code 1 (unexpected: see its log)"
    )
    [alert] = stack.alerts()
    assert f"Batch {batch_id} failed at step Validate. Error: JobCrashed" in alert["Message"]


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
    assert wait_for_execution(stack.sfn, _dispatch(stack))["status"] == "FAILED"
    [alert] = stack.alerts()
    assert "missing required column(s)" in alert["Message"] and key in alert["Message"]
    assert "secret" not in alert["Message"].lower() and "alice" not in alert["Message"]
    assert "secret" not in stack.batch(batch_id)["failure"].lower()


def _keys(stack: Stack, prefix: str) -> list[str]:
    return [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


# -- failure paths, with scripted containers ------------------------------------------------------
# The jobs' own behaviour is proven above and in their tests; here each container's outcome is
# scripted (an exit code, and what the real job would have written), so every path is cheap.

Script = dict[str, list[Any]]


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Fargate, Script]]:
    script: Script = {"validate": [], "transform": []}

    def run(job: str, args: list[str], env: dict[str, str]) -> int:
        step = script[job].pop(0) if script[job] else 99  # 99: a run the test did not expect
        return int(step(env) if callable(step) else step)

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        stack = create_stack({"ECOM_LAKE_ROOT": "s3://ecom-data/lake"})
        with Fargate(stack.ecs, run) as fargate:
            emulate_ecs_run_task_sync(monkeypatch, fargate)
            read_sdk_streams(monkeypatch)
            yield stack, fargate, script


def _validated(status: str = "SUCCEEDED", summary: bool = True) -> Any:
    """What the validate job writes before it exits 0: its result, then the summary beside it."""

    def write(env: dict[str, str]) -> int:
        s3 = boto3.client("s3", region_name=REGION)
        key = env["ECOM_RESULT_URI"].removeprefix(f"s3://{BUCKET}/")
        body = {"batch_id": env["ECOM_BATCH_ID"], "status": status, "errors": [], "datasets": {}}
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())
        if summary:
            s3.put_object(
                Bucket=BUCKET, Key=key.replace(".json", ".summary.json"), Body=json.dumps(body).encode()
            )
        return 0

    return write


def _queue(stack: Stack, batch_id: str) -> None:
    item = {
        "batch_id": batch_id,
        "files": [f"s3://{BUCKET}/raw/orders/x.csv"],
        "status": "pending",
        "attempt": 0,
    }
    boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE).put_item(Item=item)


def _run(stack: Stack, batch_id: str) -> tuple[str, dict[str, Any]]:
    _queue(stack, batch_id)
    arn = _dispatch(stack)
    return arn, wait_for_execution(stack.sfn, arn)


@pytest.mark.parametrize(("job", "code"), [("validate", 2), ("transform", 2), ("transform", 3)])
def test_a_job_that_rejects_its_input_or_configuration_is_not_retried(
    scripted: tuple[Stack, Fargate, Script], job: str, code: int
) -> None:
    stack, fargate, script = scripted
    script["validate"] = [code] if job == "validate" else [_validated()]
    script["transform"] = [code]
    _, execution = _run(stack, "20261122T060000Z-rejected")
    assert execution["status"] == "FAILED"
    assert [(r["job"], r["exit_code"]) for r in fargate.runs][-1] == (job, code)
    assert [r["job"] for r in fargate.runs].count(job) == 1  # not retried
    batch = stack.batch("20261122T060000Z-rejected")
    assert (batch["status"], batch["failed_step"]) == ("failed", job.capitalize())
    assert batch["failure"].startswith(f"JobRejected: the {job} container exited with code {code}")
    [alert] = stack.alerts()
    assert f"failed at step {job.capitalize()}. Error: JobRejected" in alert["Message"]


def test_a_crashed_transform_is_retried_and_the_batch_completes(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, fargate, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [1, 0]
    arn, execution = _run(stack, "20261122T070000Z-flaky")
    assert execution["status"] == "SUCCEEDED"
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [
        ("validate", 0),
        ("transform", 1),
        ("transform", 0),
    ]
    assert "TransformBackoff" in states_entered(stack.sfn, arn)
    assert stack.batch("20261122T070000Z-flaky")["status"] == "completed" and stack.alerts() == []


def test_a_missing_summary_fails_at_read_result(scripted: tuple[Stack, Fargate, Script]) -> None:
    stack, fargate, script = scripted
    script["validate"] = [_validated(summary=False)]  # exit 0, but nothing for the state machine
    _, execution = _run(stack, "20261122T080000Z-nosummary")
    assert execution["status"] == "FAILED"
    batch = stack.batch("20261122T080000Z-nosummary")
    assert (batch["status"], batch["failed_step"]) == ("failed", "ReadValidationResult")
    assert [r["job"] for r in fargate.runs] == ["validate"] and len(stack.alerts()) == 1


def test_mark_completed_retried_after_its_write_landed_still_completes(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """The first MarkCompleted write lands but its answer is lost; the retry must not turn a good
    batch into a failed one (here: the item is already 'completed' by this execution)."""
    stack, _, script = scripted
    batch_id = "20261122T090000Z-landed"

    def transform_then_complete(env: dict[str, str]) -> int:
        table = boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE)
        table.update_item(
            Key={"batch_id": batch_id},
            UpdateExpression="SET #s = :c",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":c": "completed"},
        )
        return 0

    script["validate"] = [_validated()]
    script["transform"] = [transform_then_complete]
    _, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED"
    assert stack.batch(batch_id)["status"] == "completed" and stack.alerts() == []


def test_an_execution_started_outside_the_queue_cannot_record_an_outcome(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """The old README way (start-execution by hand with a made-up batch id): the jobs run, but no
    chunk item is created or overwritten, and the alert says why."""
    stack, _, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [0]
    config = _lambda_config(stack)
    from orchestration.dispatch import execution_input

    arn = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine_arn,
        name="manual-1",
        input=json.dumps(execution_input("manual-1", config)),
    )["executionArn"]
    assert wait_for_execution(stack.sfn, arn)["status"] == "FAILED"
    items = boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE).scan()["Items"]
    assert items == []  # no junk item
    [alert] = stack.alerts()
    assert "failed at step MarkCompleted" in alert["Message"] and "ConditionalCheckFailed" in alert["Message"]


def test_a_failed_batch_rerun_through_the_queue_completes_as_a_new_attempt(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, _, script = scripted
    batch_id = "20261122T100000Z-rerun"
    script["validate"] = [1, 1, 1]
    first, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED" and stack.batch(batch_id)["status"] == "failed"
    table = boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE)
    # the next tick settles the ended execution and releases the lock
    Dispatcher(
        boto3.resource("dynamodb", region_name=REGION), stack.sfn, stack.s3, _lambda_config(stack)
    ).tick()
    ops.requeue(table, batch_id, time.time())
    script["validate"] = [_validated()]
    script["transform"] = [0]
    second = _dispatch(stack)
    assert second != first and second.endswith(f"{batch_id}-a2")
    assert wait_for_execution(stack.sfn, second)["status"] == "SUCCEEDED"
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["attempt"]) == ("completed", 2)
    assert [h["execution_arn"] for h in batch["history"]] == [first]
    assert batch["history"][0]["failed_step"] == "Validate"
