"""The lake-growth rows of `make bench`: the same day's batch into lakes of growing history.

A day's batch (new orders, items and products on the history's last day and the next, plus
corrections: earlier orders re-delivered as Returned on those days and earlier products with a new
price, ids drawn at random over the earlier range) is validated and transformed, as two processes,
in a copy of a lake that holds a clean history of 0, 1M, 5M (and, asked for, 20M) order items over
two years. Each run is checked afterwards against the generators' ground truth, replayed from the
Delta log; the figures are reported with their ratio to the empty lake.
"""

from __future__ import annotations

import csv
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.generator import GeneratorConfig, generate_batch
from common.usecases.transform_batch import ADDED

HISTORIES = (0, 1_000_000, 5_000_000)
LARGEST = 20_000_000  # --with-10m adds it
DAY_ITEMS = 27_000
# Batch ids in the batcher's form (newest arrival first, so they sort in arrival order): the later
# batch wins a key, so the history must sort before the park, and the park before the day.
HISTORY_BATCH_ID = "20260101T000000000Z-00-history"
PARK_BATCH_ID = "20260102T000000000Z-00-park"
DAY_BATCH_ID = "20260103T000000000Z-00-day"
DAY_FIRST_ID = 50_000_001  # past every history id: the day's own rows are all new
ORDER_CORRECTIONS = 2_000
PRODUCT_CORRECTIONS = 500
DAY_PRODUCTS = 500
# The park row: the same day's batch into the first non-empty history, with this many order items
# already parked (their orders never came: all of them are re-checked, and keep waiting).
PARK_ITEMS = 100_000
PARK_FIRST_ID = 90_000_001  # past the day's ids too
# Corrections pick ids below these: held by every history of 1M items or more (1M items: ~400k
# orders, 100k products), so they are updates there and inserts into the empty lake.
CORRECTED_ORDERS_BELOW = 300_000
CORRECTED_PRODUCTS_BELOW = 50_000
CORRECTED = ("orders", "products")
# The lived row: the first non-empty history again, after days of batches like the day's (new rows
# and corrections at random ids), each followed by maintain, as the template schedules it (daily).
# Each lived day's own ids start LIVED_ID_STEP above the last day's: past the day's, below the park's.
LIVED_FIRST_ID = 60_000_001
LIVED_ID_STEP = 100_000
MAX_LIVED_DAYS = (PARK_FIRST_ID - LIVED_FIRST_ID) // LIVED_ID_STEP


@dataclass
class GrowthResult:
    history_items: int
    parked_items: int = 0  # rows waiting in the park before the day's batch
    lived_days: int = 0  # days of batches (and maintenance) the lake lived before the day's batch
    validate: list[float] = field(default_factory=list)
    transform: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    @property
    def end_to_end(self) -> list[float]:
        return [round(v + t, 2) for v, t in zip(self.validate, self.transform, strict=True)]


def day_config() -> GeneratorConfig:
    return GeneratorConfig(
        items=DAY_ITEMS,
        parts=2,
        seed=43,
        first_order_id=DAY_FIRST_ID,
        first_item_id=DAY_FIRST_ID,
        first_product_id=DAY_FIRST_ID,
        products=DAY_PRODUCTS,
        first_day=729,
        days=2,
        order_corrections=ORDER_CORRECTIONS,
        product_corrections=PRODUCT_CORRECTIONS,
        order_corrections_below=CORRECTED_ORDERS_BELOW,
        product_corrections_below=CORRECTED_PRODUCTS_BELOW,
    )


def lived_batch_id(day: int) -> str:
    """Lived day ``day`` (from 1): after the history's batch, before the park's and the day's."""
    return f"20260101T{day // 60:02d}{day % 60:02d}00000Z-00-lived"


def lived_data(out: Path, day: int) -> tuple[Path, dict[str, Any]]:
    """Lived day ``day``'s batch: the day's batch with its own seed, ids and dates."""
    first = LIVED_FIRST_ID + (day - 1) * LIVED_ID_STEP
    config = replace(
        day_config(),
        seed=100 + day,
        first_order_id=first,
        first_item_id=first,
        first_product_id=first,
        first_day=700 + day % 28,
    )
    data = out / "data" / f"lived-{day}"
    return data, _generated(data, config, lived_batch_id(day))


def _generated(data: Path, config: GeneratorConfig, batch_id: str) -> dict[str, Any]:
    truth = data / "ground_truth.json"
    if not truth.exists() or json.loads(truth.read_text()).get("batch_id") != batch_id:
        shutil.rmtree(data, ignore_errors=True)
        generate_batch(data, config, batch_id=batch_id)
    return dict(json.loads((data / "ground_truth.json").read_text()))


def _corrected_ids(day_data: Path, name: str) -> list[int]:
    key = "order_id" if name == "orders" else "id"
    path = day_data / name / f"part-corrections-{name}.csv"
    with path.open(newline="") as handle:
        return [int(row[key]) for row in csv.DictReader(handle)]


Lived = Sequence[tuple[dict[str, Any], Path]]  # each lived day's ground truth and data, in order


@dataclass
class Held:
    """What a lake holds before the day's batch: the validated rows of each table, and for orders
    and products the keys, 1 to ``clean`` (a clean history's ids run from 1 with no gaps) and the
    ``extra`` ones lived days' corrections inserted (their own new rows have ids no batch corrects)."""

    rows: dict[str, int]
    clean: dict[str, int]
    extra: dict[str, set[int]]

    def holds(self, name: str, key: int) -> bool:
        return key <= self.clean[name] or key in self.extra[name]

    def add(self, truth: dict[str, Any], data: Path) -> dict[str, int]:
        """Count in a batch published into the lake (its ground truth and data); returns, for orders
        and products, how many of its corrections replaced a row the lake held (rows updated)."""
        updated = {}
        for name, dataset in truth["datasets"].items():
            replaced = 0
            if name in CORRECTED:
                corrected = _corrected_ids(data, name)
                replaced = updated[name] = sum(1 for key in corrected if self.holds(name, key))
                self.extra[name].update(key for key in corrected if not self.holds(name, key))
            self.rows[name] = self.rows.get(name, 0) + dataset["rows_valid"] - replaced
        return updated


def held_before_day(history: dict[str, Any] | None, lived: Lived = ()) -> Held:
    rows = {n: d["rows_valid"] for n, d in history["datasets"].items()} if history else {}
    held = Held(rows, {n: rows.get(n, 0) for n in CORRECTED}, {n: set() for n in CORRECTED})
    for truth, data in lived:
        held.add(truth, data)
    return held


def expected_rows(
    history: dict[str, Any] | None,
    day: dict[str, Any],
    day_data: Path,
    lived: Lived = (),
) -> dict[str, int]:
    """Rows each validated table holds after the day's batch: the history's and the lived days',
    and the day's, less the corrections that replaced a row the lake held."""
    held = held_before_day(history, lived)
    held.add(day, day_data)
    return {name: held.rows[name] for name in day["datasets"]}


def expected_updates(
    history: dict[str, Any] | None,
    day_data: Path,
    lived: Lived = (),
) -> dict[str, int]:
    """Rows the day's corrections update in orders and products: every corrected id the lake
    holds (a correction is a new version, from a later batch, of a row). A run in which they
    changed nothing would time a batch that is cheaper than the one described."""
    held = held_before_day(history, lived)
    return {
        name: sum(1 for key in _corrected_ids(day_data, name) if held.holds(name, key)) for name in CORRECTED
    }


def check_updates(
    lake: Path,
    history: dict[str, Any] | None,
    day_data: Path,
    lived: Lived = (),
) -> None:
    """The day's validate updated exactly the corrected rows (Delta's MERGE metrics in its result)."""
    check_updated(lake, DAY_BATCH_ID, expected_updates(history, day_data, lived))


def check_updated(lake: Path, batch_id: str, expected: dict[str, int]) -> None:
    """``batch_id``'s validate updated ``expected`` rows of each table."""
    result = json.loads((lake / "_results" / batch_id / "validate.json").read_text())
    for name, rows in expected.items():
        table = result["datasets"][name]["validated_table"]
        assert table["rows_updated"] == rows, (name, table, rows)


def check_added(lake: Path, batch_id: str = DAY_BATCH_ID) -> None:
    """The batch's KPIs were the stored rows plus its change, not recomputed from the whole lake."""
    notes = json.loads((lake / "_results" / batch_id / "transform.json").read_text())["notes"]
    assert ADDED in notes, notes


@dataclass(frozen=True)
class Runner:
    """How the rows run the day's batch: ``runs`` times each, data and lakes under ``out``, logs
    in ``log_dir``; ``timed(command, log, label, job) -> Measurement`` and ``check(lake,
    expected_rows)`` are the bench's own runner and output check."""

    runs: int
    out: Path
    log_dir: Path
    timed: Any
    check: Any


def run_growth(histories: list[int], runner: Runner, history_lake: Any) -> list[GrowthResult]:
    """Time the day's batch into each history's lake; ``history_lake(items) -> Path`` (a validated
    and transformed clean history) is built by the caller."""
    runs, out, log_dir, timed, check = runner.runs, runner.out, runner.log_dir, runner.timed, runner.check
    day_data, day = day_batch(out)
    results = []
    for items in histories:
        history_truth = None
        source = None
        if items:
            source = history_lake(items)
            history_truth = history_data(out, items)[1]
        result = GrowthResult(items)
        for run in range(runs):
            lake = out / "lake" / f"growth-{items}-run{run}"
            shutil.rmtree(lake, ignore_errors=True)
            if source is not None:
                shutil.copytree(source, lake)
            label = f"day batch into a lake of {items:>10,} items  run {run + 1}/{runs}"
            _time_day(day_data, lake, result, log_dir / f"growth-{items}-{{job}}-run{run}.log", label, timed)
            check(lake, expected_rows(history_truth, day, day_data))
            check_updates(lake, history_truth, day_data)
            if items:
                check_added(lake)
            shutil.rmtree(lake, ignore_errors=True)
        results.append(result)
    return results


def park_data(out: Path, items: int) -> Path:
    """A batch of ``items`` order items (and their products) whose orders never come: the park.
    Its manifest (``manifest.json``) lists the items and products only."""
    data = out / "data" / f"park-{items}"
    config = GeneratorConfig(
        items=items,
        parts=2,
        seed=44,
        defect_rate=0.0,
        warning_rate=0.0,
        first_order_id=PARK_FIRST_ID,
        first_item_id=PARK_FIRST_ID,
        first_product_id=PARK_FIRST_ID,
        first_day=728,
        days=1,
    )
    _generated(data, config, PARK_BATCH_ID)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["files"].pop("orders", None)
    (data / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return data


def run_park(history_items: int, source: Path, park_items: int, runner: Runner) -> GrowthResult:
    """The day's batch into a copy of the history lake ``source`` that also holds a park of
    ``park_items`` order items: every parked row is re-checked and still waits; the lake is
    checked as the growth rows are, and the park counted from the result."""
    runs, out, log_dir, timed, check = runner.runs, runner.out, runner.log_dir, runner.timed, runner.check
    day_data, day = day_batch(out)
    history_truth = history_data(out, history_items)[1]
    park = park_data(out, park_items)
    result = GrowthResult(history_items, parked_items=park_items)
    for run in range(runs):
        lake = out / "lake" / f"growth-park-{history_items}-run{run}"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(source, lake)
        build = [sys.executable, "-m", "jobs.validate", "--manifest", str(park / "manifest.json")]
        building = f"building a park of {park_items:,} items  run {run + 1}/{runs}"
        timed(
            [*build, "--lake-root", str(lake)],
            log_dir / f"park-{park_items}-run{run}.log",
            building,
            "validate",
        )
        label = f"day batch, {history_items:,} items and a park of {park_items:,}  run {run + 1}/{runs}"
        log = log_dir / f"growth-park-{history_items}-{{job}}-run{run}.log"
        _time_day(day_data, lake, result, log, label, timed)
        expected = expected_rows(history_truth, day, day_data)
        expected["products"] += _park_products(park)  # the park's batch published its products
        check(lake, expected)
        check_updates(lake, history_truth, day_data)
        validated = json.loads((lake / "_results" / DAY_BATCH_ID / "validate.json").read_text())
        parked = validated["datasets"]["order_items"]["park"]
        assert (parked["rows_checked"], parked["rows_released"]) == (park_items, 0), parked
        shutil.rmtree(lake, ignore_errors=True)
    return result


def _time_day(day_data: Path, lake: Path, result: GrowthResult, log: Path, label: str, timed: Any) -> None:
    """The day's batch into ``lake``, timed into ``result`` (``log``: a path with ``{job}``)."""
    for job, command in _commands(day_data, lake).items():
        measured = timed(command, Path(str(log).format(job=job)), label, job)
        getattr(result, job).append(measured.seconds)
        result.peak_rss_mb = max(result.peak_rss_mb, measured.peak_rss_mb)


def run_lived(history_items: int, source: Path, lived: Lived, runner: Runner) -> GrowthResult:
    """The day's batch into copies of ``source``: the history lake after the ``lived`` days (each
    day's batch, then maintain); checked as the growth rows are, the lived days counted in."""
    runs, out, log_dir, timed, check = runner.runs, runner.out, runner.log_dir, runner.timed, runner.check
    day_data, day = day_batch(out)
    history_truth = history_data(out, history_items)[1]
    result = GrowthResult(history_items, lived_days=len(lived))
    for run in range(runs):
        lake = out / "lake" / f"growth-lived-{history_items}-run{run}"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(source, lake)
        label = f"day batch, {history_items:,} items after {len(lived)} lived days  run {run + 1}/{runs}"
        log = log_dir / f"growth-lived-{history_items}-{{job}}-run{run}.log"
        _time_day(day_data, lake, result, log, label, timed)
        check(lake, expected_rows(history_truth, day, day_data, lived))
        check_updates(lake, history_truth, day_data, lived)
        check_added(lake)
        shutil.rmtree(lake, ignore_errors=True)
    return result


def _park_products(park: Path) -> int:
    truth = json.loads((park / "ground_truth.json").read_text())
    return int(truth["datasets"]["products"]["rows_valid"])


def history_config(items: int) -> GeneratorConfig:
    """A clean history over two years (every id valid, so every correction is an update)."""
    return GeneratorConfig(
        items=items, parts=max(2, min(16, items // 500_000)), seed=41, defect_rate=0.0, warning_rate=0.0
    )


def day_batch(out: Path) -> tuple[Path, dict[str, Any]]:
    """The day's batch (generated once): its folder and ground truth."""
    data = out / "data" / f"day-{DAY_ITEMS}"
    return data, _generated(data, day_config(), DAY_BATCH_ID)


def history_data(out: Path, items: int) -> tuple[Path, dict[str, Any]]:
    data = out / "data" / f"history-{items}"
    return data, _generated(data, history_config(items), HISTORY_BATCH_ID)


def _commands(data: Path, lake: Path) -> dict[str, list[str]]:
    return {
        "validate": [
            sys.executable,
            "-m",
            "jobs.validate",
            "--manifest",
            str(data / "manifest.json"),
            "--lake-root",
            str(lake),
        ],
        "transform": [
            sys.executable,
            "-m",
            "jobs.transform",
            "--batch-id",
            DAY_BATCH_ID,
            "--lake-root",
            str(lake),
        ],
    }


def growth_report(results: list[GrowthResult]) -> list[dict[str, Any]]:
    """One row per result, with its ratio to the empty lake (a park row: also to the same history
    without a park; a lived row: to the same history before it lived)."""
    plain = [r for r in results if not r.parked_items and not r.lived_days]
    empty = next((r for r in plain if r.history_items == 0), None)
    base = statistics.median(empty.end_to_end) if empty else None
    rows = []
    for r in results:
        e2e = statistics.median(r.end_to_end)
        same = next((g for g in plain if g.history_items == r.history_items), None)
        over_same = None if same is None else round(e2e / statistics.median(same.end_to_end), 3)
        rows.append(
            {
                "history_items": r.history_items,
                "parked_items": r.parked_items,
                "ratio_to_no_park": over_same if r.parked_items else None,
                "lived_days": r.lived_days,
                "ratio_to_unlived": over_same if r.lived_days else None,
                "validate_median": statistics.median(r.validate),
                "transform_median": statistics.median(r.transform),
                "end_to_end_median": e2e,
                "end_to_end_all": r.end_to_end,
                "ratio_to_empty": round(e2e / base, 3) if base else None,
                "peak_rss_mb_max": r.peak_rss_mb,
            }
        )
    return rows


def growth_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        f"The same day's batch ({DAY_ITEMS:,} new items, {DAY_PRODUCTS} new products, "
        f"{ORDER_CORRECTIONS:,} orders and {PRODUCT_CORRECTIONS} products corrected) into lakes of "
        "growing history (two processes, medians):",
        "",
        "| history in the lake (order items) | parked items | lived days | validate s | transform s "
        "| end to end s | ÷ empty lake | ÷ same lake, no park | ÷ same lake, not lived | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for r in rows:
        lines.append(
            f"| {r['history_items']:,} | {r['parked_items']:,} | {r['lived_days']} | "
            f"{r['validate_median']:.1f} | {r['transform_median']:.1f} | {r['end_to_end_median']:.1f} | "
            f"{shown(r['ratio_to_empty'])} | "
            f"{shown(r['ratio_to_no_park'])} | {shown(r['ratio_to_unlived'])} | {r['peak_rss_mb_max']:,.0f} |"
        )
    return lines
