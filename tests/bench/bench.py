"""`make bench`: run the real jobs at several scales and report time, throughput and memory.

Every timed run is a separate process running a real job end to end (Delta tables, result JSON,
KPIs are produced and checked), sampled for the peak resident memory of its whole process tree
(Python driver + JVM). Figures are min and median over runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from common.generator import GeneratorConfig, generate_batch
from tests.bench import growth

JOBS = ("baseline", "validate", "transform", "pipeline")
# `jobs.run` (validate + transform in one process) is the small-batch option: timed only up to here,
# which keeps a whole `make bench` under 20 minutes on a 2-core machine.
PIPELINE_MAX_ITEMS = 100_000
# The real sample the public implementations were compared on: ~46k rows across datasets.
SAMPLE_ITEMS = 27_000
# End to end, as the state machine runs a batch (two processes), and the one-process option.
E2E_TARGETS = {SAMPLE_ITEMS: 15.0, 1_000_000: 33.0, 5_000_000: 110.0}
RATIO_TARGET = 1.3  # validate / bare copy at >= 1M items
# The scales above start each run from an empty lake; day to day, a small batch lands in a lake
# that holds every earlier one: the lake-growth rows (tests/bench/growth.py) time that.


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float


@dataclass
class ScaleResult:
    items: int
    rows_total: int
    runs: dict[str, list[Measurement]] = field(default_factory=dict)

    def stat(self, job: str, what: str, how: str) -> float:
        values = [float(getattr(m, what)) for m in self.runs[job]]
        return min(values) if how == "min" else statistics.median(values)

    def end_to_end(self) -> list[float]:
        """validate + transform of each run: two processes, as the state machine runs them."""
        return [
            round(v.seconds + t.seconds, 2)
            for v, t in zip(self.runs["validate"], self.runs["transform"], strict=True)
        ]


def jobs_at(items: int) -> tuple[str, ...]:
    return tuple(job for job in JOBS if job != "pipeline" or items <= PIPELINE_MAX_ITEMS)


def _peak_rss(process: psutil.Process, stop: threading.Event, out: list[float]) -> None:
    peak = 0
    while not stop.is_set():
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        stop.wait(0.1)
    out.append(peak / 1024**2)


def run_measured(command: list[str], env: dict[str, str], log: Path) -> Measurement:
    """Run a job process; wall time and peak RSS of its process tree.

    Raises:
        RuntimeError: the job exited non-zero (the benchmark measures nothing then).
    """
    with log.open("w") as handle:
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        stop, peak = threading.Event(), []  # type: ignore[var-annotated]
        sampler = threading.Thread(target=_peak_rss, args=(psutil.Process(proc.pid), stop, peak))
        sampler.start()
        code = proc.wait()
        seconds = time.monotonic() - started
        stop.set()
        sampler.join()
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}; see {log}")
    return Measurement(round(seconds, 2), round(peak[0], 1))


def delta_log_rows(table: Path) -> int:
    """Rows of a local Delta table, replayed from its log (live files' ``numRecords``): the newest
    checkpoint's files, then the JSON commits after it.

    An independent reader: the benchmark's checks must not trust the engine they time.
    """
    log = table / "_delta_log"
    live: dict[tuple[str, str], int] = {}

    def add(action: dict[str, Any]) -> None:
        deleted = int((action.get("deletionVector") or {}).get("cardinality") or 0)
        stats = action.get("stats")
        records = json.loads(stats)["numRecords"] if stats else action["stats_parsed"]["numRecords"]
        live[_file_id(action)] = int(records) - deleted

    checkpoints = sorted(log.glob("*.checkpoint*.parquet"))
    since = -1
    if checkpoints:
        since = int(checkpoints[-1].name[:20])
        for part in (p for p in checkpoints if int(p.name[:20]) == since):
            for action in pq.read_table(part, columns=["add"]).column("add").to_pylist():
                if action is not None:
                    add(action)
    for commit in sorted(log.glob("*.json")):
        if int(commit.name[:20]) <= since:
            continue
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                add(action["add"])
            elif "remove" in action:
                live.pop(_file_id(action["remove"]), None)
    return sum(live.values())


def _file_id(action: dict[str, Any]) -> tuple[str, str]:
    """A live file's identity in the Delta protocol: its path and its deletion vector's unique id.
    A commit that marks rows of a file deleted removes (path, old vector) and adds (path, new
    vector), in either order."""
    vector = action.get("deletionVector") or {}
    unique = f"{vector.get('storageType', '')}{vector.get('pathOrInlineDv', '')}"
    if "offset" in vector:
        unique += f"@{vector['offset']}"
    return action["path"], unique


def _check_outputs(
    lake: Path, batch_id: str, truths: list[dict[str, Any]], with_baseline: bool = True
) -> None:
    """A timed run must have produced the real outputs: ``batch_id`` (the last of ``truths``)
    validated and transformed, and the validated tables holding the valid rows of every batch in
    ``truths`` (earlier ones: the lake's history)."""
    result = json.loads((lake / "_results" / batch_id / "validate.json").read_text())
    assert result["status"] == "SUCCEEDED", result["errors"]
    truth = truths[-1]
    for name, expected in truth["datasets"].items():
        rows = delta_log_rows(lake / "validated" / name)
        assert rows == sum(t["datasets"][name]["rows_valid"] for t in truths), name
        assert result["datasets"][name]["rows_valid"] == expected["rows_valid"], name
        if with_baseline:
            assert delta_log_rows(lake / "baseline" / name) == expected["rows_read"], name
    transform = json.loads((lake / "_results" / batch_id / "transform.json").read_text())
    assert transform["status"] == "SUCCEEDED" and transform["outputs"]["order_daily"]["rows"] > 0


def _job_env(spark_master: str) -> dict[str, str]:
    return {**os.environ, "ECOM_SPARK_MASTER": spark_master, "ECOM_LOG_FORMAT": "text"}


def _commands(data: Path, batch_id: str, lake: Path, one_process_lake: Path) -> dict[str, list[str]]:
    """Each timed job's command for the batch generated in ``data``: the baseline, validate and
    transform in ``lake``, ``jobs.run`` in a lake of its own."""
    common = ["--manifest", str(data / "manifest.json"), "--quarantine-threshold", "0.5"]
    return {
        "baseline": [sys.executable, "-m", "tests.bench.baseline_job", *common, "--lake-root", str(lake)],
        "validate": [sys.executable, "-m", "jobs.validate", *common, "--lake-root", str(lake)],
        "transform": [
            sys.executable,
            "-m",
            "jobs.transform",
            "--batch-id",
            batch_id,
            "--lake-root",
            str(lake),
        ],
        "pipeline": [sys.executable, "-m", "jobs.run", *common, "--lake-root", str(one_process_lake)],
    }


def _time(
    result: ScaleResult, job: str, command: list[str], env: dict[str, str], log: Path, label: str
) -> None:
    """One timed run of ``job``, recorded in ``result`` and printed after ``label``."""
    measurement = run_measured(command, env, log)
    result.runs[job].append(measurement)
    print(f"  {label}  {job:<9} {measurement.seconds:8.1f} s  {measurement.peak_rss_mb:8.0f} MB", flush=True)


def run_scale(items: int, runs: int, out: Path, spark_master: str, log_dir: Path) -> ScaleResult:
    data = out / "data" / f"items-{items}"
    if not (data / "ground_truth.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        parts = max(2, min(16, items // 500_000))
        generate_batch(data, GeneratorConfig(items=items, parts=parts, seed=42), batch_id="bench")
    truth = json.loads((data / "ground_truth.json").read_text())
    rows_total = sum(d["rows_read"] for d in truth["datasets"].values())
    jobs = jobs_at(items)
    result = ScaleResult(items, rows_total, {job: [] for job in jobs})
    env = _job_env(spark_master)
    for run in range(runs):
        lake = out / "lake" / f"items-{items}-run{run}"
        one_process_lake = out / "lake" / f"items-{items}-run{run}-pipeline"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(one_process_lake, ignore_errors=True)
        commands = _commands(data, "bench", lake, one_process_lake)
        for job in jobs:
            log = log_dir / f"{job}-{items}-run{run}.log"
            _time(result, job, commands[job], env, log, f"{items:>10,} items  run {run + 1}/{runs}")
        _check_outputs(lake, "bench", [truth])
        if "pipeline" in jobs:
            _check_outputs(one_process_lake, "bench", [truth], with_baseline=False)
        shutil.rmtree(one_process_lake, ignore_errors=True)
        shutil.rmtree(lake, ignore_errors=True)
    return result


def build_history_lake(out: Path, items: int, env: dict[str, str], log_dir: Path) -> Path:
    """A clean history of ``items`` order items validated and transformed (untimed, logged) by
    the code under test, so a layout change reaches the history too; checked like a timed run;
    its logs then cut as Delta's cleanup cuts them a month later (:mod:`tests.bench.aged`)."""
    data, truth = growth.history_data(out, items)
    lake = out / "lake" / f"growth-history-{items}"
    shutil.rmtree(lake, ignore_errors=True)
    common = ["--manifest", str(data / "manifest.json"), "--lake-root", str(lake)]
    print(f"  building a lake of {items:,} history items", flush=True)
    run_measured(
        [sys.executable, "-m", "jobs.validate", *common], env, log_dir / f"history-{items}-validate.log"
    )
    transform = [sys.executable, "-m", "jobs.transform", "--batch-id", growth.HISTORY_BATCH_ID]
    run_measured([*transform, "--lake-root", str(lake)], env, log_dir / f"history-{items}-transform.log")
    _check_lake(lake, growth.HISTORY_BATCH_ID, {n: d["rows_valid"] for n, d in truth["datasets"].items()})
    # Logs as a lake older than the log's retention has them: not beginning at version 0.
    run_measured(
        [sys.executable, "-m", "tests.bench.aged", str(lake)], env, log_dir / f"history-{items}-aged.log"
    )
    return lake


def build_lived_lake(
    out: Path, items: int, source: Path, days: int, env: dict[str, str], log_dir: Path
) -> tuple[Path, growth.Lived]:
    """The history lake ``source`` after ``days`` lived days: each day's batch validated and
    transformed, then the lake maintained (untimed, logged); each day checked like a timed run
    (rows, the corrections' updates, the KPIs added to the stored rows)."""
    lake = out / "lake" / f"growth-lived-{items}"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(source, lake)
    held = growth.held_before_day(growth.history_data(out, items)[1])
    lived: list[tuple[dict[str, Any], Path]] = []
    print(f"  living {days} days in the lake of {items:,} history items", flush=True)
    for day in range(1, days + 1):
        data, truth = growth.lived_data(out, day)
        batch_id = growth.lived_batch_id(day)
        common = ["--lake-root", str(lake)]
        validate = [sys.executable, "-m", "jobs.validate", "--manifest", str(data / "manifest.json"), *common]
        run_measured(validate, env, log_dir / f"lived-{items}-day{day}-validate.log")
        transform = [sys.executable, "-m", "jobs.transform", "--batch-id", batch_id, *common]
        run_measured(transform, env, log_dir / f"lived-{items}-day{day}-transform.log")
        updated = held.add(truth, data)
        _check_lake(lake, batch_id, held.rows)
        growth.check_updated(lake, batch_id, updated)
        growth.check_added(lake, batch_id)
        maintain = [sys.executable, "-m", "jobs.maintain", *common]
        run_measured(maintain, env, log_dir / f"lived-{items}-day{day}-maintain.log")
        lived.append((truth, data))
    return lake, lived


def _check_lake(lake: Path, batch_id: str, rows: dict[str, int]) -> None:
    """``batch_id`` validated and transformed, and each validated table holding ``rows``."""
    result = json.loads((lake / "_results" / batch_id / "validate.json").read_text())
    assert result["status"] == "SUCCEEDED", result["errors"]
    for name, expected in rows.items():
        assert delta_log_rows(lake / "validated" / name) == expected, (name, expected)
    transform = json.loads((lake / "_results" / batch_id / "transform.json").read_text())
    assert transform["status"] == "SUCCEEDED" and transform["outputs"]["order_daily"]["rows"] > 0


def run_lake_growth(
    histories: list[int],
    runs: int,
    out: Path,
    spark_master: str,
    log_dir: Path,
    park_items: int = growth.PARK_ITEMS,
    lived_days: int = 0,
) -> list[growth.GrowthResult]:
    """The growth rows, then the park row: the first non-empty history again, with ``park_items``
    order items parked (0: no park row); then the lived row: that history again after
    ``lived_days`` days of batches and maintenance (0: none)."""
    env = _job_env(spark_master)
    built: dict[int, Path] = {}
    cleanup: list[Path] = []

    def timed(command: list[str], log: Path, label: str, job: str) -> Measurement:
        measurement = run_measured(command, env, log)
        print(
            f"  {label}  {job:<9} {measurement.seconds:8.1f} s  {measurement.peak_rss_mb:8.0f} MB", flush=True
        )
        return measurement

    def history(items: int) -> Path:
        built[items] = build_history_lake(out, items, env, log_dir)
        return built[items]

    def check(lake: Path, rows: dict[str, int]) -> None:
        _check_lake(lake, growth.DAY_BATCH_ID, rows)

    try:
        runner = growth.Runner(runs, out, log_dir, timed, check)
        results = growth.run_growth(histories, runner, history)
        first = next((h for h in histories if h), None)
        if park_items and first is not None:
            results.append(growth.run_park(first, built[first], park_items, runner))
        if lived_days and first is not None:
            lake, lived = build_lived_lake(out, first, built[first], lived_days, env, log_dir)
            cleanup.append(lake)
            results.append(growth.run_lived(first, lake, lived, runner))
        return results
    finally:
        for lake in [*built.values(), *cleanup]:
            shutil.rmtree(lake, ignore_errors=True)


def _job_figures(r: ScaleResult, job: str) -> dict[str, Any]:
    return {
        "seconds_min": r.stat(job, "seconds", "min"),
        "seconds_median": r.stat(job, "seconds", "median"),
        "rows_per_second_median": round(r.rows_total / r.stat(job, "seconds", "median")),
        "peak_rss_mb_max": max(m.peak_rss_mb for m in r.runs[job]),
        "all_seconds": [m.seconds for m in r.runs[job]],
    }


def _end_to_end(r: ScaleResult) -> dict[str, Any]:
    e2e = r.end_to_end()
    return {"two_processes_median": round(statistics.median(e2e), 2), "two_processes_min": min(e2e)}


def report(
    results: list[ScaleResult],
    started: dt.datetime,
    runs: int,
    growth_results: list[growth.GrowthResult] | None = None,
) -> dict[str, Any]:
    scales = []
    for r in results:
        entry: dict[str, Any] = {"items": r.items, "rows_total": r.rows_total, "runs": runs}
        for job in r.runs:
            entry[job] = _job_figures(r, job)
        entry["validate_over_baseline_median"] = round(
            r.stat("validate", "seconds", "median") / r.stat("baseline", "seconds", "median"), 3
        )
        entry["end_to_end"] = {
            **_end_to_end(r),
            "one_process_median": r.stat("pipeline", "seconds", "median") if "pipeline" in r.runs else None,
            "target": E2E_TARGETS.get(r.items),
        }
        scales.append(entry)
    by_items = {s["items"]: s for s in scales}
    scaling = {}
    if 1_000_000 in by_items and 5_000_000 in by_items:
        for job in ("validate", "transform", "baseline"):
            scaling[job] = round(
                by_items[5_000_000][job]["seconds_median"] / by_items[1_000_000][job]["seconds_median"], 3
            )
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "scales": scales,
        "growth": growth.growth_report(growth_results or []),
        "scaling_5m_over_1m": scaling,
        "targets": {
            "validate_over_baseline_max": RATIO_TARGET,
            "scaling_max": 5.5,
            "end_to_end_seconds": {str(k): v for k, v in E2E_TARGETS.items()},
        },
    }


def markdown(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    lines = [
        f"Benchmark {rep['started_at']} on {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}"
    ]
    if rep["scales"]:
        lines += _scales_markdown(rep)
    if rep["growth"]:
        lines += growth.growth_markdown(rep["growth"])
    return "\n".join(lines)


def _scales_markdown(rep: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| order items | rows (all datasets) | job | median s | min s | rows/s (median) | peak RSS MB |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for s in rep["scales"]:
        for job in (job for job in JOBS if job in s):
            j = s[job]
            lines.append(
                f"| {s['items']:,} | {s['rows_total']:,} | {job} | {j['seconds_median']:.1f} | "
                f"{j['seconds_min']:.1f} | {j['rows_per_second_median']:,} | {j['peak_rss_mb_max']:,.0f} |"
            )
    lines += [
        "",
        "| order items | end to end: validate + transform, two processes (median s) | one process, "
        "`jobs.run` (median s) | target s |",
        "|---:|---:|---:|---:|",
    ]
    for s in rep["scales"]:
        e2e = s["end_to_end"]
        one = "-" if e2e["one_process_median"] is None else f"{e2e['one_process_median']:.1f}"
        target = "-" if e2e["target"] is None else f"≤ {e2e['target']:.0f}"
        lines.append(f"| {s['items']:,} | {e2e['two_processes_median']:.1f} | {one} | {target} |")
    lines += ["", "| order items | validate ÷ baseline (median) | target |", "|---:|---:|---:|"]
    lines += [
        f"| {s['items']:,} | {s['validate_over_baseline_median']:.2f} | ≤ {RATIO_TARGET} at ≥ 1M |"
        for s in rep["scales"]
    ]
    if rep["scaling_5m_over_1m"]:
        lines += ["", "| job | time(5M) ÷ time(1M) | target |", "|---|---:|---:|"]
        lines += [f"| {job} | {v:.2f} | ≤ 5.5 |" for job, v in rep["scaling_5m_over_1m"].items()]
    return lines


def run_benchmark(
    scales: list[int],
    runs: int,
    out: Path,
    spark_master: str,
    histories: tuple[int, ...] | list[int] = growth.HISTORIES,
    park_items: int = growth.PARK_ITEMS,
    lived_days: int = 0,
) -> dict[str, Any]:
    """Time every scale, then the day's batch into a lake of each history size (and, with a park
    of ``park_items``, into the first non-empty one again; with ``lived_days``, into that one after
    it lived as many days)."""
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run_dir = out / stamp
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = [run_scale(items, runs, out, spark_master, log_dir) for items in scales]
    grown = (
        run_lake_growth(list(histories), runs, out, spark_master, log_dir, park_items, lived_days)
        if histories
        else []
    )
    rep = report(results, started, runs, grown)
    (run_dir / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    text = markdown(rep)
    (run_dir / "report.md").write_text(text + "\n")
    print(f"\n{text}\n\nreport: {run_dir}/report.json, {run_dir}/report.md")
    return rep
