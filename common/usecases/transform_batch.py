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
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.engine import kpis
from common.io import delta, dynamo
from common.io.lake import Lake
from common.io.lease import LeaseCheck, lake_lease
from common.io.spark import BROADCAST_MAX_ROWS, kept
from common.usecases import catalog
from common.usecases.side_by_side import run_side_by_side

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class KpiOutput:
    spec: kpis.KpiTable  # declared in the engine: the table is created from it, the catalog shows it
    rows: int = 0
    delta: dict[str, Any] | None = None
    dynamodb: dict[str, Any] | None = None
    data: list[dict[str, Any]] = field(default_factory=list)  # the rows written (small: dates x categories)

    @property
    def table(self) -> str:
        return self.spec.name

    @property
    def keys(self) -> list[str]:
        return list(self.spec.keys)


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
        self._history: dict[str, list[delta.Commit] | None] = {}

    def read(self, dataset: str, columns: list[str], version: int | None = None) -> DataFrame | None:
        frame = delta.read(self.spark, self.lake.validated(dataset), version)
        return None if frame is None else frame.select(*columns)

    def history(self, dataset: str) -> list[delta.Commit] | None:
        """The table's commits (read once), or None when there is no table."""
        if dataset not in self._history:
            uri = self.lake.validated(dataset)
            self._history[dataset] = delta.commits(self.spark, uri) if delta.exists(self.spark, uri) else None
        return self._history[dataset]

    def before_batch(self, dataset: str, columns: list[str], batch_id: str) -> DataFrame | None:
        """The table as it was before ``batch_id`` first wrote to it: as it is now when the batch
        never wrote to it, None when there were no rows before (or no table)."""
        history = self.history(dataset)
        if history is None:
            return None
        if not any(c.batch_id == batch_id for c in history):
            return self.read(dataset, columns)
        before = delta.version_before_batch(history, batch_id)
        return None if before is None else self.read(dataset, columns, version=before)


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
    with kept(frame):
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
        delta.evolve(spark, uri, output.spec.schema, migrate=False)  # a table written before a column existed
        outcome = delta.replace_where(
            spark, uri, frame, output.spec.schema, f"order_date IN ({_date_list(dates)})", batch_id
        )
        output.delta = outcome.as_dict()


def run_transform(
    spark: SparkSession, settings: Settings, lake: Lake, batch_id: str, computed_at: dt.datetime
) -> TransformOutcome:
    """Recompute and publish the KPIs of every order date ``batch_id`` touched.

    Raises:
        StorageError: a Delta table cannot be read or written.
        DynamoWriteError: DynamoDB items could not be written after retries.
    """
    with lake_lease(settings, "transform") as lease:
        return _transform(_Run(spark, settings, lake, batch_id, computed_at, lease))


@dataclass(frozen=True)
class _Run:
    """One transform run: what computing and publishing its KPIs both need."""

    spark: SparkSession
    settings: Settings
    lake: Lake
    batch_id: str
    computed_at: dt.datetime
    lease: LeaseCheck


ORDER_COLUMNS = ["order_id", "user_id", "status", "created_at"]
ITEM_COLUMNS = ["id", "order_id", "product_id", "status", "sale_price"]
PRODUCT_COLUMNS = ["id", "category"]
# Commits that change no row: they never make a KPI row out of date.
_NO_DATA_CHANGE = {
    "CREATE TABLE",
    "OPTIMIZE",
    "VACUUM START",
    "VACUUM END",
    "SET TBLPROPERTIES",
    "ADD COLUMNS",
}
# How the result says the KPI rows were found.
ADDED = "KPIs: the touched dates' stored rows plus this batch's change (its affected orders only)"
RECOMPUTED = (
    "KPIs: the touched dates recomputed from the validated tables (the stored rows do not hold "
    "exactly the batches before this one, or too many orders were affected)"
)
# The note after RECOMPUTED that says which condition failed.
RECOMPUTED_BECAUSE = "KPIs recomputed because "
# Past this many affected orders (the most whose (date, user) pairs can be broadcast), adding the
# batch's change is no cheaper than recomputing its dates.
MAX_AFFECTED_ORDERS = BROADCAST_MAX_ROWS // 2


def _data_commits(history: list[delta.Commit] | None) -> tuple[list[delta.Commit], bool] | None:
    """Of a table's commits (None: no table), those that change rows, and whether its log still
    begins at version 0."""
    if history is None:
        return None
    complete = bool(history) and history[0].version == 0
    return [c for c in history if c.operation not in _NO_DATA_CHANGE], complete


def _kpi_history(spark: SparkSession, uri: str) -> list[delta.Commit] | None:
    return delta.commits(spark, uri) if delta.exists(spark, uri) else None


class _Missing(Exception):
    """The stored KPI rows cannot be added to (the message says why): recompute instead."""


def _kpi_bases(
    spark: SparkSession, lake: Lake, validated_tables: _Validated, batch_id: str, tables: list[str]
) -> dict[str, int]:
    """The version of each KPI table that a change can be added to.

    The KPI rows before this batch's transform hold every batch before it exactly when: no other
    batch has changed a validated table since this batch's first commit to one; and each KPI table,
    as it was before this batch's transform first wrote it, was last written by the transform of
    the batch that changed the validated tables just before this one (none for an empty lake).
    The logs need not begin at version 0 (Delta's cleanup cuts them), only show those commits.
    A re-run of the last batch's transform finds the same versions: it gives the same rows.

    Raises:
        _Missing: a full recompute is needed (the first batch, or the rule above does not hold).
    """
    validated: list[delta.Commit] = []
    horizons: list[dt.datetime] = []  # the first commit still shown by each log cut by Delta's cleanup
    for name in ("orders", "order_items", "products"):
        history = validated_tables.history(name)
        found = _data_commits(history)
        if history is None or found is None:
            continue
        commits, complete = found
        if not complete:
            horizons.append(history[0].timestamp)
        properties = delta.describe(spark, lake.validated(name)).properties
        if any(properties.get(k) != v for k, v in delta.IN_COMMIT_TIMESTAMPS.items()):
            raise _Missing(f"{name}'s commit times come from files: their order across tables is not trusted")
        validated += commits
    mine = [c for c in validated if c.batch_id == batch_id]
    if not mine:
        raise _Missing("the validated tables' logs show no commit of this batch")
    first = min(c.timestamp for c in mine)
    if any(c.batch_id != batch_id for c in validated if c.timestamp >= first):
        raise _Missing("a later batch (or an untagged write) changed the validated tables after this batch")
    earlier = sorted((c for c in validated if c.timestamp < first), key=lambda c: c.timestamp)
    previous = earlier[-1].batch_id if earlier else None
    if earlier and previous is None:
        raise _Missing("the last change to the validated tables before this batch was not a batch's")
    # Delta drops log entries older than the log's retention (30 days) once a checkpoint covers
    # them, so a lake's logs soon stop beginning at version 0. A cut log hides only commits older
    # than the first one it shows: the last commit before this batch is among those shown when
    # no log's first shown commit is later than it. Otherwise (or when none is shown) recompute.
    if horizons and (not earlier or max(horizons) > earlier[-1].timestamp):
        raise _Missing("a validated table's log no longer shows the commits just before this batch")
    if previous is None:
        raise _Missing("no batch came before this one: no KPI rows to add to")
    bases: dict[str, int] = {}
    for table in tables:
        found = _data_commits(_kpi_history(spark, lake.kpi(table)))
        if found is None:
            raise _Missing(f"kpi/{table} does not exist yet")
        commits, _ = found
        own = [c.version for c in commits if c.batch_id == batch_id]
        base = min(own) - 1 if own else max((c.version for c in commits), default=-1)
        before = [c for c in commits if c.version <= base]
        if any(c.batch_id != batch_id for c in commits if c.version > base):
            raise _Missing(f"another batch's transform wrote kpi/{table} after this batch's")
        if not before or before[-1].batch_id != previous:
            raise _Missing(f"kpi/{table} was not last written by the transform of the batch before this one")
        bases[table] = base
    return bases


def _stored_parts(
    spark: SparkSession,
    uri: str,
    version: int,
    where: str,
    parts: Callable[[DataFrame], DataFrame],
    keep: Callable[[DataFrame], DataFrame],
) -> DataFrame:
    """The parts of the KPI rows matching ``where`` at ``version``, kept (``keep``) until the
    caller's outputs are written.

    Raises:
        _Missing: a row lacks a part.
    """
    rows = delta.read(spark, uri, version)
    assert rows is not None
    written_before = f"{uri} holds rows written before their additive parts were kept"
    if not {"returned_orders", "returned_items"} & set(rows.columns):
        raise _Missing(written_before)
    stored = keep(parts(rows.where(where)))
    if stored.where(" OR ".join(f"`{c}` IS NULL" for c in stored.columns)).limit(1).count():
        raise _Missing(written_before)
    return stored


def _transform(run: _Run) -> TransformOutcome:
    spark, lake, batch_id = run.spark, run.lake, run.batch_id
    outcome = TransformOutcome()
    clock = time.monotonic()
    validated = _Validated(spark, lake)
    orders = validated.read("orders", [*ORDER_COLUMNS, "_batch_id"])
    items = validated.read("order_items", [*ITEM_COLUMNS, "_batch_id"])
    products = validated.read("products", [*PRODUCT_COLUMNS, "_batch_id"])
    if orders is None or items is None:
        outcome.notes.append("no validated orders or order items yet: nothing to compute")
        return outcome
    tables = [kpis.ORDER_DAILY.name] + ([] if products is None else [kpis.CATEGORY_DAILY.name])
    before = kpis.State(
        validated.before_batch("orders", ORDER_COLUMNS, batch_id),
        validated.before_batch("order_items", ITEM_COLUMNS, batch_id),
        validated.before_batch("products", PRODUCT_COLUMNS, batch_id),
    )
    try:
        bases = _kpi_bases(spark, lake, validated, batch_id, tables)
        with ExitStack() as held:  # every frame kept below is released when the block ends

            def keep(frame: DataFrame) -> DataFrame:
                return held.enter_context(kept(frame))

            frames = _added(
                spark, lake, validated, orders, items, products, before, batch_id, bases, outcome, keep
            )
            if frames is None:
                outcome.notes.append(f"batch {batch_id} changed no validated rows: no KPI to recompute")
                return outcome
            log.info(
                "touched dates: %d, their KPIs found in %.1fs",
                len(outcome.touched_dates),
                time.monotonic() - clock,
            )
            outcome.notes.append(ADDED)
            return _publish(run, outcome, *frames)
    except _Missing as missing:
        outcome.touched_dates = []
        why = f"{RECOMPUTED_BECAUSE}{missing}"
    dates_df = kpis.touched_dates(
        orders,
        items,
        products,
        before.orders,
        before.items,
        batch_id,
    )
    touched = sorted(r["order_date"] for r in dates_df.collect())
    outcome.touched_dates = [d.isoformat() for d in touched]
    log.info("touched dates: %d, found in %.1fs", len(outcome.touched_dates), time.monotonic() - clock)
    if not outcome.touched_dates:
        outcome.notes.append(f"batch {batch_id} changed no validated rows: no KPI to recompute")
        return outcome
    outcome.notes += [RECOMPUTED, why]
    # The (few) collected dates, not the plan that found them: it would be evaluated again.
    dates = spark.createDataFrame([(d,) for d in touched], "order_date date")
    dated = kpis.restrict_to_dates(kpis.with_order_date(orders), dates)
    lines = kpis.order_lines(dated, items)
    category = None if products is None else kpis.category_daily(lines, products)
    with kept(lines):  # both outputs aggregate the same lines
        return _publish(run, outcome, kpis.order_daily(dated, lines), category)


def _added(
    spark: SparkSession,
    lake: Lake,
    validated: _Validated,
    orders: DataFrame,
    items: DataFrame,
    products: DataFrame | None,
    before: kpis.State,
    batch_id: str,
    bases: dict[str, int],
    outcome: TransformOutcome,
    keep: Callable[[DataFrame], DataFrame],
) -> tuple[DataFrame, DataFrame | None] | None:
    """The KPI rows of the dates the batch touched, as the stored rows plus the batch's change
    (its affected orders' parts after less before): the work follows the batch, not the lake.
    Sets ``outcome.touched_dates``; None when the batch touched no date. ``keep`` persists the few
    rows used more than once (until the caller has written the outputs).

    Raises:
        _Missing: a stored row lacks a part, or the batch affects too many orders: recompute.
    """
    clock = time.monotonic()
    # Items the batch only added leave every earlier item as it was: the earlier state of the
    # affected orders' items is then the current one less the batch's own rows, and no earlier
    # order of a changed item needs looking up (two scans of the largest table saved).
    item_history = validated.history("order_items")
    items_changed = item_history is not None and delta.changed_existing_rows(item_history, batch_id)
    recategorised = None
    if products is not None and before.products is not None:
        found = keep(kpis.recategorised(products, before.products, batch_id))
        recategorised = None if found.isEmpty() else found
    affected = keep(
        kpis.affected_orders(orders, items, recategorised, before.items if items_changed else None, batch_id)
    )
    count = affected.count()
    log.info("affected orders: %d, found in %.1fs", count, time.monotonic() - clock)
    if count > MAX_AFFECTED_ORDERS:
        raise _Missing(f"the batch affects {count} orders, over {MAX_AFFECTED_ORDERS}")
    small = 2 * count <= BROADCAST_MAX_ROWS
    their_items = keep(items.join(F.broadcast(affected) if small else affected, "order_id", "left_semi"))
    if not items_changed and before.items is not None:
        mine = F.col("_batch_id") == F.lit(batch_id)
        before = kpis.State(before.orders, their_items.where(~mine).drop("_batch_id"), before.products)
    after = kpis.State(
        orders.drop("_batch_id"),
        their_items.drop("_batch_id"),
        None if products is None else products.drop("_batch_id"),
    )
    order_change, category_change = kpis.parts_change(before, after, affected, small, keep=keep)
    assert order_change is not None
    order_change = keep(order_change)
    touched = sorted(r["order_date"] for r in order_change.select("order_date").collect())
    outcome.touched_dates = [d.isoformat() for d in touched]
    if not touched:
        return None
    where = f"order_date IN ({_date_list(outcome.touched_dates)})"
    stored = _stored_parts(
        spark, lake.kpi(kpis.ORDER_DAILY.name), bases[kpis.ORDER_DAILY.name], where, kpis.order_parts_of, keep
    )
    order_parts = kpis.apply_change(stored, order_change, list(kpis.ORDER_DAILY.keys), kpis.ORDER_PARTS)
    order_frame = kpis.order_from_parts(order_parts.where("total_orders > 0"))
    if products is None or category_change is None:
        return order_frame, None
    stored = _stored_parts(
        spark,
        lake.kpi(kpis.CATEGORY_DAILY.name),
        bases[kpis.CATEGORY_DAILY.name],
        where,
        kpis.category_parts_of,
        keep,
    )
    category_parts = kpis.apply_change(
        stored, category_change, list(kpis.CATEGORY_DAILY.keys), kpis.CATEGORY_PARTS
    )
    return order_frame, kpis.category_from_parts(category_parts.where("items > 0"))


def _publish(
    run: _Run, outcome: TransformOutcome, order_frame: DataFrame, category_frame: DataFrame | None
) -> TransformOutcome:
    """Write the KPI rows of ``outcome.touched_dates`` (DynamoDB, then Delta) and register the tables."""
    spark, settings, lake, batch_id = run.spark, run.settings, run.lake, run.batch_id
    stamp = {"batch_id": F.lit(batch_id), "computed_at": F.lit(run.computed_at.isoformat())}
    frames = [
        (
            KpiOutput(kpis.ORDER_DAILY),
            order_frame.withColumns(stamp),
            settings.dynamodb_order_table,
        )
    ]
    if category_frame is None:
        outcome.notes.append("no validated products yet: category KPIs skipped")
    else:
        frames.append(
            (
                KpiOutput(kpis.CATEGORY_DAILY),
                category_frame.withColumns(stamp),
                settings.dynamodb_category_table,
            )
        )
    if not (settings.dynamodb_order_table or settings.dynamodb_category_table):
        outcome.notes.append("no DynamoDB table configured: KPIs written to Delta only")
    client = dynamo.dynamodb_client(settings) if any(t for _, _, t in frames) else None

    def write(output: KpiOutput, frame: DataFrame, dynamo_table: str | None) -> None:
        clock = time.monotonic()
        run.lease.check()
        _write_output(spark, lake, output, frame, outcome.touched_dates, batch_id, dynamo_table, client)
        log.info(
            "%s: %d rows computed and written in %.1fs", output.table, output.rows, time.monotonic() - clock
        )

    # The outputs are independent tables: computed and written side by side, one batch tag.
    with delta.tagged(spark, batch_id):
        run_side_by_side([partial(write, *entry) for entry in frames], "kpi")
    outcome.outputs.extend(output for output, _, _ in frames)
    written = {o.table for o in outcome.outputs}
    outcome.catalog = catalog.register(settings, [t for t in catalog.kpi_tables(lake) if t.source in written])
    return outcome
