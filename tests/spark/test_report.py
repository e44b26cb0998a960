"""The HTML report and the runs index: rendered from real job runs, opened in headless Chromium."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.generator import GeneratorConfig, generate_batch
from jobs import transform, validate
from tests.helpers import delta_rows

CHROMIUM = "/usr/bin/chromium"
MARKUP = "<script>document.title='pwned'</script>"
FORMULA = '=HYPERLINK("http://example.invalid","x")'


# -- in a browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert shutil.which("chromium") or Path(CHROMIUM).exists(), "apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def _hostile_batch(tmp_path: Path) -> Path:
    """A generated batch with known defects, and one product whose name is markup and whose
    brand is a spreadsheet formula, in a row that is quarantined (its cost is not a number)."""
    out = tmp_path / "batch"
    generate_batch(out, GeneratorConfig(items=600, parts=1, seed=11, defect_rate=0.05, warning_rate=0))
    part = out / "products" / "part-00000.csv"
    lines = part.read_bytes().split(b"\n")  # some generated defects are not UTF-8: bytes
    header = lines[0].decode().split(",")
    index = next(i for i, line in enumerate(lines[1:], 1) if line.isascii() and line.count(b",") == 7)
    fields = lines[index].decode().split(",")
    fields[header.index("name")] = MARKUP.replace(",", " ")
    fields[header.index("brand")] = '"' + FORMULA.replace('"', '""') + '"'
    fields[header.index("cost")] = "not-a-number"
    lines[index] = ",".join(fields).encode()
    part.write_bytes(b"\n".join(lines))
    return out / "manifest.json"


def _open(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    return page, errors, requests


@pytest.mark.slow  # a batch, then Debian's chromium through Playwright (~25 s), in `make drills`
def test_the_report_shows_the_results_numbers_in_a_browser_and_runs_nothing(
    spark: SparkSession, tmp_path: Path, browser: Any
) -> None:
    lake = tmp_path / "lake"
    common = ["--lake-root", str(lake), "--spark-master", "local[2]", "--spark-shuffle-partitions", "2"]
    manifest = _hostile_batch(tmp_path)
    assert (
        validate.main([*common, "--manifest", str(manifest), "--quarantine-threshold", "0.5"], spark=spark)
        == 0
    )
    assert transform.main([*common, "--batch-id", "demo-0001"], spark=spark) == 0
    folder = lake / "_results" / "demo-0001"
    result = json.loads((folder / "validate.json").read_text())
    report = folder / "report.html"

    page, errors, requests = _open(browser, report)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert page.locator("#status").inner_text() == result["status"] == "SUCCEEDED"
    for name, d in result["datasets"].items():
        row = page.locator(f'#datasets tr[data-dataset="{name}"]')
        for count in ("rows_read", "rows_valid", "rows_quarantined", "duplicates_collapsed"):
            assert row.locator(f'td[data-count="{count}"]').inner_text() == str(d[count]), (name, count)
    top_count, top_rule = max(
        (n, code) for d in result["datasets"].values() for code, n in d["rule_counts"].items()
    )
    first = page.locator("#rules tr").nth(1)
    assert first.is_visible() and first.locator("td").nth(0).inner_text() == str(top_count)
    assert first.locator("code").inner_text() == top_rule
    # the markup is shown as text, not run; the formula is text too
    assert page.get_by_text(MARKUP.replace(",", " ")).first.is_visible()
    assert page.get_by_text(FORMULA).first.is_visible()
    assert page.title() == "Batch demo-0001: SUCCEEDED"
    assert page.locator("svg").count() == 5  # rows per dataset; after transform, 3 daily KPIs + categories
    assert errors == []
    assert requests == [report.as_uri()]  # nothing but the page itself
    page.close()

    # the run ledger: one row per job run, appended by both jobs
    runs = delta_rows(lake / "_runs").to_pylist()
    assert sorted((r["job"], r["status"]) for r in runs) == [
        ("transform", "SUCCEEDED"),
        ("validate", "SUCCEEDED"),
    ]
    [run] = [r for r in runs if r["job"] == "validate"]
    assert run["rows_read"] == sum(d["rows_read"] for d in result["datasets"].values())
    products = dict(dict(run["dataset_counts"])["products"])  # Arrow gives maps as (key, value) pairs
    assert products["rows_quarantined"] == result["datasets"]["products"]["rows_quarantined"]
    assert run["report_uri"] == str(report) and run["started_at"] < run["finished_at"]

    index = lake / "_reports" / "index.html"
    page, errors, requests = _open(browser, index)
    link = page.locator('#runs tr[data-batch="demo-0001"] a')
    assert link.inner_text() == "demo-0001"
    link.click()
    page.wait_for_load_state()
    assert page.url == report.as_uri() and page.title() == "Batch demo-0001: SUCCEEDED"
    assert errors == [] and requests == [index.as_uri(), report.as_uri()]
    page.close()
