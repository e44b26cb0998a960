"""Daily KPIs: pure ``DataFrame -> DataFrame`` functions (definitions in docs/jobs.md#kpi-definitions).

All KPIs are per order date = the UTC date of ``orders.created_at``; an item belongs to its
order's date. Money is ``decimal(18,2)``, rates ``decimal(6,4)`` in [0, 1], both rounded half-even
(``bround``). Statuses are compared lower-case (the validate job stores them normalised).
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

MONEY = "decimal(18,2)"
_INPUT_SCALE = 2  # ratio inputs are money (2 places) or counts
RATE = "decimal(6,4)"
# Items that do not count towards net revenue.
NOT_NET_STATUSES = ["returned", "cancelled"]
# Every KPI row also says which batch computed it and when (ISO-8601 text).
STAMP = T.StructType(
    [T.StructField("batch_id", T.StringType()), T.StructField("computed_at", T.StringType())]
)
_MONEY_TYPE, _RATE_TYPE = T.DecimalType(18, 2), T.DecimalType(6, 4)

# The KPI tables' schemas, declared (the catalog registers them; a test holds the functions to them).
ORDER_DAILY_SCHEMA = T.StructType(
    [
        T.StructField("order_date", T.DateType()),
        T.StructField("total_orders", T.LongType()),
        T.StructField("total_revenue", _MONEY_TYPE),
        T.StructField("net_revenue", _MONEY_TYPE),
        T.StructField("total_items_sold", T.LongType()),
        T.StructField("return_rate", _RATE_TYPE),
        T.StructField("unique_customers", T.LongType()),
        T.StructField("avg_order_value", _MONEY_TYPE),
        *STAMP.fields,
    ]
)
CATEGORY_DAILY_SCHEMA = T.StructType(
    [
        T.StructField("category", T.StringType()),
        T.StructField("order_date", T.DateType()),
        T.StructField("daily_revenue", _MONEY_TYPE),
        T.StructField("net_revenue", _MONEY_TYPE),
        T.StructField("orders", T.LongType()),
        T.StructField("items_sold", T.LongType()),
        T.StructField("avg_order_value", _MONEY_TYPE),
        T.StructField("avg_return_rate", _RATE_TYPE),
        *STAMP.fields,
    ]
)


def _money(value: Column) -> Column:
    return F.bround(value, 2).cast(MONEY)


def ratio(numerator: Column, denominator: Column, scale: int, type_name: str) -> Column:
    """``numerator / denominator`` rounded once, half-even, to ``scale`` places; null when the
    denominator is zero.

    Spark keeps only 6 places of a wide decimal quotient, so rounding that to 4 would round twice
    (25/127 = 0.196850... would become 0.1968). Instead the quotient is found with exact integer
    arithmetic on decimal(38,0): numerator and denominator (money has 2 places, counts none) are
    scaled to integers, the floor quotient and remainder decide the last digit, and a remainder of
    exactly half goes to the even digit.
    """
    to_int = 10**_INPUT_SCALE
    num = (numerator.cast(f"decimal(36,{_INPUT_SCALE})") * F.lit(to_int)).cast("decimal(38,0)")
    den = (denominator.cast(f"decimal(36,{_INPUT_SCALE})") * F.lit(to_int)).cast("decimal(38,0)")
    den = F.nullif(den, F.lit(0).cast("decimal(38,0)"))
    sign = F.when(num < 0, F.lit(-1)).otherwise(F.lit(1)) * F.when(den < 0, F.lit(-1)).otherwise(F.lit(1))
    scaled = (F.abs(num) * F.lit(10**scale)).cast("decimal(38,0)")
    divisor = F.abs(den)
    remainder = (scaled % divisor).cast("decimal(38,0)")
    floor = ((scaled - remainder) / divisor).cast("decimal(38,0)")
    twice = remainder * F.lit(2)
    up = F.when(twice > divisor, F.lit(1)).when((twice == divisor) & (floor % 2 == 1), F.lit(1)).otherwise(0)
    digits = (floor + up).cast("decimal(38,0)") * sign
    return (digits * F.lit(Decimal(1).scaleb(-scale))).cast(type_name)


def with_order_date(orders: DataFrame) -> DataFrame:
    """Add ``order_date``: the UTC date of ``created_at`` (the session time zone is UTC)."""
    return orders.withColumn("order_date", F.to_date(F.col("created_at")))


def order_lines(orders: DataFrame, items: DataFrame) -> DataFrame:
    """Each item with its order's date: the one join of items with orders that both KPI tables
    aggregate (an item whose order is not in ``orders`` is left out).

    Args:
        orders: ``order_id, order_date``.
        items: ``order_id, product_id, status, sale_price``.

    Returns:
        ``order_id, product_id, status, sale_price, order_date``.
    """
    return items.select("order_id", "product_id", "status", "sale_price").join(
        orders.select("order_id", "order_date"), "order_id"
    )


def _sold(status: Column, price: Column) -> tuple[Column, Column, Column]:
    """Revenue, net revenue (null when every item was returned or cancelled) and items, summed."""
    net = F.sum(F.when(~status.isin(NOT_NET_STATUSES), price))
    return F.sum(price).alias("revenue"), net.alias("net"), F.count(F.lit(1)).alias("items")


def order_daily(orders: DataFrame, lines: DataFrame) -> DataFrame:
    """One row per order date: order counts from the orders, sales from their items' lines.

    Args:
        orders: ``order_id, user_id, status, order_date``.
        lines: :func:`order_lines` of the same orders.
    """
    per_date = orders.groupBy("order_date").agg(
        F.count(F.lit(1)).alias("total_orders"),
        F.sum(F.when(F.col("status") == "returned", 1).otherwise(0)).alias("returned_orders"),
        F.countDistinct("user_id").alias("unique_customers"),
    )
    sold = lines.groupBy("order_date").agg(*_sold(F.col("status"), F.col("sale_price")))
    daily = per_date.join(sold, "order_date", "left").select(
        "order_date",
        "total_orders",
        "returned_orders",
        "unique_customers",
        # a date whose orders have no items sold nothing
        F.coalesce(F.col("revenue"), F.lit(0)).alias("revenue"),
        F.coalesce(F.col("net"), F.lit(0)).alias("net"),
        F.coalesce(F.col("items"), F.lit(0)).alias("total_items_sold"),
    )
    return daily.select(
        "order_date",
        F.col("total_orders").cast("long").alias("total_orders"),
        _money(F.col("revenue")).alias("total_revenue"),
        _money(F.col("net")).alias("net_revenue"),
        F.col("total_items_sold").cast("long").alias("total_items_sold"),
        ratio(F.col("returned_orders"), F.col("total_orders"), 4, RATE).alias("return_rate"),
        F.col("unique_customers").cast("long").alias("unique_customers"),
        ratio(F.col("revenue"), F.col("total_orders"), 2, MONEY).alias("avg_order_value"),
    )


def category_daily(lines: DataFrame, products: DataFrame) -> DataFrame:
    """One row per (category, order date): lines whose product is known.

    Args:
        lines: :func:`order_lines`.
        products: ``id, category``.
    """
    categorised = lines.join(products.select(F.col("id").alias("product_id"), "category"), "product_id")
    daily = categorised.groupBy("category", "order_date").agg(
        *_sold(F.col("status"), F.col("sale_price")),
        F.countDistinct("order_id").alias("orders"),
        F.sum(F.when(F.col("status") == "returned", 1).otherwise(0)).alias("returned_items"),
    )
    return daily.select(
        "category",
        "order_date",
        _money(F.col("revenue")).alias("daily_revenue"),
        _money(F.coalesce(F.col("net"), F.lit(0))).alias("net_revenue"),
        F.col("orders").cast("long").alias("orders"),
        F.col("items").cast("long").alias("items_sold"),
        ratio(F.col("revenue"), F.col("orders"), 2, MONEY).alias("avg_order_value"),
        ratio(F.col("returned_items"), F.col("items"), 4, RATE).alias("avg_return_rate"),
    )


def restrict_to_dates(df: DataFrame, dates: DataFrame) -> DataFrame:
    """Keep rows whose ``order_date`` is among ``dates`` (one column ``order_date``)."""
    return df.join(F.broadcast(dates), "order_date", "left_semi")


def touched_dates(
    orders: DataFrame,
    items: DataFrame,
    products: DataFrame | None,
    old_orders: DataFrame | None,
    old_items: DataFrame | None,
    batch_id: str,
) -> DataFrame:
    """Order dates whose KPIs a batch may have changed (one column ``order_date``, distinct).

    A date is touched when the batch inserted or changed an order of that date (including the
    date an order had *before* a correction moved it), an item of an order of that date
    (including the order an item belonged to before), or a product sold on that date (its
    category may have changed).

    Args:
        orders: current ``order_id, created_at, _batch_id``.
        items: current ``id, order_id, product_id, _batch_id``.
        products: current ``id, _batch_id``, or None when there is no products table.
        old_orders: ``order_id, created_at`` as before the batch's first write, or None.
        old_items: ``id, order_id`` as before the batch's first write, or None.
    """
    in_batch = F.col("_batch_id") == F.lit(batch_id)
    changed_orders = orders.where(in_batch).select("order_id")
    changed_items = items.where(in_batch).select("id", "order_id")
    # Orders touched through their items, by id, each id once: the lookup the orders are
    # semi-joined with stays no bigger than the orders. The planner broadcasts it from the
    # driver; with every item's order id in it, up to three times over (12M ids at 5M items),
    # a second such query in one 2 GB driver failed ("Not enough memory to build and broadcast").
    order_ids = [changed_items.select("order_id")]
    if old_items is not None:
        order_ids.append(old_items.join(changed_items.select("id"), "id", "left_semi").select("order_id"))
    if products is not None:
        changed_products = products.where(in_batch).select(F.col("id").alias("product_id"))
        order_ids.append(items.join(changed_products, "product_id", "left_semi").select("order_id"))
    touched = order_ids[0]
    for ids in order_ids[1:]:
        touched = touched.unionByName(ids)
    dated = with_order_date(orders)
    # The batch's own orders give their dates directly; the others are looked up.
    result = dated.where(in_batch).select("order_date")
    looked_up = dated.select("order_id", "order_date").join(touched.distinct(), "order_id", "left_semi")
    result = result.unionByName(looked_up.select("order_date"))
    if old_orders is not None:
        moved = old_orders.join(changed_orders, "order_id", "left_semi")
        result = result.unionByName(with_order_date(moved).select("order_date"))
    return result.where(F.col("order_date").isNotNull()).distinct()
