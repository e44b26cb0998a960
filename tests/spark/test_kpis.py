"""KPIs on a hand-built fixture; every expected value below was computed by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.engine import kpis

ORDERS = [
    # order_id, user_id, status, created_at (UTC)
    (1, 10, "complete", dt.datetime(2025, 3, 1, 10, 0)),
    (2, 10, "returned", dt.datetime(2025, 3, 1, 23, 30)),
    (3, 11, "cancelled", dt.datetime(2025, 3, 1, 5, 0)),  # no items
    (4, 12, "shipped", dt.datetime(2025, 3, 2, 0, 10)),
    (5, 13, "complete", dt.datetime(2025, 3, 3, 9, 0)),
    (6, 14, "complete", dt.datetime(2025, 3, 3, 9, 5)),
    (7, 15, "cancelled", dt.datetime(2025, 3, 4, 12, 0)),  # the only order of its date, no items
]
ITEMS = [
    # id, order_id, product_id, status, sale_price
    (11, 1, 100, "complete", D("10.00")),
    (12, 1, 101, "complete", D("5.25")),
    (21, 2, 100, "returned", D("20.00")),
    (22, 2, 101, "returned", D("3.33")),
    (41, 4, 100, "shipped", D("7.77")),
    (51, 5, 102, "complete", D("0.10")),
    (61, 6, 102, "complete", D("0.15")),
]
PRODUCTS = [(100, "Jeans"), (101, "Socks"), (102, "Hats")]


def _frames(spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
    orders = spark.createDataFrame(ORDERS, "order_id long, user_id long, status string, created_at timestamp")
    items = spark.createDataFrame(
        ITEMS, "id long, order_id long, product_id long, status string, sale_price decimal(12,2)"
    )
    products = spark.createDataFrame(PRODUCTS, "id long, category string")
    return kpis.with_order_date(orders), items, products


def test_order_daily_matches_hand_computed_values(spark: SparkSession) -> None:
    orders, items, _ = _frames(spark)
    got = kpis.order_daily(orders, kpis.order_lines(orders, items))
    expected = spark.createDataFrame(
        [
            # 3 orders; 10+5.25+20+3.33; net excludes returned; 1 of 3 returned; users 10, 11; 38.58/3
            (dt.date(2025, 3, 1), 3, D("38.58"), D("15.25"), 4, D("0.3333"), 2, D("12.86"), 1),
            (dt.date(2025, 3, 2), 1, D("7.77"), D("7.77"), 1, D("0.0000"), 1, D("7.77"), 0),
            # 0.25 / 2 = 0.125 -> 0.12 half-even (half-up would say 0.13)
            (dt.date(2025, 3, 3), 2, D("0.25"), D("0.25"), 2, D("0.0000"), 2, D("0.12"), 0),
            # an order but nothing sold: zeros, not nulls
            (dt.date(2025, 3, 4), 1, D("0.00"), D("0.00"), 0, D("0.0000"), 1, D("0.00"), 0),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_category_daily_matches_hand_computed_values(spark: SparkSession) -> None:
    orders, items, products = _frames(spark)
    got = kpis.category_daily(kpis.order_lines(orders, items), products)
    expected = spark.createDataFrame(
        [
            # Jeans on 03-01: items 11 (10.00) and 21 (20.00, returned), orders 1 and 2
            ("Jeans", dt.date(2025, 3, 1), D("30.00"), D("10.00"), 2, 2, D("15.00"), D("0.5000"), 1),
            ("Socks", dt.date(2025, 3, 1), D("8.58"), D("5.25"), 2, 2, D("4.29"), D("0.5000"), 1),
            ("Jeans", dt.date(2025, 3, 2), D("7.77"), D("7.77"), 1, 1, D("7.77"), D("0.0000"), 0),
            ("Hats", dt.date(2025, 3, 3), D("0.25"), D("0.25"), 2, 2, D("0.12"), D("0.0000"), 0),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def _correction(spark: SparkSession) -> tuple[kpis.State, kpis.State, DataFrame]:
    """The fixture before and after a batch that moves order 2 (user 10, returned) from 03-01 to
    03-03 and turns product 101 (Socks) into a hat; and the orders it affects, found."""
    schema = "order_id long, user_id long, status string, created_at timestamp"
    item_schema = "id long, order_id long, product_id long, status string, sale_price decimal(12,2)"
    moved = [(2, 10, "returned", dt.datetime(2025, 3, 3, 8, 0)) if o[0] == 2 else o for o in ORDERS]
    before = kpis.State(
        spark.createDataFrame(ORDERS, schema),
        spark.createDataFrame(ITEMS, item_schema),
        spark.createDataFrame(PRODUCTS, "id long, category string"),
    )
    after = kpis.State(
        spark.createDataFrame(moved, schema),
        before.items,
        spark.createDataFrame(
            [(i, "Hats" if i == 101 else c) for i, c in PRODUCTS], "id long, category string"
        ),
    )
    tag = [(o[0], "b2" if o[0] == 2 else "b1") for o in ORDERS]
    affected = kpis.affected_orders(
        spark.createDataFrame(tag, "order_id long, _batch_id string"),
        spark.createDataFrame(
            [(i[0], i[1], i[2], "b1") for i in ITEMS],
            "id long, order_id long, product_id long, _batch_id string",
        ),
        kpis.recategorised(
            after.products.withColumn("_batch_id", F.when(F.col("id") == 101, "b2").otherwise("b1")),
            before.products,
            "b2",
        ),
        before.items.select("id", "order_id"),
        "b2",
    )
    return before, after, affected


def test_a_batch_s_change_added_to_the_stored_rows_gives_the_hand_computed_kpis(spark: SparkSession) -> None:
    before, after, affected = _correction(spark)
    assert sorted(r["order_id"] for r in affected.collect()) == [1, 2]  # 2 moved; 1 and 2 hold a 101
    orders, items, products = _frames(spark)
    lines = kpis.order_lines(orders, items)
    order_change, category_change = kpis.parts_change(before, after, affected, broadcast=True)
    assert order_change is not None and category_change is not None
    assert sorted(r["order_date"].day for r in order_change.collect()) == [1, 3]
    stored = kpis.order_parts_of(kpis.order_daily(orders, lines))
    got = kpis.order_from_parts(
        kpis.apply_change(stored, order_change, ["order_date"], kpis.ORDER_PARTS).where("total_orders > 0")
    )
    expected = spark.createDataFrame(
        [
            # orders 1 (user 10) and 3 (user 11): user 10 still ordered that day; 15.25 / 2 = 7.625 -> 7.62
            (dt.date(2025, 3, 1), 2, D("15.25"), D("15.25"), 2, D("0.0000"), 2, D("7.62"), 0),
            (dt.date(2025, 3, 2), 1, D("7.77"), D("7.77"), 1, D("0.0000"), 1, D("7.77"), 0),
            # orders 5, 6 and 2 (returned): 0.10 + 0.15 + 20.00 + 3.33; 23.58 / 3 = 7.86
            (dt.date(2025, 3, 3), 3, D("23.58"), D("0.25"), 4, D("0.3333"), 3, D("7.86"), 1),
            (dt.date(2025, 3, 4), 1, D("0.00"), D("0.00"), 0, D("0.0000"), 1, D("0.00"), 0),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    stored_categories = kpis.category_parts_of(kpis.category_daily(lines, products))
    got = kpis.category_from_parts(
        kpis.apply_change(
            stored_categories, category_change, ["category", "order_date"], kpis.CATEGORY_PARTS
        ).where("items > 0")
    )
    expected = spark.createDataFrame(
        [
            ("Jeans", dt.date(2025, 3, 1), D("10.00"), D("10.00"), 1, 1, D("10.00"), D("0.0000"), 0),
            ("Hats", dt.date(2025, 3, 1), D("5.25"), D("5.25"), 1, 1, D("5.25"), D("0.0000"), 0),
            ("Jeans", dt.date(2025, 3, 2), D("7.77"), D("7.77"), 1, 1, D("7.77"), D("0.0000"), 0),
            # items 51, 61 and 22 (returned, now a hat) of orders 5, 6, 2; 3.58 / 3 = 1.1933
            ("Hats", dt.date(2025, 3, 3), D("3.58"), D("0.25"), 3, 3, D("1.19"), D("0.3333"), 1),
            ("Jeans", dt.date(2025, 3, 3), D("20.00"), D("0.00"), 1, 1, D("20.00"), D("1.0000"), 1),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_an_item_belongs_to_its_orders_date(spark: SparkSession) -> None:
    # order 2 was created 23:30 on 03-01; an item created after midnight still counts on 03-01
    orders, items, _ = _frames(spark)
    row = (
        kpis.order_daily(orders, kpis.order_lines(orders, items))
        .where("order_date = '2025-03-01'")
        .collect()[0]
    )
    assert row["total_items_sold"] == 4


def test_touched_dates_include_the_date_a_correction_moved_an_order_from(spark: SparkSession) -> None:
    orders = spark.createDataFrame(
        [
            (1, dt.datetime(2025, 3, 5, 8), "b3"),
            (2, dt.datetime(2025, 3, 2, 8), "b1"),
            (3, dt.datetime(2025, 3, 7, 8), "b1"),
            (4, dt.datetime(2025, 3, 9, 8), "b1"),
        ],
        "order_id long, created_at timestamp, _batch_id string",
    )
    items = spark.createDataFrame(
        [(10, 2, 100, "b3"), (11, 3, 101, "b1"), (12, 4, 102, "b1")],
        "id long, order_id long, product_id long, _batch_id string",
    )
    products = spark.createDataFrame([(100, "b1"), (101, "b1"), (102, "b3")], "id long, _batch_id string")
    old_orders = spark.createDataFrame(
        [(1, dt.datetime(2025, 3, 1, 8))], "order_id long, created_at timestamp"
    )
    old_items = spark.createDataFrame([(10, 3)], "id long, order_id long")
    got = kpis.touched_dates(orders, items, products, old_orders, old_items, "b3")
    assert sorted(r["order_date"] for r in got.collect()) == [
        dt.date(2025, 3, 1),  # order 1's date before b3 corrected it
        dt.date(2025, 3, 2),  # item 10 (changed in b3) is on order 2
        dt.date(2025, 3, 5),  # order 1's new date
        dt.date(2025, 3, 7),  # item 10 belonged to order 3 before b3
        dt.date(2025, 3, 9),  # product 102 changed in b3; item 12 of order 4 sells it
    ]


def test_only_a_product_whose_category_changed_reaches_orders_through_its_items(spark: SparkSession) -> None:
    before = spark.createDataFrame([(101, "Socks"), (102, "Jeans"), (103, None)], "id long, category string")
    after = spark.createDataFrame(
        [
            (101, "Socks", "b2"),  # re-delivered with a new price: same category
            (102, "Hats", "b2"),  # a new category
            (103, "Hats", "b2"),  # a category where there was none
            (104, "Hats", "b2"),  # new: no earlier published item can hold it
            (105, "Hats", "b1"),  # not written by the batch
        ],
        "id long, category string, _batch_id string",
    )
    assert sorted(r["id"] for r in kpis.recategorised(after, before, "b2").collect()) == [102, 103]


def test_a_customers_other_order_that_day_keeps_them_counted_when_one_order_moves(
    spark: SparkSession,
) -> None:
    """User 10 has orders 1 and 2 on 03-01; the batch moves order 2 to 03-02. Only order 2 is
    affected, yet 03-01 keeps user 10 through order 1: its count of customers does not change."""
    schema = "order_id long, user_id long, status string, created_at timestamp"
    first, second = dt.datetime(2025, 3, 1, 9), dt.datetime(2025, 3, 2, 9)
    before = kpis.State(
        spark.createDataFrame(
            [(1, 10, "complete", first), (2, 10, "complete", first), (3, 11, "complete", second)], schema
        ),
        None,
        None,
    )
    after = kpis.State(
        spark.createDataFrame(
            [(1, 10, "complete", first), (2, 10, "complete", second), (3, 11, "complete", second)], schema
        ),
        None,
        None,
    )
    affected = spark.createDataFrame([(2,)], "order_id long")
    change, _ = kpis.parts_change(before, after, affected, broadcast=True)
    assert change is not None
    got = {r["order_date"].day: (r["total_orders"], r["unique_customers"]) for r in change.collect()}
    assert got == {1: (-1, 0), 2: (1, 1)}
