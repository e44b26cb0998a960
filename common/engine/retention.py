"""How long a table's old files must live: the retention rule of lake maintenance.

A re-run of a batch needs the table as it was just before that batch first committed (transform
reads it by time travel to find the dates a correction moved an order away from). Keeping the last
``keep_batches`` batches re-runnable therefore means keeping every version from the one before the
oldest of them: no file that version references may be deleted. A file leaves the table at a commit
later than that batch's first one, so a retention reaching back to that first commit's time keeps
them all. Readers of an older snapshot (a long query) are covered by a floor.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Slack between the clock the rule reads and VACUUM's, and between a commit's time and the time
# it records for the files it removes.
MARGIN = dt.timedelta(minutes=1)
# Delta's own defaults for the two table properties the rule may have to raise.
DELTA_DELETED_FILE_RETENTION_DAYS = 7
DELTA_LOG_RETENTION_DAYS = 30


@dataclass(frozen=True)
class Tagged:
    """A commit's time and the batch that made it (None: maintenance, schema changes)."""

    timestamp: dt.datetime
    batch_id: str | None


def oldest_kept_commit(commits: Sequence[Tagged], keep_batches: int) -> dt.datetime | None:
    """The time of the first commit of the oldest of the table's last ``keep_batches`` batches
    (batches in the order of their first commit; ``commits`` oldest first); the table's first
    commit when it holds fewer batches; None when ``keep_batches`` is 0 or there is no commit."""
    if keep_batches <= 0 or not commits:
        return None
    first: dict[str, dt.datetime] = {}
    for commit in commits:
        if commit.batch_id is not None and commit.batch_id not in first:
            first[commit.batch_id] = commit.timestamp
    if len(first) < keep_batches:
        return commits[0].timestamp
    return sorted(first.values())[-keep_batches]


def retention_hours(
    commits: Sequence[Tagged], keep_batches: int, floor_hours: float, now: dt.datetime
) -> int:
    """Whole hours of history VACUUM must keep (it rounds a fraction to the nearest hour, so a
    fraction is rounded up here): back to :func:`oldest_kept_commit`, plus a margin, never less
    than ``floor_hours``."""
    oldest = oldest_kept_commit(commits, keep_batches)
    needed = 0.0 if oldest is None else (now - oldest + MARGIN).total_seconds() / 3600
    return math.ceil(max(floor_hours, needed))


DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"
DELTA_DEFAULT_DAYS = {
    DELETED_FILE_RETENTION: DELTA_DELETED_FILE_RETENTION_DAYS,
    LOG_RETENTION: DELTA_LOG_RETENTION_DAYS,
}
_INTERVAL = re.compile(r"^interval\s+(\d+)\s+(hour|day|week)s?$", re.IGNORECASE)
_DAYS_PER = {"hour": 1 / 24, "day": 1, "week": 7}


def properties_for(hours: int, current: dict[str, str]) -> dict[str, str]:
    """The table properties to set so that they cover ``hours`` (none when they already do):
    removed files must be remembered, and the log's entries kept, at least that long, or a file
    VACUUM must keep could be judged by its age alone, or a kept version's commit be cleaned from
    the log. Raised in whole weeks, so they change once a week at most, not on every run; never
    lowered (someone may have raised them on purpose)."""
    weeks = max(1, math.ceil(hours / (24 * 7)))
    wanted = {DELETED_FILE_RETENTION: weeks * 7, LOG_RETENTION: max(DELTA_LOG_RETENTION_DAYS, weeks * 7)}
    out: dict[str, str] = {}
    for name, days in wanted.items():
        have = _days(current.get(name), DELTA_DEFAULT_DAYS[name])
        if have is None or have < days:
            out[name] = f"interval {days} days"
    return out


def _days(value: str | None, default: int) -> int | None:
    """A property's days (its default when unset); None when it is written some other way."""
    if value is None:
        return default
    match = _INTERVAL.match(value.strip())
    if match is None:
        return None
    return math.floor(int(match.group(1)) * _DAYS_PER[match.group(2).lower()])
