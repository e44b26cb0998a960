"""validate's joins broadcast only what the job measured small, never a side Spark estimates small."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from common.io.spark import BROADCAST_MAX_ROWS, broadcast_if_small, broadcast_only_when_hinted


def _plan(frame: DataFrame) -> str:
    return str(frame._jdf.queryExecution().executedPlan().toString())  # type: ignore[operator]


def test_inside_the_block_only_a_hinted_side_is_broadcast(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.adaptive.enabled", "false")  # the plan as chosen, not re-planned
    try:
        left = spark.range(1000).withColumnRenamed("id", "key")
        right = spark.range(100).withColumnRenamed("id", "key")
        assert "BroadcastHashJoin" in _plan(left.join(right, "key"))  # tiny on estimate: broadcast
        with broadcast_only_when_hinted(spark):
            assert "BroadcastHashJoin" not in _plan(left.join(right, "key"))
            assert "BroadcastHashJoin" in _plan(left.join(broadcast_if_small(right, 100), "key"))
            too_many = broadcast_if_small(right, BROADCAST_MAX_ROWS + 1)  # counted: too many to broadcast
            assert "BroadcastHashJoin" not in _plan(left.join(too_many, "key"))
        assert "BroadcastHashJoin" in _plan(left.join(right, "key"))  # the session's setting is back
    finally:
        spark.conf.unset("spark.sql.adaptive.enabled")
