"""The HTML report rendered without a browser: every value escaped, jumps in the share flagged."""

from __future__ import annotations

from common.io.results import BatchStatus, DatasetResult, ParkResult, ValidationResult
from common.usecases.report.page import RunRow, flag_jumps, render_batch_report

MARKUP = "<script>document.title='pwned'</script>"
FORMULA = '=HYPERLINK("http://example.invalid","x")'


# -- rendering (no browser) ---------------------------------------------------------------------


def _result() -> ValidationResult:
    return ValidationResult(
        batch_id="b<1>",
        status=BatchStatus.FAILED,
        started_at="2026-11-23T10:00:00Z",
        datasets={
            "products": DatasetResult(rows_read=3, rows_valid=1, rows_quarantined=2, rule_counts={"x": 2})
        },
        rule_descriptions={"x": "a <b>rule</b>"},
    )


def test_every_value_from_the_data_is_escaped_and_nothing_is_fetched() -> None:
    samples = {"products": [{"rule": "x", "name": MARKUP, "brand": FORMULA, "source_file": "f.csv"}]}
    html = render_batch_report(_result(), samples)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in html
    assert "b&lt;1&gt;" in html and "a &lt;b&gt;rule&lt;/b&gt;" in html
    external = [u for u in _urls(html) if not u.startswith("http://www.w3.org/")]
    assert external == ["http://example.invalid"]  # only the quoted sample value, as text


def _urls(html: str) -> list[str]:
    import re

    return re.findall(r"https?://[^\s\"'<>&)]+", html)


def _run(share: float, n: int = 1000) -> RunRow:
    return RunRow("b", "SUCCEEDED", "t", n, round(share * n), "r.html")


def test_a_jump_in_the_quarantine_share_is_flagged_against_the_recent_median() -> None:
    history = [_run(s) for s in (0.010, 0.012, 0.011, 0.009, 0.010, 0.011)]  # median 0.0105
    flagged = flag_jumps([*history, _run(0.030), _run(0.020)])
    assert [r.flagged for r in flagged] == [False] * 6 + [True, False]  # 3.0% > 2.1%; 2.0% < 2.1%
    clean = flag_jumps([_run(0.0)] * 6 + [_run(0.005), _run(0.02)])  # median 0: the 1-point floor
    assert [r.flagged for r in clean][-2:] == [False, True]
    assert not any(r.flagged for r in flag_jumps([_run(0.0)] * 4 + [_run(0.5)]))  # too little history


def _parked_result() -> ValidationResult:
    park = ParkResult(
        rows_checked=7,
        rows_released=4,
        released_from={"b1": 3, "b2": 1},
        rows_expired=2,
        rows_parent_quarantined=1,
        rows_waiting=5,
        oldest_parked_since="2026-11-20",
        oldest_parked_days=3,
    )
    items = DatasetResult(
        rows_read=10,
        rows_valid=5,
        rows_quarantined=1,
        rows_parked=4,
        parked_counts={"parent_missing:order_id": 4},
        park=park,
    )
    return ValidationResult(
        batch_id="b3",
        status=BatchStatus.SUCCEEDED,
        started_at="2026-11-23T10:00:00Z",
        datasets={"order_items": items},
    )


def test_the_park_is_shown_in_the_report_the_terminal_and_the_ledger() -> None:
    import re

    from common.io.runs import park_counts
    from common.usecases.report.summary import format_validation

    result = _parked_result()
    html = render_batch_report(result, {})
    row = re.search(r'<table id="park">.*?<tr data-dataset="order_items">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    ]
    assert cells == ["order_items", "7", "4", "b1: 3, b2: 1", "2", "1", "5", "2026-11-20", "3"]
    assert 'data-count="rows_parked">4<' in html
    assert "order_items: 2 parked row(s) quarantined as parent_never_arrived" in html
    text = format_validation(result)
    assert "Parked, order_items: parent_missing:order_id=4 (waiting for their parents)" in text
    assert "Park, order_items: 4 released, 2 expired, 1 parent quarantined, 5 waiting" in text
    assert "(oldest since 2026-11-20, 3 days)" in text
    assert park_counts(result.datasets["order_items"]) == {
        "rows_parked": 4,
        "park_released": 4,
        "park_expired": 2,
        "park_parent_quarantined": 1,
        "park_waiting": 5,
        "park_oldest_days": 3,
    }
    assert result.summary["park"] == {"rows_expired": 2, "rows_waiting": 5, "oldest_parked_days": 3}
