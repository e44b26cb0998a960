"""Human-readable summaries of job results (for terminals and `make run`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common.io.results import TransformResult, ValidationResult
from common.usecases.maintain_lake import MaintainOutcome


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(c.rjust(w) if c[:1].isdigit() else c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in rows
    ]
    return "\n".join(out)


def format_validation(result: ValidationResult, top: int = 5) -> str:
    """Per dataset: rows read / valid / quarantined / duplicates, and the top failing rules."""
    lines = [f"Batch {result.batch_id}: {result.status.value}"]
    rows = [
        [
            name,
            d.status.value,
            str(d.rows_read),
            str(d.rows_valid),
            str(d.rows_quarantined),
            str(d.rows_parked),
            str(d.duplicates_collapsed),
            f"{d.quarantine_share:.2%}",
            str(d.rows_with_warnings),
        ]
        for name, d in result.datasets.items()
    ]
    lines.append(
        _table(
            ["dataset", "status", "read", "valid", "quarantined", "parked", "dup", "share", "warned"], rows
        )
    )
    for name, d in result.datasets.items():
        if d.rule_counts:
            ranked = sorted(d.rule_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            lines.append(f"\nTop failing rules, {name}:")
            lines += [
                f"  {count:>8}  {code}  ({result.rule_descriptions.get(code, '')})" for code, count in ranked
            ]
        if d.warning_counts:
            lines.append(f"Warnings, {name}: " + ", ".join(f"{k}={v}" for k, v in d.warning_counts.items()))
        lines += [f"  ! {message}" for message in d.checks_skipped]
        if d.parked_counts:
            parked = ", ".join(f"{k}={v}" for k, v in d.parked_counts.items())
            lines.append(f"Parked, {name}: {parked} (waiting for their parents)")
        if d.park is not None and (d.park.rows_checked or d.park.rows_waiting):
            p = d.park
            line = (
                f"Park, {name}: {p.rows_released} released, {p.rows_expired} expired, "
                f"{p.rows_parent_quarantined} parent quarantined, {p.rows_waiting} waiting"
            )
            if p.oldest_parked_since is not None:
                line += f" (oldest since {p.oldest_parked_since}, {p.oldest_parked_days} days)"
            lines.append(line)
    lines += [f"  ! {notice}" for notice in result.notices]
    if result.errors:
        lines.append("\nErrors:")
        lines += [f"  - {message}" for message in result.errors]
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def format_transform(
    result: TransformResult, tables: Mapping[str, Sequence[Mapping[str, Any]]], max_rows: int = 15
) -> str:
    """The KPI rows a transform run wrote: latest dates first, a few rows per table."""
    dates = result.touched_dates
    span = f"{dates[0]} .. {dates[-1]}" if dates else "none"
    lines = [f"Batch {result.batch_id}: KPIs recomputed for {len(dates)} order date(s) ({span})"]
    lines += [f"  note: {note}" for note in result.notes]
    for name, table in tables.items():
        columns = [c for c in (table[0] if table else {}) if c not in {"batch_id", "computed_at"}]
        rows = sorted(table, key=lambda r: str(r["order_date"]), reverse=True)
        shown = rows[:max_rows]
        more = f", latest {len(shown)} shown" if len(rows) > len(shown) else ""
        lines.append(f"\n{name} ({len(rows)} rows{more}):")
        lines.append(_table(columns, [[_cell(r[c]) for c in columns] for r in shown]))
    return "\n".join(lines)


def format_maintenance(outcome: MaintainOutcome) -> str:
    """Per table: files and size before and after, files packed and deleted, history kept."""
    rows = [
        [
            t.table,
            f"{t.files_before} -> {t.files_after}",
            f"{t.bytes_before / 2**20:.2f} -> {t.bytes_after / 2**20:.2f}",
            str(t.files_compacted),
            str(t.files_deleted),
            str(t.retention_hours),
        ]
        for t in outcome.tables
    ]
    headers = ["table", "files", "MiB", "packed", "deleted", "history kept (h)"]
    verdict = "done" if outcome.changed else "nothing to do: every table was already maintained"
    return f"Maintenance {outcome.run_id}: {verdict}\n" + _table(headers, rows)
