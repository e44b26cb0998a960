"""Parsing is strict: a bad value is a type failure, never a silent null."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.engine import parsing as rules

UTC = dt.UTC


def _parse(spark: SparkSession, values: list[str | None], type_name: str) -> list[tuple[object, bool]]:
    df = spark.createDataFrame([(v,) for v in values], "v string")
    parsed = rules.parse_value(rules.clean_text(F.col("v")), type_name)
    out = df.select(parsed.alias("p"), rules.type_mismatch(rules.clean_text(F.col("v")), parsed).alias("bad"))
    return [(r["p"], r["bad"]) for r in out.collect()]


def test_timestamps_accept_iso_8601_variants_as_utc(spark: SparkSession) -> None:
    values = [
        "2025-01-02T03:04:05Z",
        "2025-01-02 03:04:05",
        "2025-01-02T05:04:05+02:00",
        "2025-01-02 03:04:05 UTC",
        "2025-01-02 03:04:05.250+00:00",
        "2025-01-02",
    ]
    got = _parse(spark, values, "timestamp")
    as_utc = [p.replace(tzinfo=UTC) if p.tzinfo is None else p for p, _ in got]  # type: ignore[union-attr]
    expected_instant = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [b for _, b in got] == [False] * 6
    assert [t.astimezone(UTC) for t in as_utc[:4]] == [expected_instant] * 4
    assert as_utc[4].astimezone(UTC) == dt.datetime(2025, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    assert as_utc[5].astimezone(UTC) == dt.datetime(2025, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["2025-13-45", "2025-02-30 10:00:00", "yesterday", "2025", "02/01/2025", "1735787045"]
)
def test_bad_timestamps_are_type_failures(spark: SparkSession, value: str) -> None:
    assert _parse(spark, [value], "timestamp") == [(None, True)]


def test_decimals_parse_and_bad_ones_fail(spark: SparkSession) -> None:
    got = _parse(spark, ["19.99", " 5 ", "-0.5", "abc", "1e3", "12345678901.00", None, "  "], "decimal(12,2)")
    assert got == [
        (Decimal("19.99"), False),
        (Decimal("5.00"), False),
        (Decimal("-0.50"), False),
        (None, True),
        (None, True),  # scientific notation is not a price
        (None, True),  # overflows decimal(12,2)
        (None, False),  # missing: not_null's business, not a type failure
        (None, False),  # blank counts as missing
    ]


def test_integers_reject_fractions_and_overflow(spark: SparkSession) -> None:
    got = _parse(spark, ["42", "+7", "4.0", "99999999999999999999", "u12"], "long")
    assert got == [(42, False), (7, False), (None, True), (None, True), (None, True)]


def test_bad_encoding_is_detected_by_replacement_character(spark: SparkSession) -> None:
    df = spark.createDataFrame([("Caf\ufffd",), ("Café",)], "v string")
    assert [r[0] for r in df.select(rules.bad_encoding(F.col("v"))).collect()] == [True, False]
