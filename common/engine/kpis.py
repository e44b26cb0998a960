"""Daily KPIs: pure ``DataFrame -> DataFrame`` functions (definitions in docs/jobs.md#kpi-definitions).

All KPIs are per order date = the UTC date of ``orders.created_at``; an item belongs to its
order's date. Money is ``decimal(18,2)``, rates ``decimal(6,4)`` in [0, 1], both rounded half-even
(``bround``). Statuses are compared lower-case (the validate job stores them normalised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
        T.StructField("returned_orders", T.LongType()),
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
        T.StructField("returned_items", T.LongType()),
        *STAMP.fields,
    ]
)


@dataclass(frozen=True)
class KpiTable:
    """A KPI table transform writes: its name, the columns that key a row, its declared schema."""

    name: str
    keys: tuple[str, ...]
    schema: T.StructType
    description: str


ORDER_DAILY = KpiTable(
    "order_daily", ("order_date",), ORDER_DAILY_SCHEMA, "Daily order KPIs, one row per order date."
)
CATEGORY_DAILY = KpiTable(
    "category_daily",
    ("category", "order_date"),
    CATEGORY_DAILY_SCHEMA,
    "Daily KPIs per product category and order date.",
)
KPI_TABLES = (ORDER_DAILY, CATEGORY_DAILY)
# Each KPI row's additive parts: the rates and averages are computed from them (rounded once). A
# stored row gives them back exactly (money keeps its 2 places), so a batch's change can be added.
ORDER_PARTS = ["total_orders", "returned_orders", "unique_customers", "revenue", "net", "total_items_sold"]
CATEGORY_PARTS = ["revenue", "net", "orders", "items", "returned_items"]


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
    """Revenue, net revenue (0 when every item was returned or cancelled) and items, summed."""
    net = F.coalesce(F.sum(F.when(~status.isin(NOT_NET_STATUSES), price)), F.lit(0))
    return F.sum(price).alias("revenue"), net.alias("net"), F.count(F.lit(1)).alias("items")


def _returned(status: Column) -> Column:
    return F.sum(F.when(status == "returned", 1).otherwise(0))


def order_parts(orders: DataFrame, lines: DataFrame) -> DataFrame:
    """Per order date, the additive parts of :func:`order_daily` (:data:`ORDER_PARTS`)."""
    per_date = orders.groupBy("order_date").agg(
        F.count(F.lit(1)).alias("total_orders"),
        _returned(F.col("status")).alias("returned_orders"),
        F.countDistinct("user_id").alias("unique_customers"),
    )
    sold = lines.groupBy("order_date").agg(*_sold(F.col("status"), F.col("sale_price")))
    # a date whose orders have no items sold nothing
    return per_date.join(sold, "order_date", "left").select(
        "order_date",
        "total_orders",
        "returned_orders",
        "unique_customers",
        F.coalesce(F.col("revenue"), F.lit(0)).alias("revenue"),
        F.coalesce(F.col("net"), F.lit(0)).alias("net"),
        F.coalesce(F.col("items"), F.lit(0)).alias("total_items_sold"),
    )


def order_from_parts(parts: DataFrame) -> DataFrame:
    """The order KPI rows (:data:`ORDER_DAILY_SCHEMA`, stamp aside) from their parts."""
    return parts.select(
        "order_date",
        F.col("total_orders").cast("long").alias("total_orders"),
        _money(F.col("revenue")).alias("total_revenue"),
        _money(F.col("net")).alias("net_revenue"),
        F.col("total_items_sold").cast("long").alias("total_items_sold"),
        ratio(F.col("returned_orders"), F.col("total_orders"), 4, RATE).alias("return_rate"),
        F.col("unique_customers").cast("long").alias("unique_customers"),
        ratio(F.col("revenue"), F.col("total_orders"), 2, MONEY).alias("avg_order_value"),
        F.col("returned_orders").cast("long").alias("returned_orders"),
    )


def order_daily(orders: DataFrame, lines: DataFrame) -> DataFrame:
    """One row per order date: order counts from the orders, sales from their items' lines.

    Args:
        orders: ``order_id, user_id, status, order_date``.
        lines: :func:`order_lines` of the same orders.
    """
    return order_from_parts(order_parts(orders, lines))


def _categorised(lines: DataFrame, products: DataFrame) -> DataFrame:
    return lines.join(products.select(F.col("id").alias("product_id"), "category"), "product_id")


def category_parts(lines: DataFrame, products: DataFrame) -> DataFrame:
    """Per (category, order date), the additive parts of :func:`category_daily` (:data:`CATEGORY_PARTS`)."""
    return (
        _categorised(lines, products)
        .groupBy("category", "order_date")
        .agg(
            *_sold(F.col("status"), F.col("sale_price")),
            F.countDistinct("order_id").alias("orders"),
            _returned(F.col("status")).alias("returned_items"),
        )
    )


def category_from_parts(parts: DataFrame) -> DataFrame:
    """The category KPI rows (:data:`CATEGORY_DAILY_SCHEMA`, stamp aside) from their parts."""
    return parts.select(
        "category",
        "order_date",
        _money(F.col("revenue")).alias("daily_revenue"),
        _money(F.col("net")).alias("net_revenue"),
        F.col("orders").cast("long").alias("orders"),
        F.col("items").cast("long").alias("items_sold"),
        ratio(F.col("revenue"), F.col("orders"), 2, MONEY).alias("avg_order_value"),
        ratio(F.col("returned_items"), F.col("items"), 4, RATE).alias("avg_return_rate"),
        F.col("returned_items").cast("long").alias("returned_items"),
    )


def category_daily(lines: DataFrame, products: DataFrame) -> DataFrame:
    """One row per (category, order date): lines whose product is known.

    Args:
        lines: :func:`order_lines`.
        products: ``id, category``.
    """
    return category_from_parts(category_parts(lines, products))


def order_parts_of(rows: DataFrame) -> DataFrame:
    """The parts back from stored :func:`order_daily` rows (exact: sums of 2-place money)."""
    return rows.select(
        "order_date",
        "total_orders",
        "returned_orders",
        "unique_customers",
        F.col("total_revenue").alias("revenue"),
        F.col("net_revenue").alias("net"),
        "total_items_sold",
    )


def category_parts_of(rows: DataFrame) -> DataFrame:
    """The parts back from stored :func:`category_daily` rows."""
    return rows.select(
        "category",
        "order_date",
        F.col("daily_revenue").alias("revenue"),
        F.col("net_revenue").alias("net"),
        "orders",
        F.col("items_sold").alias("items"),
        "returned_items",
    )


@dataclass(frozen=True)
class State:
    """The validated tables as of one version: ``orders`` (``order_id, user_id, status,
    created_at``), ``items`` (``id, order_id, product_id, status, sale_price``), ``products``
    (``id, category``); None for a table that did not exist then."""

    orders: DataFrame | None
    items: DataFrame | None
    products: DataFrame | None


_COUNT, _SUM = "long", "decimal(38,2)"
_ORDER_TYPES = dict.fromkeys(ORDER_PARTS, _COUNT) | {"revenue": _SUM, "net": _SUM}
_CATEGORY_TYPES = dict.fromkeys(CATEGORY_PARTS, _COUNT) | {"revenue": _SUM, "net": _SUM}


def _long_form(frame: DataFrame, keys: list[str], types: dict[str, str], sign: int) -> DataFrame:
    """``frame``'s parts (those it has; the others 0) times ``sign``, in one fixed shape."""
    return frame.select(
        *keys,
        *[((F.col(n) * sign) if n in frame.columns else F.lit(0)).cast(t).alias(n) for n, t in types.items()],
    )


def _summed(frames: list[DataFrame], keys: list[str], types: dict[str, str]) -> DataFrame:
    return _union(frames).groupBy(*keys).agg(*[F.sum(n).cast(t).alias(n) for n, t in types.items()])


def parts_change(
    before: State,
    after: State,
    affected: DataFrame,
    broadcast: bool,
    keep: Callable[[DataFrame], DataFrame] = lambda frame: frame,
) -> tuple[DataFrame | None, DataFrame | None]:
    """How a batch changed the KPI parts: ``after``'s parts of the ``affected`` orders (one column
    ``order_id``, few) less ``before``'s, per order date and per (category, order date); None when
    neither state has orders (or, for categories, items and products).

    ``affected`` must hold every order the batch changed, every order an item it changed belongs
    (or belonged) to, and every order holding an item of a product it changed: any other order has
    the same row, lines, date and categories in both states, so it adds the same to both. Every
    line of an affected order is counted, so the orders per category are exact; unique customers
    are counted over every order of the affected (date, user) pairs of either state: the affected
    orders of that state, and the pair's other orders, the same in both states and so looked up
    once, in the whole table of one of them (a user's other orders that day count too). A key
    whose parts did not change has a row of zeros, so every touched key is there. ``broadcast``:
    ``affected`` is small enough to be sent to every task (as are then the (date, user) pairs, at
    most twice as many). ``keep`` is applied to each state's affected orders and their lines, and
    to the pairs' other orders (few rows, each used several times: the caller can persist them).
    """

    def hinted(frame: DataFrame) -> DataFrame:
        return F.broadcast(frame) if broadcast else frame

    ids = hinted(affected)
    states = [(state, sign) for state, sign in ((before, -1), (after, 1)) if state.orders is not None]
    if not states:
        return None, None
    dated = {sign: with_order_date(state.orders) for state, sign in states if state.orders is not None}
    mine = {sign: keep(frame.join(ids, "order_id", "left_semi")) for sign, frame in dated.items()}
    pairs = None
    for frame in mine.values():
        found = frame.select("order_date", "user_id")
        pairs = found if pairs is None else pairs.unionByName(found)
    assert pairs is not None
    day_user = ["order_date", "user_id"]
    known = F.col("order_date").isNotNull() & F.col("user_id").isNotNull()  # a null pair matches none
    pairs = hinted(pairs.where(known).distinct())
    either = dated[1] if 1 in dated else dated[-1]
    others = keep(
        either.join(ids, "order_id", "left_anti")
        .join(pairs, day_user, "left_semi")
        .select(*day_user)
        .distinct()
    )
    order_frames, category_frames = [], []
    for state, sign in states:
        day = ["order_date"]
        counts = (
            mine[sign]
            .groupBy("order_date")
            .agg(F.count(F.lit(1)).alias("total_orders"), _returned(F.col("status")).alias("returned_orders"))
        )
        customers = (
            mine[sign]
            .select(*day_user)
            .where(known)
            .unionByName(others)
            .distinct()
            .groupBy("order_date")
            .agg(F.count(F.lit(1)).alias("unique_customers"))
        )
        order_frames += [_long_form(f, day, _ORDER_TYPES, sign) for f in (counts, customers)]
        if state.items is None:
            continue
        lines = keep(order_lines(mine[sign], state.items.join(ids, "order_id", "left_semi")))
        sold = lines.groupBy("order_date").agg(*_sold(F.col("status"), F.col("sale_price")))
        sold = sold.withColumnRenamed("items", "total_items_sold")
        order_frames.append(_long_form(sold, day, _ORDER_TYPES, sign))
        if state.products is not None:
            parts = category_parts(lines, state.products)
            category_frames.append(_long_form(parts, ["category", "order_date"], _CATEGORY_TYPES, sign))
    order_change = _summed(order_frames, ["order_date"], _ORDER_TYPES)
    category_change = (
        _summed(category_frames, ["category", "order_date"], _CATEGORY_TYPES) if category_frames else None
    )
    return order_change, category_change


def apply_change(stored: DataFrame, change: DataFrame, keys: list[str], names: list[str]) -> DataFrame:
    """``stored`` parts plus ``change``, key by key (a key missing on one side adds nothing). A
    key left with nothing (no order that day, no item of that category) has parts of 0: the
    caller drops it."""
    joined = stored.alias("s").join(change.alias("c"), keys, "full")
    summed = [
        (F.coalesce(F.col(f"s.{n}"), F.lit(0)) + F.coalesce(F.col(f"c.{n}"), F.lit(0))).alias(n)
        for n in names
    ]
    return joined.select(*keys, *summed)


def affected_orders(
    orders: DataFrame,
    items: DataFrame,
    recategorised: DataFrame | None,
    old_items: DataFrame | None,
    batch_id: str,
) -> DataFrame:
    """The orders whose KPI parts the batch may have changed (one column ``order_id``, distinct):
    those it wrote, those of the items it wrote (and the orders those items belonged to before),
    and those holding an item of a product whose category it changed. Any other order has the
    same lines, date and categories before and after the batch.

    Args:
        orders: current ``order_id, _batch_id``.
        items: current ``id, order_id, product_id, _batch_id``.
        recategorised: ``id`` of the products whose category the batch changed
            (:func:`recategorised`), or None when there are none.
        old_items: ``id, order_id`` as before the batch's first write, or None when the batch
            changed no item that was there before (it only added items).
    """
    in_batch = F.col("_batch_id") == F.lit(batch_id)
    found = [
        orders.where(in_batch).select("order_id"),
        *_through_items(items, recategorised, old_items, in_batch),
    ]
    return _union(found).distinct()


def recategorised(products: DataFrame, old_products: DataFrame, batch_id: str) -> DataFrame:
    """``id`` of the products the batch wrote whose category differs from their earlier version.

    Only a product's category reaches the KPIs (a sale's price is the item's), and a product new
    in the batch has no earlier published item (an item waits for its product in the park, and
    one released comes with the batch), so no other product written by the batch changes an
    order that the batch did not write.

    Args:
        products: current ``id, category, _batch_id``.
        old_products: ``id, category`` as before the batch's first write.
    """
    mine = products.where(F.col("_batch_id") == F.lit(batch_id)).select("id", "category")
    old = old_products.select("id", F.col("category").alias("old_category"))
    moved = mine.join(old, "id").where(~F.col("category").eqNullSafe(F.col("old_category")))
    return moved.select("id")


def _union(frames: list[DataFrame]) -> DataFrame:
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def _through_items(
    items: DataFrame, changed_products: DataFrame | None, old_items: DataFrame | None, in_batch: Column
) -> list[DataFrame]:
    """``order_id`` of the orders a batch reaches through items: of the items it wrote, of those
    items before (their previous order), and of the items of ``changed_products`` (``id``)."""
    changed_items = items.where(in_batch).select("id", "order_id")
    order_ids = [changed_items.select("order_id")]
    if old_items is not None:
        order_ids.append(old_items.join(changed_items.select("id"), "id", "left_semi").select("order_id"))
    if changed_products is not None:
        product_ids = changed_products.select(F.col("id").alias("product_id"))
        order_ids.append(items.join(product_ids, "product_id", "left_semi").select("order_id"))
    return order_ids


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
    # Orders touched through their items, by id, each id once: the lookup the orders are
    # semi-joined with stays no bigger than the orders. The planner broadcasts it from the
    # driver; with every item's order id in it, up to three times over (12M ids at 5M items),
    # a second such query in one 2 GB driver failed ("Not enough memory to build and broadcast").
    changed_products = None if products is None else products.where(in_batch)
    touched = _union(_through_items(items, changed_products, old_items, in_batch))
    dated = with_order_date(orders)
    # The batch's own orders give their dates directly; the others are looked up.
    result = dated.where(in_batch).select("order_date")
    looked_up = dated.select("order_id", "order_date").join(touched.distinct(), "order_id", "left_semi")
    result = result.unionByName(looked_up.select("order_date"))
    if old_orders is not None:
        moved = old_orders.join(changed_orders, "order_id", "left_semi")
        result = result.unionByName(with_order_date(moved).select("order_date"))
    return result.where(F.col("order_date").isNotNull()).distinct()
