"""Property tests of the text-first reader (hypothesis): for generated records — quotes, commas,
line breaks inside fields, non-ASCII text, duplicate keys, values that do not parse — written as
RFC 4180 CSV, the validate job reads exactly the records written, accounts for every one, and no
value turns into a silent null."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from tests.helpers import delta_rows, run_validate

HEADER = ["id", "sku", "cost", "category", "name", "brand", "retail_price", "department"]
TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ09 ,\"';=<>\né中ß-")), max_size=12)
MONEY = st.one_of(
    st.decimals(min_value=0, max_value=99999, places=2, allow_nan=False).map(str),
    st.sampled_from(["", "abc", "-1.00", "1e3", "12.345"]),
)
RECORD = st.tuples(st.integers(1, 40).map(str), TEXT, MONEY, TEXT, TEXT, TEXT, MONEY, TEXT)


def _csv(records: list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # RFC 4180 quoting: a field with , " or \n is quoted
    writer.writerow(HEADER)
    writer.writerows(records)
    return out.getvalue()


@pytest.mark.slow  # generated hostile files, many examples (~15 s): `make drills`
@settings(
    max_examples=3,  # each example is six files in one batch: 18 generated files, three job runs
    deadline=None,
    derandomize=True,  # the same examples in every run: CI stays reproducible
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(files=st.lists(st.lists(RECORD, min_size=1, max_size=30), min_size=6, max_size=6))
def test_every_record_written_is_read_once_and_accounted_for(
    spark: SparkSession, tmp_path_factory: object, files: list[list[tuple[str, ...]]]
) -> None:
    tmp = Path(tmp_path_factory.mktemp("prop"))  # type: ignore[attr-defined]
    paths = []
    for index, records in enumerate(files):
        path = tmp / f"products-{index}.csv"
        path.write_text(_csv(records), encoding="utf-8")
        paths.append(str(path))
    code, result = run_validate(
        spark, tmp / "lake", "--batch-id", "p1", "--products", ",".join(paths), "--quarantine-threshold", "1"
    )
    assert code == 0 and result is not None, result
    d = result["datasets"]["products"]
    # the ground truth: the records we wrote, file by file
    assert [f["rows_read"] for f in d["files"]] == [len(records) for records in files]
    assert d["rows_read"] == d["rows_valid"] + d["rows_quarantined"] + d["duplicates_collapsed"]
    # no silent null: every name given lands, as written (trimmed of spaces), in one of the tables
    kept: set[str | None] = set()
    for table in ("validated", "quarantine"):
        if (tmp / "lake" / table / "products").exists():
            kept |= set(delta_rows(tmp / "lake" / table / "products", ["name"]).column("name").to_pylist())
    for records in files:
        for record in records:
            name = record[HEADER.index("name")].strip(" ")
            if name:
                assert name in kept, (name, sorted(str(k) for k in kept))
