"""Spark session construction (never at import time)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

if TYPE_CHECKING:
    from common.settings import Settings


def build_spark(settings: Settings, app_name: str) -> SparkSession:
    """A SparkSession for a job: UTC, ANSI, micros timestamps in Parquet, quiet logs."""
    builder = SparkSession.builder
    if settings.spark_master:
        builder = builder.master(settings.spark_master)
    if (settings.spark_master or "local").startswith("local"):
        # Keep a local driver on loopback: it must never bind or talk to another interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    spark = (
        builder.appName(app_name)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.sql.autoBroadcastJoinThreshold", f"{settings.spark_broadcast_mb}m")
        .config("spark.sql.adaptive.autoBroadcastJoinThreshold", f"{settings.spark_broadcast_mb}m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # One writer per output partition (valid / quarantined) instead of sorting every row by it.
        .config("spark.sql.maxConcurrentOutputFileWriters", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark
