"""Transform one validated batch into daily KPIs: the I/O around :mod:`common.engine.kpis`.

KPIs of every order date the batch touched are recomputed from the whole validated state (never
from the batch alone), then written to DynamoDB (puts, and deletes of keys that no longer exist)
and to Delta (``<lake>/kpi/*`` rows of those dates replaced atomically). DynamoDB goes first:
if it fails, a re-run still sees the previous Delta rows and so still knows which keys to delete.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.engine import kpis
from common.io import delta, dynamo
from common.io.lake import Lake
from common.io.lease import LeaseCheck, lake_lease
from common.usecases import catalog
from common.usecases.side_by_side import run_side_by_side

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

ORDER_KEYS = ["order_date"]
CATEGORY_KEYS = ["category", "order_date"]


@dataclass
class KpiOutput:
    table: str
    keys: list[str]
    schema: T.StructType  # declared in the engine: the table is created from it, the catalog shows it
    rows: int = 0
    delta: dict[str, Any] | None = None
    dynamodb: dict[str, Any] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)  # the rows written (small: dates x categories)


@dataclass
class TransformOutcome:
    touched_dates: list[str] = field(default_factory=list)
    outputs: list[KpiOutput] = field(default_factory=list)
    catalog: dict[str, str] = field(default_factory=dict)  # Glue table -> created|updated|unchanged
    notes: list[str] = field(default_factory=list)


class _Validated:
    """The validated tables, read by Spark straight from the lake (time travel for old states)."""

    def __init__(self, spark: SparkSession, lake: Lake) -> None:
        self.spark, self.lake = spark, lake

    def read(self, dataset: str, columns: list[str], version: int | None = None) -> DataFrame | None:
        frame = delta.read(self.spark, self.lake.validated(dataset), version)
        return None if frame is None else frame.select(*columns)

    def before_batch(self, dataset: str, columns: list[str], batch_id: str) -> DataFrame | None:
        """The table as it was before ``batch_id`` first wrote to it (None if it created it)."""
        before = delta.version_before_batch(self.spark, self.lake.validated(dataset), batch_id)
        return None if before is None else self.read(dataset, columns, version=before)


@contextmanager
def _kept(frame: DataFrame) -> Iterator[None]:
    """``frame`` persisted for the block: the queries run in it that contain it share it."""
    frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield
    finally:
        frame.unpersist()


def _date_list(dates: list[str]) -> str:
    return ", ".join(f"DATE'{d}'" for d in dates)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _previous_keys(spark: SparkSession, uri: str, keys: list[str], dates: list[str]) -> set[tuple[Any, ...]]:
    """Keys the KPI Delta table holds for ``dates`` now (before this run replaces them)."""
    existing = delta.read(spark, uri)
    if existing is None:
        return set()
    rows = existing.where(f"order_date IN ({_date_list(dates)})").select(*keys).collect()
    return {tuple(_plain(row[k]) for k in keys) for row in rows}


def _write_output(
    spark: SparkSession,
    lake: Lake,
    output: KpiOutput,
    frame: DataFrame,
    dates: list[str],
    batch_id: str,
    dynamo_table: str | None,
    client: Any,
) -> None:
    # KPI rows are aggregates (dates x categories): small enough to hold for DynamoDB and the report.
    # One file per write: a few thousand aggregate rows (coalesced after the sort, so still sorted).
    frame = frame.orderBy(*output.keys).coalesce(1)
    with _kept(frame):
        rows = [row.asDict() for row in frame.collect()]
        output.rows = len(rows)
        output.data = rows
        uri = lake.kpi(output.table)
        if dynamo_table:
            previous = _previous_keys(spark, uri, output.keys, dates)
            items = [{k: _plain(v) for k, v in row.items()} for row in rows]
            current = {tuple(item[k] for k in output.keys) for item in items}
            deletes = [dict(zip(output.keys, key, strict=True)) for key in sorted(previous - current)]
            stats = dynamo.batch_write(client, dynamo_table, items, deletes, output.keys)
            output.dynamodb = {"table": dynamo_table, **stats.__dict__}
        outcome = delta.replace_where(
            spark, uri, frame, output.schema, f"order_date IN ({_date_list(dates)})", batch_id
        )
        output.delta = outcome.as_dict()


def run_transform(
    spark: SparkSession, settings: Settings, batch_id: str, computed_at: dt.datetime
) -> TransformOutcome:
    """Recompute and publish the KPIs of every order date ``batch_id`` touched.

    Raises:
        StorageError: a Delta table cannot be read or written.
        DynamoWriteError: DynamoDB items could not be written after retries.
    """
    with lake_lease(settings, "transform") as lease:
        return _transform(spark, settings, batch_id, computed_at, lease)


def _transform(
    spark: SparkSession, settings: Settings, batch_id: str, computed_at: dt.datetime, lease: LeaseCheck
) -> TransformOutcome:
    outcome = TransformOutcome()
    clock = time.monotonic()
    lake = Lake(settings.lake_root)
    validated = _Validated(spark, lake)
    orders = validated.read("orders", ["order_id", "user_id", "status", "created_at", "_batch_id"])
    items = validated.read(
        "order_items", ["id", "order_id", "product_id", "status", "sale_price", "_batch_id"]
    )
    products = validated.read("products", ["id", "category", "_batch_id"])
    if orders is None or items is None:
        outcome.notes.append("no validated orders or order items yet: nothing to compute")
        return outcome
    dates_df = kpis.touched_dates(
        orders,
        items,
        products,
        validated.before_batch("orders", ["order_id", "created_at"], batch_id),
        validated.before_batch("order_items", ["id", "order_id"], batch_id),
        batch_id,
    )
    touched = sorted(r["order_date"] for r in dates_df.collect())
    outcome.touched_dates = [d.isoformat() for d in touched]
    log.info("touched dates: %d, found in %.1fs", len(outcome.touched_dates), time.monotonic() - clock)
    if not outcome.touched_dates:
        outcome.notes.append(f"batch {batch_id} changed no validated rows: no KPI to recompute")
        return outcome
    # The (few) collected dates, not the plan that found them: it would be evaluated again.
    dates = spark.createDataFrame([(d,) for d in touched], "order_date date")
    dated = kpis.restrict_to_dates(kpis.with_order_date(orders), dates)
    lines = kpis.order_lines(dated, items)
    stamp = {"batch_id": F.lit(batch_id), "computed_at": F.lit(computed_at.isoformat())}
    order_frame = kpis.order_daily(dated, lines).withColumns(stamp)
    if products is None:
        outcome.notes.append("no validated products yet: category KPIs skipped")
        frames = [
            (
                KpiOutput("order_daily", ORDER_KEYS, kpis.ORDER_DAILY_SCHEMA),
                order_frame,
                settings.dynamodb_order_table,
            )
        ]
    else:
        category_frame = kpis.category_daily(lines, products).withColumns(stamp)
        frames = [
            (
                KpiOutput("order_daily", ORDER_KEYS, kpis.ORDER_DAILY_SCHEMA),
                order_frame,
                settings.dynamodb_order_table,
            ),
            (
                KpiOutput("category_daily", CATEGORY_KEYS, kpis.CATEGORY_DAILY_SCHEMA),
                category_frame,
                settings.dynamodb_category_table,
            ),
        ]
    if not (settings.dynamodb_order_table or settings.dynamodb_category_table):
        outcome.notes.append("no DynamoDB table configured: KPIs written to Delta only")
    client = dynamo.dynamodb_client(settings) if any(t for _, _, t in frames) else None

    def write(output: KpiOutput, frame: DataFrame, dynamo_table: str | None) -> None:
        clock = time.monotonic()
        lease.check()
        _write_output(spark, lake, output, frame, outcome.touched_dates, batch_id, dynamo_table, client)
        log.info(
            "%s: %d rows computed and written in %.1fs", output.table, output.rows, time.monotonic() - clock
        )

    # The outputs are independent tables: computed and written side by side, one batch tag; both
    # aggregate the same lines, kept meanwhile.
    with delta.tagged(spark, batch_id), _kept(lines):
        run_side_by_side([partial(write, *entry) for entry in frames], "kpi")
    outcome.outputs.extend(output for output, _, _ in frames)
    written = {o.table for o in outcome.outputs}
    outcome.catalog = catalog.register(settings, [t for t in catalog.kpi_tables(lake) if t.source in written])
    return outcome
