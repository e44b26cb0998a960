"""How validate reads the lake's tables: as of the run's start, so what it kept stays kept."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

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
