"""A tiny run of the benchmark code, so `make bench` cannot rot (real jobs, real outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.bench import markdown, run_benchmark

# Slow (131 and 157 s measured: four jobs as processes, then validate and transform of a sample-sized batch):
# `make drills` and CI run it, `make test` does not.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_benchmark_smoke_run_writes_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = run_benchmark([2_000], runs=1, out=tmp_path, spark_master="local[2]", history_items=2_000)
    [scale] = rep["scales"]
    assert scale["items"] == 2_000 and scale["runs"] == 1
    for job in ("baseline", "validate", "transform", "pipeline"):
        assert scale[job]["seconds_median"] > 0 and scale[job]["peak_rss_mb_max"] > 100  # a JVM was measured
    assert scale["validate_over_baseline_median"] == round(
        scale["validate"]["seconds_median"] / scale["baseline"]["seconds_median"], 3
    )
    validate, transform = scale["validate"]["all_seconds"][0], scale["transform"]["all_seconds"][0]
    assert scale["end_to_end"]["two_processes_median"] == round(validate + transform, 2)
    assert scale["end_to_end"]["one_process_median"] == scale["pipeline"]["seconds_median"]
    steady = rep["steady"]  # the sample-sized batch into the 2,000-item scale's lake, checked by the bench
    assert steady["history_items"] == 2_000 and steady["items"] == 27_000
    validate, transform = steady["validate"]["all_seconds"][0], steady["transform"]["all_seconds"][0]
    assert steady["end_to_end"]["two_processes_median"] == round(validate + transform, 2)
    assert not (tmp_path / "lake" / "history-2000").exists()  # the kept lake is cleaned up
    assert rep["machine"]["cores"] >= 1
    [report_dir] = [p for p in tmp_path.iterdir() if p.name.endswith("Z")]
    assert json.loads((report_dir / "report.json").read_text()) == rep
    assert (report_dir / "report.md").read_text().strip() == markdown(rep)
    printed = capsys.readouterr().out
    assert (
        "| 2,000 |" in printed
        and "27,000-item batch of new records into a lake holding the 2,000-item" in printed
    )
