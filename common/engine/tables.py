"""The schemas of the tables validate publishes, built from a contract, and the projections of
annotated rows onto them. Tables are created from these schemas before the first write."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts.columns import (
    BATCH_ID,
    COPIES,
    CORRUPT,
    ERRORS,
    PARKED_SINCE,
    PROCESSING_DATE,
    QUALITY,
    REASONS,
    ROW_HASH,
    SOURCE_FILE,
    WARNINGS,
    raw,
)
from common.contracts.model import Contract
from common.engine.annotate import PARKED, QUARANTINED, VALID
from common.engine.parsing import spark_type

_CODES = T.ArrayType(T.StringType())
_LINEAGE = [
    T.StructField(BATCH_ID, T.StringType(), nullable=False),
    T.StructField(PROCESSING_DATE, T.DateType(), nullable=False),
    T.StructField(SOURCE_FILE, T.StringType()),
]


def validated_schema(contract: Contract) -> T.StructType:
    """Typed contract columns, the warnings a row carries, its content hash and lineage."""
    return T.StructType(
        [T.StructField(name, spark_type(spec.type)) for name, spec in contract.columns.items()]
        + [T.StructField(WARNINGS, _CODES), T.StructField(ROW_HASH, T.LongType()), *_LINEAGE]
    )


def quarantine_schema(contract: Contract) -> T.StructType:
    """Quarantined rows keep their original text, one string column per contract column."""
    return T.StructType(
        [T.StructField(c, T.StringType()) for c in contract.column_names]
        + [
            T.StructField(CORRUPT, T.StringType()),
            T.StructField(REASONS, _CODES),
            T.StructField(COPIES, T.LongType()),
            *_LINEAGE,
        ]
    )


def parked_schema(contract: Contract) -> T.StructType:
    """A parked row keeps what the validated table will need when it is released (the typed
    columns, warnings, hash and lineage of the batch it came with), its source text (for the
    quarantine, should its parent never arrive), its reasons, copies and the date it was parked."""
    return T.StructType(
        list(validated_schema(contract).fields)
        + [T.StructField(raw(c), T.StringType()) for c in contract.column_names]
        + [
            T.StructField(REASONS, _CODES),
            T.StructField(COPIES, T.LongType()),
            T.StructField(PARKED_SINCE, T.DateType(), nullable=False),
        ]
    )


def _project(df: DataFrame, schema: T.StructType, sources: list[str]) -> DataFrame:
    return df.select(
        *[
            F.col(src).cast(field.dataType).alias(field.name)
            for src, field in zip(sources, schema, strict=True)
        ]
    )


def valid_rows(annotated: DataFrame, contract: Contract) -> DataFrame:
    """The valid rows, as the validated table stores them."""
    schema = validated_schema(contract)
    return _project(annotated.where(F.col(QUALITY) == VALID), schema, schema.fieldNames())


def quarantined_rows(annotated: DataFrame, contract: Contract) -> DataFrame:
    """The quarantined rows, as the quarantine table stores them."""
    sources = [raw(c) for c in contract.column_names]
    sources += [CORRUPT, ERRORS, COPIES, BATCH_ID, PROCESSING_DATE, SOURCE_FILE]
    return _project(annotated.where(F.col(QUALITY) == QUARANTINED), quarantine_schema(contract), sources)


def parked_rows(
    annotated: DataFrame, contract: Contract, since: dt.date, earlier: DataFrame | None
) -> DataFrame:
    """The parked rows, as the park table stores them, parked ``since`` that date, or since the
    date ``earlier`` (the same batch's parked rows of an earlier run: primary key and
    ``_parked_since``) gives for the key, if sooner: re-running a batch does not restart the wait."""
    parked = annotated.where(F.col(QUALITY) == PARKED)
    started = F.lit(since)
    if earlier is not None:
        before = earlier.select(*contract.primary_key, F.col(PARKED_SINCE).alias("__since"))
        parked = parked.join(before, contract.primary_key, "left")
        started = F.least(started, F.col("__since"))
    parked = parked.withColumns({REASONS: F.col(ERRORS), PARKED_SINCE: started})
    schema = parked_schema(contract)
    return _project(parked, schema, schema.fieldNames())


def quarantine_samples(annotated: DataFrame, contract: Contract, per_rule: int) -> DataFrame:
    """Up to ``per_rule`` quarantined rows for each failing rule (a row failing several rules can
    show under each): ``rule`` then the row's source text of every contract column, its source file
    and, for a row that did not split into fields, its whole line."""
    columns = [F.col(raw(c)).alias(c) for c in contract.column_names]
    exploded = annotated.where(F.col(QUALITY) == QUARANTINED).select(
        F.explode(ERRORS).alias("rule"),
        *columns,
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(CORRUPT).alias("whole_line"),
    )
    order = Window.partitionBy("rule").orderBy("source_file", *contract.column_names)
    return (
        exploded.withColumn("_n", F.row_number().over(order))
        .where(F.col("_n") <= per_rule)
        .drop("_n")
        .orderBy("rule", "source_file")
    )
