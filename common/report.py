"""Human-readable summaries of job results (for terminals and `make run`)."""

from __future__ import annotations

from common.result import ValidationResult


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
            str(d.duplicates_collapsed),
            f"{d.quarantine_share:.2%}",
            str(d.rows_with_warnings),
        ]
        for name, d in result.datasets.items()
    ]
    lines.append(
        _table(["dataset", "status", "read", "valid", "quarantined", "dup", "share", "warned"], rows)
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
    if result.errors:
        lines.append("\nErrors:")
        lines += [f"  - {message}" for message in result.errors]
    return "\n".join(lines)
