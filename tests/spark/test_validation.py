"""The engine on tiny inline frames: every rule, its reason code, and where each row ends up. The
engine's mechanics are checked against small contracts written here; the packaged orders contract's
own rules, each with its reason, in the first test."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.contracts import load_contracts
from common.engine.annotate import ParentKeys, annotate, parent_key_states
from tests import inline_contracts
from tests.inline_contracts import inline_contract

CONTRACTS = load_contracts()
PARENTS = inline_contract("parents", inline_contracts.PARENTS)
CHILDREN = inline_contract("children", inline_contracts.CHILDREN)
DAY = dt.date(2026, 11, 22)
ORDER_COLS = CONTRACTS["orders"].column_names
PARENT_COLS = PARENTS.column_names
CHILD_COLS = CHILDREN.column_names


def _raw(
    spark: SparkSession, columns: list[str], rows: list[tuple[str | None, ...]], file: str = "f.csv"
) -> DataFrame:
    schema = ", ".join(f"{c} string" for c in [*columns, "_corrupt_record"])
    df = spark.createDataFrame([(*r, None) for r in rows], schema)
    return df.withColumn("_source_file", F.lit(file))


def _outcome(df: DataFrame, key: str) -> DataFrame:
    return df.select(
        F.col(f"_raw_{key}").alias("raw_key"), key, "_errors", "_warnings", "_copies", "_quality"
    )


def _order(order_id: str | None, **kw: str | None) -> tuple[str | None, ...]:
    row: dict[str, str | None] = {
        "order_id": order_id,
        "user_id": "10",
        "status": "Complete",
        "created_at": "2025-01-01 10:00:00",
        "returned_at": None,
        "shipped_at": "2025-01-02 10:00:00",
        "delivered_at": "2025-01-03 10:00:00",
        "num_of_item": "1",
    }
    row.update(kw)
    return tuple(row[c] for c in ORDER_COLS)


def test_order_rules_each_give_their_reason(spark: SparkSession) -> None:
    rows = [
        _order("1"),
        _order("2", user_id=None),
        _order("3", user_id="abc"),
        _order("4", status="teleported"),
        _order("5", created_at="2025-13-45"),
        _order("6", num_of_item="0"),
        _order("7", status="PENDING", shipped_at=None, delivered_at=None),
        _order("8", shipped_at="2024-12-31 10:00:00"),
        _order("9", status="returned"),
        _order(" ", user_id=""),
    ]
    got = annotate(_raw(spark, ORDER_COLS, rows), CONTRACTS["orders"], [], "b1", DAY)
    result = {
        r["order_id"]: (sorted(r["_errors"]), sorted(r["_warnings"]), r["_quality"], r["status"])
        for r in got.collect()
    }
    assert result == {
        1: ([], [], "valid", "complete"),
        2: (["not_null:user_id"], [], "quarantined", "complete"),
        3: (["type:user_id"], [], "quarantined", "complete"),
        4: (["allowed_values:status"], [], "quarantined", "teleported"),
        5: (["type:created_at"], [], "quarantined", "complete"),
        6: (["min:num_of_item"], [], "quarantined", "complete"),
        7: ([], [], "valid", "pending"),
        8: ([], ["timestamps_out_of_order"], "valid", "complete"),
        9: ([], ["status_timestamp_mismatch"], "valid", "returned"),
        None: (["not_null:order_id", "not_null:user_id"], [], "quarantined", "complete"),
    }


def _parent(key: str | None, size: str | None = "2", label: str | None = None) -> tuple[str | None, ...]:
    return (key, size, label)


def test_quarantined_rows_keep_their_original_text(spark: SparkSession) -> None:
    got = annotate(_raw(spark, PARENT_COLS, [_parent("5", "abc"), _parent("6")]), PARENTS, [], "b1", DAY)
    rows = {r["_raw_id"]: r["_raw_size"] for r in got.collect()}
    # valid rows carry no raw copy (it would only double the staged bytes)
    assert rows == {"5": "abc", None: None}


def test_exact_duplicates_collapse_and_conflicting_keys_are_all_quarantined(spark: SparkSession) -> None:
    rows = [_parent("1"), _parent("1"), _parent("1"), _parent("2"), _parent("2", "3"), _parent("3")]
    got = _outcome(annotate(_raw(spark, PARENT_COLS, rows), PARENTS, [], "b1", DAY), "id")
    expected = spark.createDataFrame(
        [
            (None, 1, [], [], 3, "valid"),
            ("2", 2, ["duplicate_key"], [], 1, "quarantined"),
            ("2", 2, ["duplicate_key"], [], 1, "quarantined"),
            (None, 3, [], [], 1, "valid"),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_malformed_line_reports_only_that(spark: SparkSession) -> None:
    df = _raw(spark, PARENT_COLS, [_parent("1"), _parent("1", None)])
    df = df.withColumn("_corrupt_record", F.when(F.col("size").isNull(), F.lit("1,")))
    got = annotate(df, PARENTS, [], "b1", DAY)
    assert sorted((r["_errors"], r["_quality"]) for r in got.collect()) == [
        ([], "valid"),  # the malformed twin does not make key 1 a duplicate key
        (["malformed_row"], "quarantined"),
    ]


def test_foreign_keys_tell_missing_from_quarantined_parents(spark: SparkSession) -> None:
    states = parent_key_states(
        [spark.createDataFrame([(1,), (2,)], "key long")],
        [spark.createDataFrame([(2,), (3,)], "key long")],  # 2 was quarantined once, but is valid now
    )
    parents = [ParentKeys(CHILDREN.foreign_keys[0], states)]
    rows = [("10", "1"), ("11", "2"), ("12", "3"), ("13", "4")]
    got = annotate(_raw(spark, CHILD_COLS, rows), CHILDREN, parents, "b1", DAY)
    assert {r["id"]: r["_errors"] for r in got.collect()} == {
        10: [],
        11: [],
        12: ["parent_quarantined:parent_id"],
        13: ["parent_missing:parent_id"],
    }


def test_skipped_foreign_key_is_not_stamped_on_rows(spark: SparkSession) -> None:
    parents = [ParentKeys(CHILDREN.foreign_keys[0], None)]
    got = annotate(_raw(spark, CHILD_COLS, [("10", "77")]), CHILDREN, parents, "b1", DAY)
    assert [r["_errors"] for r in got.collect()] == [[]]


def test_lineage_columns_are_stamped(spark: SparkSession) -> None:
    got = annotate(
        _raw(spark, PARENT_COLS, [_parent("1")], file="s3://b/raw/parents/p1.csv"),
        PARENTS,
        [],
        "batch-9",
        DAY,
    ).collect()[0]
    assert (got["_batch_id"], got["_processing_date"], got["_source_file"]) == (
        "batch-9",
        DAY,
        "s3://b/raw/parents/p1.csv",
    )
