"""Fault drills of transform and maintain: the job killed (``kill -9`` of the whole process group,
Python and JVM, as ECS stops a task) during its DynamoDB writes, while committing its Delta write or
just after, after a correction's KPI commit, while committing a compaction; DynamoDB throttling
beyond the retry budget. Then re-run: the KPI tables and the KPI items in DynamoDB (and the tables
maintenance rewrote) must equal those of an uninterrupted run of the same batch
(:mod:`tests.drills.stage` has the stage)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from common.contracts import DATASETS
from tests.drills.stage import BATCH, FIRST_DATA_COMMIT, Reference, Stage
from tests.fault_proxy import DYNAMODB_THROTTLED, Fault
from tests.helpers import read_json

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_transform_killed_during_its_dynamodb_writes(stage: Stage, reference: Reference) -> None:
    """Killed once the second BatchWriteItem landed (of either KPI table: they are written side by
    side). The proxy forwards nothing after that instant, so DynamoDB holds those two requests' 50
    items (25 if the first, sent by the other writer, is still on its way), not all of them; the
    daily KPIs' Delta table none."""
    lake = "kill-dynamodb"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    stage.killed_at(
        "transform", lake, Fault("POST", target="BatchWriteItem", every=2, limit=1, after=lambda: None)
    )
    landed = len(stage.items(lake, "order")) + len(stage.items(lake, "category"))
    expected = len(reference.kpis["dynamodb/order"] or []) + len(reference.kpis["dynamodb/category"] or [])
    assert 25 <= landed <= 50 and landed < expected, (landed, expected)
    assert stage.table(lake, "kpi", "order_daily") is None
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis


@pytest.mark.parametrize("landed", [False, True], ids=["on-the-wire", "landed"])
def test_transform_killed_while_committing_its_delta_write(
    stage: Stage, reference: Reference, landed: bool
) -> None:
    """Killed with the daily KPIs in DynamoDB and their Delta commit on the wire, or just after it
    landed: the re-run replaces those dates' rows (an append would double them)."""
    lake = f"kill-kpi-{'landed' if landed else 'wire'}"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    after = (lambda: None) if landed else None
    stage.killed_at(
        "transform", lake, Fault("PUT", f"/{lake}/kpi/order_daily/{FIRST_DATA_COMMIT}", after=after)
    )
    assert stage.items(lake, "order") == reference.kpis["dynamodb/order"]
    expected = reference.kpis["kpi/order_daily"] if landed else []
    assert stage.table(lake, "kpi", "order_daily") == expected
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis


def test_a_correction_killed_after_its_kpi_commit_still_deletes_the_vanished_date(
    stage: Stage, reference: Reference
) -> None:
    """A second batch moves the only order of one day to another day: that day's KPI row must go,
    from Delta and from DynamoDB. Transform is killed just after order_daily's Delta commit landed.
    DynamoDB is written before Delta, so the re-run still finds the vanished day in Delta and deletes
    its item; written the other way round, the re-run would find nothing to delete."""
    orders = stage.spark.read.format("delta").load(stage.uri("ref", "validated", "orders"))
    dated = orders.withColumn("day", F.to_date("created_at"))
    lonely = dated.groupBy("day").count().where("count = 1").select("day")
    row = dated.join(lonely, "day").orderBy("order_id").first()
    assert row is not None
    gone = row["day"].isoformat()
    assert any(json.loads(r)["order_date"] == gone for r in reference.kpis["kpi/order_daily"] or [])
    columns = [c for c in orders.columns if not c.startswith("_")]  # the contract's, in its order
    values = {**row.asDict(), "created_at": row["created_at"] - dt.timedelta(days=400)}
    cells = [
        "" if v is None else v.isoformat() if isinstance(v, dt.date) else str(v)
        for v in (values[c] for c in columns)
    ]
    key = "raw/orders/drill-2.csv"
    stage.s3.put_object(
        Bucket=stage.bucket, Key=key, Body=f"{','.join(columns)}\n{','.join(cells)}\n".encode()
    )
    second = ["--batch-id", "drill-2", "--orders", f"s3://{stage.bucket}/{key}"]
    stage.copy("ref", "fix-ref")  # the reference lake after batch 1, then batch 2 validated
    stage.kpi_tables("fix-ref")
    stage.copy_items("ref", "fix-ref")
    assert stage.run_here("validate", "fix-ref", second) == 0
    stage.copy("fix-ref", "fix-kill")  # the same, before batch 2's transform
    stage.kpi_tables("fix-kill")
    stage.copy_items("ref", "fix-kill")
    assert stage.run_here("transform", "fix-ref", ["--batch-id", "drill-2"]) == 0
    expected = stage.kpis("fix-ref")
    assert not any(json.loads(r)["order_date"] == gone for r in expected["kpi/order_daily"] or [])
    assert not any(json.loads(i)["order_date"]["S"] == gone for i in expected["dynamodb/order"] or [])
    commit = Fault("PUT", r"/fix-kill/kpi/order_daily/_delta_log/\d{20}\.json$", after=lambda: None)
    stage.killed_at("transform", "fix-kill", commit, ["--batch-id", "drill-2"])
    assert stage.run("transform", "fix-kill", ["--batch-id", "drill-2"])[0] == 0
    assert stage.kpis("fix-kill") == expected


def test_maintain_killed_while_committing_a_compaction(stage: Stage, reference: Reference) -> None:
    """Maintenance killed with orders' compacted file written and its commit on the wire: readers
    still see the batch's rows; the re-run packs the table and a third run finds nothing to do."""
    lake = "kill-maintain"
    stage.copy("ref", lake)
    orders = stage.uri(lake, "validated", "orders")
    # the same rows, spread over three files: something to compact (version 2)
    stage.spark.read.format("delta").load(orders).repartition(3).write.format("delta").mode("overwrite").save(
        orders
    )
    assert stage.version(lake, "validated", "orders") == 2
    args = ["--maintain-min-files", "1"]
    stage.killed_at(
        "maintain", lake, Fault("PUT", f"/{lake}/validated/orders/_delta_log/0{{19}}3\\.json$"), args
    )
    assert stage.version(lake, "validated", "orders") == 2  # the compaction never committed
    assert stage.tables(lake) == reference.tables
    code, stderr = stage.run("maintain", lake, args)
    assert code == 0, stderr[-3000:]
    assert stage.tables(lake) == reference.tables
    assert stage.version(lake, "validated", "orders") == 3
    files = stage.spark.read.format("delta").load(orders).inputFiles()
    assert len(files) == 1
    versions = {name: stage.version(lake, "validated", name) for name in DATASETS}
    assert stage.run_here("maintain", lake, args) == 0
    assert {name: stage.version(lake, "validated", name) for name in DATASETS} == versions


def test_dynamodb_throttling_beyond_the_retries_fails_visibly_and_a_rerun_repairs(
    stage: Stage, reference: Reference
) -> None:
    lake = "ddb-throttled"
    stage.copy("validated", lake)
    stage.kpi_tables(lake)
    throttle = stage.ddb_proxy.add(Fault("POST", target="BatchWriteItem", respond=DYNAMODB_THROTTLED))
    try:
        code, stderr = stage.run("transform", lake)
    finally:
        stage.ddb_proxy.clear()
    assert code == 1, stderr[-3000:]
    assert throttle.fired >= 10
    result = read_json(stage.s3, f"{lake}/_results/{BATCH}/transform.json", stage.bucket)
    assert result["status"] == "ERROR"
    assert "ProvisionedThroughputExceededException" in result["errors"][-1], result["errors"]
    assert stage.table(lake, "kpi", "order_daily") is None  # nothing half-published in Delta
    assert stage.run("transform", lake)[0] == 0
    assert stage.kpis(lake) == reference.kpis
