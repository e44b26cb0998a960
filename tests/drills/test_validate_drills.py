"""Fault drills of validate: the job killed (``kill -9`` of the whole process group, Python and JVM,
as ECS stops a task) while committing a MERGE, after it landed, between a release and the park's
delete, between two datasets; S3 answering 503 SlowDown and dropping connections, and throttling
beyond the retry budget; a 200 MB line. Then re-run: the validated and quarantine tables must equal
those of an uninterrupted run of the same batch. Each drill also records what a reader of the lake
saw between the crash and the re-run (:mod:`tests.drills.stage` has the stage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.contracts import DATASETS
from tests.aws_stack import create_lock_table
from tests.drills.stage import BATCH, FIRST_DATA_COMMIT, Reference, Stage
from tests.fault_proxy import S3_SLOW_DOWN, Fault
from tests.helpers import read_json, run_local_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_validate_killed_while_committing_a_merge(stage: Stage, reference: Reference) -> None:
    """Killed with order_items' MERGE written and its commit on the wire: the commit never lands."""
    lake = "kill-merge"
    stage.killed_at("validate", lake, Fault("PUT", f"/{lake}/validated/order_items/{FIRST_DATA_COMMIT}"))
    # A reader saw products and orders of the batch published, order_items not yet (empty table).
    # Its quarantine table is written beside it: all of the batch's rows there, or none.
    seen = stage.tables(lake)
    assert seen["validated/orders"] == reference.tables["validated/orders"]
    assert seen["validated/order_items"] == []
    assert seen["quarantine/order_items"] in (None, [], reference.tables["quarantine/order_items"])
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables


def test_validate_killed_after_a_merge_landed(stage: Stage, reference: Reference) -> None:
    """Killed just after order_items' MERGE committed (the answer lost): the re-run's MERGE commits
    nothing, and the quarantine rows (written beside it: all or none of them had landed) are
    published."""
    lake = "kill-landed"
    stage.killed_at(
        "validate",
        lake,
        Fault("PUT", f"/{lake}/validated/order_items/{FIRST_DATA_COMMIT}", after=lambda: None),
    )
    seen = stage.tables(lake)
    assert seen["validated/order_items"] == reference.tables["validated/order_items"]
    assert seen["quarantine/order_items"] in (None, [], reference.tables["quarantine/order_items"])
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables
    assert stage.version(lake, "validated", "order_items") == 1


def test_validate_killed_between_a_release_and_the_park_delete(stage: Stage) -> None:
    """The items and products come a batch before their orders (parked); the orders' batch releases
    them and is killed once the release landed in validated/order_items, before the park let them
    go. The re-run publishes nothing twice: its MERGE commits nothing, the park is emptied, and
    every table equals that of an uninterrupted run."""
    listed = json.loads(
        stage.s3.get_object(Bucket=stage.bucket, Key=stage.manifest.split("/", 3)[3])["Body"].read()
    )
    files = listed["files"]
    early = stage.cwd / "early.json"
    early.write_text(
        json.dumps({"batch_id": "drill-e1", "files": {k: files[k] for k in ("order_items", "products")}})
    )
    late = stage.cwd / "late.json"
    late.write_text(json.dumps({"batch_id": "drill-e2", "files": {"orders": files["orders"]}}))
    assert stage.run_here("validate", "park-ref", ["--manifest", str(early)]) == 0
    stage.copy("park-ref", "park-kill")
    parked = stage.table("park-kill", "parked", "order_items")
    assert parked and len(parked) > 1000  # nearly all the items wait for their orders
    assert stage.run_here("validate", "park-ref", ["--manifest", str(late)]) == 0
    release = Fault("PUT", f"/park-kill/validated/order_items/{FIRST_DATA_COMMIT}", after=lambda: None)
    stage.killed_at("validate", "park-kill", release, ["--manifest", str(late)])
    # between the commits: the released items are published and still parked
    assert stage.table("park-kill", "parked", "order_items") == parked
    assert stage.table("park-kill", "validated", "order_items") == stage.table(
        "park-ref", "validated", "order_items"
    )
    assert stage.run("validate", "park-kill", ["--manifest", str(late)])[0] == 0
    assert stage.version("park-kill", "validated", "order_items") == 1  # the re-run's MERGE: nothing
    for kind in ("validated", "quarantine", "parked"):
        for name in DATASETS:
            assert stage.table("park-kill", kind, name) == stage.table("park-ref", kind, name), (kind, name)
    waiting = stage.table("park-ref", "parked", "order_items")
    assert waiting is not None and len(waiting) < len(parked) / 10  # only the orphans still wait


def test_validate_killed_between_two_datasets(stage: Stage, reference: Reference) -> None:
    """Killed as orders' publishing began, products being published beside it (parents are
    written side by side): whatever of products' landed, orders' table was never even created and
    order_items (their child) not begun. The lake has a writer lease, as on AWS: the dead job's
    lease stays until its TTL lapses, and the re-run waits that out (with no wait it fails as
    "lake busy")."""
    lake = "kill-between"
    create_lock_table(stage.ddb, f"{lake}-lock")
    lease = {
        "ECOM_LAKE_LOCK_TABLE": f"{lake}-lock",
        "ECOM_LAKE_LOCK_TTL_SECONDS": "30",
        "ECOM_LAKE_LOCK_WAIT_SECONDS": "90",
    }
    stage.killed_at("validate", lake, Fault("PUT", f"/{lake}/validated/orders/"), env=lease)
    assert stage.ddb.get_item(
        TableName=f"{lake}-lock", Key={"lake": {"S": f"s3://{stage.bucket}/{lake}"}}
    ).get("Item")
    seen = stage.tables(lake)
    assert seen["validated/orders"] is None and seen["validated/order_items"] is None
    code, stderr = stage.run("validate", lake, env=lease)
    assert code == 0, stderr[-3000:]
    assert stage.tables(lake) == reference.tables


def test_s3_errors_and_dropped_connections_are_retried(stage: Stage, reference: Reference) -> None:
    """Every 5th request to the bucket (raw files, tables, results) answered 503 SlowDown, every 13th
    of the others dropped unanswered (both capped, so the run ends): both jobs retry and finish with
    the uninterrupted run's outputs."""
    lake = "flaky"
    stage.kpi_tables(lake)
    slow = stage.s3_proxy.add(Fault(path=f"^/{stage.bucket}/", respond=S3_SLOW_DOWN, every=5, limit=40))
    dropped = stage.s3_proxy.add(Fault(path=f"^/{stage.bucket}/", drop=True, every=13, limit=15))
    try:
        for job in ("validate", "transform"):
            code, stderr = stage.run(job, lake)
            assert code == 0, stderr[-3000:]
    finally:
        stage.s3_proxy.clear()
    assert (slow.fired, dropped.fired) == (40, 15)
    assert stage.tables(lake) == reference.tables
    assert stage.kpis(lake) == reference.kpis


# S3A retries throttling for minutes by default (right for a real 503 storm: more than 6 minutes
# measured here against a PUT that is always refused); the drill gives it a short budget.
SHORT_S3_RETRIES = " ".join(
    f"--conf spark.hadoop.fs.s3a.{key}"
    for key in (
        "retry.throttle.limit=1",
        "retry.throttle.interval=50ms",
        "retry.limit=1",
        "retry.interval=50ms",
    )
)


def test_s3_throttling_beyond_the_retries_fails_visibly_and_a_rerun_repairs(
    stage: Stage, reference: Reference
) -> None:
    """Every write to the orders table answered 503 SlowDown: the job gives up, exits 1 with an
    ERROR result naming the table and the answer, and the re-run (S3 healthy) publishes it all."""
    lake = "throttled"
    stage.s3_proxy.add(Fault("PUT", f"/{lake}/validated/orders/", respond=S3_SLOW_DOWN))
    try:
        code, stderr = stage.run(
            "validate", lake, env={"PYSPARK_SUBMIT_ARGS": f"{SHORT_S3_RETRIES} pyspark-shell"}
        )
    finally:
        stage.s3_proxy.clear()
    assert code == 1, stderr[-3000:]
    result = read_json(stage.s3, f"{lake}/_results/{BATCH}/validate.json", stage.bucket)
    assert result["status"] == "ERROR"
    assert "validated/orders" in result["errors"][-1] and "503" in result["errors"][-1], result["errors"]
    assert stage.run("validate", lake)[0] == 0
    assert stage.tables(lake) == reference.tables


def test_a_200_mb_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """With a 2 GB driver (the default before the heap was sized from the machine), a single 200 MB
    line once killed the JVM (out of memory). The drill keeps that heap, so it still fails without
    the line bound."""
    orders = tmp_path / "orders.csv"
    with orders.open("w") as out:
        out.write("order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n")
        out.write("1,1,complete,2024-01-01T10:00:00,,,,1\n2,1,")
        for _ in range(200):
            out.write("x" * (1 << 20))
        out.write(",2024-01-01T10:00:00,,,,1\n3,1,complete,2024-01-02T10:00:00,,,,2\n")
    done = run_local_job("jobs.validate", ["--batch-id", "big", "--orders", str(orders)], tmp_path, "2g")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "lake" / "_results" / "big" / "validate.json").read_text())
    assert result["status"] == "FAILED"
    assert result["datasets"]["orders"]["files"][0]["error"].startswith(
        "holds line(s) longer than 1,048,576 bytes (209,715,"
    )
