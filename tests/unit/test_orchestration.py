"""Ingestion, batching and dispatch Lambdas with real boto3 calls against moto."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from common.contracts import DATASETS
from common.io.manifest import resolve_batch
from common.io.storage import ObjectVersion
from orchestration import batcher, dispatch, ingest, ops
from orchestration import config as config_module
from orchestration.config import Config
from tests.aws_stack import BUCKET, CHUNKS_TABLE, INGESTION_TABLE, RESOURCES, TEMPLATE, create_tables
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
        sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        inbox = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        env = {
            "ECOM_ALERT_TOPIC_ARN": topic,
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
            "inbox": inbox,
        }


def s3_event(*keys: str, etag: str = "abc", size: int = 100, at: float | None = None) -> dict[str, Any]:
    """An S3 ObjectCreated notification; ``at`` is S3's eventTime (epoch seconds)."""
    stamp = {} if at is None else {"eventTime": _iso(at)}
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                **stamp,
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": k, "size": size, "eTag": etag}},
            }
            for k in keys
        ]
    }


def _iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def alerts(aws: dict[str, Any]) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=aws["inbox"], MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def records(aws: dict[str, Any]) -> list[dict[str, Any]]:
    return aws["ddb"].Table(INGESTION_TABLE).scan(ConsistentRead=True)["Items"]


def chunks(aws: dict[str, Any]) -> list[dict[str, Any]]:
    items = aws["ddb"].Table(CHUNKS_TABLE).scan(ConsistentRead=True)["Items"]
    return sorted((i for i in items if i["batch_id"] != dispatch.LOCK_ID), key=lambda i: i["batch_id"])


# -- ingestion ---------------------------------------------------------------------------------


def test_ingestion_records_a_file_once_even_when_the_event_is_redelivered(aws: dict[str, Any]) -> None:
    event = s3_event("raw/orders/2026-11-22/part-0.csv", "raw/order_items/part%2B0+copy.csv")
    assert ingest.handler(event, now=T0) == {"recorded": 2, "ignored": 0, "unknown": 0}
    assert ingest.handler(event, now=T0 + 5) == {"recorded": 0, "ignored": 2, "unknown": 0}
    items = sorted(records(aws), key=lambda i: i["s3_path"])
    assert [(i["group_key"], i["dataset"], i["s3_path"]) for i in items] == [
        ("default", "order_items", f"s3://{BUCKET}/raw/order_items/part+0 copy.csv"),
        ("2026-11-22", "orders", f"s3://{BUCKET}/raw/orders/2026-11-22/part-0.csv"),
    ]
    first = items[1]
    assert first["arrival_ts"] == int(T0) and first["debounce_deadline"] == int(T0) + 120
    assert first["processed"] is False and first["pending"] == "2026-11-22"


def test_the_lambdas_know_the_datasets_the_jobs_validate() -> None:
    """The Lambdas ship without common/: their dataset list is a copy, held equal here (a dataset
    added to the contracts only would have its files dropped at ingestion)."""
    assert config_module.DATASETS == DATASETS


def test_ingestion_ignores_keys_outside_raw_or_of_unknown_datasets(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    event = s3_event("manifests/x.json", "raw/customers/part-0.csv", "raw/orders/", "raw/orders.csv")
    assert ingest.handler(event, now=T0) == {"recorded": 0, "ignored": 4, "unknown": 2}
    assert records(aws) == []
    # the two files under raw/ that name no dataset are a metric (the manifest and the folder
    # marker are not): one EMF line, by bucket, which UnknownRawFilesAlarm watches
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EcomPipeline"
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Bucket"]]
    assert (line["Bucket"], line["UnknownRawFiles"]) == (BUCKET, 2)
    assert line["_aws"]["Timestamp"] == int(T0 * 1000)
    ingest.handler(s3_event("raw/orders/part-0.csv", "manifests/y.json"), now=T0)
    assert capsys.readouterr().out == ""  # nothing unknown: no metric line


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


def test_a_batcher_with_a_stale_view_cannot_batch_a_file_again(aws: dict[str, Any]) -> None:
    """Two batchers see different snapshots (a file arrived between their scans): their chunks have
    different ids, so only the per-file condition keeps a file out of a second batch."""
    ingest.handler(s3_event(*[f"raw/orders/part-{i}.csv" for i in range(3)], at=T0), now=T0)
    table = aws["ddb"].Table(INGESTION_TABLE)
    stale = batcher.pending_files(table)["default"]  # batcher A scans: 3 files
    ingest.handler(s3_event("raw/orders/part-3.csv", at=T0 + 1), now=T0 + 1)
    fresh = batcher.pending_files(table)["default"]  # batcher B scans: 4 files, and cuts them
    client = aws["ddb"].meta.client
    assert batcher.create_chunk(client, aws["config"], "default", fresh, T0 + 200) is not None
    assert batcher.create_chunk(client, aws["config"], "default", stale, T0 + 201) is None
    files = [f for c in chunks(aws) for f in c["files"]]
    assert len(chunks(aws)) == 1 and sorted(files) == sorted(set(files)) and len(files) == 4


def test_racing_batchers_on_skewed_clocks_batch_each_file_once_in_arrival_order(
    aws: dict[str, Any], atomic_moto: None
) -> None:
    """Files keep arriving in six groups while four batchers, each on its own (skewed) clock,
    cut chunks concurrently: every file lands in exactly one batch, and batch ids sort in the
    order the groups' newest files arrived, whichever batcher (clock) cut them."""
    config = Config(**{**aws["config"].__dict__, "debounce_seconds": 10, "max_files_per_chunk": 50})
    skews = [-600.0, -5.0, 0.0, 900.0]
    arrived_at: dict[str, float] = {}  # s3 path -> S3's event time
    stop = threading.Event()
    results: list[str] = []

    def batch(skew: float) -> None:
        rng = random.Random(skew)
        while not stop.is_set():
            # each batcher's clock: past every deadline, offset by its own skew
            results.extend(batcher.run(aws["ddb"], config, now=T0 + 2000 + skew + rng.random()))

    workers = [threading.Thread(target=batch, args=(skew,)) for skew in skews]
    for thread in workers:
        thread.start()
    for i in range(6):
        for part in range(3):
            at = T0 + i * 60 + part
            key = f"raw/orders/g{i}/part-{part}.csv"
            ingest.handler(s3_event(key, at=at), now=at)
            arrived_at[f"s3://{BUCKET}/{key}"] = at
    while batcher.pending_files(aws["ddb"].Table(INGESTION_TABLE)):
        pass
    stop.set()
    for thread in workers:
        thread.join()
    made = chunks(aws)  # in batch id order
    files = [f for c in made for f in c["files"]]
    assert len(files) == len(set(files)) == 18
    assert sorted(results) == [c["batch_id"] for c in made]
    newest = [max(arrived_at[f] for f in c["files"]) for c in made]
    assert newest == sorted(newest), "a batch holding later files sorts before one holding earlier files"


def test_batch_ids_follow_file_arrival_not_the_batchers_clock(aws: dict[str, Any]) -> None:
    """A batcher whose clock runs 20 minutes fast cuts the first group; an accurate one cuts a
    group whose files arrived later. The later files' batch must sort after (it wins)."""
    ingest.handler(s3_event("raw/orders/early/part-0.csv", at=T0), now=T0)
    first = batcher.run(aws["ddb"], aws["config"], now=T0 + 200 + 1200)
    ingest.handler(s3_event("raw/orders/late/part-0.csv", at=T0 + 300), now=T0 + 300)
    second = batcher.run(aws["ddb"], aws["config"], now=T0 + 500)
    assert len(first) == len(second) == 1
    assert first[0] < second[0]


def test_batches_never_overlap_in_arrival_time_across_groups(aws: dict[str, Any]) -> None:
    """Group `trickle` gets a file a minute for 20 minutes (never quiet: only max-wait cuts it);
    group `quiet` gets one file at minute 5.5. Whatever the cuts, every file of a batch arrived
    before every file of the batches whose ids sort after it, so the later batch id always holds
    the later file (cut apart, the trickle's max-wait batch held files older than the quiet one's)."""
    config = Config(**{**aws["config"].__dict__, "max_files_per_chunk": 50})
    arrived: dict[str, float] = {}

    def land(key: str, at: float) -> None:
        ingest.handler(s3_event(key, at=at), now=at)
        arrived[f"s3://{BUCKET}/{key}"] = at

    for minute in range(20):
        land(f"raw/orders/trickle/part-{minute:02d}.csv", T0 + minute * 60)
        if minute == 5:
            land("raw/order_items/quiet/part-0.csv", T0 + 330)
        batcher.run(aws["ddb"], config, now=T0 + minute * 60 + 30)
    batcher.run(aws["ddb"], config, now=T0 + 3000)
    made = chunks(aws)  # in batch id order
    assert sorted(f for c in made for f in c["files"]) == sorted(arrived)
    spans = [(min(arrived[f] for f in c["files"]), max(arrived[f] for f in c["files"])) for c in made]
    assert all(earlier[1] < later[0] for earlier, later in itertools.pairwise(spans)), spans
    # the quiet group's cut took the trickle's files that came before it: one batch of both groups
    assert spans[0] == (T0, T0 + 330) and made[0]["group_key"] == "quiet+trickle"


def test_a_chunk_taken_by_another_batcher_ends_the_pass(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk of a cut loses its race: the later chunks are not created beside the gap;
    the next pass cuts again from what is pending."""
    ingest.handler(s3_event(*[f"raw/orders/part-{i}.csv" for i in range(5)], at=T0), now=T0)
    real = batcher.create_chunk
    calls: list[int] = []

    def lost_first(*args: Any, **kwargs: Any) -> str | None:
        calls.append(len(calls))
        return None if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(batcher, "create_chunk", lost_first)
    assert batcher.run(aws["ddb"], aws["config"], now=T0 + 200) == []
    assert calls == [0] and chunks(aws) == []
    assert len(batcher.run(aws["ddb"], aws["config"], now=T0 + 260)) == 2  # 5 files, 3 per chunk


# -- dispatch ----------------------------------------------------------------------------------


def _pending_batches(aws: dict[str, Any], n: int) -> list[str]:
    for i in range(n):  # a group a second: one cut, one chunk of three files per group
        keys = [f"raw/{dataset}/g{i}/part-0.csv" for dataset in ("orders", "order_items", "products")]
        ingest.handler(s3_event(*keys, at=T0 + i), now=T0 + i)
    return sorted(batcher.run(aws["ddb"], aws["config"], now=T0 + 200))


def _dispatcher(aws: dict[str, Any]) -> dispatch.Dispatcher:
    return dispatch.Dispatcher(
        aws["ddb"],
        boto3.client("stepfunctions", region_name=REGION),
        boto3.client("s3", region_name=REGION),
        aws["config"],
        boto3.client("sns", region_name=REGION),
    )


def _complete(aws: dict[str, Any], batch_id: str, execution_arn: str | None = None) -> bool:
    """What the state machine's MarkCompleted state does, then the execution ends. With
    ``execution_arn``, conditional as MarkCompleted is (that execution is the batch's recorded one
    and the batch is processing): False when it is not, and nothing is written."""
    table = aws["ddb"].Table(CHUNKS_TABLE)
    update: dict[str, Any] = {
        "Key": {"batch_id": batch_id},
        "UpdateExpression": "SET #s = :c",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":c": "completed"},
    }
    if execution_arn is not None:
        update["ConditionExpression"] = "execution_arn = :me AND #s = :p"
        update["ExpressionAttributeValues"] |= {":me": execution_arn, ":p": "processing"}
    try:
        table.update_item(**update)
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


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
    assert payload == dispatch.execution_input(first, aws["config"], int(started["total_bytes"]))
    assert payload["total_bytes"] == 300  # three files of 100 bytes (s3_event's size)
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


def test_a_null_version_is_no_version(aws: dict[str, Any]) -> None:
    """S3 names an object of a bucket whose versioning is suspended version "null", and a new
    upload replaces it: no version of what arrived is kept, so none is recorded (the ETag is)."""
    event = s3_event("raw/orders/part-0.csv", etag="e1")
    event["Records"][0]["s3"]["object"]["versionId"] = "null"
    ingest.handler(event, now=T0)
    (record,) = records(aws)
    assert record["etag"] == "e1" and "version_id" not in record


def test_the_manifest_pins_each_file_to_the_version_that_arrived(aws: dict[str, Any], tmp_path: Path) -> None:
    """S3's event names the object's version: ingestion records it with the ETag, the chunk
    carries both, and the manifest hands them to the job (which reads that version: see
    tests/unit/test_pinned_versions.py), in a versioned bucket as the template makes it."""
    s3 = aws["s3"]
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    keys = ["raw/orders/part-0.csv", "raw/order_items/part-0.csv"]
    event = s3_event(*keys, at=T0)
    for record in event["Records"]:
        put = s3.put_object(Bucket=BUCKET, Key=record["s3"]["object"]["key"], Body=b"id\n1\n")
        record["s3"]["object"] |= {"eTag": put["ETag"].strip('"'), "versionId": put["VersionId"]}
    ingest.handler(event, now=T0)
    ingest.handler(s3_event("raw/products/part-0.csv", etag="p1", at=T0), now=T0)  # unversioned
    (batch_id,) = batcher.run(aws["ddb"], aws["config"], now=T0 + 200)
    assert _dispatcher(aws).tick(now=T0 + 300) == batch_id
    body = s3.get_object(Bucket=BUCKET, Key=f"manifests/{batch_id}.json")["Body"].read()
    (tmp_path / "m.json").write_bytes(body)
    batch = resolve_batch(make_settings(manifest=str(tmp_path / "m.json")))
    expected = {}
    for record in event["Records"]:
        obj = record["s3"]["object"]
        expected[f"s3://{BUCKET}/{obj['key']}"] = ObjectVersion(obj["versionId"], obj["eTag"])
    expected[f"s3://{BUCKET}/raw/products/part-0.csv"] = ObjectVersion(None, "p1")
    assert batch.versions == expected
    # a file put by hand and submitted is pinned the same way
    put = s3.put_object(Bucket=BUCKET, Key="raw/orders/late.csv", Body=b"id\n2\n")
    (manual,) = ops.submit(aws["ddb"], s3, aws["config"], [f"s3://{BUCKET}/raw/orders/late.csv"], T0 + 400)
    (chunk,) = [c for c in chunks(aws) if c["batch_id"] == manual]
    assert chunk["versions"] == {
        f"s3://{BUCKET}/raw/orders/late.csv": {"version_id": put["VersionId"], "etag": put["ETag"].strip('"')}
    }


def test_a_batch_stuck_in_processing_after_its_execution_ended_is_marked_failed(aws: dict[str, Any]) -> None:
    first, second = _pending_batches(aws, 2)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    arn = chunks(aws)[0]["execution_arn"]
    aws["sfn"].stop_execution(executionArn=arn, error="Aborted", cause="operator")  # e.g. aborted by hand
    assert d.tick(now=T0 + 400) == second
    stuck = {c["batch_id"]: c for c in chunks(aws)}[first]
    assert stuck["status"] == "failed" and "ABORTED" in stuck["failure"]
    [alert] = alerts(aws)  # the state machine could not alert: the dispatcher does, once
    assert alert["Subject"] == "ecom-pipeline batch failed"
    assert f"Batch {first} failed: execution ABORTED" in alert["Message"] and arn in alert["Message"]
    assert d.tick(now=T0 + 500) == second and alerts(aws) == []


def test_a_failure_the_state_machine_recorded_is_not_alerted_twice(aws: dict[str, Any]) -> None:
    first, second = _pending_batches(aws, 2)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    arn = chunks(aws)[0]["execution_arn"]
    aws["ddb"].Table(CHUNKS_TABLE).update_item(  # what MarkFailed does before NotifyFailure alerts
        Key={"batch_id": first},
        UpdateExpression="SET #s = :f",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":f": "failed"},
    )
    aws["sfn"].stop_execution(executionArn=arn, error="BatchFailed", cause="recorded")
    assert d.tick(now=T0 + 400) == second
    assert alerts(aws) == []


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


@pytest.mark.parametrize(
    ("batches", "callers", "calls", "reruns", "seed"),
    [
        pytest.param(5, 3, 10, 0, 99, id="small"),
        pytest.param(4, 3, 10, 3, 99, id="small-with-reruns"),
        pytest.param(10, 12, 30, 0, 99, id="full", marks=pytest.mark.slow),  # ~60 s: a drill
        # ~45 s each; the earlier lock (batch id only) failed one in two or three of these
        *(
            pytest.param(8, 8, 25, 6, seed, id=f"full-with-reruns-{seed}", marks=pytest.mark.slow)
            for seed in (99, 7, 31)
        ),
    ],
)
def test_concurrent_duplicate_events_and_ticks_start_each_batch_once_and_one_at_a_time(
    aws: dict[str, Any],
    atomic_moto: None,
    batches: int,
    callers: int,
    calls: int,
    reruns: int,
    seed: int,
) -> None:
    """Many dispatchers at once (and, with ``reruns``, an operator re-running failed batches
    meanwhile): never two batches in flight, none left stuck, each attempt started once."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible between AWS calls
    batch_ids = _pending_batches(aws, batches)
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
        for _ in range(calls):
            if rng.random() < 0.5:  # a stream record, often delivered twice
                for _ in range(rng.choice([1, 2])):
                    dispatch.handler({"Records": [{"eventName": "MODIFY"}]})
            else:  # a controller tick
                dispatch.handler({"source": "aws.scheduler"})

    def finisher() -> None:
        """Ends in-flight executions like the state machine would: mostly completed, some aborted."""
        rng = random.Random(seed)
        table = aws["ddb"].Table(CHUNKS_TABLE)
        while not stop.is_set():
            for item in table.scan(ConsistentRead=True)["Items"]:
                if item.get("status") == "processing" and rng.random() < 0.3:
                    try:  # the dispatcher records an attempt just before it starts the execution
                        aws["sfn"].describe_execution(executionArn=item["execution_arn"])
                    except aws["sfn"].exceptions.ExecutionDoesNotExist:
                        continue
                    # conditional as MarkCompleted is: between this scan and the write, the
                    # batch may have failed and been re-queued (an unconditional write would mark
                    # a pending batch completed, which the state machine never does)
                    if rng.random() < 0.7:
                        _complete(aws, item["batch_id"], item["execution_arn"])
                    aws["sfn"].stop_execution(executionArn=item["execution_arn"])

    rerun: list[str] = []

    def operator() -> None:
        """Re-runs failed batches as `ops rerun` does, up to ``reruns`` times in all."""
        table = aws["ddb"].Table(CHUNKS_TABLE)
        while not invoked.is_set() and len(rerun) < reruns:
            for item in table.scan(ConsistentRead=True)["Items"]:
                if item.get("status") == "failed" and len(rerun) < reruns:
                    try:
                        ops.requeue(table, item["batch_id"], T0)
                    except ops.OpsError:
                        continue  # it changed meanwhile
                    rerun.append(item["batch_id"])

    invoked = threading.Event()
    threads = [threading.Thread(target=invoke, args=(seed + i,)) for i in range(callers)]
    helpers = [threading.Thread(target=monitor), threading.Thread(target=finisher)]
    operators = [threading.Thread(target=operator)] if reruns else []
    for thread in threads + helpers + operators:
        thread.start()
    for thread in threads:
        thread.join()
    invoked.set()  # the operator stops re-running with the dispatchers' calls: the queue drains
    for thread in operators:
        thread.join()
    deadline = time.monotonic() + 120  # drain: keep ticking until the queue is empty (bounded)
    while time.monotonic() < deadline:
        dispatch.handler({"source": "aws.scheduler"})
        if all(c["status"] in {"completed", "failed"} for c in chunks(aws)):
            break
        time.sleep(0.01)  # the finisher ends what is in flight meanwhile
    stop.set()
    for thread in helpers:
        thread.join()
    sys.setswitchinterval(previous)
    assert violations == []
    executions = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    attempts = {c["batch_id"]: int(c["attempt"]) for c in chunks(aws)}
    assert all(attempts[b] == 1 + rerun.count(b) for b in batch_ids), (attempts, rerun)
    assert sorted(e["name"] for e in executions) == sorted(
        dispatch.execution_name(b, a) for b in batch_ids for a in range(1, attempts[b] + 1)
    )
    assert _dispatcher(aws).sweep(T0) == 0  # and none in flight without the lock
    assert {c["batch_id"]: c["status"] in {"completed", "failed"} for c in chunks(aws)} == dict.fromkeys(
        batch_ids, True
    )


# -- no file lost ------------------------------------------------------------------------------


def _ttl_sweep(aws: dict[str, Any], now: float) -> int:
    """What DynamoDB's TTL does, on the attribute the template configures: delete every item
    whose TTL attribute is a time before ``now``."""
    spec = RESOURCES["IngestionTable"]["Properties"]["TimeToLiveSpecification"]
    assert spec["Enabled"] is True
    table = aws["ddb"].Table(INGESTION_TABLE)
    expired = [
        i for i in table.scan(ConsistentRead=True)["Items"] if int(i.get(spec["AttributeName"], now)) < now
    ]
    for item in expired:
        table.delete_item(Key={"group_key": item["group_key"], "file_id": item["file_id"]})
    return len(expired)


def test_a_file_is_not_lost_when_the_batcher_is_down_past_its_deadline(aws: dict[str, Any]) -> None:
    ingest.handler(s3_event("raw/orders/part-0.csv", at=T0), now=T0)
    three_days = T0 + 3 * 86400  # the batcher was down for three days
    assert _ttl_sweep(aws, three_days) == 0
    assert len(batcher.run(aws["ddb"], aws["config"], now=three_days)) == 1
    assert chunks(aws)[0]["files"] == [f"s3://{BUCKET}/raw/orders/part-0.csv"]
    # once batched, the record is kept for the retention period, then expires
    assert _ttl_sweep(aws, three_days + 29 * 86400) == 0
    assert _ttl_sweep(aws, three_days + 31 * 86400) == 1


def test_a_key_too_long_for_a_dynamodb_sort_key_is_still_recorded_and_batched(aws: dict[str, Any]) -> None:
    key = "raw/orders/g/" + "p" * 1000 + ".csv"  # S3 allows 1024 bytes; file_id adds #<etag>
    assert ingest.handler(s3_event(key, etag="e" * 32, at=T0), now=T0)["recorded"] == 1
    assert ingest.handler(s3_event(key, etag="e" * 32, at=T0), now=T0 + 1)["ignored"] == 1
    (record,) = records(aws)
    assert len(record["file_id"].encode()) <= 1024 and record["s3_path"] == f"s3://{BUCKET}/{key}"
    batcher.run(aws["ddb"], aws["config"], now=T0 + 200)
    assert chunks(aws)[0]["files"] == [f"s3://{BUCKET}/{key}"]


# -- re-runs and hand-started batches --------------------------------------------------------------


def _fail_in_flight(aws: dict[str, Any], d: dispatch.Dispatcher, now: float) -> str:
    """The in-flight execution is aborted; the next tick marks its batch failed."""
    (item,) = [c for c in chunks(aws) if c["status"] == "processing"]
    aws["sfn"].stop_execution(executionArn=item["execution_arn"], error="Aborted", cause="test")
    d.tick(now=now)
    assert {c["batch_id"]: c["status"] for c in chunks(aws)}[item["batch_id"]] == "failed"
    return str(item["batch_id"])


def test_a_failed_batch_rerun_through_the_queue_gets_a_new_execution_and_keeps_its_history(
    aws: dict[str, Any],
) -> None:
    (batch_id,) = _pending_batches(aws, 1)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    _fail_in_flight(aws, d, T0 + 400)
    requeued = ops.requeue(aws["ddb"].Table(CHUNKS_TABLE), batch_id, T0 + 500)
    assert requeued["status"] == "pending"
    assert d.tick(now=T0 + 600) == batch_id
    assert d.tick(now=T0 + 700) == batch_id  # still running: not marked failed again
    (item,) = chunks(aws)
    assert (item["status"], item["attempt"]) == ("processing", 2)
    assert item["execution_arn"].endswith(f":{dispatch.execution_name(batch_id, 2)}")
    assert [h["attempt"] for h in item["history"]] == [1]
    assert "ABORTED" in item["history"][0]["failure"] and "failure" not in item
    names = sorted(e["name"] for e in aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"])
    assert names == [dispatch.execution_name(batch_id, 1), dispatch.execution_name(batch_id, 2)]
    _complete(aws, batch_id)
    assert d.tick(now=T0 + 800) is None
    assert chunks(aws)[0]["status"] == "completed"


def _in_flight(aws: dict[str, Any]) -> dict[str, str]:
    return {c["batch_id"]: c["status"] for c in chunks(aws) if c["status"] != "pending"}


def test_a_dispatcher_stalled_while_its_batch_is_rerun_cannot_free_the_next_attempts_lock(
    aws: dict[str, Any],
) -> None:
    first, second = _pending_batches(aws, 2)
    stalled, other = _dispatcher(aws), _dispatcher(aws)
    stalled.tick(now=T0 + 300)
    (item,) = [c for c in chunks(aws) if c["status"] == "processing"]
    aws["sfn"].stop_execution(executionArn=item["execution_arn"], error="Aborted", cause="test")
    release = stalled._release

    def late_release(*args: Any) -> None:
        # between marking the batch failed and freeing the lock: a re-run, and its new attempt
        ops.requeue(aws["ddb"].Table(CHUNKS_TABLE), first, T0 + 410)
        assert other.tick(now=T0 + 420) == first
        release(*args)

    stalled._release = late_release  # type: ignore[method-assign]
    assert stalled.tick(now=T0 + 400) == first  # the lock it frees is no longer the one it took
    stalled._release = release  # type: ignore[method-assign]
    assert other.tick(now=T0 + 500) == first
    assert {c["batch_id"]: (c["status"], c.get("attempt")) for c in chunks(aws)} == {
        first: ("processing", 2),
        second: ("pending", 0),  # still waits: one batch in flight
    }


def test_a_dispatcher_stalled_before_starting_cannot_start_an_attempt_that_already_ran(
    aws: dict[str, Any],
) -> None:
    (batch_id,) = _pending_batches(aws, 1)
    stalled, other = _dispatcher(aws), _dispatcher(aws)
    start = stalled._start

    def late_start(batch: dict[str, Any], now: float) -> None:
        # it took the lock and read the batch; meanwhile another dispatcher starts that attempt,
        # the attempt fails, the batch is re-run
        assert other.tick(now=now + 1) == batch_id
        _fail_in_flight(aws, other, now + 2)
        ops.requeue(aws["ddb"].Table(CHUNKS_TABLE), batch_id, now + 3)
        start(batch, now)  # with what it read before all that

    stalled._start = late_start  # type: ignore[method-assign]
    stalled.tick(now=T0 + 300)
    stalled._start = start  # type: ignore[method-assign]
    (item,) = chunks(aws)
    assert (item["status"], item["attempt"]) == ("pending", 1)  # the stale start recorded nothing
    assert other.tick(now=T0 + 400) == batch_id
    (item,) = chunks(aws)
    assert (item["status"], item["attempt"]) == ("processing", 2)
    status = aws["sfn"].describe_execution(executionArn=item["execution_arn"])["status"]
    assert status == "RUNNING"


def test_the_sweep_settles_a_batch_left_processing_without_the_lock(aws: dict[str, Any]) -> None:
    first, second = _pending_batches(aws, 2)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    (item,) = [c for c in chunks(aws) if c["status"] == "processing"]
    aws["ddb"].Table(CHUNKS_TABLE).delete_item(Key={"batch_id": dispatch.LOCK_ID})  # lost, somehow
    assert d.tick(now=T0 + 310) == second  # the queue goes on: the lock was free
    values = d.sweep(now=T0 + 320)
    assert values == 1 and _in_flight(aws) == {first: "processing", second: "processing"}  # alarmed
    aws["sfn"].stop_execution(executionArn=item["execution_arn"], error="Aborted", cause="test")
    assert d.sweep(now=T0 + 330) == 0
    assert _in_flight(aws) == {first: "failed", second: "processing"}
    [alert] = alerts(aws)  # once, as for any execution that ended outside the state machine
    assert f"Batch {first} failed: execution ABORTED" in alert["Message"]
    assert d.sweep(now=T0 + 340) == 0 and alerts(aws) == []
    assert d.tick(now=T0 + 350) == second  # the holder is left alone by the sweep


def test_a_lock_taken_for_an_older_attempt_follows_the_attempt_in_flight(aws: dict[str, Any]) -> None:
    (batch_id,) = _pending_batches(aws, 1)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    _fail_in_flight(aws, d, T0 + 400)
    ops.requeue(aws["ddb"].Table(CHUNKS_TABLE), batch_id, T0 + 500)
    assert d.tick(now=T0 + 600) == batch_id  # attempt 2 in flight
    table = aws["ddb"].Table(CHUNKS_TABLE)
    table.put_item(Item={"batch_id": dispatch.LOCK_ID, "holder": batch_id, "attempt": 1})
    assert d.tick(now=T0 + 700) == batch_id  # kept, not freed: the batch is in flight
    lock = table.get_item(Key={"batch_id": dispatch.LOCK_ID}, ConsistentRead=True)["Item"]
    assert (lock["holder"], lock["attempt"]) == (batch_id, 2)


def test_only_a_failed_batch_can_be_requeued(aws: dict[str, Any]) -> None:
    (batch_id,) = _pending_batches(aws, 1)
    table = aws["ddb"].Table(CHUNKS_TABLE)
    with pytest.raises(ops.OpsError, match="is pending: only a failed batch"):
        ops.requeue(table, batch_id, T0)
    with pytest.raises(ops.OpsError, match="no batch 'nope'"):
        ops.requeue(table, "nope", T0)


def test_a_crash_between_recording_an_attempt_and_starting_it_is_repaired(aws: dict[str, Any]) -> None:
    (batch_id,) = _pending_batches(aws, 1)
    d = _dispatcher(aws)
    launch = d._launch
    d._launch = lambda *_: None  # type: ignore[method-assign]  # the Lambda dies before StartExecution
    d.tick(now=T0 + 300)
    assert chunks(aws)[0]["status"] == "processing"
    assert aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"] == []
    d._launch = launch  # type: ignore[method-assign]
    assert d.tick(now=T0 + 360) == batch_id
    (execution,) = aws["sfn"].list_executions(stateMachineArn=aws["arn"])["executions"]
    assert execution["executionArn"] == chunks(aws)[0]["execution_arn"]


def test_files_submitted_by_hand_go_through_the_queue_in_arrival_order(aws: dict[str, Any]) -> None:
    """A hand-started batch is a proper chunk: it waits for the one in flight, and its id sorts by
    when its files arrived (S3's LastModified), not after every generated id."""
    (earlier,) = _pending_batches(aws, 1)  # files that arrived at T0 (2026-11-19)
    d = _dispatcher(aws)
    assert d.tick(now=T0 + 300) == earlier
    keys = ["raw/orders/manual/part-0.csv", "raw/order_items/manual/part-0.csv"]
    for key in keys:  # uploaded now: S3 stamps LastModified with today's date (after T0)
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=b"order_id\n1\n")
    # pending files of another group, one that arrived before the submitted files and one after
    ingest.handler(s3_event("raw/products/other/before.csv", at=T0 + 10), now=T0 + 10)
    ingest.handler(s3_event("raw/products/other/after.csv", at=time.time() + 86400), now=T0 + 10)
    (manual,) = ops.submit(aws["ddb"], aws["s3"], aws["config"], [f"s3://{BUCKET}/{k}" for k in keys], T0)
    assert manual > earlier
    assert d.tick(now=T0 + 400) == earlier  # the lock holds: the hand-started batch waits
    _complete(aws, earlier)
    assert d.tick(now=T0 + 500) == manual
    # the cut at the submitted files' arrival takes the file that came before them (no overlap)
    assert sorted({c["batch_id"]: c for c in chunks(aws)}[manual]["files"]) == sorted(
        f"s3://{BUCKET}/{k}" for k in [*keys, "raw/products/other/before.csv"]
    )
    assert [r["s3_path"] for r in records(aws) if "pending" in r] == [
        f"s3://{BUCKET}/raw/products/other/after.csv"
    ]
    with pytest.raises(ops.OpsError, match=f"already in batch {manual}"):
        ops.submit(aws["ddb"], aws["s3"], aws["config"], [f"s3://{BUCKET}/{keys[0]}"], T0)
    with pytest.raises(ops.OpsError, match="expected a raw file"):
        ops.submit(aws["ddb"], aws["s3"], aws["config"], [f"s3://{BUCKET}/manifests/x.json"], T0)
    with pytest.raises(ops.OpsError, match="does not exist"):
        ops.submit(aws["ddb"], aws["s3"], aws["config"], [f"s3://{BUCKET}/raw/orders/missing.csv"], T0)


def test_the_dead_letter_queue_is_drained_into_the_ingestion_table(aws: dict[str, Any]) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event("raw/orders/lost.csv", at=T0)))
    sqs.send_message(QueueUrl=url, MessageBody="not an event")
    counts = ops.drain_dlq(sqs, url, aws["ddb"].Table(INGESTION_TABLE), aws["config"])
    assert counts == {"messages": 2, "recorded": 1, "duplicates": 0, "kept": 1}
    assert [r["s3_path"] for r in records(aws)] == [f"s3://{BUCKET}/raw/orders/lost.csv"]


def test_the_dispatcher_reports_backlog_and_in_flight_age(aws: dict[str, Any]) -> None:
    _pending_batches(aws, 2)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    values = d.queue_metrics(now=T0 + 900)
    assert values["PendingBatches"] == 1
    assert values["InFlightSeconds"] == 600  # started at T0 + 300
    assert values["OldestPendingSeconds"] == 700  # created by the batcher at T0 + 200
    line = json.loads(dispatch.metrics_line(aws["arn"], values, T0 + 900))
    metrics = line["_aws"]["CloudWatchMetrics"][0]
    assert metrics["Namespace"] == dispatch.METRICS_NAMESPACE
    assert {m["Name"] for m in metrics["Metrics"]} == set(values) and line["StateMachine"] == "ecom-pipeline"


def test_the_operator_cli_reads_the_stack_outputs_and_reruns(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m orchestration.ops --stack NAME rerun B`, as the runbook says, end to end on moto."""
    outputs = {
        "IngestionTableName": INGESTION_TABLE,
        "ChunksTableName": CHUNKS_TABLE,
        "DataBucketName": BUCKET,
        "StateMachineArn": aws["arn"],
    }
    assert set(outputs) <= set(TEMPLATE["Outputs"])  # the names the template really outputs
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="ecom", TemplateBody=json.dumps(template)
    )
    (batch_id,) = _pending_batches(aws, 1)
    d = _dispatcher(aws)
    d.tick(now=T0 + 300)
    _fail_in_flight(aws, d, T0 + 400)
    for name in ("ECOM_INGESTION_TABLE", "ECOM_CHUNKS_TABLE", "ECOM_BUCKET"):
        monkeypatch.delenv(name)  # the operator's shell: only the stack's name
    assert ops.main(["--stack", "ecom", "rerun", batch_id]) == 0
    assert f"batch {batch_id} is pending again (attempt 2 next)" in capsys.readouterr().out
    assert ops.main(["--stack", "ecom", "rerun", batch_id]) == 2
    assert "is pending: only a failed batch can be re-run" in capsys.readouterr().err
    assert ops.main(["--stack", "missing", "list"]) == 2
    assert ops.main(["list"]) == 2  # no stack and no ECOM_* variables: says so
    assert "pass --stack NAME" in capsys.readouterr().err


def test_batches_are_listed_newest_first_without_the_lock(aws: dict[str, Any]) -> None:
    first, second = _pending_batches(aws, 2)
    _dispatcher(aws).tick(now=T0 + 300)  # takes the lock: the lock item is not a batch
    table = aws["ddb"].Table(CHUNKS_TABLE)
    assert [b["batch_id"] for b in ops.list_batches(table, None, 20)] == sorted([first, second], reverse=True)
    assert [b["batch_id"] for b in ops.list_batches(table, "processing", 20)] == [first]
    assert [b["batch_id"] for b in ops.list_batches(table, None, 1)] == [max(first, second)]
