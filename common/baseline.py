"""The benchmark's same-engine baseline: the same raw files, the same reader and the same Delta
writer as the validate job, with no checks at all. validate / baseline = the cost of validation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.dataset as pads
from pyspark.sql import SparkSession

from common import delta_io, storage
from common.contract import DATASETS, Contract
from common.csv_input import CheckedFile, inspect_file, read_raw
from common.manifest import Batch

if TYPE_CHECKING:
    from common.settings import Settings


def run_baseline(
    spark: SparkSession, settings: Settings, batch: Batch, contracts: dict[str, Contract], work_dir: Path
) -> dict[str, int]:
    """Copy each dataset's raw rows into ``<lake>/baseline/<dataset>``; returns rows written."""
    written: dict[str, int] = {}
    for name in DATASETS:
        uris = batch.files.get(name, [])
        if not uris:
            continue
        contract = contracts[name]
        files: list[CheckedFile] = []
        for index, uri in enumerate(uris):
            path = storage.stage_file(uri, work_dir / "raw" / name / str(index), settings)
            files.append(inspect_file(uri, path, contract, settings.extra_columns))
        stage = work_dir / "staged" / name
        read_raw(spark, files, contract, settings.csv_multiline).write.mode("overwrite").parquet(str(stage))
        reader = pads.dataset(stage, format="parquet").scanner().to_reader()
        outcome = delta_io.replace_where(
            storage.join_uri(settings.lake_root, "baseline", name), reader, "true", settings
        )
        written[name] = outcome.rows_inserted
    return written
