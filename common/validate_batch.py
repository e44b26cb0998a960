"""Validate one batch: the I/O around the pure engine in :mod:`common.validation`.

Order of work, per dataset, parents first (products, orders, then order_items):
stage raw files -> check headers -> one Spark plan that evaluates every rule and writes the
annotated rows once to local Parquet -> tallies and the row-accounting check. Then, only if the
whole batch passed, valid rows are merged into ``<lake>/validated/<dataset>`` (write-audit-publish);
quarantined rows always replace this batch's rows in ``<lake>/quarantine/<dataset>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import delta_io, rules, staging, storage
from common.contract import DATASETS, ColumnSpec, Contract, ForeignKey
from common.csv_input import SOURCE_FILE, CheckedFile, count_data_lines, inspect_file, read_raw
from common.errors import AccountingError, InputFileError
from common.manifest import Batch
from common.result import BatchStatus, DatasetResult, DatasetStatus, FileResult, ValidationResult
from common.validation import QUALITY, ROW_HASH, ParentKeys, annotate, parent_key_states, typed

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

# A later batch's version of a record replaces an earlier one; re-running a batch (same
# content) or an older batch never rewrites a row.
UPDATE_WHEN = f"t.{ROW_HASH} <> s.{ROW_HASH} AND s._batch_id >= t._batch_id"


def validated_uri(settings: Settings, dataset: str) -> str:
    return storage.join_uri(settings.lake_root, "validated", dataset)


def quarantine_uri(settings: Settings, dataset: str) -> str:
    return storage.join_uri(settings.lake_root, "quarantine", dataset)


@dataclass
class _Context:
    spark: SparkSession
    settings: Settings
    batch: Batch
    contracts: dict[str, Contract]
    processing_date: dt.date
    work_dir: Path
    result: ValidationResult

    def stage_dir(self, dataset: str) -> Path:
        return self.work_dir / "staged" / dataset


def _check_files(ctx: _Context, contract: Contract, uris: list[str], ds: DatasetResult) -> list[CheckedFile]:
    """Stage and check every file; record each file's problem (all of them, not just the first)."""
    checked: list[CheckedFile] = []
    for index, uri in enumerate(uris):
        file_result = FileResult(uri=uri)
        ds.files.append(file_result)
        try:
            try:
                path = storage.stage_file(
                    uri, ctx.work_dir / "raw" / contract.dataset / str(index), ctx.settings
                )
            except FileNotFoundError as exc:
                raise InputFileError(
                    uri, "file does not exist: expected a CSV file listed by the batch"
                ) from exc
            item = inspect_file(uri, path, contract, ctx.settings.extra_columns)
            if not item.has_rows and not ctx.settings.allow_empty_files:
                raise InputFileError(
                    uri,
                    "file has a header but no data rows: expected at least one row "
                    "(set ECOM_ALLOW_EMPTY_FILES=true to accept empty parts)",
                )
            checked.append(item)
        except InputFileError as exc:
            file_result.error = exc.message
            ds.errors.append(str(exc))
    return checked


def _key_frame(frame: DataFrame, column: str, spec: ColumnSpec, from_text: bool) -> DataFrame:
    """Parent keys typed exactly like the child's: quarantined rows keep text, so parse it."""
    value = typed(rules.clean_text(F.col(column)), spec) if from_text else F.col(column)
    return frame.select(value.cast(rules.spark_type(spec.type)).alias("key"))


def _parent_keys(ctx: _Context, child: Contract, fk: ForeignKey) -> DataFrame | None:
    """Valid and quarantined keys of the referenced dataset: this batch plus the lake."""
    parent_name, parent_column = fk.references.dataset, fk.references.column
    parent = ctx.contracts[parent_name]
    spec = parent.columns[parent_column]
    parent_result = ctx.result.datasets.get(parent_name)
    if parent_result is not None and any(f.error for f in parent_result.files):
        ctx.result.datasets[child.dataset].checks_skipped.append(
            f"foreign key {fk.column} -> {parent_name}.{parent_column}: not checked because "
            f"{parent_name} failed its file checks in this batch"
        )
        return None
    valid: list[DataFrame] = []
    quarantined: list[DataFrame] = []
    stage_dir = ctx.stage_dir(parent_name)
    spark = ctx.spark
    if (stage_dir / staging.VALID_DIR).is_dir():
        frame = spark.read.parquet(str(stage_dir / staging.VALID_DIR))
        valid.append(_key_frame(frame, parent_column, spec, from_text=False))
    if (stage_dir / staging.QUARANTINED_DIR).is_dir():
        frame = spark.read.parquet(str(stage_dir / staging.QUARANTINED_DIR))
        quarantined.append(_key_frame(frame, parent_column, spec, from_text=False))
    lake = ctx.work_dir / "lake-keys" / parent_name
    exported = delta_io.export_columns(
        validated_uri(ctx.settings, parent_name), [parent_column], lake / "validated.parquet", ctx.settings
    )
    if exported is not None:
        valid.append(_key_frame(spark.read.parquet(str(exported)), parent_column, spec, False))
    exported = delta_io.export_columns(
        quarantine_uri(ctx.settings, parent_name), [parent_column], lake / "quarantine.parquet", ctx.settings
    )
    if exported is not None:
        quarantined.append(_key_frame(spark.read.parquet(str(exported)), parent_column, spec, True))
    if not valid and not quarantined:
        return spark.createDataFrame(
            [], f"key {rules.spark_type(spec.type).simpleString()}, parent_valid boolean"
        )
    return parent_key_states(valid, quarantined)


def _validate_dataset(ctx: _Context, contract: Contract) -> None:
    name = contract.dataset
    ds = ctx.result.datasets[name]
    uris = ctx.batch.files.get(name, [])
    if not uris:
        ds.status = DatasetStatus.ABSENT
        return
    clock = time.monotonic()
    checked = _check_files(ctx, contract, uris, ds)
    staged_at = time.monotonic()
    if ds.errors:
        ds.status = DatasetStatus.FAILED
        return
    raw_df = read_raw(ctx.spark, checked, contract, ctx.settings.csv_multiline)
    # Counted independently of the validation plan, so the accounting check below can catch
    # rows lost or multiplied by it. Line by line in Python unless fields may span lines.
    if ctx.settings.csv_multiline:
        per_file = {
            row[SOURCE_FILE]: int(row["count"]) for row in raw_df.groupBy(SOURCE_FILE).count().collect()
        }
    else:
        per_file = {f.uri: count_data_lines(f.local_path) for f in checked}
    for file_result in ds.files:
        file_result.rows_read = per_file.get(file_result.uri, 0)
    ds.rows_read = sum(per_file.values())
    counted_at = time.monotonic()
    parents = [ParentKeys(fk, _parent_keys(ctx, contract, fk)) for fk in contract.foreign_keys]
    parents_at = time.monotonic()
    annotated = annotate(raw_df, contract, parents, ctx.batch.batch_id, ctx.processing_date)
    stage_dir = ctx.stage_dir(name)
    annotated.write.mode("overwrite").partitionBy(QUALITY).parquet(str(stage_dir))
    evaluated_at = time.monotonic()
    stats = staging.staged_stats(stage_dir)
    log.info(
        "%s timings: stage+headers %.1fs, count %.1fs, parent keys %.1fs, rules %.1fs, tallies %.1fs",
        name,
        staged_at - clock,
        counted_at - staged_at,
        parents_at - counted_at,
        evaluated_at - parents_at,
        time.monotonic() - evaluated_at,
    )
    ds.rows_valid = stats.rows_valid
    ds.rows_quarantined = stats.rows_quarantined
    ds.duplicates_collapsed = stats.duplicates_collapsed
    ds.rule_counts = dict(sorted(stats.rule_counts.items()))
    ds.warning_counts = dict(sorted(stats.warning_counts.items()))
    ds.rows_with_warnings = stats.rows_with_warnings
    accounted = ds.rows_valid + ds.rows_quarantined + ds.duplicates_collapsed
    if accounted != ds.rows_read:
        raise AccountingError(
            f"{name}: {ds.rows_read} rows read but {ds.rows_valid} valid + {ds.rows_quarantined} quarantined "
            f"+ {ds.duplicates_collapsed} duplicates collapsed = {accounted}"
        )
    ds.quarantine_share = round(ds.rows_quarantined / ds.rows_read, 6) if ds.rows_read else 0.0
    if ds.quarantine_share > ctx.settings.quarantine_threshold:
        ds.status = DatasetStatus.FAILED
        ds.errors.append(
            f"{name}: {ds.rows_quarantined} of {ds.rows_read} rows quarantined ({ds.quarantine_share:.2%}), "
            f"above the threshold of {ctx.settings.quarantine_threshold:.2%}"
        )
    else:
        ds.status = DatasetStatus.PASSED
    log.info(
        "%s: read=%d valid=%d quarantined=%d duplicates=%d",
        name,
        ds.rows_read,
        ds.rows_valid,
        ds.rows_quarantined,
        ds.duplicates_collapsed,
    )


def _publish(ctx: _Context) -> None:
    passed = ctx.result.status is BatchStatus.SUCCEEDED
    for name in DATASETS:
        ds = ctx.result.datasets[name]
        stage_dir = ctx.stage_dir(name)
        if not stage_dir.is_dir():
            continue
        contract = ctx.contracts[name]
        clock = time.monotonic()
        if passed:
            reader = staging.valid_rows_reader(stage_dir, contract)
            if reader is not None:
                outcome = delta_io.upsert(
                    validated_uri(ctx.settings, name),
                    reader,
                    contract.primary_key,
                    ctx.settings,
                    UPDATE_WHEN,
                    ctx.batch.batch_id,
                )
                ds.validated_table = outcome.as_dict()
        outcome = delta_io.replace_where(
            quarantine_uri(ctx.settings, name),
            staging.quarantined_rows(stage_dir, contract),
            f"_batch_id = '{ctx.batch.batch_id.replace(chr(39), chr(39) * 2)}'",
            ctx.settings,
            ctx.batch.batch_id,
        )
        ds.quarantine_table = outcome.as_dict()
        log.info("%s: published in %.1fs", name, time.monotonic() - clock)


def run_validation(
    spark: SparkSession,
    settings: Settings,
    batch: Batch,
    contracts: dict[str, Contract],
    processing_date: dt.date,
    work_dir: Path,
    result: ValidationResult,
) -> ValidationResult:
    """Validate ``batch`` and publish its outputs; fills and returns ``result``.

    Raises:
        AccountingError: rows were lost or multiplied (an internal error).
        StorageError: a Delta table or file could not be written.
    """
    ctx = _Context(spark, settings, batch, contracts, processing_date, work_dir, result)
    for name in DATASETS:
        result.rule_descriptions.update(contracts[name].rule_descriptions())
        result.datasets[name] = DatasetResult()
    for name in DATASETS:
        _validate_dataset(ctx, contracts[name])
    failed = [n for n, d in result.datasets.items() if d.status is DatasetStatus.FAILED]
    result.status = BatchStatus.FAILED if failed else BatchStatus.SUCCEEDED
    for name in failed:
        result.errors.extend(result.datasets[name].errors)
    if failed:
        result.errors.append(f"batch not published: dataset(s) {failed} failed; valid rows were not written")
    _publish(ctx)
    return result
