"""Reading back what the validation plan staged as Parquet: counts, rule tallies, Delta inputs.

The plan is written once, partitioned by ``quality``; everything here reads only the columns it
needs from those files (cheap, columnar, never a whole dataset in memory at once).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from common.contract import Contract
from common.csv_input import CORRUPT, SOURCE_FILE
from common.validation import BATCH_ID, COPIES, ERRORS, PROCESSING_DATE, ROW_HASH, WARNINGS, raw

VALID_DIR = "quality=valid"
QUARANTINED_DIR = "quality=quarantined"
REASONS = "_reasons"


@dataclass
class StagedStats:
    rows_valid: int = 0
    rows_quarantined: int = 0
    duplicates_collapsed: int = 0
    rule_counts: Counter[str] = field(default_factory=Counter)
    warning_counts: Counter[str] = field(default_factory=Counter)
    rows_with_warnings: int = 0


def _dataset(directory: Path) -> pads.Dataset | None:
    return pads.dataset(directory, format="parquet") if directory.is_dir() else None


def _tally(dataset: pads.Dataset | None, list_column: str, stats: StagedStats, counter: Counter[str]) -> int:
    """Add ``_copies - 1`` to the duplicate count and tally list values; return rows seen."""
    if dataset is None:
        return 0
    rows = 0
    nonempty = 0
    for batch in dataset.to_batches(columns=[COPIES, list_column]):
        rows += batch.num_rows
        stats.duplicates_collapsed += int(pc.sum(batch.column(COPIES)).as_py() or 0) - batch.num_rows
        values = batch.column(list_column)
        nonempty += int(pc.sum(pc.greater(pc.list_value_length(values), 0)).as_py() or 0)
        flat = pc.list_flatten(values)
        if len(flat):
            for item in pc.value_counts(flat).to_pylist():
                counter[item["values"]] += int(item["counts"])
    if list_column == WARNINGS:
        stats.rows_with_warnings += nonempty
    return rows


def staged_stats(stage_dir: Path) -> StagedStats:
    """Counts of valid/quarantined rows, collapsed duplicates, and per-rule tallies."""
    stats = StagedStats()
    stats.rows_valid = _tally(_dataset(stage_dir / VALID_DIR), WARNINGS, stats, stats.warning_counts)
    stats.rows_quarantined = _tally(_dataset(stage_dir / QUARANTINED_DIR), ERRORS, stats, stats.rule_counts)
    return stats


def valid_rows_reader(stage_dir: Path, contract: Contract) -> pa.RecordBatchReader | None:
    """Stream the valid rows with the columns of the validated Delta table."""
    dataset = _dataset(stage_dir / VALID_DIR)
    if dataset is None:
        return None
    columns = [*contract.column_names, WARNINGS, ROW_HASH, BATCH_ID, PROCESSING_DATE, SOURCE_FILE]
    return dataset.scanner(columns=columns).to_reader()


def quarantine_schema(contract: Contract) -> pa.Schema:
    """Quarantined rows keep their original text, one string column per contract column."""
    return pa.schema(
        [pa.field(c, pa.string()) for c in contract.column_names]
        + [
            pa.field(CORRUPT, pa.string()),
            pa.field(REASONS, pa.list_(pa.string())),
            pa.field(COPIES, pa.int64()),
            pa.field(BATCH_ID, pa.string()),
            pa.field(PROCESSING_DATE, pa.date32()),
            pa.field(SOURCE_FILE, pa.string()),
        ]
    )


def quarantined_rows(stage_dir: Path, contract: Contract) -> pa.Table:
    """The quarantined rows as the quarantine Delta table stores them (may be empty)."""
    schema = quarantine_schema(contract)
    dataset = _dataset(stage_dir / QUARANTINED_DIR)
    if dataset is None:
        return schema.empty_table()
    source = [raw(c) for c in contract.column_names] + [
        CORRUPT,
        ERRORS,
        COPIES,
        BATCH_ID,
        PROCESSING_DATE,
        SOURCE_FILE,
    ]
    table = dataset.to_table(columns=source).rename_columns(schema.names)
    return table.cast(schema)
