"""Helpers shared by job-level tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from jobs import validate


def run_validate(spark: SparkSession, lake: Path, *args: str) -> tuple[int, dict[str, Any] | None]:
    """Run the validate entrypoint in-process; return its exit code and result JSON."""
    argv = ["--lake-root", str(lake), "--spark-master", "local[2]", "--spark-shuffle-partitions", "2", *args]
    code = validate.main(argv, spark=spark)
    results = sorted(lake.glob("_results/*/validate.json"), key=lambda p: p.stat().st_mtime)
    return code, (json.loads(results[-1].read_text()) if results else None)


def delta_rows(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    """A Delta table's current rows, read by delta-spark in the test session."""
    spark = SparkSession.getActiveSession()
    assert spark is not None, "delta_rows needs the session-scoped spark fixture"
    frame = spark.read.format("delta").load(str(path))
    return (frame.select(*columns) if columns else frame).toArrow()


def assert_accounted(result: dict[str, Any]) -> None:
    """The row-accounting invariant, checked from the outside too."""
    for name, d in result["datasets"].items():
        if d["status"] in {"PASSED", "FAILED"} and not any(f.get("error") for f in d["files"]):
            assert d["rows_read"] == d["rows_valid"] + d["rows_quarantined"] + d["duplicates_collapsed"], name
            assert d["rows_read"] == sum(f["rows_read"] for f in d["files"]), name
