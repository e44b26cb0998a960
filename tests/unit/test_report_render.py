"""The HTML report rendered without a browser: every value escaped, jumps in the share flagged."""

from __future__ import annotations

from common.io.results import BatchStatus, DatasetResult, ValidationResult
from common.usecases.html_report import RunRow, flag_jumps, render_batch_report

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
