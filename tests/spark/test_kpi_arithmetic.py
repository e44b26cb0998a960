"""KPI division is exact and rounded once, half-even: compared with Python's ``Decimal`` on
generated numerators and denominators (money values with 2 places and counts)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.engine import kpis

EXACT = Context(prec=80)  # far more digits than any quotient here needs: the reference never rounds early


def reference(numerator: Decimal, denominator: int, places: int) -> Decimal:
    quotient = EXACT.divide(numerator, Decimal(denominator))
    return quotient.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN, context=EXACT)


cents = st.integers(min_value=0, max_value=10**15).map(lambda c: Decimal(c).scaleb(-2))
counts = st.integers(min_value=1, max_value=10**9)


def _check(spark: SparkSession, pairs: list[tuple[Decimal, int]], places: int, type_name: str) -> None:
    frame = spark.createDataFrame(pairs, "n decimal(22,2), d long")
    got = frame.select(kpis.ratio(F.col("n"), F.col("d"), places, type_name).alias("q")).collect()
    expected = [reference(n, d, places) for n, d in pairs]
    assert [row["q"] for row in got] == expected, list(zip(pairs, expected, strict=True))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(cents, counts), min_size=1, max_size=60))
@example([(Decimal(1), 8)])  # 0.125: an exact tie, rounds to the even 0.12
@example([(Decimal("38.58"), 3)])
def test_average_money_is_exact_and_rounded_once(
    spark: SparkSession, pairs: list[tuple[Decimal, int]]
) -> None:
    _check(spark, pairs, 2, kpis.MONEY)


@settings(max_examples=15, deadline=None)
@given(st.lists(counts.flatmap(lambda d: st.tuples(st.integers(0, d).map(Decimal), st.just(d))), max_size=60))
@example([(Decimal(25), 127)])  # 0.19685039...: a quotient kept to 6 places would round to 0.1968
@example([(Decimal(1), 3), (Decimal(2), 3), (Decimal(1), 16)])
def test_rates_are_exact_and_rounded_once(spark: SparkSession, pairs: list[tuple[Decimal, int]]) -> None:
    if pairs:
        _check(spark, pairs, 4, kpis.RATE)


def test_a_zero_denominator_gives_null(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(Decimal(5), 0)], "n decimal(22,2), d long")
    assert frame.select(kpis.ratio(F.col("n"), F.col("d"), 4, kpis.RATE)).first()[0] is None  # type: ignore[index]
