"""How validate reads the lake's tables: as of the run's start, so what it kept stays kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from common.errors import StorageError
from common.io import delta


def _still_kept(spark: SparkSession, frame: DataFrame) -> bool:
    """Whether Spark still holds ``frame``'s kept rows (not dropped for a recomputation)."""
    found = spark._jsparkSession.sharedState().cacheManager().lookupCachedData(frame._jdf)
    if found.isEmpty():
        return False
    return bool(found.get().cachedRepresentation().cacheBuilder().isCachedColumnBuffersLoaded())


def test_a_frame_kept_from_a_pinned_read_keeps_its_rows_when_the_table_is_written(
    spark: SparkSession, tmp_path: Path
) -> None:
    uri = str(tmp_path / "parents")
    spark.range(3).withColumnRenamed("id", "key").write.format("delta").save(uri)
    keys = delta.pinned(spark, uri)
    assert keys is not None
    referenced = spark.range(10).withColumnRenamed("id", "key").join(keys, "key", "left_semi").persist()
    try:
        assert referenced.count() == 3
        # The run publishes the parents afterwards (here: keys 3 and 4 arrive).
        spark.range(3, 5).withColumnRenamed("id", "key").write.format("delta").mode("append").save(uri)
        assert _still_kept(spark, referenced)
        assert referenced.count() == 3
    finally:
        referenced.unpersist()


def test_pinned_is_none_without_a_table(spark: SparkSession, tmp_path: Path) -> None:
    assert delta.pinned(spark, str(tmp_path / "none")) is None


def _two_files_without_the_first(spark: SparkSession, uri: str) -> None:
    """A table of two files, keys 0-9 and 100-109, whose first file is gone from storage: a read
    that opens it fails, so a query that succeeds has skipped it."""
    spark.range(0, 10).withColumnRenamed("id", "key").coalesce(1).write.format("delta").save(uri)
    log = Path(uri) / "_delta_log" / "00000000000000000000.json"
    first = next(json.loads(line)["add"]["path"] for line in log.read_text().splitlines() if '"add"' in line)
    spark.range(100, 110).withColumnRenamed("id", "key").coalesce(1).write.format("delta").mode(
        "append"
    ).save(uri)
    (Path(uri) / first).unlink()


def test_a_key_range_read_opens_only_the_files_that_can_hold_the_keys(
    spark: SparkSession, tmp_path: Path
) -> None:
    uri = str(tmp_path / "table")
    _two_files_without_the_first(spark, uri)
    table = delta.read(spark, uri)
    assert table is not None
    keys = spark.range(100, 104).withColumnRenamed("id", "key")
    found = delta.in_key_range(table, keys, ["key"]).join(keys, "key", "left_semi")
    assert sorted(r["key"] for r in found.collect()) == [100, 101, 102, 103]


def test_an_upsert_of_new_keys_opens_no_file_of_older_keys(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "table")
    _two_files_without_the_first(spark, uri)
    schema = T.StructType([T.StructField("key", T.LongType())])
    new = spark.range(200, 205).withColumnRenamed("id", "key")
    outcome = delta.upsert(spark, uri, new, schema, ["key"], delta.UpdateWhen("false", ()), "b2", 5)
    assert (outcome.rows_inserted, outcome.rows_updated) == (5, 0)
    assert outcome.version == outcome.previous_version + 1


def test_a_commit_file_that_is_not_json_is_a_storage_error(spark: SparkSession, tmp_path: Path) -> None:
    """A table's head is read from its commit file: when that file is damaged, the job fails with
    the error it reports for an unreadable table, naming the commit, not with a parser's."""
    uri = str(tmp_path / "table")
    schema = T.StructType([T.StructField("key", T.LongType())])
    delta.ensure_table(spark, uri, schema)
    commit = Path(uri) / "_delta_log" / "00000000000000000000.json"
    commit.write_text('{"commitInfo": {"operation"\n' + commit.read_text())
    # the local file system's checksum beside it would catch the damage first; S3 keeps none
    (commit.parent / f".{commit.name}.crc").unlink()
    with pytest.raises(StorageError, match=r"commit 0 of .* is not valid JSON"):
        delta.pinned(spark, uri)
