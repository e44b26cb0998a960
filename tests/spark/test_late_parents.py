"""Late parents: rows whose parents come in a later batch are parked, then released exactly once.

Files arrive in parts and a debounce window cuts batches anywhere, so items can come before their
orders. The packaged contract parks such items (``parkFor: 7d`` on both foreign keys of
order_items) instead of quarantining them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from jobs import transform
from tests import reference_kpis
from tests.conftest import write_csv
from tests.helpers import assert_accounted, delta_kpis, delta_rows, run_validate


def _manifest(path: Path, batch_id: str, files: dict[str, list[str]]) -> str:
    path.write_text(json.dumps({"batch_id": batch_id, "files": files}))
    return str(path)


def _validate(spark: SparkSession, lake: Path, manifest: str, day: str) -> dict[str, Any]:
    code, result = run_validate(spark, lake, "--manifest", manifest, "--processing-date", day)
    assert code == 0 and result is not None, result
    assert_accounted(result)
    return result


def _transform(spark: SparkSession, lake: Path, batch_id: str) -> None:
    argv = ["--lake-root", str(lake), "--spark-shuffle-partitions", "2", "--batch-id", batch_id]
    assert transform.main(argv, spark=spark) == 0, batch_id


def _ids(path: Path, column: str = "id") -> list[int]:
    if not path.exists():
        return []
    return sorted(int(v) for v in delta_rows(path).column(column).to_pylist())


@pytest.fixture(scope="module")
def early_items(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clean generated batch delivered so that every item comes before its order: b1 holds the
    items and products, b2 the first part of the orders (those items are one batch early), b3 the
    products again (releases nothing), b4 the other orders (those items are three batches early).
    Each batch is validated; the two that publish orders are transformed."""
    tmp = tmp_path_factory.mktemp("early-items")
    truth = generate_batch(
        tmp / "gen", GeneratorConfig(items=1200, parts=2, seed=3, defect_rate=0, warning_rate=0)
    )
    files = json.loads((tmp / "gen" / "manifest.json").read_text())["files"]
    batches = [
        ("b1", {"order_items": files["order_items"], "products": files["products"]}, "2026-01-01"),
        ("b2", {"orders": files["orders"][:1]}, "2026-01-02"),
        ("b3", {"products": files["products"]}, "2026-01-03"),
        ("b4", {"orders": files["orders"][1:]}, "2026-01-04"),
    ]
    lake = tmp / "lake"
    results = {}
    for batch_id, listed, day in batches:
        results[batch_id] = _validate(spark, lake, _manifest(tmp / f"{batch_id}.json", batch_id, listed), day)
        if batch_id in ("b2", "b4"):  # b1 has no orders and b3 changes nothing: no KPI to compute
            _transform(spark, lake, batch_id)
    return {"tmp": tmp, "lake": lake, "files": files, "truth": truth, "results": results, "batches": batches}


def test_items_before_their_orders_are_parked_not_quarantined(early_items: dict[str, Any]) -> None:
    first = early_items["results"]["b1"]
    items = first["datasets"]["order_items"]
    read = early_items["truth"]["datasets"]["order_items"]["rows_read"]
    assert first["status"] == "SUCCEEDED"  # the batch passes: its items only wait
    assert (items["rows_valid"], items["rows_quarantined"], items["rows_parked"]) == (0, 0, read)
    assert items["parked_counts"] == {"parent_missing:order_id": read}
    assert items["park"]["rows_waiting"] == read and items["park"]["oldest_parked_days"] == 0
    # ... and the products of the same batch are published
    assert first["datasets"]["products"]["rows_valid"] > 0
    assert _ids(early_items["lake"] / "validated" / "products")


def test_parked_items_are_released_when_their_orders_arrive_one_and_three_batches_later(
    early_items: dict[str, Any],
) -> None:
    lake, results, files = early_items["lake"], early_items["results"], early_items["files"]
    read = early_items["truth"]["datasets"]["order_items"]["rows_read"]
    second = results["b2"]["datasets"]["order_items"]["park"]
    fourth = results["b4"]["datasets"]["order_items"]["park"]
    assert second["rows_checked"] == read and second["rows_released"] > 0
    assert results["b3"]["datasets"]["order_items"]["park"]["rows_released"] == 0
    assert second["rows_released"] + fourth["rows_released"] == read
    assert second["released_from"] == {"b1": second["rows_released"]}
    assert fourth["released_from"] == {"b1": fourth["rows_released"]}
    assert (fourth["rows_waiting"], fourth["rows_expired"], fourth["oldest_parked_since"]) == (0, 0, None)
    # every item exactly once in the validated table, none quarantined or parked
    expected = sorted(int(i) for i in reference_kpis.read_rows([Path(p) for p in files["order_items"]], "id"))
    assert _ids(lake / "validated" / "order_items") == expected
    assert _ids(lake / "quarantine" / "order_items") == []
    assert _ids(lake / "parked" / "order_items") == []
    # released rows are stamped with the batch that released them (its transform recomputes them)
    stamps = delta_rows(lake / "validated" / "order_items").column("_batch_id").to_pylist()
    assert {s: stamps.count(s) for s in set(stamps)} == {
        "b2": second["rows_released"],
        "b4": fourth["rows_released"],
    }


def test_kpis_after_the_late_orders_equal_an_independent_computation(early_items: dict[str, Any]) -> None:
    lake, files = early_items["lake"], early_items["files"]
    expected_orders, expected_categories = reference_kpis.kpis(
        reference_kpis.read_rows([Path(p) for p in files["orders"]], "order_id"),
        reference_kpis.read_rows([Path(p) for p in files["order_items"]], "id"),
        reference_kpis.read_rows([Path(p) for p in files["products"]], "id"),
    )
    got_orders, got_categories = delta_kpis(lake)
    assert got_orders == expected_orders
    assert got_categories == expected_categories


ITEMS_HEADER = (
    "id,order_id,user_id,product_id,status,created_at,shipped_at,delivered_at,returned_at,sale_price\n"
)
ORDERS_HEADER = "order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n"
PRODUCTS_HEADER = "id,sku,cost,category,name,brand,retail_price,department\n"


def _item_row(item_id: int, order_id: int, price: str) -> str:
    created = "2025-01-01 10:00:00"
    return f"{item_id},{order_id},10,1,processing,{created},,,,{price}\n"


def _order(order_id: int, user: str = "10") -> str:
    return f"{order_id},{user},processing,2025-01-01 09:00:00,,,,1\n"


@pytest.fixture(scope="module")
def park_lifecycle(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Small hand-made batches through every way out of the park:

    - b1 (day 1): product 1; items 1 (order 1), 2 (order 2), 3 (order 99, never comes),
      4 (order 3, which comes quarantined), 5 (order 4, price 10.00), 6 (order 5, price 1.00).
      All six are parked.
    - b2 (day 2): order 4 and a new version of item 5 (order 4, price 20.00); item 6 again,
      now under order 4 (price 2.00). Both are published by b2; their b1 versions are older.
    - b3 (day 3): orders 1, 3 (bad: user "x", quarantined) and 5.
    - b4 (day 4): order 2.
    - b5 (day 9, more than 7 days after day 1): product 1 again.
    """
    tmp = tmp_path_factory.mktemp("park-lifecycle")
    product = write_csv(tmp / "p.csv", PRODUCTS_HEADER + "1,SKU1,5.00,Tops,Shirt,Acme,25.00,Women\n")
    items1 = write_csv(
        tmp / "i1.csv",
        ITEMS_HEADER
        + "".join(_item_row(i, o, p) for i, o, p in [(1, 1, "5.00"), (2, 2, "6.00"), (3, 99, "7.00")])
        + "".join(_item_row(i, o, p) for i, o, p in [(4, 3, "8.00"), (5, 4, "10.00"), (6, 5, "1.00")]),
    )
    orders2 = write_csv(tmp / "o2.csv", ORDERS_HEADER + _order(4))
    items2 = write_csv(tmp / "i2.csv", ITEMS_HEADER + _item_row(5, 4, "20.00") + _item_row(6, 4, "2.00"))
    orders3 = write_csv(tmp / "o3.csv", ORDERS_HEADER + _order(1) + _order(3, "x") + _order(5))
    orders4 = write_csv(tmp / "o4.csv", ORDERS_HEADER + _order(2))
    batches = [
        ("b1", {"products": [product], "order_items": [items1]}, "2026-01-01"),
        ("b2", {"orders": [orders2], "order_items": [items2]}, "2026-01-02"),
        ("b3", {"orders": [orders3]}, "2026-01-03"),
        ("b4", {"orders": [orders4]}, "2026-01-04"),
        ("b5", {"products": [product]}, "2026-01-09"),
    ]
    lake = tmp / "lake"
    results = {}
    for batch_id, listed, day in batches:
        manifest = _manifest(tmp / f"{batch_id}.json", batch_id, listed)
        code, result = run_validate(
            spark, lake, "--manifest", manifest, "--processing-date", day, "--quarantine-threshold", "0.5"
        )
        assert code == 0 and result is not None and result["status"] == "SUCCEEDED", (batch_id, result)
        results[batch_id] = result
    return {"lake": lake, "results": results, "tmp": tmp}


def _park(results: dict[str, Any], batch_id: str) -> dict[str, Any]:
    park = results[batch_id]["datasets"]["order_items"]["park"]
    assert park is not None
    return dict(park)


def test_a_newer_version_that_arrived_meanwhile_wins_over_a_released_one(
    park_lifecycle: dict[str, Any],
) -> None:
    lake, results = park_lifecycle["lake"], park_lifecycle["results"]
    # b2: item 5's b1 version is released (order 4 came) but b2 brings its own newer version
    assert _park(results, "b2")["rows_released"] == 1
    # b3: item 6's b1 version is released (order 5 came) but b2 had published a newer one
    rows = {r["id"]: r for r in delta_rows(lake / "validated" / "order_items").to_pylist()}
    assert (str(rows[5]["sale_price"]), rows[5]["_batch_id"]) == ("20.00", "b2")
    assert (str(rows[6]["sale_price"]), rows[6]["order_id"], rows[6]["_batch_id"]) == ("2.00", 4, "b2")


def test_each_parked_row_leaves_the_park_its_own_way(park_lifecycle: dict[str, Any]) -> None:
    lake, results = park_lifecycle["lake"], park_lifecycle["results"]
    assert results["b1"]["datasets"]["order_items"]["rows_parked"] == 6
    b3 = _park(results, "b3")
    # items 1 and 6 released (6 only to find b2's newer version), 4 condemned, 2 and 3 waiting
    assert (b3["rows_checked"], b3["rows_released"], b3["rows_parent_quarantined"]) == (5, 2, 1)
    assert b3["released_from"] == {"b1": 2} and b3["rows_waiting"] == 2
    assert (b3["oldest_parked_since"], b3["oldest_parked_days"]) == ("2026-01-01", 2)
    b4 = _park(results, "b4")
    assert (b4["rows_released"], b4["rows_waiting"], b4["rows_expired"]) == (1, 1, 0)
    b5 = _park(results, "b5")
    assert (b5["rows_checked"], b5["rows_expired"], b5["rows_waiting"]) == (1, 1, 0)

    validated = delta_rows(lake / "validated" / "order_items").to_pylist()
    assert sorted((r["id"], r["_batch_id"]) for r in validated) == [
        (1, "b3"),  # released by b3
        (2, "b4"),  # released by b4, three batches after it came
        (5, "b2"),
        (6, "b2"),
    ]
    quarantined = delta_rows(lake / "quarantine" / "order_items").to_pylist()
    # condemned rows are quarantined as rows of the batch they came with, with their source text
    assert sorted((r["id"], r["_reasons"], r["_batch_id"], r["sale_price"]) for r in quarantined) == [
        ("3", ["parent_never_arrived:order_id"], "b1", "7.00"),
        ("4", ["parent_quarantined:order_id"], "b1", "8.00"),
    ]
    assert _ids(lake / "parked" / "order_items") == []


def test_expired_rows_are_told_in_the_summary_by_dataset_and_count_without_values(
    park_lifecycle: dict[str, Any],
) -> None:
    lake = park_lifecycle["lake"]
    summary = json.loads((lake / "_results" / "b5" / "validate.summary.json").read_text())
    assert summary["notices"] == [
        "order_items: 1 parked row(s) quarantined as parent_never_arrived (their parent did not arrive "
        "within the contract's parkFor); 0 still waiting"
    ]
    assert "99" not in json.dumps(summary)
    quiet = json.loads((lake / "_results" / "b4" / "validate.summary.json").read_text())
    assert quiet["notices"] == []


def test_rerunning_batches_of_the_lifecycle_changes_no_table(
    spark: SparkSession, park_lifecycle: dict[str, Any]
) -> None:
    """Re-running a releasing batch leaves every table's rows as they are (the rows it released
    left the park: nothing is released twice)."""
    lake, tmp = park_lifecycle["lake"], park_lifecycle["tmp"]

    def snapshot() -> dict[str, list[Any]]:
        out = {}
        for kind in ("validated", "quarantine"):
            rows = delta_rows(lake / kind / "order_items").to_pylist()
            out[kind] = sorted((str(r["id"]), str(r["sale_price"]), r["_batch_id"]) for r in rows)
        return out

    before = snapshot()
    for batch_id, day in (("b3", "2026-01-03"),):
        code, result = run_validate(
            spark,
            lake,
            "--manifest",
            str(tmp / f"{batch_id}.json"),
            "--processing-date",
            day,
            "--quarantine-threshold",
            "0.5",
        )
        assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
        park = result["datasets"]["order_items"]["park"]
        assert (park["rows_checked"], park["rows_released"]) == (0, 0), batch_id
        assert snapshot() == before, batch_id
