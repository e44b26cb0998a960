"""`python -m jobs.run`: validate then transform in one process, with the same outputs as the two jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from common.usecases import lifecycle
from jobs import run
from jobs.exit_codes import ExitCode
from tests.helpers import count_looks, delta_rows, truth_files

SPARK = ["--spark-master", "local[2]", "--spark-shuffle-partitions", "2"]


def test_one_process_validates_and_transforms_a_batch(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """... resolving the batch once: each raw file is looked at once (its header check, which also
    sizes the JVM), as by validate alone."""
    truth = generate_batch(tmp_path / "in", GeneratorConfig(items=1200, parts=2, seed=5), batch_id="one-1")
    raw = [uri for uris in truth_files(tmp_path / "in").values() for uri in uris]
    looks = count_looks(monkeypatch)
    # the job builds "its" session: the suite's, which it must not stop
    monkeypatch.setattr(lifecycle, "build_spark", lambda *_: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)
    lake = tmp_path / "lake"
    argv = ["--manifest", str(tmp_path / "in" / "manifest.json"), "--lake-root", str(lake), *SPARK]
    assert run.main(argv) == ExitCode.OK
    assert len(raw) >= 3 and {uri: looks.get(uri, 0) for uri in raw} == dict.fromkeys(raw, 1)
    validated = json.loads((lake / "_results" / "one-1" / "validate.json").read_text())
    transformed = json.loads((lake / "_results" / "one-1" / "transform.json").read_text())
    assert validated["status"] == transformed["status"] == "SUCCEEDED"
    for name, expected in truth["datasets"].items():
        assert validated["datasets"][name]["rows_valid"] == expected["rows_valid"], name
    order_daily = delta_rows(lake / "kpi" / "order_daily", ["order_date"])
    assert sorted(d.isoformat() for d in order_daily.column("order_date").to_pylist()) == sorted(
        transformed["touched_dates"]
    )
    assert transformed["outputs"]["order_daily"]["rows"] == order_daily.num_rows > 0


def test_a_failed_batch_is_exit_4_and_not_transformed(spark: SparkSession, tmp_path: Path) -> None:
    generate_batch(tmp_path / "in", GeneratorConfig(items=600, parts=1, seed=6), batch_id="one-2")
    lake = tmp_path / "lake"
    argv = ["--manifest", str(tmp_path / "in" / "manifest.json"), "--lake-root", str(lake), *SPARK]
    assert run.main([*argv, "--quarantine-threshold", "0"], spark=spark) == ExitCode.BATCH_FAILED
    assert json.loads((lake / "_results" / "one-2" / "validate.json").read_text())["status"] == "FAILED"
    assert not (lake / "_results" / "one-2" / "transform.json").exists()
    assert not (lake / "kpi").exists()


def test_an_unreadable_manifest_is_exit_2(spark: SparkSession, tmp_path: Path) -> None:
    argv = ["--manifest", str(tmp_path / "missing.json"), "--lake-root", str(tmp_path / "lake"), *SPARK]
    assert run.main(argv, spark=spark) == ExitCode.CONFIG
