"""The lake-growth rows' bookkeeping: which rows and keys a lake holds after lived days."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.bench import growth


def _batch(
    tmp: Path, name: str, rows_valid: dict[str, int], corrected: dict[str, list[int]]
) -> tuple[dict[str, Any], Path]:
    """A batch's ground truth (valid rows per dataset) and its corrections files."""
    data = tmp / name
    for dataset, keys in corrected.items():
        (data / dataset).mkdir(parents=True)
        key = "order_id" if dataset == "orders" else "id"
        (data / dataset / f"part-corrections-{dataset}.csv").write_text(
            key + "\n" + "".join(f"{k}\n" for k in keys)
        )
    return {"datasets": {n: {"rows_valid": v} for n, v in rows_valid.items()}}, data


def test_a_key_a_lived_day_s_correction_inserted_is_held_and_replaced_by_the_day(tmp_path: Path) -> None:
    # history: orders 1..10, products 1..5, 30 items
    history = {
        "datasets": {
            "orders": {"rows_valid": 10},
            "products": {"rows_valid": 5},
            "order_items": {"rows_valid": 30},
        }
    }
    # a lived day corrects order 3 (held) and order 50 (not held: inserted), product 2 (held)
    lived = [
        _batch(
            tmp_path,
            "lived-1",
            {"orders": 8, "products": 4, "order_items": 12},
            {"orders": [3, 50], "products": [2]},
        )
    ]
    # the day corrects orders 50 (inserted by the lived day), 4 (history) and 70 (new), product 9 (new)
    day, day_data = _batch(
        tmp_path,
        "day",
        {"orders": 5, "products": 3, "order_items": 7},
        {"orders": [50, 4, 70], "products": [9]},
    )

    held = growth.held_before_day(history)
    assert held.add(*lived[0]) == {"orders": 1, "products": 1}
    assert held.rows == {"orders": 17, "products": 8, "order_items": 42}
    assert growth.expected_rows(history, day, day_data, lived) == {
        "orders": 20,
        "products": 11,
        "order_items": 49,
    }
    assert growth.expected_updates(history, day_data, lived) == {"orders": 2, "products": 0}
    # without the lived day, only order 4 is held
    assert growth.expected_rows(history, day, day_data) == {"orders": 14, "products": 8, "order_items": 37}
    assert growth.expected_updates(history, day_data) == {"orders": 1, "products": 0}


def test_lived_days_sort_after_the_history_and_before_the_park_and_the_day() -> None:
    ids = [growth.lived_batch_id(d) for d in (1, 2, 59, 60, growth.MAX_LIVED_DAYS)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert growth.HISTORY_BATCH_ID < ids[0] and ids[-1] < growth.PARK_BATCH_ID < growth.DAY_BATCH_ID
