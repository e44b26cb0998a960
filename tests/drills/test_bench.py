"""A tiny run of the benchmark code, so `make bench` cannot rot (real jobs, real outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.bench import markdown, run_benchmark

# Slow (four jobs as processes, then a history lake built, the day's batch into it and an empty lake,
# into it with a park, and into it after a lived day):
# `make drills` and CI run it, `make test` does not.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_benchmark_smoke_run_writes_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = run_benchmark(
        [2_000],
        runs=1,
        out=tmp_path,
        spark_master="local[2]",
        histories=[0, 2_000],
        park_items=500,
        lived_days=1,
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
    # the day's batch into an empty lake, a 2,000-item one, that one with 500 parked items, and
    # that one after a day of batches and maintenance, each checked by the bench
    empty, grown, parked, lived = rep["growth"]
    assert (empty["history_items"], grown["history_items"]) == (0, 2_000)
    assert (parked["history_items"], parked["parked_items"], grown["parked_items"]) == (2_000, 500, 0)
    assert parked["ratio_to_no_park"] == round(parked["end_to_end_median"] / grown["end_to_end_median"], 3)
    assert (lived["history_items"], lived["lived_days"], lived["parked_items"]) == (2_000, 1, 0)
    assert (grown["lived_days"], parked["lived_days"], grown["ratio_to_unlived"]) == (0, 0, None)
    assert lived["ratio_to_unlived"] == round(lived["end_to_end_median"] / grown["end_to_end_median"], 3)
    assert lived["ratio_to_no_park"] is None and parked["ratio_to_unlived"] is None
    assert empty["ratio_to_empty"] == 1.0
    assert grown["ratio_to_empty"] == round(grown["end_to_end_median"] / empty["end_to_end_median"], 3)
    assert grown["end_to_end_all"] == [round(grown["validate_median"] + grown["transform_median"], 2)]
    assert not list((tmp_path / "lake").glob("growth-*"))  # every lake is cleaned up
    assert rep["machine"]["cores"] >= 1
    [report_dir] = [p for p in tmp_path.iterdir() if p.name.endswith("Z")]
    assert json.loads((report_dir / "report.json").read_text()) == rep
    assert (report_dir / "report.md").read_text().strip() == markdown(rep)
    printed = capsys.readouterr().out
    assert "| 2,000 |" in printed and "into lakes of growing history" in printed and "| 2,000 |" in printed
