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
from dataclasses import dataclass, field
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


@dataclass
class GrowthResult:
    history_items: int
    parked_items: int = 0  # rows waiting in the park before the day's batch
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


def expected_rows(history: dict[str, Any] | None, day: dict[str, Any], day_data: Path) -> dict[str, int]:
    """Rows each validated table holds after the day's batch: the clean history's, the day's, less
    the corrections that replaced a history row. A clean history's ids run from 1 with no gaps,
    so a corrected id is in it when it is at most the history's row count."""
    out = {}
    for name, truth in day["datasets"].items():
        before = history["datasets"][name]["rows_valid"] if history else 0
        replaced = 0
        if name in ("orders", "products"):
            replaced = sum(1 for key in _corrected_ids(day_data, name) if key <= before)
        out[name] = before + truth["rows_valid"] - replaced
    return out


def expected_updates(history: dict[str, Any] | None, day_data: Path) -> dict[str, int]:
    """Rows the day's corrections update in orders and products: every corrected id the history
    holds (a correction is a new version, from a later batch, of a clean row). A run in which they
    changed nothing would time a batch that is cheaper than the one described."""
    out = {}
    for name in ("orders", "products"):
        before = history["datasets"][name]["rows_valid"] if history else 0
        out[name] = sum(1 for key in _corrected_ids(day_data, name) if key <= before)
    return out


def check_updates(lake: Path, history: dict[str, Any] | None, day_data: Path) -> None:
    """The day's validate updated exactly the corrected rows (Delta's MERGE metrics in its result)."""
    result = json.loads((lake / "_results" / DAY_BATCH_ID / "validate.json").read_text())
    for name, expected in expected_updates(history, day_data).items():
        table = result["datasets"][name]["validated_table"]
        assert table["rows_updated"] == expected, (name, table, expected)


def check_added(lake: Path) -> None:
    """The day's KPIs were the stored rows plus its change, not recomputed from the whole lake."""
    notes = json.loads((lake / "_results" / DAY_BATCH_ID / "transform.json").read_text())["notes"]
    assert ADDED in notes, notes


def run_growth(
    histories: list[int],
    runs: int,
    out: Path,
    log_dir: Path,
    timed: Any,
    history_lake: Any,
    check: Any,
) -> list[GrowthResult]:
    """Time the day's batch into each history's lake. ``timed(command, log) -> Measurement``,
    ``history_lake(items) -> Path`` (a validated and transformed clean history, built by the caller),
    ``check(lake, expected_rows)``: the bench's own runner, lake builder and output check."""
    day_data = out / "data" / f"day-{DAY_ITEMS}"
    day = _generated(day_data, day_config(), DAY_BATCH_ID)
    results = []
    for items in histories:
        history_truth = None
        source = None
        if items:
            source = history_lake(items)
            history_truth = json.loads((out / "data" / f"history-{items}" / "ground_truth.json").read_text())
        result = GrowthResult(items)
        for run in range(runs):
            lake = out / "lake" / f"growth-{items}-run{run}"
            shutil.rmtree(lake, ignore_errors=True)
            if source is not None:
                shutil.copytree(source, lake)
            label = f"day batch into a lake of {items:>10,} items  run {run + 1}/{runs}"
            for job, command in _commands(day_data, lake).items():
                measured = timed(command, log_dir / f"growth-{items}-{job}-run{run}.log", label, job)
                getattr(result, job).append(measured.seconds)
                result.peak_rss_mb = max(result.peak_rss_mb, measured.peak_rss_mb)
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


def run_park(
    history_items: int,
    source: Path,
    park_items: int,
    runs: int,
    out: Path,
    log_dir: Path,
    timed: Any,
    check: Any,
) -> GrowthResult:
    """The day's batch into a copy of the history lake ``source`` that also holds a park of
    ``park_items`` order items: every parked row is re-checked and still waits; the lake is
    checked as the growth rows are, and the park counted from the result."""
    day_data = out / "data" / f"day-{DAY_ITEMS}"
    day = _generated(day_data, day_config(), DAY_BATCH_ID)
    history_truth = json.loads((out / "data" / f"history-{history_items}" / "ground_truth.json").read_text())
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
        for job, command in _commands(day_data, lake).items():
            measured = timed(command, log_dir / f"growth-park-{history_items}-{job}-run{run}.log", label, job)
            getattr(result, job).append(measured.seconds)
            result.peak_rss_mb = max(result.peak_rss_mb, measured.peak_rss_mb)
        expected = expected_rows(history_truth, day, day_data)
        expected["products"] += _park_products(park)  # the park's batch published its products
        check(lake, expected)
        check_updates(lake, history_truth, day_data)
        validated = json.loads((lake / "_results" / DAY_BATCH_ID / "validate.json").read_text())
        parked = validated["datasets"]["order_items"]["park"]
        assert (parked["rows_checked"], parked["rows_released"]) == (park_items, 0), parked
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
    without a park)."""
    empty = next((r for r in results if r.history_items == 0 and not r.parked_items), None)
    base = statistics.median(empty.end_to_end) if empty else None
    rows = []
    for r in results:
        e2e = statistics.median(r.end_to_end)
        same = next((g for g in results if g.history_items == r.history_items and not g.parked_items), None)
        over_unparked = None
        if r.parked_items and same is not None:
            over_unparked = round(e2e / statistics.median(same.end_to_end), 3)
        rows.append(
            {
                "history_items": r.history_items,
                "parked_items": r.parked_items,
                "ratio_to_no_park": over_unparked,
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
        "| history in the lake (order items) | parked items | validate s | transform s | end to end s "
        "| ÷ empty lake | ÷ same lake, no park | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "-" if r["ratio_to_empty"] is None else f"{r['ratio_to_empty']:.2f}"
        parked = "-" if r["ratio_to_no_park"] is None else f"{r['ratio_to_no_park']:.2f}"
        lines.append(
            f"| {r['history_items']:,} | {r['parked_items']:,} | {r['validate_median']:.1f} | "
            f"{r['transform_median']:.1f} | {r['end_to_end_median']:.1f} | {ratio} | {parked} | "
            f"{r['peak_rss_mb_max']:,.0f} |"
        )
    return lines
