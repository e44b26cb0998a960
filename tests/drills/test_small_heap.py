"""A day's small batch into a lake many times larger than the driver's heap.

The heap of a small batch is sized from its input (``auto``: 2 GB), but its joins meet the whole
lake. A lake table's compressed files once made 5M rows look small enough to broadcast, and their
hash table did not fit the driver ("Not enough memory to build and broadcast the table" in the MERGE
into ``validated/order_items``). Here both jobs run as processes with the smallest heap Spark's
local driver starts with, against a lake of 2M order items written straight to Delta: a batch that
corrects a thousand of them and adds a thousand more must pass, with its counts exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from common.contracts.loader import load_contracts
from common.engine import tables
from common.io import delta
from common.io.lake import Lake
from common.io.results import BatchStatus, ValidationResult, write_result
from common.settings import Settings
from common.usecases.validate_batch import validated_properties
from jobs import transform
from tests.conftest import write_csv
from tests.helpers import run_local_job

pytestmark = pytest.mark.slow

HEAP = "512m"  # the least "auto" gives; Spark's local driver does not start below ~450 MB
ITEMS, ORDERS, PRODUCTS, USERS = 2_000_000, 800_000, 50_000, 100_000
CORRECTED = NEW = 1_000
HISTORY = "20260101T000000000Z-00-history"
DAY = "20260103T000000000Z-00-day"
CATEGORIES = ["Jeans", "Socks", "Hats", "Tops", "Shoes"]


def _day(order_id: Column) -> Column:
    """An order's creation time: spread over two years of dates, as ids and dates are unrelated."""
    seconds = F.pmod(F.xxhash64(order_id), F.lit(730 * 86_400))
    return F.timestamp_seconds(F.lit(1_704_067_200) + seconds)  # from 2024-01-01


def _stamped(frame: DataFrame, name: str) -> DataFrame:
    schema = tables.validated_schema(load_contracts()[name])
    frame = frame.withColumns(
        {
            "_warnings": F.array().cast("array<string>"),
            "_row_hash": F.xxhash64(*[F.col(c) for c in frame.columns]),
            "_batch_id": F.lit(HISTORY),
            "_processing_date": F.lit("2026-01-01").cast("date"),
            "_source_file": F.lit(f"history/{name}.csv"),
        }
    )
    return frame.select(*[F.col(f.name).cast(f.dataType) for f in schema.fields])


def _history(spark: SparkSession, lake: Path) -> None:
    """A clean history written to the validated tables as validate creates them (schema and
    properties), without running validate over 2M rows."""
    products = spark.range(1, PRODUCTS + 1).select(
        F.col("id"),
        F.concat(F.lit("SKU-"), F.col("id")).alias("sku"),
        ((F.col("id") % 90) + 5).alias("cost"),
        F.element_at(F.array(*map(F.lit, CATEGORIES)), (F.col("id") % 5 + 1).cast("int")).alias("category"),
        F.concat(F.lit("Product "), F.col("id")).alias("name"),
        F.lit("Brand").alias("brand"),
        ((F.col("id") % 90) + 10).alias("retail_price"),
        F.lit("Women").alias("department"),
    )
    created = _day(F.col("order_id"))
    orders = (
        spark.range(1, ORDERS + 1)
        .withColumnRenamed("id", "order_id")
        .select(
            "order_id",
            (F.col("order_id") % USERS + 1).alias("user_id"),
            F.lit("complete").alias("status"),
            created.alias("created_at"),
            F.lit(None).alias("returned_at"),
            (created + F.expr("INTERVAL 1 DAY")).alias("shipped_at"),
            (created + F.expr("INTERVAL 2 DAYS")).alias("delivered_at"),
            F.lit(3).alias("num_of_item"),
        )
    )
    order_id = (F.col("id") - 1) % ORDERS + 1
    items = spark.range(1, ITEMS + 1).select(
        "id",
        order_id.alias("order_id"),
        (order_id % USERS + 1).alias("user_id"),
        (F.col("id") % PRODUCTS + 1).alias("product_id"),
        F.lit("complete").alias("status"),
        _day(order_id).alias("created_at"),
        (_day(order_id) + F.expr("INTERVAL 1 DAY")).alias("shipped_at"),
        (_day(order_id) + F.expr("INTERVAL 2 DAYS")).alias("delivered_at"),
        F.lit(None).alias("returned_at"),
        ((F.col("id") % 20_000) / 100 + 1).alias("sale_price"),
    )
    contracts = load_contracts()
    for name, frame in (("products", products), ("orders", orders), ("order_items", items)):
        uri = str(lake / "validated" / name)
        delta.ensure_table(
            spark, uri, tables.validated_schema(contracts[name]), validated_properties(deletion_vectors=True)
        )
        with delta.tagged(spark, HISTORY):
            _stamped(frame, name).write.format("delta").mode("append").save(uri)


def _batch(folder: Path) -> Path:
    """A day's items: the first CORRECTED of the lake's re-delivered as returned, NEW new ones."""
    rows = ["id,order_id,user_id,product_id,status,created_at,shipped_at,delivered_at,returned_at,sale_price"]
    for item in range(1, CORRECTED + NEW + 1):
        key = item if item <= CORRECTED else ITEMS + item
        order = (item - 1) % ORDERS + 1
        returned = item <= CORRECTED
        rows.append(
            f"{key},{order},{order % USERS + 1},{item % PRODUCTS + 1},"
            f"{'returned' if returned else 'processing'},2026-01-02 10:00:00+00:00,"
            + (
                "2026-01-02 12:00:00+00:00,2026-01-02 14:00:00+00:00,2026-01-02 16:00:00+00:00"
                if returned
                else ",,"
            )
            + f",{item % 50 + 1}.25"
        )
    path = folder / "order_items.csv"
    write_csv(path, "\n".join(rows) + "\n")
    return path


def _errors(stderr: str) -> list[str]:
    """The job's ERROR log lines, each with its exception's own lines (not the JVM's stack trace)."""
    out = []
    for line in stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "ERROR":
            trace = str(entry.get("exception", "")).splitlines()
            out += [
                str(entry.get("message", "")),
                *[t[:300] for t in trace if "Error" in t or "Exception" in t],
            ]
    return out


def test_a_small_batch_into_a_big_lake_runs_in_the_smallest_heap(spark: SparkSession, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    _history(spark, lake)
    # The history's KPIs, so that the day's transform adds its change to them (its daily path).
    history = ValidationResult(
        batch_id=HISTORY, status=BatchStatus.SUCCEEDED, started_at="2026-01-01T00:00:00"
    )
    write_result(history, Lake(str(lake)).result(HISTORY, "validate"), Settings(lake_root=str(lake)))
    assert transform.main(["--batch-id", HISTORY, "--lake-root", str(lake)], spark=spark) == 0

    items = _batch(tmp_path)
    args = ["--batch-id", DAY, "--order-items", str(items), "--lake-root", str(lake)]
    validated = run_local_job("jobs.validate", args, tmp_path, HEAP)
    assert validated.returncode == 0, _errors(validated.stderr)
    result = json.loads((lake / "_results" / DAY / "validate.json").read_text())
    assert result["status"] == "SUCCEEDED", result["errors"]
    published = result["datasets"]["order_items"]
    assert (published["rows_read"], published["rows_valid"]) == (CORRECTED + NEW, CORRECTED + NEW)
    assert published["validated_table"]["rows_updated"] == CORRECTED
    assert published["validated_table"]["rows_inserted"] == NEW

    transformed = run_local_job(
        "jobs.transform", ["--batch-id", DAY, "--lake-root", str(lake)], tmp_path, HEAP
    )
    assert transformed.returncode == 0, _errors(transformed.stderr)
    kpis = json.loads((lake / "_results" / DAY / "transform.json").read_text())
    assert kpis["status"] == "SUCCEEDED"
    # Every item's order keeps its date, so the dates touched are those of the batch's items' orders
    # (orders 1 to 2,000, one per item: their dates, found here from the history's rule).
    dates = {
        r["d"].isoformat()
        for r in spark.range(1, CORRECTED + NEW + 1).select(F.to_date(_day(F.col("id"))).alias("d")).collect()
    }
    assert set(kpis["touched_dates"]) == dates
    returned = (
        spark.read.format("delta")
        .load(str(lake / "validated" / "order_items"))
        .where(F.col("status") == "returned")
        .count()
    )
    assert returned == CORRECTED
