"""The benchmark's same-engine baseline: the same raw files, the same reader and the same Delta
writer (delta-spark) as the validate job, with no checks at all. validate / baseline = the cost of
validation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from common.contracts import DATASETS, Contract
from common.io import delta
from common.io.csv_source import inspect_file, read_raw
from common.io.manifest import Batch
from common.io.storage import join_uri

if TYPE_CHECKING:
    from common.settings import Settings


def run_baseline(
    spark: SparkSession, settings: Settings, batch: Batch, contracts: dict[str, Contract]
) -> dict[str, int]:
    """Copy each dataset's raw rows into ``<lake>/baseline/<dataset>``; returns rows written."""
    written: dict[str, int] = {}
    for name in DATASETS:
        uris = batch.files.get(name, [])
        if not uris:
            continue
        contract = contracts[name]
        files = [inspect_file(uri, contract, settings) for uri in uris]
        rows = read_raw(spark, files, contract, settings.csv_multiline)
        target = join_uri(settings.lake_root, "baseline", name)  # beside the job's tables
        outcome = delta.replace_where(spark, target, rows, rows.schema, "true", None)
        written[name] = outcome.rows_inserted
    return written
