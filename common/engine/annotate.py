"""The validation engine: pure ``DataFrame -> DataFrame`` transformations.

One plan per dataset: clean text -> collapse exact duplicates -> parse types -> evaluate every
rule as a column -> flag duplicate keys (one window) -> check foreign keys (one join each) ->
``_errors`` / ``_warnings`` arrays. The split into valid, parked and quarantined rows happens in
exactly one place, :func:`split_column`, from ``_errors``: a row whose only errors are missing
parents of foreign keys that park (``park_for_days``) is parked, not quarantined.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts import reasons
from common.contracts.columns import (
    BATCH_ID,
    COPIES,
    CORRUPT,
    ERRORS,
    PROCESSING_DATE,
    QUALITY,
    ROW_HASH,
    SOURCE_FILE,
    WARNINGS,
    raw,
)
from common.contracts.model import Contract, ForeignKey
from common.engine.parsing import bad_encoding, clean_text, spark_type, type_mismatch, typed

VALID, PARKED, QUARANTINED = "valid", "parked", "quarantined"
KEY_PREFIX = "__key_"
_DUPLICATE = "__duplicate_key"


@dataclass(frozen=True)
class ParentKeys:
    """Keys of a parent dataset for one foreign key.

    ``keys`` has two columns: ``key`` (typed like the parent column) and ``parent_valid``
    (true when a valid row has that key, false when only quarantined rows have it). Each key
    appears once. None means the check is skipped (the parent dataset failed in this batch).
    """

    foreign_key: ForeignKey
    keys: DataFrame | None


def _failed(condition: Column) -> Column:
    return F.coalesce(condition, F.lit(False))


def codes_of(pairs: list[tuple[str, Column]]) -> Column:
    """The codes of the conditions that hold, in ``pairs`` order. Most rows break nothing: they
    get the empty array from one short-circuiting OR, and only the others build the array (its
    compaction is a higher-order function, which Spark interprets row by row)."""
    none = F.array().cast("array<string>")
    if not pairs:
        return none
    failed = [_failed(cond) for _, cond in pairs]
    any_failed = failed[0]
    for flag in failed[1:]:
        any_failed = any_failed | flag
    codes = F.array_compact(
        F.array(*[F.when(flag, F.lit(code)) for (code, _), flag in zip(pairs, failed, strict=True)])
    )
    return F.when(any_failed, codes).otherwise(none)


def clean_text_columns(df: DataFrame, contract: Contract) -> DataFrame:
    """Trim every contract column and turn blanks into nulls."""
    return df.withColumns({c: clean_text(F.col(c)) for c in contract.column_names})


def key_columns(contract: Contract) -> list[str]:
    return [f"{KEY_PREFIX}{c}" for c in contract.primary_key]


def cluster_by_key(df: DataFrame, contract: Contract) -> DataFrame:
    """Add the parsed primary key and hash-partition rows by it.

    Both the exact-duplicate collapse (grouping by every column, key included) and the
    duplicate-key window (partitioned by the key) are then satisfied by this one shuffle.
    """
    keys = {f"{KEY_PREFIX}{c}": typed(F.col(c), contract.columns[c]) for c in contract.primary_key}
    return df.withColumns(keys).repartition(*[F.col(k) for k in keys])


def collapse_exact_duplicates(df: DataFrame, contract: Contract) -> DataFrame:
    """Collapse rows identical in every contract column to one; ``_copies`` counts them.

    The kept row names the first source file in sort order, so the result is deterministic.
    """
    return df.groupBy(*key_columns(contract), *contract.column_names, CORRUPT).agg(
        F.min(SOURCE_FILE).alias(SOURCE_FILE), F.count(F.lit(1)).alias(COPIES)
    )


def parse_columns(df: DataFrame, contract: Contract) -> DataFrame:
    """Keep the text as ``_raw_<col>`` and put the parsed value under the column's own name."""
    df = df.withColumnsRenamed({c: raw(c) for c in contract.column_names})
    return df.withColumns({name: typed(F.col(raw(name)), spec) for name, spec in contract.columns.items()})


def row_rule_failures(contract: Contract) -> tuple[list[tuple[str, Column]], list[tuple[str, Column]]]:
    """All single-row checks of a contract as ``(code, failed?)`` pairs: (errors, warnings)."""
    errors: list[tuple[str, Column]] = []
    for name, spec in contract.columns.items():
        text = F.col(raw(name))
        if spec.type == "string":
            errors.append((reasons.encoding_code(name), bad_encoding(text)))
        else:
            errors.append((reasons.type_code(name), type_mismatch(text, F.col(name))))
    errors += [(code, F.expr(condition)) for code, condition in contract.rules_of("error")]
    warnings = [(code, F.expr(condition)) for code, condition in contract.rules_of("warn")]
    return errors, warnings


def duplicate_key_flag(contract: Contract) -> Column:
    """True for a well-formed row whose primary key another well-formed row also has.

    Exact duplicates were already collapsed, so such rows differ in content.
    """
    keys = key_columns(contract)
    key_present = F.lit(True)
    for column in keys:
        key_present = key_present & F.col(column).isNotNull()
    window = Window.partitionBy(*[F.col(c) for c in keys])
    well_formed = F.when(F.col(CORRUPT).isNull() & key_present, F.lit(1)).otherwise(F.lit(0))
    return key_present & F.col(CORRUPT).isNull() & (F.sum(well_formed).over(window) > 1)


@dataclass(frozen=True)
class ParentState:
    """What one foreign key's join found for a row: its parent is missing, or only quarantined."""

    foreign_key: ForeignKey
    missing: Column
    quarantined: Column


def parent_states(df: DataFrame, parents: list[ParentKeys]) -> tuple[DataFrame, list[ParentState]]:
    """Left-join each parent key set (skipped ones aside); return the frame and each key's state."""
    states: list[ParentState] = []
    for index, parent in enumerate(parents):
        if parent.keys is None:
            continue
        column = parent.foreign_key.column
        key_col, state_col = f"__fk{index}_key", f"__fk{index}_valid"
        keys = parent.keys.select(F.col("key").alias(key_col), F.col("parent_valid").alias(state_col))
        df = df.join(keys, df[column] == keys[key_col], "left").drop(key_col)
        present = F.col(column).isNotNull()
        states.append(
            ParentState(
                parent.foreign_key,
                present & F.col(state_col).isNull(),
                present & (F.col(state_col) == F.lit(False)),
            )
        )
    return df, states


def join_parent_states(
    df: DataFrame, parents: list[ParentKeys]
) -> tuple[DataFrame, list[tuple[str, Column]]]:
    """Left-join each parent key set; return the frame and the foreign-key failure pairs."""
    df, states = parent_states(df, parents)
    failures: list[tuple[str, Column]] = []
    for state in states:
        column = state.foreign_key.column
        failures.append((reasons.parent_missing_code(column), state.missing))
        failures.append((reasons.parent_quarantined_code(column), state.quarantined))
    return df, failures


def parkable_codes(parents: list[ParentKeys]) -> list[str]:
    """The codes that park a row rather than quarantine it: a missing parent of a checked
    foreign key that parks."""
    return [
        reasons.parent_missing_code(p.foreign_key.column)
        for p in parents
        if p.keys is not None and p.foreign_key.park_for_days
    ]


def annotate(
    df: DataFrame,
    contract: Contract,
    parents: list[ParentKeys],
    batch_id: str,
    processing_date: dt.date,
) -> DataFrame:
    """Evaluate every rule on raw text rows and return them annotated.

    Output columns: the typed contract columns, ``_raw_<col>`` text (kept only on quarantined
    and parked rows), ``_corrupt_record``, ``_errors``, ``_warnings``, ``_copies``, ``_row_hash``, lineage
    columns and the ``_quality`` split column.
    """
    df = (
        df.transform(clean_text_columns, contract)
        .transform(cluster_by_key, contract)
        .transform(collapse_exact_duplicates, contract)
        .transform(parse_columns, contract)
        .withColumn(_DUPLICATE, duplicate_key_flag(contract))
    )
    df, fk_failures = join_parent_states(df, parents)
    row_errors, row_warnings = row_rule_failures(contract)
    errors = [*row_errors, (reasons.DUPLICATE_KEY, F.col(_DUPLICATE)), *fk_failures]
    malformed = F.col(CORRUPT).isNotNull()
    # A line that did not split into fields has meaningless values: report only that.
    df = df.withColumns(
        {
            ERRORS: F.when(malformed, F.array(F.lit(reasons.MALFORMED_ROW))).otherwise(codes_of(errors)),
            WARNINGS: F.when(malformed, F.array().cast("array<string>")).otherwise(codes_of(row_warnings)),
        }
    )
    is_valid = F.size(ERRORS) == 0
    parkable = parkable_codes(parents)
    is_parked = (
        ~is_valid & F.forall(F.col(ERRORS), lambda code: code.isin(parkable)) if parkable else F.lit(False)
    )
    columns = contract.column_names
    return df.select(
        *columns,
        *[F.when(is_valid, F.lit(None)).otherwise(F.col(raw(c))).alias(raw(c)) for c in columns],
        CORRUPT,
        ERRORS,
        WARNINGS,
        COPIES,
        F.xxhash64(*columns).alias(ROW_HASH),
        F.lit(batch_id).alias(BATCH_ID),
        F.lit(processing_date).alias(PROCESSING_DATE),
        SOURCE_FILE,
        split_column(is_valid, is_parked).alias(QUALITY),
    )


def split_column(is_valid: Column, is_parked: Column) -> Column:
    """The one place rows are split: ``valid``, ``parked`` (waiting for a parent) or ``quarantined``."""
    return F.when(is_valid, F.lit(VALID)).when(is_parked, F.lit(PARKED)).otherwise(F.lit(QUARANTINED))


def parent_key_states(valid_keys: list[DataFrame], quarantined_keys: list[DataFrame]) -> DataFrame:
    """Combine key sets into one row per key; a key that is valid anywhere counts as valid."""
    frames = [k.select(F.col("key"), F.lit(True).alias("parent_valid")) for k in valid_keys]
    frames += [k.select(F.col("key"), F.lit(False).alias("parent_valid")) for k in quarantined_keys]
    combined = frames[0]
    for frame in frames[1:]:
        combined = combined.unionByName(frame)
    return (
        combined.where(F.col("key").isNotNull())
        .groupBy("key")
        .agg(F.max("parent_valid").alias("parent_valid"))
    )


def rule_problems(spark: SparkSession, contract: Contract) -> list[str]:
    """Parse and type-check every rule's condition against the contract's parsed schema.

    Runs on an empty frame (no data is read): each condition must parse, name only declared
    columns (or their ``_raw_<col>`` text) and be a boolean. Returns one message per broken rule.
    """
    fields: list[T.StructField] = []
    for name, spec in contract.columns.items():
        fields += [T.StructField(name, spark_type(spec.type)), T.StructField(raw(name), T.StringType())]
    empty = spark.createDataFrame([], T.StructType(fields))
    problems: list[str] = []
    for severity in ("error", "warn"):
        for code, condition in contract.rules_of(severity):
            try:
                data_type = empty.select(F.expr(condition).alias("broken")).schema["broken"].dataType
            except (ParseException, AnalysisException) as exc:
                first_line = str(exc).strip().splitlines()[0]
                problems.append(f"rule {code!r}: the condition does not compile: {first_line}")
                continue
            if not isinstance(data_type, T.BooleanType):
                problems.append(
                    f"rule {code!r}: the condition is a {data_type.simpleString()}, expected a boolean "
                    "(true when a row breaks the rule)"
                )
    return problems
