"""The state machine's failure paths on moto's Step Functions, each container's outcome scripted (no JVM)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from orchestration import ops
from orchestration.config import Config
from orchestration.dispatch import Dispatcher
from tests.aws_stack import (
    BUCKET,
    CHUNKS_TABLE,
    CLUSTER_BATCH_BYTES,
    DATA_QUALITY_FAILED,
    EKS,
    LARGE_BATCH_BYTES,
    Stack,
    create_stack,
    dispatch_tick,
    lambda_config,
)
from tests.sfn_harness import (
    REGION,
    Fargate,
    Kubernetes,
    emulate_ecs_run_task_sync,
    emulate_eks_run_job_sync,
    environment,
    read_sdk_streams,
    states_entered,
    wait_for_execution,
)

# -- failure paths, with scripted containers ------------------------------------------------------
# The jobs' own behaviour is proven in tests/integration/test_state_machine.py (the real jobs in
# the containers) and in their own tests; here each container's outcome is scripted (an exit code,
# and what the real job would have written), so every path is cheap.

Script = dict[str, list[Any]]
# a task's TimeoutSeconds in the timeout tests: a retried task that does not hang must finish
# within it, on a busy machine too
SHORT_TIMEOUT = 4


@contextmanager
def _scripted_stack(
    layout: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, Fargate, Kubernetes, Script]]:
    script: Script = {"validate": [], "transform": [], "run": []}

    def run(job: str, args: list[str], env: dict[str, str]) -> int:
        step = script[job].pop(0) if script[job] else 99  # 99: a run the test did not expect
        return int(step(env) if callable(step) else step)

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # only the task a test makes hang gets the short timeout: the other one, run on a busy
        # machine, must not time out by chance
        validate_timeout = SHORT_TIMEOUT if layout == "validate-times-out" else 600
        transform_timeout = SHORT_TIMEOUT if layout == "transform-times-out" else 600
        execution_timeout = 3 if layout == "short-execution" else 1800
        eks = layout == "eks"
        two_task_variants = {"validate-times-out", "transform-times-out", "short-execution", "eks"}
        layout = "two-tasks" if layout in two_task_variants else layout
        stack = create_stack(
            {"ECOM_LAKE_ROOT": "s3://ecom-data/lake"},
            layout=layout,
            validate_timeout=validate_timeout,
            transform_timeout=transform_timeout,
            execution_timeout=execution_timeout,
            eks=eks,
        )
        kubernetes = Kubernetes(run)
        emulate_eks_run_job_sync(monkeypatch, kubernetes)
        with Fargate(stack.ecs, run) as fargate:
            emulate_ecs_run_task_sync(monkeypatch, fargate)
            read_sdk_streams(monkeypatch)
            yield stack, fargate, kubernetes, script


@pytest.fixture
def scripted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, Fargate, Script]]:
    """The stack in the two-task layout unless a test asks for another (``indirect``; or
    ``validate-times-out`` / ``transform-times-out``: that task times out after SHORT_TIMEOUT s;
    ``short-execution``: an execution that times out after 3 s)."""
    with _scripted_stack(getattr(request, "param", "two-tasks"), monkeypatch) as (stack, fargate, _, script):
        yield stack, fargate, script


@pytest.fixture
def with_eks(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Fargate, Kubernetes, Script]]:
    """The stack in the two-task layout with an EKS cluster for batches of CLUSTER_BATCH_BYTES."""
    with _scripted_stack("eks", monkeypatch) as scripted_stack:
        yield scripted_stack


def _validated(status: str = "SUCCEEDED", summary: bool = True, code: int = 0, **extra: Any) -> Any:
    """What the validate job writes before it exits 0 (``code``: jobs.run exits 4 after a FAILED
    one): its result, then the summary beside it (with ``extra`` summary fields)."""

    def write(env: dict[str, str]) -> int:
        s3 = boto3.client("s3", region_name=REGION)
        key = env["ECOM_RESULT_URI"].removeprefix(f"s3://{BUCKET}/")
        body = {"batch_id": env["ECOM_BATCH_ID"], "status": status, "errors": [], "datasets": {}, **extra}
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())
        if summary:
            s3.put_object(
                Bucket=BUCKET, Key=key.replace(".json", ".summary.json"), Body=json.dumps(body).encode()
            )
        return code

    return write


def _queue(stack: Stack, batch_id: str, total_bytes: int = 100) -> None:
    item = {
        "batch_id": batch_id,
        "files": [f"s3://{BUCKET}/raw/orders/x.csv"],
        "total_bytes": total_bytes,
        "status": "pending",
        "attempt": 0,
    }
    boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE).put_item(Item=item)


def _run(stack: Stack, batch_id: str) -> tuple[str, dict[str, Any]]:
    _queue(stack, batch_id)
    arn = dispatch_tick(stack)
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


def test_an_execution_started_outside_the_queue_runs_no_job_and_leaves_no_trace(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """start-execution by hand with a made-up batch id: it stops at Claim, before any job; no
    chunk item is created, nothing is alerted (the execution's own failure says why)."""
    stack, fargate, _ = scripted
    config = lambda_config(stack)
    from orchestration.dispatch import execution_input

    arn = stack.sfn.start_execution(
        stateMachineArn=stack.state_machine_arn,
        name="manual-1",
        input=json.dumps(execution_input("manual-1", config)),
    )["executionArn"]
    execution = wait_for_execution(stack.sfn, arn)
    assert (execution["status"], execution["error"]) == ("FAILED", "NotTheRecordedExecution")
    assert states_entered(stack.sfn, arn) == ["Start", "Claim", "NotTheRecordedExecution"]
    assert fargate.runs == []
    items = boto3.resource("dynamodb", region_name=REGION).Table(CHUNKS_TABLE).scan()["Items"]
    assert items == []  # no junk item
    assert stack.alerts() == []


def test_a_second_execution_of_the_batch_in_flight_runs_nothing_and_does_not_fail_it(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, fargate, script = scripted
    batch_id = "20261122T100000Z-inflight"
    hand_started: list[str] = []

    def validate_while_a_second_execution_starts(env: dict[str, str]) -> int:
        from orchestration.dispatch import execution_input

        second = stack.sfn.start_execution(
            stateMachineArn=stack.state_machine_arn,
            name="by-hand",
            input=json.dumps(execution_input(batch_id, lambda_config(stack))),
        )["executionArn"]
        hand_started.append(wait_for_execution(stack.sfn, second)["status"])
        assert stack.batch(batch_id)["status"] == "processing"  # the batch in flight, untouched
        return int(_validated()(env))

    script["validate"] = [validate_while_a_second_execution_starts]
    script["transform"] = [0]
    _, execution = _run(stack, batch_id)
    assert hand_started == ["FAILED"] and execution["status"] == "SUCCEEDED"
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [("validate", 0), ("transform", 0)]
    assert stack.batch(batch_id)["status"] == "completed" and stack.alerts() == []


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
        boto3.resource("dynamodb", region_name=REGION), stack.sfn, stack.s3, lambda_config(stack)
    ).tick()
    ops.requeue(table, batch_id, time.time())
    script["validate"] = [_validated()]
    script["transform"] = [0]
    second = dispatch_tick(stack)
    assert second != first and second.endswith(f"{batch_id}-a2")
    assert wait_for_execution(stack.sfn, second)["status"] == "SUCCEEDED"
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["attempt"]) == ("completed", 2)
    assert [h["execution_arn"] for h in batch["history"]] == [first]
    assert batch["history"][0]["failed_step"] == "Validate"


def test_a_task_failing_after_its_retries_is_caught(scripted: tuple[Stack, Fargate, Script]) -> None:
    stack, fargate, script = scripted
    script["validate"] = [1, 1, 1]
    batch_id = "20261122T030000Z-crash"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED"
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [
        ("validate", 1)
    ] * 3  # first try + 2 retries
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


def test_an_ecs_api_error_is_retried_and_the_batch_completes(scripted: tuple[Stack, Fargate, Script]) -> None:
    """RunTask refused twice (throttled, then ECS's server error): the Retry on the ECS errors
    calls it again, no container ran for the refused calls, and the batch completes."""
    stack, fargate, script = scripted
    fargate.refuse = ["ThrottlingException", "ServerException"]
    script["validate"] = [_validated()]
    script["transform"] = [0]
    batch_id = "20261122T030000Z-throttled"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED", execution
    assert fargate.refused == ["ThrottlingException", "ServerException"]
    assert [r["job"] for r in fargate.runs] == ["validate", "transform"]
    history = stack.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    failed = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failed == ["ECS.ThrottlingException", "ECS.ServerException"]
    assert stack.batch(batch_id)["status"] == "completed" and stack.alerts() == []


def test_ecs_refusing_past_the_retries_fails_the_batch_with_its_error(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, fargate, _ = scripted
    fargate.refuse = ["AmazonECSException"] * 4  # the first call and its three retries
    batch_id = "20261122T030000Z-refused"
    _, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED"
    assert fargate.runs == [] and len(fargate.refused) == 4
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "Validate")
    # the refusal's own error and cause (before, the cause was parsed as a task's description
    # and the execution died at that step without marking the batch or alerting)
    assert batch["failure"].startswith("ECS.AmazonECSException: AmazonECSException: Rate exceeded")
    [alert] = stack.alerts()
    assert f"Batch {batch_id} failed at step Validate. Error: ECS.AmazonECSException." in alert["Message"]


def test_containers_get_exactly_the_settings_the_jobs_read(scripted: tuple[Stack, Fargate, Script]) -> None:
    """Contract: names the state machine passes == names the jobs read, with the values they need."""
    from common.settings import load_settings

    stack, fargate, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [0]
    batch_id = "20261122T040000Z-env"
    _, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED"
    validate_env, transform_env = fargate.runs[0]["env"], fargate.runs[1]["env"]
    for env in (validate_env, transform_env):
        with environment(env):
            settings = load_settings([])
        fields = {f"ECOM_{name.upper()}" for name in type(settings).model_fields}
        assert set(env) <= fields, f"names no job reads: {set(env) - fields}"
    with environment(validate_env):
        settings = load_settings([])
    assert settings.batch_id == batch_id
    assert settings.manifest == f"s3://{BUCKET}/manifests/{batch_id}.json"
    assert settings.result_uri == f"s3://{BUCKET}/results/{batch_id}/validate.json"
    with environment(transform_env):
        settings = load_settings([])
    assert settings.validation_result == f"s3://{BUCKET}/results/{batch_id}/validate.json"


SMALL = ("2048", "8192", "6g", "8")  # the task definitions' size and heap, the default shuffle
LARGE = ("16384", "65536", "auto", "64")  # LargeTaskCpu/Memory, the heap sized by the task, more shuffle


@pytest.mark.parametrize(
    ("total_bytes", "size"),
    [(0, SMALL), (LARGE_BATCH_BYTES - 1, SMALL), (LARGE_BATCH_BYTES, LARGE), (50 * LARGE_BATCH_BYTES, LARGE)],
)
def test_the_tasks_are_sized_by_the_batch_s_bytes(
    scripted: tuple[Stack, Fargate, Script], total_bytes: int, size: tuple[str, str, str, str]
) -> None:
    """SizeTasks on the real ASL: below LargeBatchBytes both jobs run on the task definitions'
    size; at it and above on the large size (cpu/memory overrides that Fargate has a size for),
    with the heap following the task's memory and more shuffle partitions."""
    stack, fargate, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [0]
    batch_id = f"20261122T050000Z-size-{total_bytes}"
    _queue(stack, batch_id, total_bytes)
    arn = dispatch_tick(stack)
    assert wait_for_execution(stack.sfn, arn)["status"] == "SUCCEEDED"
    got = [
        (
            run["cpu"],
            run["memory"],
            run["env"]["ECOM_SPARK_DRIVER_MEMORY"],
            run["env"]["ECOM_SPARK_SHUFFLE_PARTITIONS"],
        )
        for run in fargate.runs
    ]
    assert [run["job"] for run in fargate.runs] == ["validate", "transform"]
    assert got == [size, size]


@pytest.mark.parametrize("scripted", ["one-task"], indirect=True)
def test_one_task_layout_completes_a_batch_jobs_run_did_both_for(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, fargate, script = scripted
    script["run"] = [_validated()]
    batch_id = "20261122T010000Z-ok"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED"
    assert states_entered(stack.sfn, arn) == [
        "Start",
        "Claim",
        "SizeTasks",
        "SmallTasks",
        "RunValidate",
        "Validate",
        "ReadValidationResult",
        "HasPark",
        "CheckValidationStatus",
        "MarkCompleted",
        "Done",
    ]
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [("run", 0)]
    assert stack.batch(batch_id)["status"] == "completed" and stack.alerts() == []


@pytest.mark.parametrize("scripted", ["one-task"], indirect=True)
def test_one_task_layout_reads_jobs_runs_exit_4_as_a_failed_result(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """jobs.run exits 4 after writing a FAILED result: not retried, the summary is read, the
    alert says why and names the report."""
    stack, fargate, script = scripted
    script["run"] = [_validated("FAILED", code=4)]
    batch_id = "20261122T020000Z-bad"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED"
    entered = states_entered(stack.sfn, arn)
    assert entered[-len(DATA_QUALITY_FAILED) :] == DATA_QUALITY_FAILED
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [("run", 4)]
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "CheckValidationStatus")
    [alert] = stack.alerts()
    assert f"Batch {batch_id} failed at step CheckValidationStatus" in alert["Message"]
    assert f"Report: s3://{BUCKET}/results/{batch_id}/report.html" in alert["Message"]


EXPIRED_NOTICE = (
    "order_items: 3 parked row(s) quarantined as parent_never_arrived (their parent did not arrive "
    "within the contract's parkFor); 2 still waiting"
)


def test_expired_parked_rows_are_announced_and_measured_while_the_batch_completes(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """A passing batch whose park let rows expire: the notice (counts only) goes to the alert topic,
    the park's figures become the metrics the template's park alarms watch, and the batch completes."""
    stack, _, script = scripted
    park = {"rows_expired": 3, "rows_waiting": 2, "oldest_parked_days": 6}
    script["validate"] = [_validated(notices=[EXPIRED_NOTICE], park=park)]
    script["transform"] = [0]
    batch_id = "20261122T110000Z-expired"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED" and stack.batch(batch_id)["status"] == "completed"
    entered = states_entered(stack.sfn, arn)
    assert entered[entered.index("ReadValidationResult") :][:5] == [
        "ReadValidationResult",
        "HasPark",
        "RecordPark",
        "HasNotices",
        "NotifyNotices",
    ]
    [alert] = stack.alerts()
    assert alert["Subject"] == "ecom-pipeline batch notice"
    assert alert["Message"] == f'Batch {batch_id} (SUCCEEDED): ["{EXPIRED_NOTICE}"]'
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    name = stack.state_machine_arn.rsplit(":", 1)[-1]
    figures = {}
    for metric in ("ParkedRowsExpired", "OldestParkedDays"):
        stats = cloudwatch.get_metric_statistics(
            Namespace="EcomPipeline",
            MetricName=metric,
            Dimensions=[{"Name": "StateMachine", "Value": name}],
            StartTime=time.time() - 3600,
            EndTime=time.time() + 3600,
            Period=300,
            Statistics=["Maximum"],
        )
        figures[metric] = [p["Maximum"] for p in stats["Datapoints"]]
    assert figures == {"ParkedRowsExpired": [3.0], "OldestParkedDays": [6.0]}


def test_a_summary_without_park_or_notices_goes_straight_to_its_status(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """No dataset parks (or an older job's summary): no metric, no notice."""
    stack, _, script = scripted
    script["validate"] = [_validated(notices=[])]
    script["transform"] = [0]
    arn, execution = _run(stack, "20261122T120000Z-quiet")
    assert execution["status"] == "SUCCEEDED" and stack.alerts() == []
    entered = states_entered(stack.sfn, arn)
    assert entered[entered.index("ReadValidationResult") :][:3] == [
        "ReadValidationResult",
        "HasPark",
        "CheckValidationStatus",
    ]


def test_an_alert_that_cannot_be_sent_still_fails_the_execution(
    scripted: tuple[Stack, Fargate, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish fails (the topic is gone); the batch is marked failed and the execution ends
    FAILED, which is what ExecutionsFailedAlarm watches (tests/unit/test_infra.py)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    # the retries' count is the ASL's; their waits (2 + 4 + 8 s) are skipped
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=lambda seconds: None))
    stack, fargate, script = scripted
    sns = boto3.client("sns", region_name=REGION)
    [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"]]

    def rejected_and_topic_gone(env: dict[str, str]) -> int:
        sns.delete_topic(TopicArn=topic)
        return 2  # a rejected input: not retried, straight to the failure path

    script["validate"] = [rejected_and_topic_gone]
    batch_id = "20261122T090000Z-unsent"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED"
    assert states_entered(stack.sfn, arn)[-3:] == ["MarkFailed", "NotifyFailure", "Failed"]
    events = stack.sfn.get_execution_history(executionArn=arn)["events"]
    failed = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
    assert [f["resourceType"] for f in failed] == ["ecs"] + ["sns"] * 4  # the publish: 1 + 3 retries
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [("validate", 2)]
    assert stack.batch(batch_id)["status"] == "failed" and stack.alerts() == []


def _hangs(env: dict[str, str]) -> int:
    # past the short timeout, and done before the retry's task starts (1 s of backoff later): the
    # scripted Fargate runs one task at a time
    time.sleep(SHORT_TIMEOUT + 0.5)
    return 0


@pytest.mark.parametrize("scripted", ["validate-times-out"], indirect=True)
def test_a_task_that_times_out_is_retried_like_a_crash(scripted: tuple[Stack, Fargate, Script]) -> None:
    stack, fargate, script = scripted
    script["validate"] = [_hangs, _validated()]
    script["transform"] = [0]
    batch_id = "20261122T110000Z-slow"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "SUCCEEDED"
    entered = states_entered(stack.sfn, arn)
    assert entered[:8] == [
        "Start",
        "Claim",
        "SizeTasks",
        "SmallTasks",
        "RunValidate",
        "Validate",
        "ValidateTimedOut",
        "ValidateCanRetry",
    ]
    assert [(r["job"], r["exit_code"]) for r in fargate.runs] == [("validate", 0)] * 2 + [("transform", 0)]
    assert stack.batch(batch_id)["status"] == "completed" and stack.alerts() == []


@pytest.mark.parametrize("scripted", ["transform-times-out"], indirect=True)
def test_a_task_that_keeps_timing_out_fails_with_a_cause_that_says_so(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    stack, _, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [_hangs, _hangs, _hangs]
    batch_id = "20261122T120000Z-hung"
    arn, execution = _run(stack, batch_id)
    assert execution["status"] == "FAILED"
    assert states_entered(stack.sfn, arn).count("TransformTimedOut") == 3  # first try + 2 retries
    batch = stack.batch(batch_id)
    assert (batch["status"], batch["failed_step"]) == ("failed", "Transform")
    cause = f"the transform task ran past its timeout of {SHORT_TIMEOUT} s and was stopped"
    assert batch["failure"].startswith(f"JobTimedOut: {cause}")
    [alert] = stack.alerts()
    assert f"Error: JobTimedOut. Cause: {cause}" in alert["Message"]


def _settled_by_the_dispatcher(stack: Stack, batch_id: str, status: str) -> None:
    """The dispatcher's next tick, after an execution ended ``status`` outside the state machine's
    Catch: the batch is marked failed with that status, and alerted."""
    config = lambda_config(stack)
    sns = boto3.client("sns", region_name=REGION)
    config = Config(**{**config.__dict__, "alert_topic_arn": sns.list_topics()["Topics"][0]["TopicArn"]})
    Dispatcher(boto3.resource("dynamodb", region_name=REGION), stack.sfn, stack.s3, config, sns).tick()
    batch = stack.batch(batch_id)
    assert batch["status"] == "failed"
    assert f"execution {status} before the state machine recorded an outcome" in batch["failure"]
    [alert] = stack.alerts()
    assert f"Batch {batch_id} failed" in alert["Message"] and status in alert["Message"]


def _start_with_validate_held(stack: Stack, script: Script, batch_id: str) -> tuple[str, threading.Event]:
    """Queue and start ``batch_id`` with a validate container that runs until the event is set
    (30 s at most); returns the execution's ARN and that event."""
    release = threading.Event()

    def held(env: dict[str, str]) -> int:
        release.wait(30)
        return 0

    script["validate"] = [held]
    _queue(stack, batch_id)
    return dispatch_tick(stack), release


# moto's runTask.sync waiter thread raises a TypeError when its execution is stopped under it
# (moto's own code, after the execution is ABORTED): not this test's subject
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_aborted_execution_fails_its_batch_and_alerts(scripted: tuple[Stack, Fargate, Script]) -> None:
    """An execution stopped by hand mid-validate (ABORTED, on the real machine): no state of its
    own runs, so the dispatcher marks the batch failed and alerts."""
    stack, _, script = scripted
    batch_id = "20261122T130000Z-stopped"
    arn, release = _start_with_validate_held(stack, script, batch_id)
    deadline = time.monotonic() + 30
    while "Validate" not in states_entered(stack.sfn, arn) and time.monotonic() < deadline:
        time.sleep(0.1)
    stack.sfn.stop_execution(executionArn=arn, error="Operator", cause="stopped by hand")
    assert wait_for_execution(stack.sfn, arn)["status"] == "ABORTED"
    release.set()
    _settled_by_the_dispatcher(stack, batch_id, "ABORTED")


@pytest.mark.parametrize("scripted", ["short-execution"], indirect=True)
def test_an_execution_past_its_timeout_fails_its_batch_and_alerts(
    scripted: tuple[Stack, Fargate, Script],
) -> None:
    """ExecutionTimeoutSeconds (3 s here) passes while validate runs: the execution is TIMED_OUT
    by Step Functions itself, and the dispatcher marks the batch failed and alerts."""
    stack, _, script = scripted
    batch_id = "20261122T140000Z-overdue"
    arn, release = _start_with_validate_held(stack, script, batch_id)
    assert wait_for_execution(stack.sfn, arn, timeout=60)["status"] == "TIMED_OUT"
    release.set()
    _settled_by_the_dispatcher(stack, batch_id, "TIMED_OUT")


@pytest.mark.parametrize(
    ("total_bytes", "on_fargate", "on_eks"),
    [
        (CLUSTER_BATCH_BYTES - 1, ["validate", "transform"], []),
        (CLUSTER_BATCH_BYTES, [], ["validate", "transform"]),
        (50 * CLUSTER_BATCH_BYTES, [], ["validate", "transform"]),
    ],
)
def test_a_batch_past_one_task_runs_both_jobs_on_the_eks_cluster(
    with_eks: tuple[Stack, Fargate, Kubernetes, Script],
    total_bytes: int,
    on_fargate: list[str],
    on_eks: list[str],
) -> None:
    """SizeTasks on the real ASL, at ClusterBatchBytes' edge: below it the large Fargate size, at
    it and above both jobs as Jobs on the cluster."""
    stack, fargate, kubernetes, script = with_eks
    script["validate"] = [_validated()]
    script["transform"] = [0]
    batch_id = f"20261122T050000Z-eks-{total_bytes}"
    _queue(stack, batch_id, total_bytes)
    assert wait_for_execution(stack.sfn, dispatch_tick(stack))["status"] == "SUCCEEDED"
    assert [run["job"] for run in fargate.runs] == on_fargate
    assert [run["job"] for run in kubernetes.runs] == on_eks
    assert [(run["cpu"], run["memory"]) for run in fargate.runs] == [LARGE[:2]] * len(on_fargate)


def test_the_eks_jobs_get_the_batch_the_stack_and_spark_on_kubernetes(
    with_eks: tuple[Stack, Fargate, Kubernetes, Script],
) -> None:
    stack, _, kubernetes, script = with_eks
    script["validate"] = [_validated()]
    script["transform"] = [0]
    batch_id = "20261122T050000Z-eks-env"
    _queue(stack, batch_id, CLUSTER_BATCH_BYTES)
    assert wait_for_execution(stack.sfn, dispatch_tick(stack))["status"] == "SUCCEEDED"
    validate, transform = kubernetes.runs
    result = f"s3://{BUCKET}/results/{batch_id}/validate.json"
    assert {k: validate["env"][k] for k in ("ECOM_BATCH_ID", "ECOM_MANIFEST", "ECOM_RESULT_URI")} == {
        "ECOM_BATCH_ID": batch_id,
        "ECOM_MANIFEST": f"s3://{BUCKET}/manifests/{batch_id}.json",
        "ECOM_RESULT_URI": result,
    }
    assert transform["env"]["ECOM_VALIDATION_RESULT"] == result
    assert transform["env"]["ECOM_DYNAMODB_ORDER_TABLE"] == "kpi-order-daily"
    for run in (validate, transform):
        assert run["namespace"] == "ecom-pipeline"
        assert run["env"]["ECOM_SPARK_MASTER"] == "k8s://https://kubernetes.default.svc"
        assert (run["env"]["ECOM_SPARK_DRIVER_MEMORY"], run["env"]["ECOM_SPARK_SHUFFLE_PARTITIONS"]) == (
            "12g",
            "256",
        )
        assert run["env"]["ECOM_LAKE_ROOT"] == "s3://ecom-data/lake"
        submit = run["env"]["PYSPARK_SUBMIT_ARGS"].split()
        assert submit[-1] == "pyspark-shell"
        assert {
            "spark.kubernetes.container.image=123456789012.dkr.ecr.us-east-1.amazonaws.com/ecom-pipeline:test",
            "spark.kubernetes.namespace=ecom-pipeline",
            "spark.kubernetes.driver.pod.name=$(POD_NAME)",
            "spark.driver.host=$(POD_IP)",
            "spark.executor.instances=8",
            "spark.executor.cores=4",
            "spark.executor.memory=24g",
        } <= set(submit)
        pod = run["manifest"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "ecom-spark" and pod["restartPolicy"] == "Never"
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["image"] == EKS["ImageUri"]
        assert container["resources"]["limits"] == {"memory": "16Gi"}
        assert run["manifest"]["spec"]["backoffLimit"] == 0  # the state machine retries, not Kubernetes
    assert validate["manifest"]["metadata"]["name"] != transform["manifest"]["metadata"]["name"]


def test_a_job_that_fails_on_eks_is_retried_there(
    with_eks: tuple[Stack, Fargate, Kubernetes, Script],
) -> None:
    stack, fargate, kubernetes, script = with_eks
    script["validate"] = [1, _validated()]
    script["transform"] = [0]
    arn = dispatch_tick_for(stack, "20261122T050000Z-eks-retry", CLUSTER_BATCH_BYTES)
    assert wait_for_execution(stack.sfn, arn)["status"] == "SUCCEEDED"
    assert [run["job"] for run in kubernetes.runs] == ["validate", "validate", "transform"]
    assert fargate.runs == []
    entered = states_entered(stack.sfn, arn)
    assert entered.count("ValidateOnEks") == 2 and "ValidateFailedOnEks" in entered


def test_a_job_that_keeps_failing_on_eks_fails_the_batch_and_alerts(
    with_eks: tuple[Stack, Fargate, Kubernetes, Script],
) -> None:
    stack, _, kubernetes, script = with_eks
    script["validate"] = [1, 1, 1]
    arn = dispatch_tick_for(stack, "20261122T050000Z-eks-fails", CLUSTER_BATCH_BYTES)
    assert wait_for_execution(stack.sfn, arn)["status"] == "FAILED"
    assert [run["job"] for run in kubernetes.runs] == ["validate"] * 3  # MaxJobAttempts
    [alert] = stack.alerts()
    assert "the validate job on the EKS cluster failed" in json.dumps(alert)


def test_without_a_cluster_the_largest_batch_runs_on_fargate(scripted: tuple[Stack, Fargate, Script]) -> None:
    stack, fargate, script = scripted
    script["validate"] = [_validated()]
    script["transform"] = [0]
    arn = dispatch_tick_for(stack, "20261122T050000Z-no-eks", 1000 * CLUSTER_BATCH_BYTES)
    assert wait_for_execution(stack.sfn, arn)["status"] == "SUCCEEDED"
    assert [(run["job"], run["cpu"], run["memory"]) for run in fargate.runs] == [
        ("validate", *LARGE[:2]),
        ("transform", *LARGE[:2]),
    ]


def dispatch_tick_for(stack: Stack, batch_id: str, total_bytes: int) -> str:
    _queue(stack, batch_id, total_bytes)
    return dispatch_tick(stack)
