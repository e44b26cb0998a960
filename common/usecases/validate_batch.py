"""Validate one batch: the I/O around the pure engine in :mod:`common.engine`.

Per dataset, parents first, in waves (products and orders side by side in driver threads, then
order_items, which references both): check each file's header from
its first bytes -> count rows read (Spark, apart from the plan) -> one Spark plan that evaluates
every rule, kept (persisted) for what follows -> tallies in one aggregation and the row-accounting
check. Then, only if the whole batch passed, valid rows are merged into
``<lake>/validated/<dataset>`` (write-audit-publish); quarantined rows always replace this
batch's rows in ``<lake>/quarantine/<dataset>``; wave by wave again, a wave's tables (and the
report's samples) side by side. Spark reads the raw files and writes the tables
itself, locally or on S3, so the same job scales out on a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.contracts import DATASETS, Contract, ForeignKey
from common.contracts.columns import BATCH_ID, PARKED_SINCE, QUALITY, ROW_HASH
from common.contracts.loader import contract_path
from common.contracts.model import quote_literal
from common.engine import park, tables
from common.engine.annotate import VALID, ParentKeys, annotate, parent_key_states, rule_problems
from common.engine.parsing import clean_text, spark_type, typed
from common.engine.tallies import Tallies, tally_frame
from common.errors import AccountingError, ContractError, InputFileError
from common.io import delta
from common.io.csv_source import CheckedFile, count_rows, inspect_file, read_raw
from common.io.lake import Lake
from common.io.lease import LeaseCheck, lake_lease
from common.io.manifest import Batch, changed_since_pinned
from common.io.results import (
    SAMPLE_PER_RULE,
    BatchStatus,
    DatasetResult,
    DatasetStatus,
    FileResult,
    ParkResult,
    ValidationResult,
)
from common.io.spark import broadcast_if_small, broadcast_only_when_hinted
from common.usecases import catalog
from common.usecases.side_by_side import run_side_by_side

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

# A later batch's version of a record replaces an earlier one; re-running a batch (same
# content) or an older batch never rewrites a row.
UPDATE_WHEN = delta.UpdateWhen(
    f"t.{ROW_HASH} <> s.{ROW_HASH} AND s.{BATCH_ID} >= t.{BATCH_ID}", (ROW_HASH, BATCH_ID)
)


@dataclass
class _Park:
    """A dataset's parked rows of earlier batches (kept for the run), and the parent keys they
    are re-checked against (found with the batch's own rows' keys, in one pass)."""

    rows: DataFrame
    count: int
    parents: list[ParentKeys] = field(default_factory=list)
    earliest: dt.date | None = None  # this batch's own parked rows, as an earlier run parked them
    rechecked: DataFrame | None = None
    condemned_from: set[str] = field(default_factory=set)  # batches the condemned rows came with

    def release(self) -> None:
        for frame in (self.rows, self.rechecked, *[p.keys for p in self.parents]):
            if frame is not None:
                frame.unpersist()


@dataclass
class _Context:
    spark: SparkSession
    settings: Settings
    batch: Batch
    contracts: dict[str, Contract]
    processing_date: dt.date
    result: ValidationResult
    lake: Lake
    annotated: dict[str, DataFrame] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] | None = None  # quarantined rows for the report
    inspected: dict[tuple[str, str], FileCheck] = field(default_factory=dict)  # inspect_batch's
    parks: dict[str, _Park] = field(default_factory=dict)

    def release(self) -> None:
        for frame in self.annotated.values():
            frame.unpersist()
        self.annotated.clear()
        for kept in self.parks.values():
            kept.release()
        self.parks.clear()


FileCheck = CheckedFile | InputFileError  # a file's header check: usable, or why not


def _inspect(
    batch: Batch, uri: str, contract: Contract, settings: Settings, contracts: dict[str, Contract]
) -> FileCheck:
    if uri in batch.unreadable:
        return InputFileError(uri, batch.unreadable[uri])
    others = [c for c in contracts.values() if c.dataset != contract.dataset]
    try:
        return inspect_file(uri, contract, settings, others, batch.read_from.get(uri))
    except InputFileError as exc:
        return exc


def inspect_batch(
    batch: Batch, contracts: dict[str, Contract], settings: Settings
) -> dict[tuple[str, str], FileCheck]:
    """Every listed file's header checked against its dataset's contract, by (dataset, URI): the
    first bytes of each file and no Spark, so a job can size its batch from them (and each file's
    size is fetched once) before the JVM starts.

    Raises:
        StorageError: a file cannot be read.
    """
    return {
        (name, uri): _inspect(batch, uri, contracts[name], settings, contracts)
        for name, uris in batch.files.items()
        if name in contracts
        for uri in uris
    }


def checked_bytes(checks: dict[tuple[str, str], FileCheck]) -> int:
    """The usable files' bytes (a missing or unusable file counts 0: validating it says so)."""
    return sum(c.size for c in checks.values() if isinstance(c, CheckedFile))


def _check_files(ctx: _Context, contract: Contract, uris: list[str], ds: DatasetResult) -> list[CheckedFile]:
    """Take every file's header check (:func:`inspect_batch`); record each file's problem (all of
    them, not just the first)."""
    checked: list[CheckedFile] = []
    for uri in uris:
        recorded = ctx.batch.versions.get(uri)
        file_result = FileResult(
            uri=uri,
            version_id=recorded.version_id if recorded else None,
            read_from=ctx.batch.read_from.get(uri),
        )
        ds.files.append(file_result)
        item = ctx.inspected[(contract.dataset, uri)]
        if isinstance(item, CheckedFile) and not item.has_rows and not ctx.settings.allow_empty_files:
            item = InputFileError(
                uri,
                "file has a header but no data rows: expected at least one row "
                "(set ECOM_ALLOW_EMPTY_FILES=true to accept empty parts)",
            )
        if isinstance(item, InputFileError):
            _record(ds, file_result, item)
        else:
            checked.append(item)
    return checked


def _record(ds: DatasetResult, file_result: FileResult, exc: InputFileError) -> None:
    """A file's problem, on the file (with what it held) and on its dataset."""
    file_result.error, file_result.excerpt = exc.message, exc.excerpt
    ds.errors.append(str(exc))


def _parent_keys(
    ctx: _Context,
    child: Contract,
    fk: ForeignKey,
    child_rows: DataFrame | None,
    child_count: int,
    parked: _Park | None,
) -> DataFrame | None:
    """Valid and quarantined keys of the referenced dataset: this batch plus the lake. Of the
    lake's tables only the keys referenced by the child's rows (``child_rows``, raw, ``child_count``
    of them) and by its parked rows are read into the check, so its cost follows the batch and the
    park, not the lake. The lake's tables are read as they are now (:func:`delta.pinned`): the
    child's kept rows, checked against them, are not run again when the parents are published."""
    parent_name, parent_column = fk.references.dataset, fk.references.column
    spec = ctx.contracts[parent_name].columns[parent_column]
    key_type = spark_type(spec.type)
    wanted: list[DataFrame] = []
    if child_rows is not None:
        child_key = typed(clean_text(F.col(fk.column)), child.columns[fk.column]).cast(key_type)
        wanted.append(child_rows.select(child_key.alias("key")))
    if parked is not None:
        wanted.append(parked.rows.select(F.col(fk.column).cast(key_type).alias("key")))
    bound = child_count + (parked.count if parked is not None else 0)
    union = wanted[0]
    for frame in wanted[1:]:
        union = union.unionByName(frame)
    referenced = broadcast_if_small(union.where(F.col("key").isNotNull()).distinct(), bound)
    parent_result = ctx.result.datasets.get(parent_name)
    if parent_result is not None and any(f.error for f in parent_result.files):
        ctx.result.datasets[child.dataset].checks_skipped.append(
            f"foreign key {fk.column} -> {fk.reference}: not checked because "
            f"{parent_name} failed its file checks in this batch"
        )
        return None
    valid: list[DataFrame] = []
    quarantined: list[DataFrame] = []
    this_batch = ctx.annotated.get(parent_name)
    if this_batch is not None:
        split = F.col(QUALITY) == VALID
        valid.append(this_batch.where(split).select(F.col(parent_column).alias("key")))
        quarantined.append(this_batch.where(~split).select(F.col(parent_column).alias("key")))
    published = delta.pinned(ctx.spark, ctx.lake.validated(parent_name))
    if published is not None:
        keys = published.select(F.col(parent_column).alias("key"))
        valid.append(keys.join(referenced, "key", "left_semi"))
    held = delta.pinned(ctx.spark, ctx.lake.quarantine(parent_name))
    if held is not None:
        # Quarantined rows keep their text: parse it exactly like the child's foreign key.
        parsed = typed(clean_text(F.col(parent_column)), spec).cast(key_type)
        quarantined.append(held.select(parsed.alias("key")).join(referenced, "key", "left_semi"))
    if not valid and not quarantined:
        return ctx.spark.createDataFrame([], f"key {key_type.simpleString()}, parent_valid boolean")
    # One row per key: at most the keys the child references plus the batch's own parent rows.
    bound += parent_result.rows_read if parent_result is not None else 0
    states = broadcast_if_small(parent_key_states(valid, quarantined), bound)
    if parked is not None:  # used twice (the batch's rows, then the park's): found once
        states = states.persist(StorageLevel.MEMORY_AND_DISK)
    return states


def _open_park(ctx: _Context, contract: Contract) -> _Park | None:
    """The dataset's parked rows of earlier batches, kept for the run, when its contract parks and
    there are any. This batch's own (from an earlier run of it) are not re-checked: this run
    parks them again from its files; only the date they were first parked on is kept."""
    if not contract.parks:
        return None
    table = delta.pinned(ctx.spark, ctx.lake.parked(contract.dataset))
    if table is None:
        return None
    mine = F.col(BATCH_ID) == F.lit(ctx.batch.batch_id)
    # One scan for both: the earlier run's first parking date and how many rows others parked.
    seen = table.agg(F.min(F.when(mine, F.col(PARKED_SINCE))), F.count(F.when(~mine, F.lit(1)))).first()
    earliest, count = (seen[0], int(seen[1])) if seen is not None else (None, 0)
    rows = table.where(~mine)
    if count:
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    kept = _Park(rows, count, earliest=earliest)
    ctx.parks[contract.dataset] = kept
    return kept if count else None


def _validate_dataset(ctx: _Context, contract: Contract) -> None:
    name = contract.dataset
    ds = ctx.result.datasets[name]
    uris = ctx.batch.files.get(name, [])
    parked = _open_park(ctx, contract)
    if not uris:
        ds.status = DatasetStatus.ABSENT
        if parked is not None:  # nothing of its own, but its park is re-checked all the same
            parked.parents = [
                ParentKeys(fk, _parent_keys(ctx, contract, fk, None, 0, parked))
                for fk in contract.foreign_keys
            ]
        return
    clock = time.monotonic()
    checked = _check_files(ctx, contract, uris, ds)
    checked_at = time.monotonic()
    if ds.errors:
        ds.status = DatasetStatus.FAILED
        return
    multiline = ctx.settings.csv_multiline
    # Counted independently of the validation plan, so the accounting check below can catch
    # rows lost or multiplied by it.
    per_file, checked = count_rows(ctx.spark, checked, multiline, ctx.settings.max_line_bytes)
    for file_result in ds.files:
        file_result.rows_read = per_file.get(file_result.uri, 0)
    ds.rows_read = sum(per_file.values())
    too_long = {f.uri: f.too_long_message(ctx.settings.max_line_bytes) for f in checked if f.long_line_bytes}
    if too_long:
        for file_result in ds.files:
            if file_result.uri in too_long:
                _record(ds, file_result, InputFileError(file_result.uri, too_long[file_result.uri]))
        ds.status = DatasetStatus.FAILED
        return
    counted_at = time.monotonic()
    raw_df = read_raw(ctx.spark, checked, contract, multiline, ctx.settings.max_line_bytes)
    parents = [
        ParentKeys(fk, _parent_keys(ctx, contract, fk, raw_df, ds.rows_read, parked))
        for fk in contract.foreign_keys
    ]
    if parked is not None:
        parked.parents = parents
    annotated = annotate(raw_df, contract, parents, ctx.batch.batch_id, ctx.processing_date)
    annotated = annotated.persist(StorageLevel.MEMORY_AND_DISK)
    ctx.annotated[name] = annotated
    stats = Tallies.from_rows(tally_frame(annotated).collect())
    evaluated_at = time.monotonic()
    log.info(
        "%s timings: headers %.1fs, count %.1fs, rules+tallies %.1fs",
        name,
        checked_at - clock,
        counted_at - checked_at,
        evaluated_at - counted_at,
    )
    ds.rows_valid = stats.rows_valid
    ds.rows_quarantined = stats.rows_quarantined
    ds.rows_parked = stats.rows_parked
    ds.duplicates_collapsed = stats.duplicates_collapsed
    ds.rule_counts = dict(sorted(stats.rule_counts.items()))
    ds.parked_counts = dict(sorted(stats.parked_counts.items()))
    ds.warning_counts = dict(sorted(stats.warning_counts.items()))
    ds.rows_with_warnings = stats.rows_with_warnings
    accounted = ds.rows_valid + ds.rows_quarantined + ds.rows_parked + ds.duplicates_collapsed
    if accounted != ds.rows_read:
        raise AccountingError(
            f"{name}: {ds.rows_read} rows read but {ds.rows_valid} valid + {ds.rows_quarantined} quarantined "
            f"+ {ds.rows_parked} parked + {ds.duplicates_collapsed} duplicates collapsed = {accounted}"
        )
    ds.quarantine_share = round(ds.rows_quarantined / ds.rows_read, 6) if ds.rows_read else 0.0
    threshold = ctx.settings.quarantine_threshold
    ds.quarantine_threshold = contract.quarantine_threshold if threshold is None else threshold
    if ds.quarantine_share > ds.quarantine_threshold:
        ds.errors.append(
            f"{name}: {ds.rows_quarantined} of {ds.rows_read} rows quarantined ({ds.quarantine_share:.2%}), "
            f"above the threshold of {ds.quarantine_threshold:.2%}"
            + (" set for this run" if threshold is not None else " its contract sets")
        )
    for code, (severity, limit) in contract.rule_limits().items():
        broken = (ds.rule_counts if severity == "error" else ds.warning_counts).get(code, 0)
        if limit.exceeded(broken, ds.rows_read):
            allowed = limit.describe()
            ds.errors.append(
                f"{name}: {broken} of {ds.rows_read} rows break {code}; its contract allows {allowed}"
            )
    ds.status = DatasetStatus.FAILED if ds.errors else DatasetStatus.PASSED
    log.info(
        "%s: read=%d valid=%d quarantined=%d parked=%d duplicates=%d",
        name,
        ds.rows_read,
        ds.rows_valid,
        ds.rows_quarantined,
        ds.rows_parked,
        ds.duplicates_collapsed,
    )


def _publish(ctx: _Context, lease: LeaseCheck) -> None:
    """Each dataset's tables, wave by wave like the validation: a wave's datasets at once, and a
    child only once its parents are published, so a reader never sees items whose orders are not
    there yet."""
    with delta.tagged(ctx.spark, ctx.batch.batch_id):
        for group in waves(ctx.contracts):
            names = [name for name in group if name in ctx.annotated or name in ctx.parks]
            writes = [partial(_publish_dataset, ctx, lease, name) for name in names]
            # The report's samples come from the same kept rows, meanwhile (nothing waits for them).
            writes += [partial(_sample, ctx, name) for name in names if name in ctx.annotated]
            run_side_by_side(writes, "publish")


def _publish_dataset(ctx: _Context, lease: LeaseCheck, name: str) -> None:
    """A dataset's tables: its park re-checked first (the batch passed: parents published), then
    the validated rows (with the released ones), this batch's quarantined rows and the condemned
    parked rows side by side (different tables, one batch tag), and only then the park, so a
    crash in between leaves rows in the park that the re-run finds published already."""
    passed = ctx.result.status is BatchStatus.SUCCEEDED
    parked = ctx.parks.get(name) if passed else None
    # (A parent that failed its file checks fails the batch; its keys are then not known.)
    if parked is not None and parked.count and all(p.keys is not None for p in parked.parents):
        _recheck(ctx, name, parked)
    writes: list[Callable[[], None]] = []
    if _publishes_valid(ctx, name):
        writes.append(partial(_publish_validated, ctx, lease, name))
    if name in ctx.annotated:
        writes.append(partial(_publish_quarantine, ctx, lease, name))
    park_result = ctx.result.datasets[name].park
    if park_result is not None and park_result.rows_expired + park_result.rows_parent_quarantined:
        writes.append(partial(_publish_condemned, ctx, lease, name))
    run_side_by_side(writes, name)
    if passed and ctx.contracts[name].parks:
        _write_park(ctx, lease, name)


def _recheck(ctx: _Context, name: str, parked: _Park) -> None:
    """Re-check the park against the parents known now; count what leaves it and why."""
    clock = time.monotonic()
    rechecked = park.recheck(parked.rows, parked.parents, ctx.processing_date)
    parked.rechecked = rechecked.persist(StorageLevel.MEMORY_AND_DISK)
    result = ctx.result.datasets[name].park = ParkResult(rows_checked=parked.count)
    waiting_since: list[dt.date] = []
    for row in park.park_tally(parked.rechecked).collect():
        outcome, batch, rows = row[park.OUTCOME], row[BATCH_ID], int(row["rows"])
        expired = int(row["expired"])
        if outcome == park.RELEASED:
            result.rows_released += rows
            result.released_from[batch] = result.released_from.get(batch, 0) + rows
        elif outcome == park.CONDEMNED:
            parked.condemned_from.add(batch)
            result.rows_expired += expired
            result.rows_parent_quarantined += rows - expired
        else:
            result.rows_waiting += rows
            waiting_since.append(row["since"])
    result.released_from = dict(sorted(result.released_from.items()))
    accounted = result.rows_released + result.rows_expired + result.rows_parent_quarantined
    accounted += result.rows_waiting
    if accounted != parked.count:
        raise AccountingError(
            f"{name}: {parked.count} parked rows re-checked but {result.rows_released} released + "
            f"{result.rows_expired} expired + {result.rows_parent_quarantined} parent quarantined + "
            f"{result.rows_waiting} waiting = {accounted}"
        )
    if waiting_since:
        result.oldest_parked_since = min(waiting_since).isoformat()
    log.info(
        "%s: %d parked rows re-checked in %.1fs: %d released, %d expired, %d parent quarantined, %d waiting",
        name,
        parked.count,
        time.monotonic() - clock,
        result.rows_released,
        result.rows_expired,
        result.rows_parent_quarantined,
        result.rows_waiting,
    )


def _sample(ctx: _Context, name: str) -> None:
    """Up to :data:`SAMPLE_PER_RULE` quarantined rows per failing rule, for the report."""
    if ctx.samples is None or not ctx.result.datasets[name].rows_quarantined:
        return
    clock = time.monotonic()
    frame = tables.quarantine_samples(ctx.annotated[name], ctx.contracts[name], SAMPLE_PER_RULE)
    ctx.samples[name] = [row.asDict() for row in frame.collect()]
    log.info(
        "%s: %d sample rows for the report in %.1fs", name, len(ctx.samples[name]), time.monotonic() - clock
    )


def _publishes_valid(ctx: _Context, name: str) -> bool:
    """Valid rows are published only when the whole batch passed (write-audit-publish)."""
    park_result = ctx.result.datasets[name].park
    released = park_result.rows_released if park_result is not None else 0
    return ctx.result.status is BatchStatus.SUCCEEDED and ctx.result.datasets[name].rows_valid + released > 0


def _publish_validated(ctx: _Context, lease: LeaseCheck, name: str) -> None:
    ds, contract, clock = ctx.result.datasets[name], ctx.contracts[name], time.monotonic()
    lease.check()
    uri = ctx.lake.validated(name)
    rows = tables.valid_rows(ctx.annotated[name], contract) if name in ctx.annotated else None
    released = ds.park.rows_released if ds.park is not None else 0
    kept = ctx.parks.get(name)
    if released and kept is not None and kept.rechecked is not None:
        keys = contract.primary_key
        published = delta.read(ctx.spark, uri)
        if published is not None:  # only the rows of the released keys: a small part of the table
            wanted = kept.rechecked.where(F.col(park.OUTCOME) == park.RELEASED).select(*keys).distinct()
            published = published.join(broadcast_if_small(wanted, released), keys, "left_semi")
        freed = park.releasable(
            kept.rechecked,
            contract,
            None if rows is None else broadcast_if_small(rows.select(*keys), ds.rows_valid),
            published,
            ctx.batch.batch_id,
            ctx.processing_date,
        )
        rows = freed if rows is None else rows.unionByName(freed)
    assert rows is not None  # _publishes_valid: valid or released rows
    outcome = delta.upsert(
        ctx.spark,
        uri,
        delta.sized(rows, ds.rows_valid + released),
        tables.validated_schema(contract),
        contract.primary_key,
        UPDATE_WHEN,
        ctx.batch.batch_id,
        ds.rows_valid + released,
        _validated_properties(ctx),
    )
    ds.validated_table = outcome.as_dict()
    log.info("%s: validated rows published in %.1fs", name, time.monotonic() - clock)


def _publish_condemned(ctx: _Context, lease: LeaseCheck, name: str) -> None:
    """Parked rows whose parent never arrived (or arrived quarantined) join the quarantine, as rows
    of the batch they came with; a re-run after a crash finds them there and adds nothing."""
    ds, contract = ctx.result.datasets[name], ctx.contracts[name]
    kept = ctx.parks[name]
    assert kept.rechecked is not None and ds.park is not None
    lease.check()
    condemned = park.condemned_rows(kept.rechecked, contract)
    delta.insert_absent(
        ctx.spark,
        ctx.lake.quarantine(name),
        condemned,
        tables.quarantine_schema(contract),
        park.quarantine_match(contract),
        (BATCH_ID, sorted(kept.condemned_from)),
        ctx.batch.batch_id,
    )


def _write_park(ctx: _Context, lease: LeaseCheck, name: str) -> None:
    """The park after this batch: the rows that left it deleted, then this batch's parked rows in
    place of an earlier run's (re-running a batch does not restart their wait)."""
    ds, contract, uri = ctx.result.datasets[name], ctx.contracts[name], ctx.lake.parked(name)
    kept = ctx.parks.get(name)
    lease.check()
    left = ds.park.rows_checked - ds.park.rows_waiting if ds.park is not None else 0
    if kept is not None and kept.rechecked is not None and left:
        delta.delete_matching(ctx.spark, uri, park.leaving(kept.rechecked, contract), ctx.batch.batch_id)
    result = ds.park if ds.park is not None else ParkResult()
    ds.park = result
    if name in ctx.annotated and (ds.rows_parked or (kept is not None and kept.earliest is not None)):
        earlier = None
        if kept is not None and kept.earliest is not None:
            table = delta.read(ctx.spark, uri)
            assert table is not None
            earlier = table.where(F.col(BATCH_ID) == F.lit(ctx.batch.batch_id))
        rows = tables.parked_rows(ctx.annotated[name], contract, ctx.processing_date, earlier)
        outcome = delta.replace_where(
            ctx.spark,
            uri,
            delta.sized(rows, ds.rows_parked),
            tables.parked_schema(contract),
            f"{BATCH_ID} = {quote_literal(ctx.batch.batch_id)}",
            ctx.batch.batch_id,
        )
        result.park_table = outcome.as_dict()
        log.info("%s: %d rows parked (waiting for a parent)", name, ds.rows_parked)
    result.rows_waiting += ds.rows_parked
    if ds.rows_parked:
        mine = min(d for d in (ctx.processing_date, kept.earliest if kept else None) if d is not None)
        if result.oldest_parked_since is None or mine.isoformat() < result.oldest_parked_since:
            result.oldest_parked_since = mine.isoformat()
    if result.oldest_parked_since is not None:
        since = dt.date.fromisoformat(result.oldest_parked_since)
        result.oldest_parked_days = (ctx.processing_date - since).days


def _publish_quarantine(ctx: _Context, lease: LeaseCheck, name: str) -> None:
    ds, contract, clock = ctx.result.datasets[name], ctx.contracts[name], time.monotonic()
    lease.check()
    outcome = delta.replace_where(
        ctx.spark,
        ctx.lake.quarantine(name),
        delta.sized(tables.quarantined_rows(ctx.annotated[name], contract), ds.rows_quarantined),
        tables.quarantine_schema(contract),
        f"{BATCH_ID} = {quote_literal(ctx.batch.batch_id)}",
        ctx.batch.batch_id,
    )
    ds.quarantine_table = outcome.as_dict()
    log.info("%s: quarantined rows published in %.1fs", name, time.monotonic() - clock)


def check_rules(spark: SparkSession, settings: Settings, contracts: dict[str, Contract]) -> None:
    """Every contract's rule conditions parse and are booleans over its columns (nothing is read).

    Raises:
        ContractError: naming the contract file and each broken rule.
    """
    directory = Path(settings.contracts_dir) if settings.contracts_dir else None
    for name, contract in contracts.items():
        problems = rule_problems(spark, contract)
        if problems:
            raise ContractError(f"contract {contract_path(name, directory)}: " + "; ".join(problems))


def run_validation(
    spark: SparkSession,
    settings: Settings,
    lake: Lake,
    batch: Batch,
    contracts: dict[str, Contract],
    processing_date: dt.date,
    result: ValidationResult,
    samples: dict[str, list[dict[str, Any]]] | None = None,
    inspected: dict[tuple[str, str], FileCheck] | None = None,
) -> ValidationResult:
    """Validate ``batch`` and publish its outputs; fills and returns ``result`` (and ``samples``,
    when given: up to :data:`SAMPLE_PER_RULE` quarantined rows per failing rule, for the report).
    ``inspected``: the header checks :func:`inspect_batch` made already (made here when not given).

    Raises:
        ContractError: a rule's condition does not compile or is not a boolean.
        CatalogError: the Glue Data Catalog refused to register a table (when one is configured).
        SchemaChangeError: a contract removes or retypes a column a table holds (no --migrate-schema).
        AccountingError: rows were lost or multiplied (an internal error).
        StorageError: a Delta table or file could not be read or written.
    """
    check_rules(spark, settings, contracts)
    ctx = _Context(
        spark,
        settings,
        batch,
        contracts,
        processing_date,
        result,
        lake,
        samples=samples,
        inspected=inspect_batch(batch, contracts, settings) if inspected is None else inspected,
    )
    for name in DATASETS:
        result.rule_descriptions.update(contracts[name].rule_descriptions())
        result.datasets[name] = DatasetResult()
    with lake_lease(settings, "validate") as lease, broadcast_only_when_hinted(spark):
        try:
            _run(ctx, lease)
        finally:
            ctx.release()
        written = {n for n, d in result.datasets.items() if d.validated_table or d.quarantine_table}
        registered = catalog.dataset_tables(lake, {n: c for n, c in contracts.items() if n in written})
        result.catalog = catalog.register(settings, registered)
    return result


def _validated_properties(ctx: _Context) -> dict[str, str]:
    """A new validated table's properties: commit times kept in the log (transform orders batches
    across tables by them), deletion vectors unless turned off (``maintain`` gives both to a table
    made without them)."""
    return validated_properties(ctx.settings.deletion_vectors)


def validated_properties(deletion_vectors: bool) -> dict[str, str]:
    return delta.IN_COMMIT_TIMESTAMPS | (delta.DELETION_VECTORS if deletion_vectors else {})


def _evolve_tables(ctx: _Context) -> None:
    """Bring every existing table to its contract's schema before any data is read or written:
    a column added to a contract is added to the tables; a removed or retyped one is refused
    (exit 2) unless the run was given --migrate-schema."""
    for name in DATASETS:
        contract = ctx.contracts[name]
        for uri, schema in (
            (ctx.lake.validated(name), tables.validated_schema(contract)),
            (ctx.lake.quarantine(name), tables.quarantine_schema(contract)),
            (ctx.lake.parked(name), tables.parked_schema(contract)),
        ):
            delta.evolve(ctx.spark, uri, schema, ctx.settings.migrate_schema)


def _fail_changed_files(ctx: _Context) -> None:
    """After every raw read: a file read in place that is no longer the version the batch was
    cut with (overwritten meanwhile) fails its dataset, since its rows may mix two contents."""
    for uri, message in changed_since_pinned(ctx.batch, ctx.settings).items():
        for ds in ctx.result.datasets.values():
            for file_result in ds.files:
                if file_result.uri == uri and file_result.error is None:
                    _record(ds, file_result, InputFileError(uri, message))
                    ds.status = DatasetStatus.FAILED


def waves(contracts: dict[str, Contract]) -> list[list[str]]:
    """The datasets in dependency order, grouped: each group references only datasets of earlier
    groups, so a group's datasets can be validated at the same time (products and orders, then
    order_items). Within a group, :data:`DATASETS` order."""
    left = [name for name in DATASETS if name in contracts]
    done: set[str] = set()
    groups: list[list[str]] = []
    while left:
        ready = [
            name
            for name in left
            if all(
                fk.references.dataset in done or fk.references.dataset == name
                for fk in contracts[name].foreign_keys
            )
        ]
        if not ready:  # a reference cycle: keep the fixed order, one at a time
            ready = left[:1]
        groups.append(ready)
        done.update(ready)
        left = [name for name in left if name not in done]
    return groups


def _run(ctx: _Context, lease: LeaseCheck) -> None:
    result = ctx.result
    _evolve_tables(ctx)
    for group in waves(ctx.contracts):
        run_side_by_side([partial(_validate_dataset, ctx, ctx.contracts[name]) for name in group], "validate")
    _fail_changed_files(ctx)
    failed = [n for n, d in result.datasets.items() if d.status is DatasetStatus.FAILED]
    result.status = BatchStatus.FAILED if failed else BatchStatus.SUCCEEDED
    for name in failed:
        result.errors.extend(result.datasets[name].errors)
    if failed:
        result.errors.append(f"batch not published: dataset(s) {failed} failed; valid rows were not written")
    _publish(ctx, lease)
