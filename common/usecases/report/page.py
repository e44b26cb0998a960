"""The data-quality report people open: one self-contained HTML page per batch, and an index of
runs (README, "Reports").

Pages are rendered with Jinja2 with autoescaping on (every value from the data — a quarantined
row may hold ``<script>`` or ``=HYPERLINK(...)`` — is shown as text), charts are pygal's inline
SVG with no script, and nothing is fetched: the page opens from S3, an e-mail or a laptop offline.
"""

from __future__ import annotations

import datetime as dt
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pygal
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygal.style import Style

from common.errors import shorten
from common.io.results import SAMPLE_PER_RULE, TransformResult, ValidationResult

CHART_DATES = 31  # the KPI charts show the latest touched dates, up to this many
MAX_CELL = 120  # characters of one value shown in a sample row

_env = Environment(
    loader=PackageLoader("common.usecases.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    font_family="system-ui, sans-serif",
    colors=("#2f7d32", "#c62828", "#9e9e9e", "#1565c0", "#ef6c00"),
)


def _chart_config(chart: Any, title: str) -> Any:
    chart.title = title
    chart.js = []  # no script: pygal's tooltips need its JavaScript from the internet
    chart.disable_xml_declaration = True
    chart.explicit_size = True
    chart.show_legend = True
    chart.legend_at_bottom = True
    return chart


_SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", _SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")


def _svg(chart: Any) -> Markup:
    """pygal renders through an XML serializer (labels from the data are escaped there), and always
    embeds a script with its configuration: parsed and dropped here, so the page runs no script."""
    root = ET.fromstring(chart.render(is_unicode=True))
    for parent in root.iter():
        for child in [c for c in parent if c.tag in (f"{{{_SVG_NS}}}script", "script")]:
            parent.remove(child)
    return Markup(ET.tostring(root, encoding="unicode"))


def rows_chart(result: ValidationResult) -> Markup:
    chart = _chart_config(
        pygal.HorizontalStackedBar(style=_STYLE, width=720, height=80 + 40 * len(result.datasets)),
        "Rows per dataset",
    )
    names = list(result.datasets)
    chart.x_labels = names
    chart.add("valid", [result.datasets[n].rows_valid for n in names])
    chart.add("quarantined", [result.datasets[n].rows_quarantined for n in names])
    chart.add("parked", [result.datasets[n].rows_parked for n in names])
    chart.add("duplicates collapsed", [result.datasets[n].duplicates_collapsed for n in names])
    return _svg(chart)


def _kpi_chart(title: str, dates: list[str], series: Mapping[str, list[float | None]]) -> Markup:
    chart = _chart_config(pygal.Bar(style=_STYLE, width=720, height=300, x_label_rotation=30), title)
    chart.x_labels = dates
    for name, values in series.items():
        chart.add(name, values)
    return _svg(chart)


@dataclass
class KpiView:
    """The KPIs of the touched dates, as the transform wrote them (small: dates x metrics)."""

    order_daily: list[dict[str, Any]] = field(default_factory=list)
    category_daily: list[dict[str, Any]] = field(default_factory=list)

    def charts(self) -> list[Markup]:
        if not self.order_daily:
            return []
        rows = sorted(self.order_daily, key=lambda r: str(r["order_date"]))[-CHART_DATES:]
        dates = [str(r["order_date"]) for r in rows]

        def floats(key: str) -> list[float | None]:
            return [None if r.get(key) is None else float(r[key]) for r in rows]

        span = (
            f" (latest {len(rows)} of {len(self.order_daily)} dates)"
            if len(self.order_daily) > len(rows)
            else ""
        )
        charts = [
            _kpi_chart("Revenue per day" + span, dates, {"total revenue": floats("total_revenue")}),
            _kpi_chart("Orders per day", dates, {"orders": floats("total_orders")}),
            _kpi_chart("Return rate per day", dates, {"return rate": floats("return_rate")}),
        ]
        revenue: dict[str, float] = {}
        for row in self.category_daily:
            revenue[str(row["category"])] = revenue.get(str(row["category"]), 0.0) + float(
                row.get("daily_revenue") or 0
            )
        top = sorted(revenue.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
        if top:
            chart = _chart_config(
                pygal.HorizontalBar(style=_STYLE, width=720, height=320), "Top categories by revenue"
            )
            for category, value in top:
                chart.add(category, value)
            charts.append(_svg(chart))
        return charts


def _cell(value: Any) -> str:
    return shorten("" if value is None else str(value), MAX_CELL)


def render_batch_report(
    validation: ValidationResult,
    samples: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    transform: TransformResult | None = None,
    kpis: KpiView | None = None,
    result_uri: str | None = None,
) -> str:
    """The batch's page: status and why, counts per dataset, failing rules ranked with their
    descriptions, warnings, files, quarantined samples per rule, durations, and the KPIs."""
    rules = sorted(
        (
            (count, code, name, validation.rule_descriptions.get(code, ""))
            for name, ds in validation.datasets.items()
            for code, count in ds.rule_counts.items()
            if count
        ),
        key=lambda r: (-r[0], r[2], r[1]),
    )
    sample_tables = {}
    for dataset, rows in (samples or {}).items():
        if rows:
            columns = [c for c in rows[0] if c != "rule"]
            sample_tables[dataset] = {
                "columns": columns,
                "rows": [(str(r["rule"]), [_cell(r.get(c)) for c in columns]) for r in rows],
            }
    return _env.get_template("report.html.j2").render(
        v=validation,
        t=transform,
        rules=rules,
        samples=sample_tables,
        per_rule=SAMPLE_PER_RULE,
        rows_chart=rows_chart(validation) if validation.datasets else None,
        kpi_charts=(kpis.charts() if kpis else []),
        result_uri=result_uri,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


# -- the index of runs ---------------------------------------------------------------------------

ANOMALY_WINDOW = 10  # the recent runs a batch is compared with
ANOMALY_MIN_HISTORY = 5


@dataclass(frozen=True)
class RunRow:
    """One validate run, as the index shows it."""

    batch_id: str
    status: str
    finished_at: str
    rows_read: int
    rows_quarantined: int
    report: str  # link to the batch's report, relative to the index where possible
    flagged: bool = False

    @property
    def share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0


def flag_jumps(runs: Sequence[RunRow]) -> list[RunRow]:
    """Oldest first in, same order out; a run is flagged when its quarantine share exceeds
    ``max(2 * median, median + 1 percentage point)`` of the previous runs (up to 10, at least 5):
    the median ignores a past outlier, and the absolute floor keeps a clean history (median 0)
    from flagging every tiny share."""
    out = []
    for index, run in enumerate(runs):
        history = [r.share for r in runs[max(0, index - ANOMALY_WINDOW) : index]]
        flagged = False
        if len(history) >= ANOMALY_MIN_HISTORY:
            median = statistics.median(history)
            flagged = run.share > max(2 * median, median + 0.01)
        out.append(RunRow(**{**run.__dict__, "flagged": flagged}))
    return out


def trend_chart(runs: Sequence[RunRow]) -> Markup:
    """Quarantine share and rows per batch, oldest to newest (the last 50)."""
    recent = list(runs)[-50:]
    chart = _chart_config(
        pygal.Line(style=_STYLE, width=900, height=320, x_label_rotation=30, secondary_range=None),
        "Quarantine share (%) and rows read per batch",
    )
    chart.x_labels = [r.batch_id[:19] for r in recent]
    chart.add("quarantine share (%)", [round(100 * r.share, 3) for r in recent])
    chart.add("rows read", [r.rows_read for r in recent], secondary=True)
    return _svg(chart)


def render_index(runs: Sequence[RunRow]) -> str:
    """Batches newest first, with status, quarantine share, the trend, and flagged jumps."""
    ordered = flag_jumps(sorted(runs, key=lambda r: (r.finished_at, r.batch_id)))
    return _env.get_template("index.html.j2").render(
        runs=list(reversed(ordered)),
        trend=trend_chart(ordered) if ordered else None,
        window=ANOMALY_WINDOW,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
