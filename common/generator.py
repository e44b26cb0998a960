"""Synthetic TheLook-style batches with known defects and an exact ground truth.

Rows are generated and written one at a time (orders, each followed by its items), so memory
stays flat from a few thousand rows to 10 million order items. Every injected defect touches a
row that is otherwise clean and has clean parents, so each defect produces exactly one reason
code; the ground truth also counts the items quarantined because their parent was (the cascade).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CATEGORIES = [
    "Jeans",
    "Tops & Tees",
    "Sweaters",
    "Shorts",
    "Swim",
    "Accessories",
    "Active",
    "Outerwear & Coats",
    "Sleep & Lounge",
    "Socks",
    "Dresses",
    "Intimates",
    "Pants",
    "Suits & Sport Coats",
    "Skirts",
]
BRANDS = ["Levi's", "Calvin Klein", "Carhartt", "Hanes", "Columbia", "Nike", "Allegra K", "Tommy Hilfiger"]
STATUSES = ["Processing", "Shipped", "Complete", "Cancelled", "Returned"]
HEADERS = {
    "products": ["id", "sku", "cost", "category", "name", "brand", "retail_price", "department"],
    "orders": [
        "order_id",
        "user_id",
        "status",
        "created_at",
        "returned_at",
        "shipped_at",
        "delivered_at",
        "num_of_item",
    ],
    "order_items": [
        "id",
        "order_id",
        "user_id",
        "product_id",
        "status",
        "created_at",
        "shipped_at",
        "delivered_at",
        "returned_at",
        "sale_price",
    ],
}
# defect kind -> reason code the validate job must report for it
PRODUCT_DEFECTS = {
    "null_category": "not_null:category",
    "negative_retail_price": "min:retail_price",
    "unparseable_cost": "type:cost",
    "bad_encoding_name": "encoding:name",
    "conflicting_key": "duplicate_key",
    "exact_duplicate": None,
}
ORDER_DEFECTS = {
    "null_user_id": "not_null:user_id",
    "unparseable_user_id": "type:user_id",
    "unparseable_created_at": "type:created_at",
    "bad_status": "allowed_values:status",
    "zero_items": "min:num_of_item",
    "conflicting_key": "duplicate_key",
    "exact_duplicate": None,
}
ITEM_DEFECTS = {
    "null_sale_price": "not_null:sale_price",
    "unparseable_sale_price": "type:sale_price",
    "negative_sale_price": "min:sale_price",
    "bad_status": "allowed_values:status",
    "orphan_order": "parent_missing:order_id",
    "orphan_product": "parent_missing:product_id",
    "malformed_row": "malformed_row",
    "conflicting_key": "duplicate_key",
    "exact_duplicate": None,
}
# Defects whose row the packaged contracts park (their parent may still come) instead of quarantine.
PARKED_DEFECTS = {"orphan_order": "parent_missing:order_id", "orphan_product": "parent_missing:product_id"}
ORPHAN_OFFSET = 10**12
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class GeneratorConfig:
    items: int = 5_000
    parts: int = 2
    seed: int = 7
    defect_rate: float = 0.01
    warning_rate: float = 0.01
    first_order_id: int = 1
    first_item_id: int = 1
    first_product_id: int = 1
    products: int | None = None  # default: max(50, items // 10)
    first_day: int = 0  # orders are created from EPOCH + first_day days ...
    days: int = 2 * 365  # ... over this many days
    include_products: bool = True
    # Corrections: new versions of records an earlier batch delivered, ids drawn at random (not in
    # time order) from below first_order_id / first_product_id: orders re-delivered as Returned on
    # this batch's dates (a correction that moves an order's date), products with a new price.
    order_corrections: int = 0
    product_corrections: int = 0
    order_corrections_below: int | None = None  # draw corrected ids below this (default first_order_id)
    product_corrections_below: int | None = None  # ... and below this (default first_product_id)


@dataclass
class Truth:
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_parked: int = 0
    duplicates_collapsed: int = 0
    rule_counts: Counter[str] = field(default_factory=Counter)
    parked_counts: Counter[str] = field(default_factory=Counter)
    warning_counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "rows_parked": self.rows_parked,
            "duplicates_collapsed": self.duplicates_collapsed,
            "rule_counts": dict(sorted(self.rule_counts.items())),
            "parked_counts": dict(sorted(self.parked_counts.items())),
            "warning_counts": dict(sorted(self.warning_counts.items())),
        }


def _field(value: str) -> str:
    # three substring tests: this runs for every field of up to 10M rows
    if "," in value or '"' in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


class _PartWriter:
    """Writes rows round-robin into ``parts`` files, so consecutive rows land in different files."""

    def __init__(self, directory: Path, header: list[str], parts: int, name: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / (name or f"part-{i:05d}.csv") for i in range(parts)]
        self.handles: list[IO[bytes]] = [p.open("wb", buffering=1 << 20) for p in self.paths]
        for handle in self.handles:
            handle.write((",".join(header) + "\n").encode())
        self.next = 0

    def write(self, values: list[str], raw: bytes = b"") -> None:
        """Write one row; ``raw`` bytes replace a ``\\x00NAME\\x00`` placeholder field or, when
        there is none, are appended to the line (a malformed extra field)."""
        line = ",".join([_field(v) for v in values]).encode()
        if raw and b"\x00NAME\x00" in line:
            line = line.replace(b"\x00NAME\x00", raw)
        else:
            line += raw
        line += b"\n"
        self.handles[self.next].write(line)
        self.next = (self.next + 1) % len(self.handles)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def _ts(moment: dt.datetime | None, style: int) -> str:
    if moment is None:
        return ""
    if style == 0:
        return moment.strftime("%Y-%m-%d %H:%M:%S+00:00")
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class _Generator:
    def __init__(self, config: GeneratorConfig, out: Path) -> None:
        self.c = config
        self.out = out
        self.rng = random.Random(config.seed)
        self.truth = {name: Truth() for name in HEADERS}
        self.retail: dict[int, str] = {}
        self.bad_products: set[int] = set()
        self.n_products = config.products or max(50, config.items // 10)

    # -- helpers -----------------------------------------------------------------------------
    def _event(self, defects: dict[str, str | None]) -> tuple[str, str | None]:
        roll = self.rng.random()
        if roll < self.c.defect_rate:
            return "defect", self.rng.choice(sorted(defects))
        if roll < self.c.defect_rate + self.c.warning_rate:
            return "warning", None
        return "clean", None

    def _emit(
        self,
        name: str,
        writer: _PartWriter,
        values: list[str],
        kind: str | None,
        codes: dict[str, str | None],
        suffix: bytes = b"",
    ) -> None:
        """Write a row (and its defect twin); count the ground truth of a single defect."""
        truth = self.truth[name]
        writer.write(values, suffix)
        truth.rows_read += 1
        if kind == "exact_duplicate":
            writer.write(values)
            truth.rows_read += 1
            truth.duplicates_collapsed += 1
            truth.rows_valid += 1
        elif kind == "conflicting_key":
            twin = list(values)
            twin[-1] = twin[-1] + "1" if name != "products" else twin[-1] + " Kids"
            writer.write(twin)
            truth.rows_read += 1
            truth.rows_quarantined += 2
            truth.rule_counts["duplicate_key"] += 2
        elif kind in PARKED_DEFECTS:
            # The packaged contract parks a row whose only error is a missing parent (parkFor).
            truth.rows_parked += 1
            truth.parked_counts[PARKED_DEFECTS[kind]] += 1
        elif kind is not None:
            truth.rows_quarantined += 1
            code = codes[kind]
            assert code is not None
            truth.rule_counts[code] += 1
        else:
            truth.rows_valid += 1

    # -- datasets ----------------------------------------------------------------------------
    def products(self) -> None:
        writer = _PartWriter(self.out / "products", HEADERS["products"], max(1, self.c.parts // 2))
        rng = self.rng
        for offset in range(self.n_products):
            pid = self.c.first_product_id + offset
            retail = round(rng.uniform(5, 300), 2)
            cost = round(retail * rng.uniform(0.3, 0.7), 2)
            category = rng.choice(CATEGORIES)
            brand = rng.choice(BRANDS) if rng.random() > 0.1 else ""
            name = f"{brand or 'Generic'} {category} {pid % 97}"
            if rng.random() < 0.05:
                name = f'{name}, "Limited" edition'
            event, kind = self._event(PRODUCT_DEFECTS)
            suffix = b""
            if event == "warning":
                cost = round(retail * 1.2, 2)
                self.truth["products"].warning_counts["cost_above_retail_price"] += 1
            values = [
                str(pid),
                f"SKU{pid:09d}",
                f"{cost:.2f}",
                category,
                name,
                brand,
                f"{retail:.2f}",
                rng.choice(["Men", "Women"]),
            ]
            if kind == "null_category":
                values[3] = ""
            elif kind == "negative_retail_price":
                values[6] = f"-{retail:.2f}"
            elif kind == "unparseable_cost":
                values[2] = "n/a"
            elif kind == "bad_encoding_name":
                # Latin-1 bytes inside a UTF-8 file: the reader sees U+FFFD in `name`.
                raw_name = f"Caf\xe9 {category} {pid}".encode("latin-1")
                values[4] = "\x00NAME\x00"
                suffix = raw_name
            if kind in {"exact_duplicate", None}:
                self.retail[pid] = values[6]
            else:
                self.bad_products.add(pid)
                self.retail[pid] = f"{retail:.2f}"
            self._emit("products", writer, values, kind, PRODUCT_DEFECTS, suffix)
        writer.close()

    def corrections(self) -> None:
        """Clean new versions of earlier records (their own random stream: the batch's other rows
        stay what the seed gives without corrections)."""
        rng = random.Random(self.c.seed * 1_000_003 + 17)
        for name, count, below in (
            ("orders", self.c.order_corrections, self.c.order_corrections_below or self.c.first_order_id),
            (
                "products",
                self.c.product_corrections,
                self.c.product_corrections_below or self.c.first_product_id,
            ),
        ):
            if count > below - 1:
                raise ValueError(f"{count} {name} corrections asked for, but only {below - 1} earlier ids")
            if not count:
                continue
            writer = _PartWriter(self.out / name, HEADERS[name], 1, f"part-corrections-{name}.csv")
            start, span = EPOCH + dt.timedelta(days=self.c.first_day), self.c.days * 24 * 3600
            for key in sorted(rng.sample(range(1, below), count)):
                if name == "orders":
                    created = start + dt.timedelta(seconds=rng.randrange(span))
                    shipped = created + dt.timedelta(hours=rng.randint(1, 48))
                    delivered = shipped + dt.timedelta(hours=rng.randint(12, 72))
                    returned = delivered + dt.timedelta(days=rng.randint(1, 10))
                    values = [
                        str(key),
                        str(rng.randint(1, max(10, self.c.items // 3))),
                        "Returned",
                        _ts(created, 0),
                        _ts(returned, 0),
                        _ts(shipped, 0),
                        _ts(delivered, 0),
                        str(rng.randint(1, 4)),
                    ]
                else:
                    retail = round(rng.uniform(5, 300), 2)
                    category = rng.choice(CATEGORIES)
                    values = [
                        str(key),
                        f"SKU{key:09d}",
                        f"{retail * 0.5:.2f}",
                        category,
                        f"Generic {category} {key % 97}",
                        "",
                        f"{retail:.2f}",
                        rng.choice(["Men", "Women"]),
                    ]
                self._emit(name, writer, values, None, {})
            writer.close()

    def orders_and_items(self) -> None:
        orders = _PartWriter(self.out / "orders", HEADERS["orders"], self.c.parts)
        items = _PartWriter(self.out / "order_items", HEADERS["order_items"], self.c.parts)
        rng = self.rng
        item_id = self.c.first_item_id
        order_id = self.c.first_order_id
        start, span = EPOCH + dt.timedelta(days=self.c.first_day), self.c.days * 24 * 3600
        made = 0
        while made < self.c.items:
            n_items = min(rng.randint(1, 4), self.c.items - made)
            user_id = rng.randint(1, max(10, self.c.items // 3))
            created = start + dt.timedelta(seconds=rng.randrange(span))
            status = rng.choice(STATUSES)
            shipped = (
                created + dt.timedelta(hours=rng.randint(1, 72))
                if status in {"Shipped", "Complete", "Returned"}
                else None
            )
            delivered = (
                shipped + dt.timedelta(hours=rng.randint(12, 120))
                if shipped and status != "Shipped"
                else None
            )
            returned = (
                delivered + dt.timedelta(days=rng.randint(1, 20))
                if delivered and status == "Returned"
                else None
            )
            style = rng.randrange(3)
            event, kind = self._event(ORDER_DEFECTS)
            o_shipped, o_delivered, o_status = shipped, delivered, status
            warning = None
            if event == "warning":
                if shipped is not None:
                    o_shipped = created - dt.timedelta(hours=2)
                    warning = "timestamps_out_of_order"
                else:
                    o_status, warning = "Complete", "status_timestamp_mismatch"
                self.truth["orders"].warning_counts[warning] += 1

            values = [
                str(order_id),
                str(user_id),
                o_status,
                _ts(created, style),
                _ts(returned, style),
                _ts(o_shipped, style),
                _ts(o_delivered, style),
                str(n_items),
            ]
            if kind == "null_user_id":
                values[1] = ""
            elif kind == "unparseable_user_id":
                values[1] = f"u{user_id}"
            elif kind == "unparseable_created_at":
                values[3] = "2025-13-45 10:00:00"
            elif kind == "bad_status":
                values[2] = "Teleported"
            elif kind == "zero_items":
                values[7] = "0"
            self._emit("orders", orders, values, kind, ORDER_DEFECTS)
            order_bad = kind not in {None, "exact_duplicate"}
            for _ in range(n_items):
                self._item(
                    items,
                    item_id,
                    order_id,
                    user_id,
                    status,
                    created,
                    shipped,
                    delivered,
                    returned,
                    style,
                    order_bad,
                )
                item_id += 1
            made += n_items
            order_id += 1
        orders.close()
        items.close()

    def _item(
        self,
        writer: _PartWriter,
        item_id: int,
        order_id: int,
        user_id: int,
        status: str,
        created: dt.datetime,
        shipped: dt.datetime | None,
        delivered: dt.datetime | None,
        returned: dt.datetime | None,
        style: int,
        order_bad: bool,
    ) -> None:
        rng = self.rng
        truth = self.truth["order_items"]
        product_id = self.c.first_product_id + rng.randrange(self.n_products)
        product_bad = product_id in self.bad_products
        i_created = created + dt.timedelta(seconds=rng.randint(0, 600))
        event, kind = ("clean", None) if (order_bad or product_bad) else self._event(ITEM_DEFECTS)
        i_shipped = shipped
        if event == "warning":
            if shipped is not None:
                i_shipped = i_created - dt.timedelta(hours=3)
                truth.warning_counts["timestamps_out_of_order"] += 1
            else:
                status = "Shipped"
                truth.warning_counts["status_timestamp_mismatch"] += 1

        values = [
            str(item_id),
            str(order_id),
            str(user_id),
            str(product_id),
            status.lower() if rng.random() < 0.5 else status,
            _ts(i_created, style),
            _ts(i_shipped, style),
            _ts(delivered, style),
            _ts(returned, style),
            self.retail[product_id],
        ]
        suffix = b""
        if kind == "null_sale_price":
            values[9] = ""
        elif kind == "unparseable_sale_price":
            values[9] = "abc"
        elif kind == "negative_sale_price":
            values[9] = "-" + values[9]
        elif kind == "bad_status":
            values[4] = "lost"
        elif kind == "orphan_order":
            values[1] = str(ORPHAN_OFFSET + order_id)
        elif kind == "orphan_product":
            values[3] = str(ORPHAN_OFFSET + product_id)
        elif kind == "malformed_row":
            suffix = b",unexpected-extra-field"
        if order_bad or product_bad:
            writer.write(values)
            truth.rows_read += 1
            truth.rows_quarantined += 1
            if order_bad:
                truth.rule_counts["parent_quarantined:order_id"] += 1
            if product_bad:
                truth.rule_counts["parent_quarantined:product_id"] += 1
            return
        self._emit("order_items", writer, values, kind, ITEM_DEFECTS, suffix)


def generate_batch(out: Path, config: GeneratorConfig, batch_id: str = "demo-0001") -> dict[str, Any]:
    """Write a batch (CSV parts, ``manifest.json``, ``ground_truth.json``) under ``out``.

    Returns the ground truth: per dataset, what the validate job must report.
    """
    if not config.include_products and config.product_corrections:
        raise ValueError("product corrections need the products in the batch (drop --no-products)")
    out.mkdir(parents=True, exist_ok=True)
    generator = _Generator(config, out)
    generator.products()
    generator.orders_and_items()
    generator.corrections()
    datasets = ["orders", "order_items"] + (["products"] if config.include_products else [])
    files = {name: sorted(str(p.resolve()) for p in (out / name).glob("part-*.csv")) for name in datasets}
    (out / "manifest.json").write_text(json.dumps({"batch_id": batch_id, "files": files}, indent=2) + "\n")
    truth = {
        "batch_id": batch_id,
        "config": config.__dict__,
        "datasets": {name: generator.truth[name].as_dict() for name in datasets},
    }
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth
