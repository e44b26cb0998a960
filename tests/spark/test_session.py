"""The session a local job builds: where its pinned jars are loaded from."""

from __future__ import annotations

from pyspark.sql import SparkSession


def test_a_local_session_loads_delta_from_the_jvms_class_path(spark: SparkSession) -> None:
    """The pinned jars are on the driver JVM's own class path (so the class archive can hold
    their classes), not handed to Spark's class loader as ``spark.jars``."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    loader = jvm.java.lang.Class.forName("io.delta.tables.DeltaTable").getClassLoader()
    assert loader.equals(jvm.java.lang.ClassLoader.getSystemClassLoader())
    assert spark.conf.get("spark.jars", "") == ""
