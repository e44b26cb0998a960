"""An independent, plain-Python computation of the KPI definitions, for checking the Spark job.

Deliberately shares no code with ``common.engine.kpis``: it reads the raw CSV files and follows the
definitions in docs/jobs.md literally, with ``decimal`` and half-even rounding.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

CENT, BASIS = Decimal("0.01"), Decimal("0.0001")


def read_rows(paths: list[Path], key: str) -> dict[str, dict[str, str]]:
    """Rows by key; a later file's row replaces an earlier one (later batch wins)."""
    rows: dict[str, dict[str, str]] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows[row[key]] = row
    return rows


def kpis(
    orders: dict[str, dict[str, str]], items: dict[str, dict[str, str]], products: dict[str, dict[str, str]]
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    order_date = {oid: o["created_at"][:10] for oid, o in orders.items()}  # all generated stamps are UTC
    by_day: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "orders": set(),
            "users": set(),
            "returned": 0,
            "revenue": Decimal(0),
            "net": Decimal(0),
            "items": 0,
        }
    )
    for oid, o in orders.items():
        day = by_day[order_date[oid]]
        day["orders"].add(oid)
        day["users"].add(o["user_id"])
        day["returned"] += o["status"].lower() == "returned"
    by_cat: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"orders": set(), "items": 0, "returned": 0, "revenue": Decimal(0), "net": Decimal(0)}
    )
    for item in items.values():
        date = order_date[item["order_id"]]
        price = Decimal(item["sale_price"])
        status = item["status"].lower()
        net = price if status not in {"returned", "cancelled"} else Decimal(0)
        day = by_day[date]
        day["revenue"] += price
        day["net"] += net
        day["items"] += 1
        cat = by_cat[(products[item["product_id"]]["category"], date)]
        cat["orders"].add(item["order_id"])
        cat["items"] += 1
        cat["returned"] += status == "returned"
        cat["revenue"] += price
        cat["net"] += net
    order_daily = {
        date: {
            "total_orders": len(d["orders"]),
            "total_revenue": d["revenue"].quantize(CENT, ROUND_HALF_EVEN),
            "net_revenue": d["net"].quantize(CENT, ROUND_HALF_EVEN),
            "total_items_sold": d["items"],
            "return_rate": (Decimal(d["returned"]) / len(d["orders"])).quantize(BASIS, ROUND_HALF_EVEN),
            "unique_customers": len(d["users"]),
            "avg_order_value": (d["revenue"] / len(d["orders"])).quantize(CENT, ROUND_HALF_EVEN),
        }
        for date, d in by_day.items()
    }
    category_daily = {
        key: {
            "daily_revenue": c["revenue"].quantize(CENT, ROUND_HALF_EVEN),
            "net_revenue": c["net"].quantize(CENT, ROUND_HALF_EVEN),
            "orders": len(c["orders"]),
            "items_sold": c["items"],
            "avg_order_value": (c["revenue"] / len(c["orders"])).quantize(CENT, ROUND_HALF_EVEN),
            "avg_return_rate": (Decimal(c["returned"]) / c["items"]).quantize(BASIS, ROUND_HALF_EVEN),
        }
        for key, c in by_cat.items()
    }
    return order_daily, category_daily
