"""Transform one validated batch into daily KPIs: the I/O around :mod:`common.kpis`.

KPIs of every order date the batch touched are recomputed from the whole validated state (never
from the batch alone), then written to DynamoDB (puts, and deletes of keys that no longer exist)
and to Delta (``<lake>/kpi/*`` rows of those dates replaced atomically). DynamoDB goes first:
if it fails, a re-run still sees the previous Delta rows and so still knows which keys to delete.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import delta_io, dynamo, kpis, storage
from common.validate_batch import validated_uri

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

ORDER_KEYS = ["order_date"]
CATEGORY_KEYS = ["category", "order_date"]


def kpi_uri(settings: Settings, table: str) -> str:
    return storage.join_uri(settings.lake_root, "kpi", table)


@dataclass
class KpiOutput:
    table: str
    keys: list[str]
    rows: int = 0
    delta: dict[str, Any] | None = None
    dynamodb: dict[str, Any] | None = None
    data: pa.Table | None = None  # the rows written (small: dates x categories)


@dataclass
class TransformOutcome:
    touched_dates: list[str] = field(default_factory=list)
    outputs: list[KpiOutput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Lake:
    """Exports of the validated tables into local Parquet that Spark reads."""

    def __init__(self, spark: SparkSession, settings: Settings, work_dir: Path) -> None:
        self.spark, self.settings, self.work_dir = spark, settings, work_dir

    def read(self, dataset: str, columns: list[str], version: int | None = None) -> DataFrame | None:
        suffix = "" if version is None else f"@{version}"
        dest = self.work_dir / "lake" / f"{dataset}{suffix}.parquet"
        path = delta_io.export_columns(
            validated_uri(self.settings, dataset), columns, dest, self.settings, version=version
        )
        return None if path is None else self.spark.read.parquet(str(path))

    def before_batch(self, dataset: str, columns: list[str], batch_id: str) -> DataFrame | None:
        """The table as it was before ``batch_id`` first wrote to it (None if it created it)."""
        first = delta_io.first_version_of_batch(
            validated_uri(self.settings, dataset), batch_id, self.settings
        )
        if first is None or first == 0:
            return None
        return self.read(dataset, columns, version=first - 1)


def _date_list(dates: list[str]) -> str:
    return ", ".join(f"CAST('{d}' AS DATE)" for d in dates)


def _previous_keys(settings: Settings, table: str, keys: list[str], dates: list[str]) -> set[tuple[Any, ...]]:
    """Keys the KPI Delta table holds for ``dates`` now (before this run replaces them)."""
    existing = delta_io.open_table(kpi_uri(settings, table), settings)
    if existing is None:
        return set()
    wanted = pa.array([dt.date.fromisoformat(d) for d in dates], pa.date32())
    rows = existing.to_pyarrow_dataset().to_table(columns=keys, filter=pads.field("order_date").isin(wanted))
    return {tuple(_plain(v) for v in row.values()) for row in rows.to_pylist()}


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _write_output(
    settings: Settings,
    output: KpiOutput,
    frame: DataFrame,
    dates: list[str],
    batch_id: str,
    dynamo_table: str | None,
    client: Any,
) -> None:
    table = frame.orderBy(*output.keys).toArrow()
    output.rows = table.num_rows
    output.data = table
    if dynamo_table:
        previous = _previous_keys(settings, output.table, output.keys, dates)
        items = [{k: _plain(v) for k, v in row.items()} for row in table.to_pylist()]
        current = {tuple(item[k] for k in output.keys) for item in items}
        deletes = [dict(zip(output.keys, key, strict=True)) for key in sorted(previous - current)]
        stats = dynamo.batch_write(client, dynamo_table, items, deletes, output.keys)
        output.dynamodb = {"table": dynamo_table, **stats.__dict__}
    outcome = delta_io.replace_where(
        kpi_uri(settings, output.table), table, f"order_date IN ({_date_list(dates)})", settings, batch_id
    )
    output.delta = outcome.as_dict()


def run_transform(
    spark: SparkSession, settings: Settings, batch_id: str, work_dir: Path, computed_at: dt.datetime
) -> TransformOutcome:
    """Recompute and publish the KPIs of every order date ``batch_id`` touched.

    Raises:
        StorageError: a Delta table cannot be read or written.
        DynamoWriteError: DynamoDB items could not be written after retries.
    """
    outcome = TransformOutcome()
    clock = time.monotonic()
    lake = _Lake(spark, settings, work_dir)
    orders = lake.read("orders", ["order_id", "user_id", "status", "created_at", "_batch_id"])
    items = lake.read("order_items", ["id", "order_id", "product_id", "status", "sale_price", "_batch_id"])
    products = lake.read("products", ["id", "category", "_batch_id"])
    if orders is None or items is None:
        outcome.notes.append("no validated orders or order items yet: nothing to compute")
        return outcome
    dates_df = kpis.touched_dates(
        orders,
        items,
        products,
        lake.before_batch("orders", ["order_id", "created_at"], batch_id),
        lake.before_batch("order_items", ["id", "order_id"], batch_id),
        batch_id,
    )
    outcome.touched_dates = sorted(r["order_date"].isoformat() for r in dates_df.collect())
    log.info("touched dates: %d, found in %.1fs", len(outcome.touched_dates), time.monotonic() - clock)
    if not outcome.touched_dates:
        outcome.notes.append(f"batch {batch_id} changed no validated rows: no KPI to recompute")
        return outcome
    dated = kpis.restrict_to_dates(kpis.with_order_date(orders), dates_df)
    stamp = {"batch_id": F.lit(batch_id), "computed_at": F.lit(computed_at.isoformat())}
    order_frame = kpis.order_daily(dated, items).withColumns(stamp)
    if products is None:
        outcome.notes.append("no validated products yet: category KPIs skipped")
        frames = [(KpiOutput("order_daily", ORDER_KEYS), order_frame, settings.dynamodb_order_table)]
    else:
        category_frame = kpis.category_daily(dated, items, products).withColumns(stamp)
        frames = [
            (KpiOutput("order_daily", ORDER_KEYS), order_frame, settings.dynamodb_order_table),
            (KpiOutput("category_daily", CATEGORY_KEYS), category_frame, settings.dynamodb_category_table),
        ]
    if not (settings.dynamodb_order_table or settings.dynamodb_category_table):
        outcome.notes.append("no DynamoDB table configured: KPIs written to Delta only")
    client = dynamo.dynamodb_client(settings) if any(t for _, _, t in frames) else None
    for output, frame, dynamo_table in frames:
        clock = time.monotonic()
        _write_output(settings, output, frame, outcome.touched_dates, batch_id, dynamo_table, client)
        outcome.outputs.append(output)
        log.info(
            "%s: %d rows computed and written in %.1fs", output.table, output.rows, time.monotonic() - clock
        )
    return outcome
