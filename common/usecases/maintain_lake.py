"""Lake maintenance: compact each table's small files, delete the files no kept version needs,
keep the log long enough for the versions a re-run needs (see :mod:`common.engine.retention`).

It holds the lake's writer lease for the whole run, as validate and transform do, so it never runs
beside them. Each step is one Delta operation that commits atomically or not at all, and each is
skipped when it has nothing to do: a second run on an unchanged lake commits nothing, and a run
killed mid-way is repaired by running it again (a killed compaction leaves only files no commit
references, which the next VACUUM deletes once they are older than the retention).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from common.contracts import Contract
from common.engine import retention
from common.io import delta, runs
from common.io.lake import Lake
from common.io.lease import LeaseCheck, lake_lease
from common.usecases import catalog
from common.usecases.side_by_side import run_side_by_side
from common.usecases.validate_batch import validated_properties

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass
class TableUpkeep:
    """What maintenance found and did on one table."""

    table: str  # as the lake names it: validated/orders, kpi/order_daily, _runs
    files_before: int = 0
    bytes_before: int = 0
    files_after: int = 0
    bytes_after: int = 0
    files_compacted: int = 0  # files the compaction replaced
    files_deleted: int = 0  # files VACUUM deleted
    retention_hours: int = 0
    properties_set: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.files_compacted or self.files_deleted or self.properties_set)

    def counts(self) -> dict[str, int]:
        return {
            "files_before": self.files_before,
            "files_after": self.files_after,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "files_compacted": self.files_compacted,
            "files_deleted": self.files_deleted,
            "retention_hours": self.retention_hours,
        }


@dataclass
class MaintainOutcome:
    run_id: str
    tables: list[TableUpkeep] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(t.changed for t in self.tables)


def data_tables(lake: Lake, contracts: dict[str, Contract]) -> list[tuple[str, str]]:
    """``(name, uri)`` of every validated, quarantine, KPI and park table (the run ledger aside)."""
    where = {"validated": lake.validated, "quarantine": lake.quarantine, "kpi": lake.kpi}
    listed = [(f"{t.kind}/{t.source}", where[t.kind](t.source)) for t in catalog.lake_tables(lake, contracts)]
    return listed + [(f"parked/{name}", lake.parked(name)) for name, c in contracts.items() if c.parks]


def run_maintenance(
    spark: SparkSession, settings: Settings, contracts: dict[str, Contract], now: dt.datetime
) -> MaintainOutcome:
    """Maintain every table of the lake, holding its writer lease.

    The run is recorded in the run ledger (job ``maintain``, one row) when it changed anything.

    Raises:
        LakeBusyError: a job holds the lake's lease.
        StorageError: a table cannot be read, compacted or vacuumed.
    """
    outcome = MaintainOutcome(run_id=f"maintain-{now:%Y%m%dT%H%M%SZ}")
    lake = Lake(settings.lake_root)
    target = settings.maintain_target_file_mb * MIB
    with lake_lease(settings, "maintain") as lease, delta.upkeep(spark, target):
        tables = [(n, u) for n, u in data_tables(lake, contracts) if delta.exists(spark, u)]
        done: dict[str, TableUpkeep] = {}

        def one(name: str, uri: str) -> None:
            done[name] = _maintain(spark, settings, name, uri, target, lease)

        # Independent tables, maintained side by side (mostly driver planning on small tables).
        run_side_by_side([partial(one, n, u) for n, u in tables], "maintain")
        outcome.tables.extend(done[n] for n, _ in tables)
        if outcome.changed:
            _record(spark, lake, outcome, now)
        # The ledger last, its own row included: on a lake left unchanged, this too finds nothing.
        if delta.exists(spark, lake.runs()):
            outcome.tables.append(_maintain(spark, settings, "_runs", lake.runs(), target, lease))
    return outcome


def _maintain(
    spark: SparkSession, settings: Settings, name: str, uri: str, target: int, lease: LeaseCheck
) -> TableUpkeep:
    upkeep = TableUpkeep(name)
    before = delta.describe(spark, uri)
    upkeep.files_before, upkeep.bytes_before = before.files, before.bytes
    needed = max(1, math.ceil(before.bytes / target))
    if before.files - needed >= settings.maintain_min_files:
        lease.check()
        upkeep.files_compacted = delta.compact(spark, uri)
    history = [retention.Tagged(c.timestamp, c.batch_id) for c in delta.commits(spark, uri)]
    upkeep.retention_hours = retention.retention_hours(
        history, settings.maintain_keep_batches, settings.maintain_min_retention_hours, _now()
    )
    wanted = retention.properties_for(upkeep.retention_hours, before.properties)
    if name.startswith("validated/"):  # a table made without them
        properties = validated_properties(settings.deletion_vectors)
        wanted |= {k: v for k, v in properties.items() if before.properties.get(k) != v}
    if wanted:
        lease.check()
        delta.set_properties(spark, uri, wanted)
        upkeep.properties_set = wanted
    lease.check()
    upkeep.files_deleted = delta.vacuum(spark, uri, upkeep.retention_hours)
    after = delta.describe(spark, uri) if upkeep.changed else before
    upkeep.files_after, upkeep.bytes_after = after.files, after.bytes
    log.info(
        "%s: %d files (%d bytes) -> %d files (%d bytes); %d compacted, %d deleted, history kept %d h",
        name,
        upkeep.files_before,
        upkeep.bytes_before,
        upkeep.files_after,
        upkeep.bytes_after,
        upkeep.files_compacted,
        upkeep.files_deleted,
        upkeep.retention_hours,
    )
    return upkeep


def _now() -> dt.datetime:
    # Read just before each VACUUM: the retention is measured back from the time it runs.
    return dt.datetime.now(dt.UTC)


def _record(spark: SparkSession, lake: Lake, outcome: MaintainOutcome, now: dt.datetime) -> None:
    stamp = now.isoformat(timespec="seconds")
    row: dict[str, Any] = {
        "batch_id": outcome.run_id,
        "job": "maintain",
        "status": "SUCCEEDED",
        "started_at": stamp,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{c: 0 for c in runs.COUNTS},
        "dataset_counts": {t.table: t.counts() for t in outcome.tables},
        "rule_counts": {},
        "result_uri": None,
        "report_uri": None,
    }
    runs.record_run(spark, lake.runs(), row)
