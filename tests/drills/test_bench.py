"""A tiny run of the benchmark code, so `make bench` cannot rot (real jobs, real outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.bench import markdown, run_benchmark

# Slow (six jobs as processes: the four of a scale, then the day's batch into an empty lake):
# `make drills` and CI run it, `make test` does not. The growth rows into a built history, with a
# park and after lived days, are `make bench`'s (their checks run there, against every lake).
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_benchmark_smoke_run_writes_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = run_benchmark(
        [2_000],
        runs=1,
        out=tmp_path,
        spark_master="local[2]",
        histories=[0],
        park_items=0,
        lived_days=0,
    )
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
    # the day's batch into an empty lake, checked by the bench, timed by job
    [empty] = rep["growth"]
    assert (empty["history_items"], empty["parked_items"], empty["lived_days"]) == (0, 0, 0)
    assert empty["end_to_end_all"] == [round(empty["validate_median"] + empty["transform_median"], 2)]
    assert empty["ratio_to_empty"] == 1.0 and empty["validate_median"] > 0 and empty["transform_median"] > 0
    assert not list((tmp_path / "lake").glob("growth-*"))  # every lake is cleaned up
    assert rep["machine"]["cores"] >= 1
    [report_dir] = [p for p in tmp_path.iterdir() if p.name.endswith("Z")]
    assert json.loads((report_dir / "report.json").read_text()) == rep
    assert (report_dir / "report.md").read_text().strip() == markdown(rep)
    printed = capsys.readouterr().out
    assert "| 2,000 |" in printed and "into lakes of growing history" in printed
