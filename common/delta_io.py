"""Delta Lake reads and writes through delta-rs (``deltalake``), local or on S3.

Tables written here are standard Delta tables, readable by delta-spark, Athena and Trino.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from common.errors import StorageError
from common.storage import is_s3

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

BATCH_METADATA_KEY = "ecom.batch_id"


def _commit(batch_id: str | None) -> CommitProperties | None:
    """Tag a commit with the batch that made it (read back by :func:`first_version_of_batch`)."""
    return CommitProperties(custom_metadata={BATCH_METADATA_KEY: batch_id}) if batch_id else None


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did: the table version after it and the rows it touched."""

    uri: str
    version: int
    rows_inserted: int
    rows_updated: int
    previous_version: int | None = None  # the version before this write; None if it created the table

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "previous_version": self.previous_version,
        }


def storage_options(uri: str, settings: Settings) -> dict[str, str]:
    """delta-rs storage options for ``uri``; credentials come from the AWS_* environment or role."""
    if not is_s3(uri):
        return {}
    opts = {"AWS_REGION": settings.aws_region}
    if settings.s3_endpoint_url:
        opts["AWS_ENDPOINT_URL"] = settings.s3_endpoint_url
        opts["AWS_ALLOW_HTTP"] = str(settings.s3_endpoint_url.startswith("http://")).lower()
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    if settings.delta_conditional_put:
        opts["conditional_put"] = settings.delta_conditional_put
    return opts


def open_table(uri: str, settings: Settings) -> DeltaTable | None:
    """The Delta table at ``uri``, or None when there is none yet.

    Raises:
        StorageError: the location cannot be read.
    """
    try:
        return DeltaTable(uri, storage_options=storage_options(uri, settings))
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as exc:
        raise StorageError(f"cannot open Delta table {uri}: {exc}") from exc


def upsert(
    uri: str,
    source: pa.RecordBatchReader,
    keys: list[str],
    settings: Settings,
    update_when: str | None = None,
    batch_id: str | None = None,
) -> WriteOutcome:
    """Merge ``source`` into the table at ``uri`` by ``keys``; create the table if needed.

    Matched rows are updated only where ``update_when`` (a predicate over ``s.`` source and
    ``t.`` target columns) holds, so re-running the same data commits nothing.

    Raises:
        StorageError: delta-rs failed to read or commit.
    """
    opts = storage_options(uri, settings)
    table = open_table(uri, settings)
    try:
        if table is None:  # streamed: never the whole dataset in memory
            write_deltalake(
                uri, source, mode="append", storage_options=opts, commit_properties=_commit(batch_id)
            )
            table = DeltaTable(uri, storage_options=opts)
            return WriteOutcome(uri, table.version(), _added_rows(table), 0)
        previous = table.version()
        predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        metrics = (
            table.merge(
                source,
                predicate=predicate,
                source_alias="s",
                target_alias="t",
                commit_properties=_commit(batch_id),
            )
            .when_matched_update_all(predicate=update_when)
            .when_not_matched_insert_all()
            .execute()
        )
    except DeltaError as exc:
        raise StorageError(f"cannot merge into Delta table {uri}: {exc}") from exc
    table.update_incremental()
    return WriteOutcome(
        uri,
        table.version(),
        int(metrics.get("num_target_rows_inserted", 0)),
        int(metrics.get("num_target_rows_updated", 0)),
        previous,
    )


def _added_rows(table: DeltaTable) -> int:
    metrics = table.history(1)[0].get("operationMetrics", {})
    return int(metrics.get("num_added_rows", 0))


def replace_where(
    uri: str,
    data: pa.Table | pa.RecordBatchReader,
    predicate: str,
    settings: Settings,
    batch_id: str | None = None,
) -> WriteOutcome:
    """Atomically replace the rows matching ``predicate`` with ``data`` (create the table if needed).

    Raises:
        StorageError: delta-rs failed to commit.
    """
    opts = storage_options(uri, settings)
    table = open_table(uri, settings)
    previous = None if table is None else table.version()
    try:
        if table is None:
            write_deltalake(
                uri, data, mode="append", storage_options=opts, commit_properties=_commit(batch_id)
            )
        else:
            write_deltalake(
                table,
                data,
                mode="overwrite",
                predicate=predicate,
                storage_options=opts,
                commit_properties=_commit(batch_id),
            )
        table = DeltaTable(uri, storage_options=opts)
    except DeltaError as exc:
        raise StorageError(f"cannot write Delta table {uri}: {exc}") from exc
    return WriteOutcome(uri, table.version(), _added_rows(table), 0, previous)


def export_columns(
    uri: str,
    columns: list[str],
    dest: Path,
    settings: Settings,
    filter_expression: pads.Expression | None = None,
    version: int | None = None,
) -> Path | None:
    """Stream ``columns`` of a Delta table into one local Parquet file Spark can read.

    Spark here has no S3A and no Delta extension, so this is how it reads lake state (``version``
    time-travels). Returns None when the table does not exist yet.

    Raises:
        StorageError: the table cannot be read.
    """
    table = open_table(uri, settings)
    if table is None:
        return None
    try:
        if version is not None:
            table.load_as_version(version)
        dataset = table.to_pyarrow_dataset()
        scanner = dataset.scanner(columns=columns, filter=filter_expression)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(dest, scanner.projected_schema) as writer:
            for batch in scanner.to_batches():
                writer.write_batch(batch)
    except (DeltaError, OSError, pa.ArrowException) as exc:
        raise StorageError(f"cannot read Delta table {uri}: {exc}") from exc
    return dest


def first_version_of_batch(uri: str, batch_id: str, settings: Settings) -> int | None:
    """The first table version committed by ``batch_id``, or None if it committed none.

    Raises:
        StorageError: the table history cannot be read.
    """
    table = open_table(uri, settings)
    if table is None:
        return None
    try:
        versions = [
            int(entry["version"]) for entry in table.history() if entry.get(BATCH_METADATA_KEY) == batch_id
        ]
    except (DeltaError, OSError) as exc:
        raise StorageError(f"cannot read the history of {uri}: {exc}") from exc
    return min(versions) if versions else None
