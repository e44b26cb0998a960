"""Ingestion, batching and dispatch Lambdas with real boto3 calls against moto."""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from common.io.manifest import resolve_batch
from orchestration import batcher, dispatch, ingest
from orchestration.config import Config
from tests.aws_stack import BUCKET, CHUNKS_TABLE, INGESTION_TABLE, create_tables
from tests.conftest import make_settings

REGION = "us-east-1"
T0 = 1_795_000_000.0  # a fixed "now" (2026-11-19)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        create_tables(boto3.client("dynamodb", region_name=REGION))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="ecom-pipeline",
            roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
        )["stateMachineArn"]
        env = {
            "ECOM_INGESTION_TABLE": INGESTION_TABLE,
            "ECOM_CHUNKS_TABLE": CHUNKS_TABLE,
            "ECOM_BUCKET": BUCKET,
            "ECOM_STATE_MACHINE_ARN": arn,
            "ECOM_DEBOUNCE_SECONDS": "120",
            "ECOM_MAX_WAIT_SECONDS": "900",
            "ECOM_MAX_FILES_PER_CHUNK": "3",
            "AWS_DEFAULT_REGION": REGION,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {
            "s3": s3,
            "sfn": sfn,
            "ddb": boto3.resource("dynamodb", region_name=REGION),
            "config": Config.from_env(),
            "arn": arn,
        }


def s3_event(*keys: str, etag: str = "abc", size: int = 100) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": k, "size": size, "eTag": etag}},
            }
            for k in keys
        ]
    }


def records(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return aws["ddb"].Table(INGESTION_TABLE).scan(ConsistentRead=True)["Items"]


def chunks(aws: dict[str, Any]) -> list[dict[str, Any]]:
    items = aws["ddb"].Table(CHUNKS_TABLE).scan(ConsistentRead=True)["Items"]
    return sorted((i for i in items if i["batch_id"] != dispatch.LOCK_ID), key=lambda i: i["batch_id"])


# -- ingestion ---------------------------------------------------------------------------------


def test_ingestion_records_a_file_once_even_when_the_event_is_redelivered(aws: dict[str, Any]) -> None:
    event = s3_event("raw/orders/2026-11-22/part-0.csv", "raw/order_items/part%2B0+copy.csv")
    assert ingest.handler(event, now=T0) == {"recorded": 2, "ignored": 0}
    assert ingest.handler(event, now=T0 + 5) == {"recorded": 0, "ignored": 2}
    items = sorted(records(aws), key=lambda i: i["s3_path"])
    assert [(i["group_key"], i["dataset"], i["s3_path"]) for i in items] == [
        ("default", "order_items", f"s3://{BUCKET}/raw/order_items/part+0 copy.csv"),
        ("2026-11-22", "orders", f"s3://{BUCKET}/raw/orders/2026-11-22/part-0.csv"),
    ]
    first = items[1]
    assert first["arrival_ts"] == int(T0) and first["debounce_deadline"] == int(T0) + 120
    assert first["processed"] is False and first["pending"] == "2026-11-22"


def test_ingestion_ignores_keys_outside_raw_or_of_unknown_datasets(aws: dict[str, Any]) -> None:
    event = s3_event("manifests/x.json", "raw/customers/part-0.csv", "raw/orders/", "raw/orders.csv")
    assert ingest.handler(event, now=T0) == {"recorded": 0, "ignored": 4}
    assert records(aws) == []


def test_a_new_version_of_the_same_key_is_a_new_file(aws: dict[str, Any]) -> None:
    ingest.handler(s3_event("raw/orders/part-0.csv", etag="v1"), now=T0)
    ingest.handler(s3_event("raw/orders/part-0.csv", etag="v2"), now=T0 + 1)
    assert len(records(aws)) == 2


# -- batching ----------------------------------------------------------------------------------


def test_batching_waits_for_the_debounce_window_then_chunks_by_file_limit(aws: dict[str, Any]) -> None:
    keys = [f"raw/orders/part-{i}.csv" for i in range(5)] + [
        "raw/products/part-0.csv",
        "raw/order_items/part-0.csv",
    ]
    ingest.handler(s3_event(*keys[:4]), now=T0)
    ingest.handler(s3_event(*keys[4:]), now=T0 + 60)  # the burst goes on: the window restarts
    resource = aws["ddb"]
    assert batcher.run(resource, aws["config"], now=T0 + 121) == []  # last file arrived 61 s ago
    created = batcher.run(resource, aws["config"], now=T0 + 181)
    assert len(created) == 3  # 7 files, at most 3 per chunk
    made = chunks(aws)
    assert [len(c["files"]) for c in made] == [3, 3, 1]
    all_files = [f for c in made for f in c["files"]]
    assert sorted(all_files) == sorted(f"s3://{BUCKET}/{k}" for k in keys)  # each file exactly once
    assert all(c["status"] == "pending" for c in made)
    assert all(r["processed"] is True and "pending" not in r for r in records(aws))
    assert batcher.run(resource, aws["config"], now=T0 + 300) == []  # nothing left to batch


def test_batching_respects_the_byte_limit_and_max_wait(aws: dict[str, Any]) -> None:
    config = Config(**{**aws["config"].__dict__, "max_bytes_per_chunk": 250, "max_files_per_chunk": 50})
    for i in range(4):  # a steady trickle: never quiet for 120 s
        ingest.handler(s3_event(f"raw/orders/p{i}.csv", size=100), now=T0 + i * 100)
    assert batcher.run(aws["ddb"], config, now=T0 + 350) == []
    created = batcher.run(aws["ddb"], config, now=T0 + 900)  # the oldest file waited 900 s
    assert [len(c["files"]) for c in chunks(aws)] == [2, 2] and len(created) == 2


def test_two_batchers_racing_never_put_a_file_in_two_batches(aws: dict[str, Any], atomic_moto: None) -> None:
    ingest.handler(s3_event(*[f"raw/orders/part-{i}.csv" for i in range(9)]), now=T0)
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(batcher.run(aws["ddb"], aws["config"], now=T0 + 200)))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    files = [f for c in chunks(aws) for f in c["files"]]
    assert len(files) == len(set(files)) == 9
    assert sorted(b for r in results for b in r) == [c["batch_id"] for c in chunks(aws)]


# -- dispatch ----------------------------------------------------------------------------------


def _pending_batches(aws: dict[str, Any], n: int) -> list[str]:
    keys = []
    for i in range(n):
        keys += [
            f"raw/orders/g{i}/part-0.csv",
            f"raw/order_items/g{i}/part-0.csv",
            f"raw/products/g{i}/part-0.csv",
        ]
    ingest.handler(s3_event(*keys), now=T0)
    return sorted(batcher.run(aws["ddb"], aws["config"], now=T0 + 200))


def _dispatcher(aws: dict[str, Any]) -> dispatch.Dispatcher:
    return dispatch.Dispatcher(
        aws["ddb"],
        boto3.client("stepfunctions", region_name=REGION),
        boto3.client("s3", region_name=REGION),
        aws["config"],
    )


def _complete(aws: dict[str, Any], batch_id: str) -> None:
    """What the state machine's MarkCompleted state does, then the execution ends."""
    table = aws["ddb"].Table(CHUNKS_TABLE)
    table.update_item(
        Key={"batch_id": batch_id},
        UpdateExpression="SET #s = :c",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": "completed"},
    )


def test_dispatch_starts_the_oldest_batch_and_keeps_one_in_flight(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    first, second = _pending_batches(aws, 2)
    d = _dispatcher(aws)
    assert d.tick(now=T0 + 300) == first
    assert d.tick(now=T0 + 301) == first  # second waits
    statuses = {c["batch_id"]: c["status"] for c in chunks(aws)}
    assert statuses == {first: "processing", second: "pending"}
    started = chunks(aws)[0]
    assert started["execution_arn"].endswith(f":{dispatch.execution_name(first)}")
    execution = aws["sfn"].describe_execution(executionArn=started["execution_arn"])
    payload = json.loads(execution["input"])
    assert payload == dispatch.execution_input(first, aws["config"])
    # the manifest the job will read parses with the job's own loader and splits by dataset
    body = aws["s3"].get_object(Bucket=BUCKET, Key=f"manifests/{first}.json")["Body"].read()
    (tmp_path / "m.json").write_bytes(body)
    batch = resolve_batch(make_settings(manifest=str(tmp_path / "m.json")))
    assert batch.batch_id == first
    assert {name: [u.split("/")[-3] for u in uris] for name, uris in batch.files.items()} == {
        "orders": ["orders"],
        "order_items": ["order_items"],
        "products": ["products"],
    }
    _complete(aws, first)
    assert d.tick(now=T0 + 400) == second


def test_a_batch_stuck_in_processing_after_its_execution_ended_is_marked_failed(aws: dict[str, Any]) -> None:
    first, second = _pending_batches(aws, 2)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    arn = chunks(aws)[0]["execution_arn"]
    aws["sfn"].stop_execution(executionArn=arn, error="Aborted", cause="operator")  # e.g. aborted by hand
    assert d.tick(now=T0 + 400) == second
    stuck = {c["batch_id"]: c for c in chunks(aws)}[first]
    assert stuck["status"] == "failed" and "ABORTED" in stuck["failure"]


def test_a_crash_between_taking_the_lock_and_starting_is_recovered(aws: dict[str, Any]) -> None:
    (only,) = _pending_batches(aws, 1)
    aws["ddb"].Table(CHUNKS_TABLE).put_item(Item={"batch_id": dispatch.LOCK_ID, "holder": only})
    assert _dispatcher(aws).tick(now=T0 + 300) == only
    assert chunks(aws)[0]["status"] == "processing"
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]) == 1


# -- concurrency -------------------------------------------------------------------------------


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each AWS call atomic, as DynamoDB's conditional writes and transactions are (moto's are
    check-then-write in Python). Threads still interleave freely between calls."""
    lock = threading.RLock()
    original = BotocoreStubber.__call__

    def locked(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", locked)


def test_concurrent_duplicate_events_and_ticks_start_each_batch_once_and_one_at_a_time(
    aws: dict[str, Any], atomic_moto: None
) -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible between AWS calls
    batch_ids = _pending_batches(aws, 10)
    stop = threading.Event()
    violations: list[str] = []

    def monitor() -> None:
        table = aws["ddb"].Table(CHUNKS_TABLE)
        while not stop.is_set():
            items = table.scan(ConsistentRead=True)["Items"]
            in_flight = [i["batch_id"] for i in items if i.get("status") == "processing"]
            if len(in_flight) > 1:
                violations.append(f"two in flight: {in_flight}")

    def invoke(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(30):
            if rng.random() < 0.5:  # a stream record, often delivered twice
                for _ in range(rng.choice([1, 2])):
                    dispatch.handler({"Records": [{"eventName": "MODIFY"}]})
            else:  # a controller tick
                dispatch.handler({"source": "aws.scheduler"})

    def finisher() -> None:
        """Ends in-flight executions like the state machine would: mostly completed, some aborted."""
        rng = random.Random(99)
        table = aws["ddb"].Table(CHUNKS_TABLE)
        while not stop.is_set():
            for item in table.scan(ConsistentRead=True)["Items"]:
                if item.get("status") == "processing" and rng.random() < 0.3:
                    if rng.random() < 0.7:
                        _complete(aws, item["batch_id"])
                    aws["sfn"].stop_execution(executionArn=item["execution_arn"])

    threads = [threading.Thread(target=invoke, args=(i,)) for i in range(12)]
    helpers = [threading.Thread(target=monitor), threading.Thread(target=finisher)]
    for thread in threads + helpers:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(50):  # drain: keep ticking until the queue is empty
        dispatch.handler({"source": "aws.scheduler"})
        if all(c["status"] in {"completed", "failed"} for c in chunks(aws)):
            break
    stop.set()
    for thread in helpers:
        thread.join()
    sys.setswitchinterval(previous)
    assert violations == []
    executions = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    assert sorted(e["name"] for e in executions) == sorted(dispatch.execution_name(b) for b in batch_ids)
    assert {c["batch_id"]: c["status"] in {"completed", "failed"} for c in chunks(aws)} == dict.fromkeys(
        batch_ids, True
    )
