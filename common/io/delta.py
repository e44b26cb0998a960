"""Delta Lake through delta-spark: tables created from explicit schemas, MERGE upserts that commit
nothing when nothing changed, atomic replacement of a slice, commits tagged with their batch id.

Spark itself reads and writes the table files (locally or on S3 through S3A); nothing here pulls
rows into the driver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts.model import quote_literal
from common.errors import SchemaChangeError, StorageError
from common.io.spark import broadcast_if_small, kept, session_conf
from common.io.storage import spark_path

log = logging.getLogger(__name__)

# Every commit carries the id of the batch that made it (read back by version_before_batch).
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
_ERRORS = (PySparkException, Py4JError)


# Rows per data file a write aims at: a batch's few thousand rows become one file, not one per
# shuffle partition (8 tiny files per table per batch, each one more object to list, read and
# rewrite later); a million-row batch keeps at least two writers.
ROWS_PER_FILE = 500_000


def sized(frame: DataFrame, rows: int) -> DataFrame:
    """``frame`` (of about ``rows`` rows) in as many partitions as :data:`ROWS_PER_FILE` asks for,
    never more than it has (no shuffle: partitions are merged)."""
    return frame.coalesce(max(1, -(-rows // ROWS_PER_FILE)))


@dataclass(frozen=True)
class WriteOutcome:
    """What a write did, from Delta's own operation metrics."""

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


@contextmanager
def tagged(spark: SparkSession, batch_id: str | None) -> Iterator[None]:
    """Tag the commits made inside the block with ``batch_id`` (the session's setting: commits
    made at once from several threads share one block; an inner block with the same tag is a
    no-op, so it cannot untag the others' commits when it ends)."""
    if batch_id is None or spark.conf.get(USER_METADATA_CONF, None) == batch_id:
        yield
        return
    spark.conf.set(USER_METADATA_CONF, batch_id)
    try:
        yield
    finally:
        spark.conf.unset(USER_METADATA_CONF)


def exists(spark: SparkSession, uri: str) -> bool:
    """True when ``uri`` holds a Delta table.

    Raises:
        StorageError: the location cannot be read.
    """
    try:
        return bool(DeltaTable.isDeltaTable(spark, spark_path(uri)))
    except _ERRORS as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc


# Row-level changes by deletion vectors: a MERGE that updates a few rows of a file marks them
# deleted in a small side file and writes the new versions, instead of rewriting the whole file.
# It raises the table's protocol to reader 3 / writer 7 (table feature ``deletionVectors``).
DELETION_VECTORS = {"delta.enableDeletionVectors": "true"}
# Commit times written into each commit (writer feature ``inCommitTimestamp``; readers unaffected):
# the history's order across tables then survives a copy of the lake, which file times do not.
IN_COMMIT_TIMESTAMPS = {"delta.enableInCommitTimestamps": "true"}


def ensure_table(
    spark: SparkSession, uri: str, schema: T.StructType, properties: dict[str, str] | None = None
) -> DeltaTable:
    """The table at ``uri``, created from ``schema`` (with ``properties``) if it does not exist yet.

    Raises:
        StorageError: the table cannot be created or opened.
    """
    path = spark_path(uri)

    def create() -> DeltaTable:
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
        for key, value in (properties or {}).items():
            builder = builder.property(key, value)
        return builder.execute()

    try:
        return create()
    except _ERRORS as exc:
        if not _drop_empty_log(spark, path):
            raise StorageError(f"cannot create or open Delta table {uri}: {exc}") from exc
    log.warning("%s: removed a transaction log that held no commit (a run died creating the table)", uri)
    try:
        return create()
    except _ERRORS as exc:
        raise StorageError(f"cannot create or open Delta table {uri}: {exc}") from exc


def _drop_empty_log(spark: SparkSession, path: str) -> bool:
    """Remove ``path``'s ``_delta_log`` when it holds folders but no file at all: what a run killed
    between creating the log folder and writing the table's first commit leaves behind. Delta then
    neither reads the table (no commit) nor creates it (the log exists), so no re-run could repair
    it. A log with any file in it is left alone. True when one was removed."""
    try:
        log_path = _jvm(spark).org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
        fs = log_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if not fs.exists(log_path) or fs.listFiles(log_path, True).hasNext():
            return False
        return bool(fs.delete(log_path, True))
    except _ERRORS:
        return False


@dataclass(frozen=True)
class SchemaChange:
    """How a table's schema differs from the one its contract now asks for."""

    added: list[T.StructField]
    removed: list[str]
    retyped: list[tuple[str, str, str]]  # (column, type in the table, type asked for)

    @property
    def destructive(self) -> bool:
        return bool(self.removed or self.retyped)


def schema_change(current: T.StructType, wanted: T.StructType) -> SchemaChange:
    """Compare by column name and type (nullability aside: Delta keeps a column nullable)."""
    have = {f.name: f.dataType for f in current.fields}
    want = {f.name: f.dataType for f in wanted.fields}
    return SchemaChange(
        added=[f for f in wanted.fields if f.name not in have],
        removed=[name for name in have if name not in want],
        retyped=[
            (name, have[name].simpleString(), kind.simpleString())
            for name, kind in want.items()
            if name in have and have[name] != kind
        ],
    )


def evolve(spark: SparkSession, uri: str, wanted: T.StructType, migrate: bool) -> SchemaChange | None:
    """Bring an existing table's schema to ``wanted`` before any data is written to it.

    New columns are added (nullable; rows already there read null), in one metadata-only commit.
    A removed or retyped column would lose or rewrite data: it is refused unless ``migrate``, which
    rewrites the table in one atomic overwrite (kept columns cast with ANSI rules, so a value that
    does not fit fails the migration and leaves the table as it was; older versions stay readable
    by time travel). Returns what changed, or None when the table does not exist yet.

    Raises:
        SchemaChangeError: a destructive change without ``migrate``.
        StorageError: the table cannot be read or altered.
    """
    if not exists(spark, uri):
        return None
    path = spark_path(uri)
    try:
        data = spark.read.format("delta").load(path)
        current = data.schema
        change = schema_change(current, wanted)
        if change.destructive and not migrate:
            parts = [f"removes {change.removed}"] if change.removed else []
            parts += [f"retypes {c} from {old} to {new}" for c, old, new in change.retyped]
            raise SchemaChangeError(
                f"{uri}: the contract {' and '.join(parts)}; the table still holds that data. "
                "Nothing was written. To rewrite the table to the new schema, re-run with "
                "--migrate-schema (ECOM_MIGRATE_SCHEMA=true)"
            )
        if change.destructive:
            columns = [
                (F.col(f"`{f.name}`") if f.name in current.fieldNames() else F.lit(None))
                .cast(f.dataType)
                .alias(f.name)
                for f in wanted.fields
            ]
            data.select(*columns).write.format("delta").mode("overwrite").option(
                "overwriteSchema", "true"
            ).save(path)
            log.warning("%s: schema migrated (%s)", uri, change)
        elif change.added:
            # Each where the contract puts it, so the table's column order stays the contract's.
            previous = dict(zip(wanted.fieldNames()[1:], wanted.fieldNames(), strict=False))
            listed = ", ".join(
                f"`{f.name}` {f.dataType.simpleString()} "
                + (f"AFTER `{previous[f.name]}`" if f.name in previous else "FIRST")
                for f in change.added
            )
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({listed})")
            log.info("%s: column(s) added: %s", uri, [f.name for f in change.added])
    except _ERRORS as exc:
        raise StorageError(f"cannot change the schema of Delta table {uri}: {exc}") from exc
    return change


def _jvm(spark: SparkSession) -> Any:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return jvm


def _log(spark: SparkSession, uri: str) -> Any:
    """The table's transaction log (Delta's own ``DeltaLog``, cached per path by Delta)."""
    return _jvm(spark).org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, spark_path(uri))


def _version(spark: SparkSession, log: Any) -> int:
    """The current version of the table whose ``log`` (:func:`_log`) this is, from the log's
    listing (no Spark job, unlike ``history``)."""
    empty = _jvm(spark).scala.Option.empty()
    return int(log.update(False, empty, empty).version())


def _commit_info(spark: SparkSession, log: Any, version: int) -> dict[str, Any]:
    """The ``commitInfo`` action of commit ``version`` in ``log`` (:func:`_log`): its operation
    and metrics as the protocol writes them into ``_delta_log/<version>.json`` (one small file
    read, no Spark job: ``history`` runs one for each call)."""
    jvm = _jvm(spark)
    path = jvm.org.apache.hadoop.fs.Path(log.logPath(), f"{version:020d}.json")
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).open(path)
    try:
        text = str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()
    for line in text.splitlines():
        try:
            action = json.loads(line) if line.strip() else {}
        except ValueError as exc:
            raise StorageError(f"commit {version} of {log.dataPath()} is not valid JSON: {exc}") from exc
        if "commitInfo" in action:
            return dict(action["commitInfo"])
    return {}


def _last_commit(spark: SparkSession, uri: str) -> tuple[int, dict[str, str]]:
    log = _log(spark, uri)
    version = _version(spark, log)
    return version, dict(_commit_info(spark, log, version).get("operationMetrics") or {})


def _head(spark: SparkSession, uri: str) -> tuple[int, bool]:
    """The current version, and whether the table is new: its only commit is the CREATE TABLE of
    :func:`ensure_table`, so it holds no rows yet."""
    log = _log(spark, uri)
    version = _version(spark, log)
    return version, version == 0 and _commit_info(spark, log, 0).get("operation") == "CREATE TABLE"


def upsert(
    spark: SparkSession,
    uri: str,
    source: DataFrame,
    schema: T.StructType,
    keys: list[str],
    changed: UpdateWhen,
    batch_id: str,
    source_rows: int,
    properties: dict[str, str] | None = None,
) -> WriteOutcome:
    """Merge ``source`` (``source_rows`` rows, counted) into the table at ``uri`` by ``keys``
    (creating it from ``schema``, with ``properties``).

    Only source rows that change something are merged: a row whose key matches a target row is
    taken only when ``changed`` holds.
    When no row changes anything, nothing is committed, so re-running a batch adds no version.
    The work is the batch's: the target is first cut down to the rows whose keys the source holds
    (a semi-join against the source's keys, broadcast when they are few). When there are none,
    the rows are appended (the MERGE's own outcome, without its join with the whole table);
    otherwise only the rows that change something go into the MERGE, broadcast from the source's
    side when small.

    Raises:
        StorageError: the table cannot be read or the merge cannot be committed.
    """
    table = ensure_table(spark, uri, schema, properties)
    previous, new = _head(spark, uri)
    if new:  # nothing to match against: an append is the same commit, without the join
        return _append(spark, uri, source, batch_id, previous)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    try:
        # Source rows whose key exists with the same content, or was written by a later batch,
        # change nothing: leave them out, so an unchanged batch commits nothing at all. Only the
        # target rows sharing a key with the source can do that. Their keys and compared columns
        # are found once and kept (at most the source's rows), from the table as of this
        # version: the checks below and the MERGE's source use them without scanning the table
        # again, and the MERGE's own write does not drop them (see :func:`pinned`).
        source_keys = broadcast_if_small(source.select(*keys).distinct(), source_rows)
        target = _load(spark, uri, previous).select(*keys, *[c for c in changed.columns if c not in keys])
        target = in_key_range(target, source, keys)  # the bounds need no distinct keys
        with kept(target.join(source_keys, keys, "left_semi")) as matching:
            if matching.isEmpty():  # every key is new: the MERGE would only insert, in one commit
                return _append(spark, uri, source, batch_id, previous)
            changes = source.alias("s").join(
                broadcast_if_small(matching, source_rows).alias("t"),
                F.expr(f"{on} AND NOT ({changed.condition})"),
                "left_anti",
            )
            with kept(changes) as changes:
                if changes.isEmpty():
                    return WriteOutcome(uri, previous, 0, 0, previous)
                with tagged(spark, batch_id):
                    (
                        table.alias("t")
                        .merge(broadcast_if_small(changes, source_rows).alias("s"), on)
                        .whenMatchedUpdateAll(condition=changed.condition)
                        .whenNotMatchedInsertAll()
                        .execute()
                    )
        version, metrics = _last_commit(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot merge into Delta table {uri}: {exc}") from exc
    return WriteOutcome(
        uri,
        version,
        int(metrics.get("numTargetRowsInserted", 0)),
        int(metrics.get("numTargetRowsUpdated", 0)),
        previous,
    )


def in_key_range(rows: DataFrame, keys: DataFrame, columns: list[str]) -> DataFrame:
    """``rows`` (read from a Delta table) cut to the range ``keys`` spans in each of ``columns``:
    a filter Delta answers from its files' statistics (each column's least and greatest value),
    so a file that holds no key in the range is not read. A batch of new sequential ids (above
    every stored one) skips every file; ids spread over the whole table skip none, at the cost of
    one small aggregation of ``keys``. No keys: ``rows`` as they are."""
    bounds = keys.agg(*[F.min(c) for c in columns], *[F.max(c) for c in columns]).first()
    if bounds is None or any(value is None for value in bounds):
        return rows
    for index, column in enumerate(columns):
        least, greatest = bounds[index], bounds[len(columns) + index]
        rows = rows.where(F.col(column).between(F.lit(least), F.lit(greatest)))
    return rows


@dataclass(frozen=True)
class UpdateWhen:
    """When a source row replaces the stored row of its key: ``condition``, SQL over ``s.``
    (source) and ``t.`` (target) columns, and the target's ``columns`` it reads (only those of
    the matching stored rows are read and kept)."""

    condition: str
    columns: tuple[str, ...]


def _write_append(spark: SparkSession, uri: str, data: DataFrame, batch_id: str | None) -> None:
    """Append ``data`` to the existing table at ``uri`` in one commit tagged with ``batch_id``."""
    try:
        with tagged(spark, batch_id):
            data.write.format("delta").mode("append").save(spark_path(uri))
    except _ERRORS as exc:
        raise StorageError(f"cannot append to Delta table {uri}: {exc}") from exc


def _append(
    spark: SparkSession, uri: str, source: DataFrame, batch_id: str | None, previous: int
) -> WriteOutcome:
    _write_append(spark, uri, source, batch_id)
    try:
        version, metrics = _last_commit(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot append to Delta table {uri}: {exc}") from exc
    return WriteOutcome(uri, version, int(metrics.get("numOutputRows", 0)), 0, previous)


def append(
    spark: SparkSession, uri: str, data: DataFrame, schema: T.StructType, batch_id: str | None
) -> None:
    """Append ``data`` to the table at ``uri`` (created from ``schema`` first if needed), with no
    read of the commit back (the caller needs no version or metrics: the run ledger).

    Raises:
        StorageError: the table cannot be created or the write cannot be committed.
    """
    ensure_table(spark, uri, schema)
    _write_append(spark, uri, data, batch_id)


def replace_where(
    spark: SparkSession,
    uri: str,
    data: DataFrame,
    schema: T.StructType,
    predicate: str,
    batch_id: str | None,
) -> WriteOutcome:
    """Atomically replace the rows matching ``predicate`` with ``data`` (one commit).

    Raises:
        StorageError: the table cannot be created or the write cannot be committed.
    """
    ensure_table(spark, uri, schema)
    previous, new = _head(spark, uri)
    if new:  # nothing to replace yet
        return _append(spark, uri, data, batch_id, previous)
    try:
        with tagged(spark, batch_id):
            (
                data.write.format("delta")
                .mode("overwrite")
                .option("replaceWhere", predicate)
                .save(spark_path(uri))
            )
        version, metrics = _last_commit(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot write Delta table {uri}: {exc}") from exc
    return WriteOutcome(uri, version, int(metrics.get("numOutputRows", 0)), 0, previous)


def insert_absent(
    spark: SparkSession,
    uri: str,
    data: DataFrame,
    schema: T.StructType,
    match: list[str],
    within: tuple[str, list[str]],
    batch_id: str | None,
) -> WriteOutcome:
    """Insert the rows of ``data`` that the table at ``uri`` (created from ``schema`` if needed)
    does not hold yet, a row being found by null-safe equality of the ``match`` columns among the
    rows whose column ``within[0]`` is one of the values ``within[1]`` (every row of ``data`` is
    one of them; Delta skips the files of the others): a re-run inserts nothing twice and
    commits nothing.

    Raises:
        StorageError: the table cannot be created or the merge cannot be committed.
    """
    table = ensure_table(spark, uri, schema)
    previous, _ = _head(spark, uri)
    column, values = within
    among = f"`{column}` IN ({', '.join(quote_literal(v) for v in values)})"
    on = " AND ".join(f"t.`{c}` <=> s.`{c}`" for c in match)
    try:
        there = table.toDF().where(among)
        missing = data.alias("s").join(there.alias("t"), F.expr(on), "left_anti")
        if missing.isEmpty():
            return WriteOutcome(uri, previous, 0, 0, previous)
        with tagged(spark, batch_id):
            merge = table.alias("t").merge(missing.alias("s"), f"t.{among} AND {on}")
            merge.whenNotMatchedInsertAll().execute()
        version, metrics = _last_commit(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot merge into Delta table {uri}: {exc}") from exc
    return WriteOutcome(uri, version, int(metrics.get("numTargetRowsInserted", 0)), 0, previous)


def delete_matching(spark: SparkSession, uri: str, keys: DataFrame, batch_id: str | None) -> int:
    """Delete the rows of the table at ``uri`` whose values of ``keys``' columns (none null) a row
    of ``keys`` holds, in one MERGE; nothing is committed when none is there. Returns the number
    of rows deleted.

    Raises:
        StorageError: the table cannot be read or the delete cannot be committed.
    """
    on = " AND ".join(f"t.`{c}` = s.`{c}`" for c in keys.columns)
    try:
        table = DeltaTable.forPath(spark, spark_path(uri))
        if table.toDF().join(keys, keys.columns, "left_semi").isEmpty():
            return 0
        with tagged(spark, batch_id):
            table.alias("t").merge(keys.alias("s"), on).whenMatchedDelete().execute()
        _, metrics = _last_commit(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot delete from Delta table {uri}: {exc}") from exc
    return int(metrics.get("numTargetRowsDeleted", 0))


def read(spark: SparkSession, uri: str, version: int | None = None) -> DataFrame | None:
    """The table at ``uri`` (as of ``version``), or None when there is none yet.

    Raises:
        StorageError: the table cannot be read.
    """
    if not exists(spark, uri):
        return None
    return _load(spark, uri, version)


def _load(spark: SparkSession, uri: str, version: int | None) -> DataFrame:
    try:
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(spark_path(uri))
    except _ERRORS as exc:
        raise StorageError(f"cannot read Delta table {uri}: {exc}") from exc


def pinned(spark: SparkSession, uri: str) -> DataFrame | None:
    """The table at ``uri`` as of its current version, fixed in the frame, or None when there is
    none yet. A frame kept (persisted) from it stays kept, with the same rows, when the run writes
    the table afterwards: Delta re-caches every kept plan that reads a table it writes, so a frame
    read with :func:`read` would be run again, against the new version, at its next use.

    Raises:
        StorageError: the table cannot be read.
    """
    if not exists(spark, uri):
        return None
    try:
        version, _ = _head(spark, uri)
    except _ERRORS as exc:
        raise StorageError(f"cannot read Delta table {uri}: {exc}") from exc
    return _load(spark, uri, version)


def version_before_batch(history: list[Commit], batch_id: str) -> int | None:
    """Of a table's ``history`` (:func:`commits`), the version just before ``batch_id`` first
    committed to it, or None when the batch committed nothing or there were no rows before it
    (only the CREATE TABLE)."""
    mine = [c.version for c in history if c.batch_id == batch_id]
    if not mine or min(mine) == 0:
        return None
    before = min(mine) - 1
    if before == 0 and history[0].version == 0 and history[0].operation == "CREATE TABLE":
        return None
    return before


# --- upkeep: compaction, VACUUM, file statistics ----------------------------------------------


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp: dt.datetime  # when it was committed (UTC)
    operation: str
    batch_id: str | None  # the tag of :func:`tagged`; None for untagged commits (e.g. maintenance)
    # True when the commit only added rows (an append, a MERGE that updated and deleted none, the
    # CREATE TABLE): every row that was there before is there after, unchanged.
    inserts_only: bool = False


def commits(spark: SparkSession, uri: str) -> list[Commit]:
    """Every commit the table's log still holds, oldest first (read from the log, not the data).

    Raises:
        StorageError: the history cannot be read.
    """
    try:
        rows = (
            DeltaTable.forPath(spark, spark_path(uri))
            .history()
            # Epoch microseconds, not the timestamp itself: PySpark turns a timestamp into a naive
            # datetime in the Python process's local time zone, whatever the session's.
            .select(
                "version",
                F.unix_micros("timestamp").alias("micros"),
                "operation",
                "userMetadata",
                F.col("operationParameters").getItem("mode").alias("mode"),
                F.col("operationMetrics").getItem("numTargetRowsUpdated").alias("updated"),
                F.col("operationMetrics").getItem("numTargetRowsDeleted").alias("deleted"),
            )
            .collect()
        )
    except _ERRORS as exc:
        raise StorageError(f"cannot read the history of {uri}: {exc}") from exc
    out = [
        Commit(
            int(r["version"]),
            dt.datetime.fromtimestamp(r["micros"] / 1_000_000, dt.UTC),
            str(r["operation"]),
            r["userMetadata"],
            _inserts_only(r["operation"], r["mode"], r["updated"], r["deleted"]),
        )
        for r in rows
    ]
    return sorted(out, key=lambda c: c.version)


def _inserts_only(operation: str, mode: str | None, updated: str | None, deleted: str | None) -> bool:
    if operation == "CREATE TABLE":
        return True
    if operation == "WRITE":
        return mode == "Append"
    return operation == "MERGE" and updated == "0" and deleted == "0"


def changed_existing_rows(history: list[Commit], batch_id: str) -> bool:
    """Whether ``batch_id``'s commits in a table's ``history`` (:func:`commits`) may have changed
    or removed rows that were there before it (anything but appends and MERGEs that only inserted)."""
    return any(c.batch_id == batch_id and not c.inserts_only for c in history)


@dataclass(frozen=True)
class TableDetail:
    files: int  # data files of the current version
    bytes: int  # their total size
    properties: dict[str, str]  # TBLPROPERTIES


def describe(spark: SparkSession, uri: str) -> TableDetail:
    """The table's current files, size and properties (``DESCRIBE DETAIL``: read from the log).

    Raises:
        StorageError: the table cannot be read.
    """
    try:
        row = (
            spark.sql(f"DESCRIBE DETAIL delta.`{spark_path(uri)}`")
            .select("numFiles", "sizeInBytes", "properties")
            .first()
        )
    except _ERRORS as exc:
        raise StorageError(f"cannot describe Delta table {uri}: {exc}") from exc
    assert row is not None
    return TableDetail(int(row["numFiles"] or 0), int(row["sizeInBytes"] or 0), dict(row["properties"] or {}))


@contextmanager
def upkeep(spark: SparkSession, target_bytes: int) -> Iterator[None]:
    """The session set up for :func:`compact` and :func:`vacuum` for the block (session-wide, so
    that tables can be maintained from several threads at once):

    - compaction packs files smaller than ``target_bytes`` into files of up to that size;
    - VACUUM's safety check (at least 7 days kept) is lifted: the caller owns the retention rule;
    - VACUUM lists the table's folder in a Spark job of :data:`VACUUM_LISTING_TASKS` tasks.
    """
    with session_conf(
        spark,
        {
            "spark.databricks.delta.optimize.maxFileSize": str(target_bytes),
            "spark.databricks.delta.optimize.minFileSize": str(target_bytes),
            "spark.databricks.delta.retentionDurationCheck.enabled": "false",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(VACUUM_LISTING_TASKS),
        },
    ):
        yield


def compact(spark: SparkSession, uri: str) -> int:
    """Bin-pack the table's small files into files of up to the target size of :func:`upkeep`
    (``OPTIMIZE``). Files already that large are left alone, and so is a table with nothing to
    pack: Delta then commits nothing. Returns the number of files it replaced.

    Raises:
        StorageError: the compaction cannot be committed.
    """
    try:
        metrics = DeltaTable.forPath(spark, spark_path(uri)).optimize().executeCompaction()
        row = metrics.select("metrics.numFilesRemoved").first()
    except _ERRORS as exc:
        raise StorageError(f"cannot compact Delta table {uri}: {exc}") from exc
    return int(row[0]) if row is not None and row[0] is not None else 0


# VACUUM lists the table's folder in a Spark job of this many tasks. Spark's default (10,000, for
# partition discovery over huge tables) makes a VACUUM of a small table take minutes on 2 cores.
VACUUM_LISTING_TASKS = 8


def vacuum(spark: SparkSession, uri: str, retain_hours: int) -> int:
    """Delete the files no version younger than ``retain_hours`` needs (``VACUUM``), and the
    files no commit ever referenced (what a killed writer left). A dry run looks first: when there
    is nothing to delete, nothing runs (VACUUM itself always commits its start and end). Returns
    the number of files deleted.

    Run it inside :func:`upkeep` (which lifts the 7-day safety check: the caller owns the rule).

    Raises:
        StorageError: the table cannot be listed or vacuumed.
    """
    path = spark_path(uri)
    try:
        doomed = spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours} HOURS DRY RUN").count()
        if doomed:
            DeltaTable.forPath(spark, path).vacuum(retain_hours)
    except _ERRORS as exc:
        raise StorageError(f"cannot vacuum Delta table {uri}: {exc}") from exc
    return int(doomed)


def set_properties(spark: SparkSession, uri: str, properties: dict[str, str]) -> None:
    """Set table properties (one commit).

    Raises:
        StorageError: the table cannot be altered.
    """
    listed = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(properties.items()))
    try:
        spark.sql(f"ALTER TABLE delta.`{spark_path(uri)}` SET TBLPROPERTIES ({listed})")
    except _ERRORS as exc:
        raise StorageError(f"cannot set the properties of Delta table {uri}: {exc}") from exc
