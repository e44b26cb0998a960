"""The run ledger: an append-only Delta table (``<lake>/_runs``) with one row per job run —
batch, job, status, start and end, per-dataset counts, rule counts, where the result and the
report are. Both jobs append to it; the reports index reads it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.io import delta
from common.io.results import DatasetResult

COUNTS = ("rows_read", "rows_valid", "rows_quarantined", "duplicates_collapsed")

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("job", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("started_at", T.TimestampType(), True),
        T.StructField("finished_at", T.TimestampType(), True),
        *(T.StructField(c, T.LongType(), False) for c in COUNTS),
        T.StructField(
            "dataset_counts", T.MapType(T.StringType(), T.MapType(T.StringType(), T.LongType())), True
        ),
        T.StructField("rule_counts", T.MapType(T.StringType(), T.LongType()), True),
        T.StructField("result_uri", T.StringType(), True),
        T.StructField("report_uri", T.StringType(), True),
    ]
)


def park_counts(dataset: DatasetResult) -> dict[str, int]:
    """A dataset's park figures for ``dataset_counts``: this batch's parked rows, and what the run
    did with the park (released, expired, still waiting, the oldest one's age in days)."""
    out = {"rows_parked": dataset.rows_parked}
    park = dataset.park
    if park is not None:
        out |= {
            "park_released": park.rows_released,
            "park_expired": park.rows_expired,
            "park_parent_quarantined": park.rows_parent_quarantined,
            "park_waiting": park.rows_waiting,
        }
        if park.oldest_parked_days is not None:
            out["park_oldest_days"] = park.oldest_parked_days
    return out


def _stamp(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def record_run(spark: SparkSession, uri: str, run: dict[str, Any]) -> None:
    """Append one run (keys as :data:`RUNS_SCHEMA`; times as ISO 8601 strings).

    Raises:
        StorageError: the ledger cannot be written.
    """
    row = {**run, "started_at": _stamp(run.get("started_at")), "finished_at": _stamp(run.get("finished_at"))}
    frame = spark.createDataFrame([tuple(row.get(f.name) for f in RUNS_SCHEMA.fields)], RUNS_SCHEMA)
    delta.append(spark, uri, frame, RUNS_SCHEMA, run["batch_id"])


def latest_runs(spark: SparkSession, uri: str, job: str, limit: int = 500) -> list[dict[str, Any]]:
    """The newest run of ``job`` for each batch, newest first (at most ``limit``).

    Raises:
        StorageError: the ledger cannot be read.
    """
    frame = delta.read(spark, uri)
    if frame is None:
        return []
    newest = (
        frame.where(F.col("job") == job)
        .groupBy("batch_id")
        .agg(
            F.max_by(
                F.struct(*[c for c in RUNS_SCHEMA.fieldNames() if c != "batch_id"]), "finished_at"
            ).alias("r")
        )
    )
    rows = newest.select("batch_id", "r.*").orderBy(F.desc("finished_at")).limit(limit).collect()
    return [r.asDict(recursive=True) for r in rows]
