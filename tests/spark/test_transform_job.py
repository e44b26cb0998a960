"""The transform job: refusals, multi-batch correctness against an independent reference,
DynamoDB holding exactly one item per key, and identical re-runs."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pyspark.sql import SparkSession

from common.contracts import DATASETS
from common.generator import GeneratorConfig, generate_batch
from common.io import delta
from common.usecases import lifecycle, transform_batch
from jobs import maintain, transform
from tests import reference_kpis
from tests.aws_stack import CATEGORY_KPI_TABLE as CATEGORY_TABLE
from tests.aws_stack import ORDER_KPI_TABLE as ORDER_TABLE
from tests.aws_stack import create_kpi_tables
from tests.conftest import write_csv
from tests.helpers import CATEGORY_FIELDS, ORDER_FIELDS, cut_log, delta_kpis, delta_rows, run_validate


def run_transform(spark: SparkSession, lake: Path, *args: str) -> int:
    argv = ["--lake-root", str(lake), "--spark-shuffle-partitions", "2", *args]
    return transform.main(argv, spark=spark)


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items, start = [], None
    while True:
        page = client.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def _number(value: dict[str, str]) -> Decimal:
    return Decimal(value["N"])


def test_refuses_a_batch_without_a_validation_result(
    spark: SparkSession, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run_transform(spark, tmp_path / "lake", "--batch-id", "never-validated") == 3
    err = capfd.readouterr().err
    assert "no validation result at" in err and "run the validate job" in err


def test_refuses_a_failed_batch(
    spark: SparkSession, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    header = "order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n"
    orders = write_csv(tmp_path / "o.csv", header + "1,x,processing,2025-01-01,,,,1\n")
    lake = tmp_path / "lake"
    run_validate(spark, lake, "--batch-id", "bad", "--orders", orders)
    capfd.readouterr()
    assert run_transform(spark, lake, "--batch-id", "bad") == 3
    assert "validation status is FAILED (expected SUCCEEDED)" in capfd.readouterr().err
    assert not (lake / "kpi").exists()


def test_an_unexpected_failure_names_its_type_but_never_its_text(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception from outside the project (Spark's, a library's) may quote row values: the
    result (which alerts read) names its type and points at the log, as validate's does."""
    generate_batch(tmp_path / "in", GeneratorConfig(items=40, seed=5, defect_rate=0), batch_id="t-err")
    lake = tmp_path / "lake"
    code, _ = run_validate(spark, lake, "--manifest", str(tmp_path / "in" / "manifest.json"))
    assert code == 0

    def fails(*_: Any) -> None:
        raise ValueError("cannot parse 'jane.doe@example.com' in row 7")

    monkeypatch.setattr(lifecycle, "run_transform", fails)
    assert run_transform(spark, lake, "--batch-id", "t-err") == 1
    result = json.loads((lake / "_results" / "t-err" / "transform.json").read_text())
    assert result["status"] == "ERROR"
    assert result["errors"] == ["internal error: ValueError (see the job log)"]


def _manifest(path: Path, batch_id: str, files: dict[str, list[str]]) -> str:
    path.write_text(json.dumps({"batch_id": batch_id, "files": files}))
    return str(path)


@pytest.fixture(scope="module")
def three_batches(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Orders in b1; their items split across b1 and b2; one order corrected (new date and status)
    in b3, which also re-delivers one of b2's item files. Validated and transformed in that order
    into ``lake`` (KPIs to DynamoDB too: ``scans`` holds its items afterwards; ``touched`` each
    transform's touched dates)."""
    tmp_path = tmp_path_factory.mktemp("three-batches")
    generate_batch(
        tmp_path / "gen", GeneratorConfig(items=1500, parts=3, seed=5, defect_rate=0, warning_rate=0)
    )
    files = json.loads((tmp_path / "gen" / "manifest.json").read_text())["files"]
    items = files["order_items"]
    with open(files["orders"][0], newline="") as handle:
        reader = csv.DictReader(handle)
        header, first = reader.fieldnames, next(reader)
    assert header is not None
    moved = dict(
        first,
        created_at="2023-06-15 12:00:00+00:00",
        status="Returned",
        shipped_at="2023-06-16 12:00:00",
        delivered_at="2023-06-18 12:00:00",
        returned_at="2023-06-20 12:00:00",
    )
    correction = tmp_path / "b3" / "orders-fix.csv"
    write_csv(correction, ",".join(header) + "\n" + ",".join(moved[c] for c in header) + "\n")
    out: dict[str, Any] = {
        "batches": [
            (
                "b1",
                _manifest(
                    tmp_path / "b1.json",
                    "b1",
                    {"orders": files["orders"], "products": files["products"], "order_items": items[:1]},
                ),
            ),
            ("b2", _manifest(tmp_path / "b2.json", "b2", {"order_items": items[1:]})),
            (
                "b3",
                _manifest(
                    tmp_path / "b3.json", "b3", {"orders": [str(correction)], "order_items": items[1:2]}
                ),
            ),
        ],
        "final_orders": [Path(p) for p in files["orders"]] + [correction],
        "final_items": [Path(p) for p in items],
        "products": [Path(p) for p in files["products"]],
        "moved_from": first["created_at"][:10],
    }
    lake = tmp_path / "lake"
    tables = ("--dynamodb-order-table", ORDER_TABLE, "--dynamodb-category-table", CATEGORY_TABLE)
    touched, notes = {}, {}
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_kpi_tables(client)
        for batch_id, manifest in out["batches"]:
            code, result = run_validate(spark, lake, "--manifest", manifest)
            assert code == 0 and result is not None and result["status"] == "SUCCEEDED", batch_id
            assert run_transform(spark, lake, "--batch-id", batch_id, *tables) == 0, batch_id
            result = json.loads((lake / "_results" / batch_id / "transform.json").read_text())
            touched[batch_id] = result["touched_dates"]
            notes[batch_id] = result["notes"]
        scans = {table: _scan(client, table) for table in (ORDER_TABLE, CATEGORY_TABLE)}
    return {**out, "lake": lake, "scans": scans, "touched": touched, "notes": notes}


def test_multi_batch_kpis_equal_a_reference_over_the_final_data_and_a_rerun_changes_nothing(
    spark: SparkSession, tmp_path: Path, three_batches: dict[str, Any]
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(three_batches["lake"], lake)  # the re-run below writes to it

    expected_orders, expected_categories = reference_kpis.kpis(
        reference_kpis.read_rows(three_batches["final_orders"], "order_id"),
        reference_kpis.read_rows(three_batches["final_items"], "id"),
        reference_kpis.read_rows(three_batches["products"], "id"),
    )
    assert "2023-06-15" in expected_orders  # the corrected order's new date

    delta_orders, delta_categories = delta_kpis(lake)
    assert delta_orders == expected_orders
    assert delta_categories == expected_categories
    # The first batch computed its dates (nothing to add to); each later one added its change to
    # the rows the one before it wrote.
    notes = three_batches["notes"]
    assert transform_batch.RECOMPUTED in notes["b1"]
    assert (
        f"{transform_batch.RECOMPUTED_BECAUSE}no batch came before this one: no KPI rows to add to"
        in notes["b1"]
    )
    assert transform_batch.ADDED in notes["b2"] and transform_batch.ADDED in notes["b3"]

    order_items = three_batches["scans"][ORDER_TABLE]
    assert len(order_items) == len({i["order_date"]["S"] for i in order_items}) == len(expected_orders)
    dynamo_orders = {i["order_date"]["S"]: {f: _number(i[f]) for f in ORDER_FIELDS} for i in order_items}
    assert dynamo_orders == expected_orders
    category_items = three_batches["scans"][CATEGORY_TABLE]
    dynamo_categories = {
        (i["category"]["S"], i["order_date"]["S"]): {f: _number(i[f]) for f in CATEGORY_FIELDS}
        for i in category_items
    }
    assert len(category_items) == len(dynamo_categories) == len(expected_categories)
    assert dynamo_categories == expected_categories
    assert {i["batch_id"]["S"] for i in order_items} <= {"b1", "b2", "b3"}

    # Re-running the last batch's transform (here to Delta only) writes identical values.
    last, _ = three_batches["batches"][-1]
    before = _category_rows(lake)
    assert run_transform(spark, lake, "--batch-id", last) == 0
    assert before.num_rows > 0 and _category_rows(lake).equals(before)
    result = json.loads((lake / "_results" / last / "transform.json").read_text())
    assert result["status"] == "SUCCEEDED"
    assert transform_batch.ADDED in result["notes"]  # to the rows as they were before its first run
    assert "no DynamoDB table configured: KPIs written to Delta only" in result["notes"]


def _last_version_before(spark: SparkSession, table: Path, batch_id: str) -> int:
    """The table's last version before ``batch_id`` first wrote to it (its latest if it never did)."""
    history = delta.commits(spark, str(table))
    first = min((c.version for c in history if c.batch_id == batch_id), default=history[-1].version + 1)
    return max(c.version for c in history if c.version < first)


@pytest.mark.slow  # a copy of the lake, its logs cut twice, two transforms: ~36 s, in `make drills`
def test_logs_cut_by_delta_s_cleanup_still_let_a_batch_add_its_change(
    spark: SparkSession, tmp_path: Path, three_batches: dict[str, Any]
) -> None:
    """A lake older than the log's retention (30 days) has logs that no longer begin at version 0.
    The change is still added when each log shows the commits just before the batch, and the rows
    are the same; when a log hides them, the touched dates are recomputed, again the same."""
    lake = tmp_path / "lake"
    shutil.copytree(three_batches["lake"], lake)
    last, _ = three_batches["batches"][-1]
    before = _category_rows(lake)
    tables = [lake / "validated" / name for name in ("orders", "order_items", "products")]
    tables += [lake / "kpi" / name for name in ("order_daily", "category_daily")]
    for table in tables:  # each log cut to the last commit before the batch's first
        cut_log(spark, table, _last_version_before(spark, table, last))
        assert delta.commits(spark, str(table))[0].version > 0
    assert run_transform(spark, lake, "--batch-id", last) == 0
    result = json.loads((lake / "_results" / last / "transform.json").read_text())
    assert transform_batch.ADDED in result["notes"]
    assert _category_rows(lake).equals(before)

    # A log whose first shown commit came after the commits before the batch (here a property
    # set on the products table, then its log cut there) may hide the last of them: recomputed.
    products = lake / "validated" / "products"
    spark.sql(f"ALTER TABLE delta.`{products}` SET TBLPROPERTIES ('ecom.note' = 'cut')")
    cut_log(spark, products, delta.commits(spark, str(products))[-1].version)
    assert run_transform(spark, lake, "--batch-id", last) == 0
    result = json.loads((lake / "_results" / last / "transform.json").read_text())
    assert transform_batch.RECOMPUTED in result["notes"]
    why = "a validated table's log no longer shows the commits just before this batch"
    assert f"{transform_batch.RECOMPUTED_BECAUSE}{why}" in result["notes"]
    assert _category_rows(lake).equals(before)


def _category_rows(lake: Path) -> Any:
    return (
        delta_rows(lake / "kpi" / "category_daily")
        .drop(["computed_at"])
        .sort_by([("category", "ascending"), ("order_date", "ascending")])
    )


TABLES = [
    *(f"{kind}/{name}" for kind in ("validated", "quarantine") for name in DATASETS),
    "kpi/order_daily",
    "kpi/category_daily",
]


def _state(spark: SparkSession, lake: Path) -> dict[str, list[str]]:
    """Every table's rows (the KPI rows' computation stamps left out: a re-run restamps them)."""
    out = {}
    for name in TABLES:
        frame = spark.read.format("delta").load(str(lake / name)).drop("computed_at")
        if name.startswith("kpi/"):
            frame = frame.drop("batch_id")
        out[name] = sorted(json.dumps(r.asDict(), default=str, sort_keys=True) for r in frame.collect())
    return out


def _versions(lake: Path) -> dict[str, int]:
    return {
        name: max(int(p.stem) for p in (lake / name / "_delta_log").glob("*.json"))
        for name in [*TABLES, "_runs"]
    }


def _data_files(spark: SparkSession, lake: Path, name: str) -> int:
    return len(spark.read.format("delta").load(str(lake / name)).inputFiles())


@pytest.mark.slow  # three maintenance runs and four job re-runs: ~110 s, in `make drills`
def test_maintenance_compacts_keeps_what_a_rerun_needs_and_a_second_run_commits_nothing(
    spark: SparkSession, tmp_path: Path, three_batches: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(three_batches["lake"], lake)
    touched = three_batches["touched"]
    assert three_batches["moved_from"] in touched["b3"]  # b3 moved an order away from that date
    state = _state(spark, lake)
    files = {name: _data_files(spark, lake, name) for name in TABLES}
    assert files["validated/order_items"] >= 2  # b1's items and b2's
    maintain_args = ["--lake-root", str(lake), "--maintain-min-files", "1", "--maintain-keep-batches", "2"]
    capfd.readouterr()

    assert maintain.main(maintain_args, spark=spark) == 0
    assert "Maintenance maintain-" in capfd.readouterr().out
    assert _state(spark, lake) == state
    # Each table is far below the target file size: one file (none for the empty quarantine).
    assert {name: _data_files(spark, lake, name) for name in TABLES} == {n: min(files[n], 1) for n in TABLES}
    ledger = spark.read.format("delta").load(str(lake / "_runs")).where("job = 'maintain'").collect()
    assert len(ledger) == 1
    counts = ledger[0]["dataset_counts"]["validated/order_items"]
    assert (counts["files_before"], counts["files_after"]) == (files["validated/order_items"], 1)

    versions = _versions(lake)
    assert maintain.main(maintain_args, spark=spark) == 0
    assert "nothing to do" in capfd.readouterr().out
    assert _versions(lake) == versions  # not even a ledger row

    # The last two batches re-run after maintenance give the same tables; the last one finds the
    # same dates, the one its correction moved an order away from included (by time travel).
    # b2's re-run comes after b3 changed the tables, so it recomputes its dates; and then so does
    # b3's, since b2's re-run wrote the KPI rows last.
    reruns = (
        ("b2", "a later batch (or an untagged write) changed the validated tables after this batch"),
        ("b3", "another batch's transform wrote kpi/order_daily after this batch's"),
    )
    for batch_id, why in reruns:
        assert run_validate(spark, lake, "--manifest", dict(three_batches["batches"])[batch_id])[0] == 0
        assert run_transform(spark, lake, "--batch-id", batch_id) == 0
        notes = json.loads((lake / "_results" / batch_id / "transform.json").read_text())["notes"]
        assert transform_batch.RECOMPUTED in notes and f"{transform_batch.RECOMPUTED_BECAUSE}{why}" in notes
    rerun = json.loads((lake / "_results" / "b3" / "transform.json").read_text())
    assert rerun["touched_dates"] == touched["b3"]
    assert _state(spark, lake) == state

    # What kept them possible: with no history kept, VACUUM deletes the files of the version
    # before b3, and b3's transform can no longer find the date its correction moved away from.
    no_history = [*maintain_args, "--maintain-keep-batches", "0", "--maintain-min-retention-hours", "0"]
    assert maintain.main(no_history, spark=spark) == 0
    assert "done" in capfd.readouterr().out
    assert run_transform(spark, lake, "--batch-id", "b3") == 1


def test_commit_times_are_read_in_utc_whatever_the_local_time_zone(
    spark: SparkSession, tmp_path: Path
) -> None:
    """The retention rule measures ages from commit times: a local time zone must not shift them."""
    table = tmp_path / "t"
    spark.range(3).write.format("delta").save(str(table))
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"  # UTC+9, no daylight saving
    time.tzset()
    try:
        [commit] = delta.commits(spark, str(table))
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
    age = dt.datetime.now(dt.UTC) - commit.timestamp
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=5), age


def test_a_batch_that_only_added_rows_is_told_from_one_that_changed_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    """transform reads the earlier items from the current table only when the batch added rows and
    changed none: an append, or a MERGE that updated nothing, is told apart from one that did."""
    uri = str(tmp_path / "t")
    schema = spark.createDataFrame([(1, "a", "b0")], "id long, v string, _batch_id string").schema
    when = delta.UpdateWhen("t.v <> s.v AND s._batch_id >= t._batch_id", ("v", "_batch_id"))

    def write(rows: list[tuple[int, str]], batch: str) -> None:
        frame = spark.createDataFrame([(i, v, batch) for i, v in rows], schema)
        delta.upsert(spark, uri, frame, schema, ["id"], when, batch, len(rows))

    write([(1, "a"), (2, "b")], "b1")  # the first rows: an append
    write([(3, "c")], "b2")  # a new key only: an append
    write([(2, "b"), (4, "d")], "b3")  # one unchanged key, one new: a MERGE that only inserts
    write([(1, "z")], "b4")  # a MERGE that updates
    history = delta.commits(spark, uri)
    assert [c.operation for c in history] == ["CREATE TABLE", "WRITE", "WRITE", "MERGE", "MERGE"]
    assert [delta.changed_existing_rows(history, b) for b in ("b1", "b2", "b3", "b4", "b5")] == [
        False,
        False,
        False,
        True,
        False,
    ]
