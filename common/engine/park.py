"""Parked rows: rows whose only errors were parents that had not arrived yet (files come in parts,
so an order's items can come a batch or more before the order). Pure functions.

Every later run re-checks the park against the parents known then (:func:`recheck`). A row whose
parents have all arrived is **released**: published as if it had come with the releasing batch
(:func:`releasable`), unless a newer version of its key is there already. A row whose parent
arrived only as a quarantined row, or did not arrive within its foreign key's ``park_for_days``,
is **condemned**: it becomes a plain quarantined row (``parent_quarantined:<fk>`` /
``parent_never_arrived:<fk>``) of the batch it came with (:func:`condemned_rows`). The others
keep **waiting**.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts import reasons
from common.contracts.columns import (
    BATCH_ID,
    COPIES,
    CORRUPT,
    PARKED_SINCE,
    PROCESSING_DATE,
    REASONS,
    SOURCE_FILE,
    raw,
)
from common.contracts.model import Contract
from common.engine.annotate import ParentKeys, codes_of, parent_states
from common.engine.tables import quarantine_schema, validated_schema

OUTCOME = "__outcome"
NEW_REASONS = "__new_reasons"
RELEASED, WAITING, CONDEMNED = "released", "waiting", "condemned"


def recheck(parked: DataFrame, parents: list[ParentKeys], processing_date: dt.date) -> DataFrame:
    """The park's rows with their ``__outcome`` (released, waiting or condemned) on
    ``processing_date``, and, for condemned rows, the ``__new_reasons`` they are quarantined with.

    A foreign key's parent still missing after more than its ``park_for_days`` (counted from
    ``_parked_since``; a key that no longer parks: at once) has never arrived.
    """
    columns = parked.columns
    df, states = parent_states(parked, parents)
    age = F.datediff(F.lit(processing_date), F.col(PARKED_SINCE))
    condemn: list[tuple[str, Column]] = []
    waiting: list[tuple[str, Column]] = []
    for state in states:
        column, days = state.foreign_key.column, state.foreign_key.park_for_days
        expired = state.missing & (age > F.lit(days)) if days else state.missing
        condemn.append((reasons.parent_never_arrived_code(column), expired))
        condemn.append((reasons.parent_quarantined_code(column), state.quarantined))
        waiting.append((reasons.parent_missing_code(column), state.missing & ~expired))
    condemned, still = codes_of(condemn), codes_of(waiting)
    outcome = (
        F.when(F.size(condemned) > 0, F.lit(CONDEMNED))
        .when(F.size(still) > 0, F.lit(WAITING))
        .otherwise(F.lit(RELEASED))
    )
    return df.select(*columns, outcome.alias(OUTCOME), F.concat(condemned, still).alias(NEW_REASONS))


def park_tally(rechecked: DataFrame) -> DataFrame:
    """``(__outcome, _batch_id, rows, expired, since)``: rows per outcome and batch they came with,
    how many of them never saw a parent arrive, and the earliest date one of them was parked.
    Small: outcomes x batches in the park."""
    prefix = reasons.parent_never_arrived_code("")
    never = F.exists(F.col(NEW_REASONS), lambda code: code.startswith(prefix))
    return rechecked.groupBy(OUTCOME, BATCH_ID).agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(never, 1).otherwise(0)).alias("expired"),
        F.min(PARKED_SINCE).alias("since"),
    )


def releasable(
    rechecked: DataFrame,
    contract: Contract,
    batch_valid: DataFrame | None,
    published: DataFrame | None,
    batch_id: str,
    processing_date: dt.date,
) -> DataFrame:
    """The released rows to merge into the validated table, as it stores them, stamped with the
    releasing batch (so that its transform recomputes their dates).

    Of several parked versions of a key, the latest batch's; none of a key ``batch_valid`` (this
    batch's own valid rows) holds; none of a key ``published`` (primary key and ``_batch_id`` of
    the validated table's rows, at least those of these keys) holds from a batch later than the
    row's own, except the releasing batch itself (a re-run after a crash: the MERGE then finds
    the row unchanged).
    """
    keys = contract.primary_key
    released = rechecked.where(F.col(OUTCOME) == F.lit(RELEASED))
    latest = Window.partitionBy(*[F.col(k) for k in keys]).orderBy(F.col(BATCH_ID).desc())
    released = released.withColumn("__n", F.row_number().over(latest)).where(F.col("__n") == 1)
    if batch_valid is not None:
        released = released.join(batch_valid.select(*keys), keys, "left_anti")
    if published is not None:
        there = published.select(*keys, F.col(BATCH_ID).alias("__there"))
        released = released.join(there, keys, "left").where(
            F.col("__there").isNull()
            | (F.col("__there") <= F.col(BATCH_ID))
            | (F.col("__there") == F.lit(batch_id))
        )
    stamped = released.withColumns({BATCH_ID: F.lit(batch_id), PROCESSING_DATE: F.lit(processing_date)})
    schema = validated_schema(contract)
    return stamped.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema])


def condemned_rows(rechecked: DataFrame, contract: Contract) -> DataFrame:
    """The condemned rows, as the quarantine table stores them: their source text and the lineage
    of the batch they came with, with their new reasons."""
    condemned = rechecked.where(F.col(OUTCOME) == F.lit(CONDEMNED))
    sources: list[Column] = [F.col(raw(c)) for c in contract.column_names]
    sources += [F.lit(None).cast(T.StringType()), F.col(NEW_REASONS), F.col(COPIES)]
    sources += [F.col(BATCH_ID), F.col(PROCESSING_DATE), F.col(SOURCE_FILE)]
    schema = quarantine_schema(contract)
    assert schema.fieldNames()[len(contract.column_names)] == CORRUPT
    return condemned.select(
        *[src.cast(f.dataType).alias(f.name) for src, f in zip(sources, schema, strict=True)]
    )


def leaving(rechecked: DataFrame, contract: Contract) -> DataFrame:
    """``_batch_id`` and primary key of the rows that leave the park (released or condemned)."""
    return rechecked.where(F.col(OUTCOME) != F.lit(WAITING)).select(BATCH_ID, *contract.primary_key)


def quarantine_match(contract: Contract) -> list[str]:
    """The quarantine columns that find a condemned row again (a re-run after a crash must not
    insert it twice): its batch, file, key text and reasons. A parked row's key is unique in its
    batch (a duplicate key is a quarantining error, never parked), so these are too."""
    return [BATCH_ID, SOURCE_FILE, *contract.primary_key, REASONS]
