"""The retention rule of lake maintenance, on hand-made histories (no JVM)."""

from __future__ import annotations

import datetime as dt

from common.engine.retention import Tagged, oldest_kept_commit, properties_for, retention_hours

NOW = dt.datetime(2026, 6, 30, 12, 0, tzinfo=dt.UTC)


def _at(hours_ago: float, batch: str | None) -> Tagged:
    return Tagged(NOW - dt.timedelta(hours=hours_ago), batch)


# A table's history, oldest first: b1 created it 100 h ago and wrote twice; maintenance (untagged)
# at 80 h; b2 at 50 h; b3 at 30 h and again at 29 h (a re-run that changed something); b1 re-run
# at 10 h (its first commit stays the one that counts).
HISTORY = [
    _at(100, "b1"),
    _at(99.5, "b1"),
    _at(80, None),
    _at(50, "b2"),
    _at(30, "b3"),
    _at(29, "b3"),
    _at(10, "b1"),
]


def test_the_oldest_kept_commit_is_the_first_commit_of_the_oldest_kept_batch() -> None:
    assert oldest_kept_commit(HISTORY, 1) == NOW - dt.timedelta(hours=30)
    assert oldest_kept_commit(HISTORY, 2) == NOW - dt.timedelta(hours=50)
    assert oldest_kept_commit(HISTORY, 3) == NOW - dt.timedelta(hours=100)
    assert oldest_kept_commit(HISTORY, 7) == NOW - dt.timedelta(hours=100)  # fewer batches: all of it
    assert oldest_kept_commit(HISTORY, 0) is None
    assert oldest_kept_commit([], 3) is None


def test_retention_reaches_back_to_it_with_a_margin_in_whole_hours_above_the_floor() -> None:
    assert retention_hours(HISTORY, 2, 0, NOW) == 51  # 50 h and one minute, rounded up
    assert retention_hours(HISTORY, 1, 0, NOW) == 31
    assert retention_hours(HISTORY, 1, 168, NOW) == 168  # the floor wins
    assert retention_hours(HISTORY, 0, 0, NOW) == 0
    assert retention_hours([_at(0.001, "b9")], 1, 0, NOW) == 1  # minutes old: one hour


def test_properties_rise_in_whole_weeks_and_are_never_lowered() -> None:
    assert properties_for(168, {}) == {}  # Delta's defaults (7 and 30 days) already cover a week
    assert properties_for(169, {}) == {
        "delta.deletedFileRetentionDuration": "interval 14 days",
    }
    assert properties_for(24 * 40, {}) == {
        "delta.deletedFileRetentionDuration": "interval 42 days",
        "delta.logRetentionDuration": "interval 42 days",
    }
    assert properties_for(169, {"delta.deletedFileRetentionDuration": "interval 14 days"}) == {}
    assert properties_for(169, {"delta.deletedFileRetentionDuration": "interval 3 weeks"}) == {}
    assert properties_for(24 * 40, {"delta.logRetentionDuration": "interval 90 days"}) == {
        "delta.deletedFileRetentionDuration": "interval 42 days",
    }
    # written some way the rule cannot read: set to what the rule needs
    assert properties_for(169, {"delta.deletedFileRetentionDuration": "2 weeks"}) == {
        "delta.deletedFileRetentionDuration": "interval 14 days",
    }
