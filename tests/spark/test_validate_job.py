"""The validate job as a user runs it: generated batches, re-runs, late items, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import SparkSession

from common.contracts import load_contracts
from common.generator import GeneratorConfig, generate_batch
from common.usecases.validate_batch import waves
from jobs import maintain
from jobs.exit_codes import ExitCode
from tests.conftest import write_csv
from tests.helpers import (
    add_channel,
    assert_accounted,
    count_looks,
    delta_rows,
    edited_contracts,
    run_validate,
    truth_files,
)

COMPARED = [
    "rows_read",
    "rows_valid",
    "rows_quarantined",
    "rows_parked",
    "duplicates_collapsed",
    "rule_counts",
    "parked_counts",
    "warning_counts",
]


@pytest.fixture(scope="module")
def defective_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("defective")
    truth = generate_batch(
        out, GeneratorConfig(items=4000, parts=3, seed=11, defect_rate=0.03, warning_rate=0.02)
    )
    return out, truth


@pytest.fixture(scope="module")
def validated(
    spark: SparkSession,
    tmp_path_factory: pytest.TempPathFactory,
    defective_batch: tuple[Path, dict[str, Any]],
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The defective batch validated once into a lake of its own: (lake, result, ground truth). The
    tests that only read it share it; the re-run test runs the batch again into it and must find
    nothing changed."""
    out, truth = defective_batch
    lake = tmp_path_factory.mktemp("validated") / "lake"
    code, result = run_validate(
        spark, lake, "--manifest", str(out / "manifest.json"), "--quarantine-threshold", "0.5"
    )
    assert code == 0 and result is not None
    return lake, result, truth


def test_counts_equal_the_generators_ground_truth(
    validated: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    lake, result, truth = validated
    assert result["status"] == "SUCCEEDED"
    for name, expected in truth["datasets"].items():
        got = result["datasets"][name]
        assert {k: got[k] for k in COMPARED} == expected, name
        assert delta_rows(lake / "validated" / name).num_rows == expected["rows_valid"]
        quarantine = delta_rows(lake / "quarantine" / name)
        assert quarantine.num_rows == expected["rows_quarantined"]
    # every kind of defect was exercised
    assert set(truth["datasets"]["order_items"]["rule_counts"]) >= {
        "not_null:sale_price",
        "type:sale_price",
        "min:sale_price",
        "allowed_values:status",
        "parent_quarantined:order_id",
        "parent_quarantined:product_id",
        "malformed_row",
        "duplicate_key",
    }
    assert set(truth["datasets"]["order_items"]["parked_counts"]) == {
        "parent_missing:order_id",
        "parent_missing:product_id",
    }
    assert (
        delta_rows(lake / "parked" / "order_items").num_rows
        == truth["datasets"]["order_items"]["rows_parked"]
    )
    assert_accounted(result)


def test_every_commit_of_a_batch_is_tagged_with_its_id(
    spark: SparkSession, validated: tuple[Path, dict[str, Any], dict[str, Any]]
) -> None:
    """The tables are written side by side from threads; each commit still carries the batch id
    (transform finds a batch's changes by it), the table's creation included. A few thousand rows
    are one data file per table, not one per shuffle partition."""
    lake, _, _ = validated
    for kind in ("validated", "quarantine"):
        for name in ("products", "orders", "order_items"):
            history = spark.sql(f"DESCRIBE HISTORY delta.`{lake / kind / name}`").collect()
            tags = {(row["operation"], row["userMetadata"]) for row in history}
            assert tags == {("CREATE TABLE", "demo-0001"), ("WRITE", "demo-0001")}, (kind, name, tags)
            log = sorted((lake / kind / name / "_delta_log").glob("*.json"))
            actions = [json.loads(line) for line in log[-1].read_text().splitlines()]
            assert len([a for a in actions if "add" in a]) == 1, (kind, name)


def test_quarantine_table_keeps_raw_text_and_reasons(
    validated: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    lake, _, _ = validated
    rows = delta_rows(lake / "quarantine" / "order_items").to_pylist()
    bad_price = [r for r in rows if r["_reasons"] == ["type:sale_price"]]
    assert bad_price and all(r["sale_price"] == "abc" for r in bad_price)
    assert all(r["_batch_id"] == "demo-0001" and r["_source_file"].endswith(".csv") for r in rows)
    malformed = [r for r in rows if r["_reasons"] == ["malformed_row"]]
    assert malformed and all(r["_corrupt_record"].endswith(",unexpected-extra-field") for r in malformed)


def test_clean_batch_quarantines_nothing(spark: SparkSession, tmp_path: Path) -> None:
    truth = generate_batch(
        tmp_path / "in", GeneratorConfig(items=3000, parts=2, defect_rate=0.0, warning_rate=0.0)
    )
    code, result = run_validate(
        spark, tmp_path / "lake", "--manifest", str(tmp_path / "in" / "manifest.json")
    )
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    for name, d in result["datasets"].items():
        assert (d["rows_quarantined"], d["rule_counts"], d["warning_counts"]) == (0, {}, {}), name
        assert d["rows_valid"] == truth["datasets"][name]["rows_read"]


def _snapshot(lake: Path) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for kind, key in (("validated", "id"), ("quarantine", "id")):
        for name in ("products", "orders", "order_items"):
            column = "order_id" if name == "orders" else key
            table = delta_rows(lake / kind / name)
            snap[f"{kind}/{name}"] = (table.num_rows, sorted(map(str, table.column(column).to_pylist())))
    return snap


def test_rerunning_a_batch_changes_nothing(
    spark: SparkSession,
    defective_batch: tuple[Path, dict[str, Any]],
    validated: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    out, _ = defective_batch
    lake, first, _ = validated
    args = ("--manifest", str(out / "manifest.json"), "--quarantine-threshold", "0.5")
    before = _snapshot(lake)
    _, second = run_validate(spark, lake, *args)
    assert _snapshot(lake) == before
    assert first is not None and second is not None
    for name in ("products", "orders", "order_items"):
        # no new version of a validated table: the merge found nothing to change
        assert (
            second["datasets"][name]["validated_table"]["version"]
            == first["datasets"][name]["validated_table"]["version"]
        )
        assert second["datasets"][name]["validated_table"]["rows_inserted"] == 0
        assert second["datasets"][name]["validated_table"]["rows_updated"] == 0


@pytest.mark.slow  # a crash drill (~12 s), in `make drills`
def test_a_run_killed_creating_a_table_is_repaired_by_the_rerun(
    spark: SparkSession, tmp_path: Path, defective_batch: tuple[Path, dict[str, Any]]
) -> None:
    """A run killed after creating a table's log folder but before its first commit left an empty
    ``_delta_log`` (found by the kill drill once the tables were written side by side): Delta then
    neither reads nor creates the table. The re-run clears such a log and publishes; a log holding
    any file is never removed."""
    out, truth = defective_batch
    lake = tmp_path / "lake"
    (lake / "validated" / "products" / "_delta_log" / "_staged_commits").mkdir(parents=True)
    (lake / "quarantine" / "orders" / "_delta_log").mkdir(parents=True)
    args = ("--manifest", str(out / "manifest.json"), "--quarantine-threshold", "0.5")
    code, result = run_validate(spark, lake, *args)
    assert code == 0 and result is not None, result
    assert delta_rows(lake / "validated" / "products").num_rows == truth["datasets"]["products"]["rows_valid"]
    assert (
        delta_rows(lake / "quarantine" / "orders").num_rows == truth["datasets"]["orders"]["rows_quarantined"]
    )

    kept = tmp_path / "kept"
    stray = kept / "validated" / "orders" / "_delta_log" / "notes.txt"
    stray.parent.mkdir(parents=True)
    stray.write_text("not a commit")
    code, result = run_validate(spark, kept, *args)
    assert code == 1 and result is not None and result["status"] == "ERROR"
    assert stray.read_text() == "not a commit"


def test_items_whose_orders_arrived_in_an_earlier_batch_pass(spark: SparkSession, tmp_path: Path) -> None:
    generate_batch(tmp_path / "in", GeneratorConfig(items=2000, parts=2, defect_rate=0.0, warning_rate=0.0))
    files = json.loads((tmp_path / "in" / "manifest.json").read_text())["files"]
    first = tmp_path / "b1.json"
    first.write_text(json.dumps({"batch_id": "b1", "files": {k: files[k] for k in ("orders", "products")}}))
    second = tmp_path / "b2.json"
    second.write_text(json.dumps({"batch_id": "b2", "files": {"order_items": files["order_items"]}}))
    lake = tmp_path / "lake"
    assert run_validate(spark, lake, "--manifest", str(first))[0] == 0
    code, result = run_validate(spark, lake, "--manifest", str(second))
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    items = result["datasets"]["order_items"]
    assert items["rows_quarantined"] == 0 and items["rows_valid"] == 2000
    assert result["datasets"]["orders"]["status"] == "ABSENT"


ORDERS_HEADER = "order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n"


def test_a_later_batch_replaces_a_record_and_an_older_rerun_does_not_revert_it(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    v1 = write_csv(
        tmp_path / "b1.csv",
        ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n2,11,processing,2025-01-01,,,,1\n",
    )
    v2 = write_csv(tmp_path / "b2.csv", ORDERS_HEADER + "1,10,cancelled,2025-01-01,,,,1\n")
    run_validate(spark, lake, "--batch-id", "b1", "--orders", v1)
    run_validate(spark, lake, "--batch-id", "b2", "--orders", v2)
    run_validate(spark, lake, "--batch-id", "b1", "--orders", v1)  # an operator re-runs the old batch
    table = delta_rows(lake / "validated" / "orders").sort_by("order_id").to_pylist()
    assert [(r["order_id"], r["status"], r["_batch_id"]) for r in table] == [
        (1, "cancelled", "b2"),
        (2, "processing", "b1"),
    ]


def _merge_metrics(spark: SparkSession, table: Path) -> dict[str, str]:
    row = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()
    assert row is not None and row["operation"] == "MERGE", row
    return dict(row["operationMetrics"])


@pytest.mark.slow  # a Delta protocol drill, two fresh lakes (make drills and CI run it)
def test_a_correction_marks_the_old_row_deleted_instead_of_rewriting_its_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    """A day's corrections reach files all over a big table: with deletion vectors the MERGE
    writes the new rows and a small vector per touched file, and removes no data file."""
    lake, rows = tmp_path / "lake", "".join(f"{i},{i},processing,2025-01-01,,,,1\n" for i in range(1, 201))
    run_validate(
        spark, lake, "--batch-id", "b1", "--orders", write_csv(tmp_path / "b1.csv", ORDERS_HEADER + rows)
    )
    v2 = write_csv(
        tmp_path / "b2.csv",
        ORDERS_HEADER + "7,7,cancelled,2025-01-01,,,,1\n201,1,processing,2025-01-02,,,,1\n",
    )
    run_validate(spark, lake, "--batch-id", "b2", "--orders", v2)
    metrics = _merge_metrics(spark, lake / "validated" / "orders")
    assert (metrics["numTargetRowsUpdated"], metrics["numTargetRowsInserted"]) == ("1", "1")
    assert metrics["numTargetFilesRemoved"] == "0" and metrics["numTargetDeletionVectorsAdded"] == "1"
    table = delta_rows(lake / "validated" / "orders").sort_by("order_id").to_pylist()
    assert len(table) == 201 and (table[6]["status"], table[6]["_batch_id"]) == ("cancelled", "b2")
    # Another engine (delta-rs, through its SQL reader) applies the vectors too.
    other = QueryBuilder().register("orders", DeltaTable(str(lake / "validated" / "orders")))
    read = pa.table(
        other.execute("SELECT order_id, status, _batch_id FROM orders ORDER BY order_id").read_all()
    )
    assert read.to_pylist() == [{k: r[k] for k in ("order_id", "status", "_batch_id")} for r in table]


@pytest.mark.slow  # a Delta protocol drill (make drills and CI run it)
def test_maintenance_gives_deletion_vectors_to_a_table_made_without_them_once(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    v1 = write_csv(tmp_path / "b1.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    run_validate(spark, lake, "--batch-id", "b1", "--orders", v1, "--no-deletion-vectors")
    table = lake / "validated" / "orders"

    def detail() -> tuple[int, int, int]:
        row = spark.sql(f"DESCRIBE DETAIL delta.`{table}`").first()
        version = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1").first()
        assert row is not None and version is not None
        return row["minReaderVersion"], row["minWriterVersion"], version["version"]

    assert detail()[:2] == (1, 7)  # every Delta reader reads it (commit times: a writer feature)
    run_validate(spark, lake, "--batch-id", "b1", "--orders", v1)
    assert detail()[:2] == (1, 7)  # a batch never raises a table's protocol
    assert maintain.main(["--lake-root", str(lake)], spark=spark) == 0
    upgraded = detail()
    assert upgraded[:2] == (3, 7)
    assert maintain.main(["--lake-root", str(lake)], spark=spark) == 0
    assert detail() == upgraded  # the second run commits nothing


def test_over_threshold_batch_fails_and_publishes_nothing(spark: SparkSession, tmp_path: Path) -> None:
    orders = write_csv(
        tmp_path / "o.csv",
        ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n2,x,processing,2025-01-01,,,,1\n",
    )
    code, result = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--orders", orders)
    assert code == 0 and result is not None
    assert result["status"] == "FAILED"
    assert (
        "1 of 2 rows quarantined (50.00%), above the threshold of 5.00% its contract sets"
        in result["errors"][0]
    )
    assert not (tmp_path / "lake" / "validated" / "orders").exists()
    assert delta_rows(tmp_path / "lake" / "quarantine" / "orders").column("user_id").to_pylist() == ["x"]
    assert_accounted(result)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file does not exist"),
        (b"", "file is empty"),
        (ORDERS_HEADER.encode(), "file has a header but no data rows"),
        (
            ORDERS_HEADER.replace("num_of_item", "items").encode() + b"1,10,processing,2025-01-01,,,,1\n",
            "missing required column(s) ['num_of_item']",
        ),
        (
            ORDERS_HEADER.replace(",", ";").encode() + b"1;10;processing;2025-01-01;;;;1\n",
            "semicolon-delimited",
        ),
        ("order_id,user_id\n1,2\n".encode("utf-16"), "UTF-16 encoded: expected UTF-8"),
    ],
)
def test_bad_input_fails_the_dataset_with_a_clear_message(
    spark: SparkSession, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    bad = str(tmp_path / "bad.csv") if content is None else write_csv(tmp_path / "bad.csv", content)
    code, result = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--orders", f"{good},{bad}")
    assert code == 0 and result is not None
    assert result["status"] == "FAILED"
    orders = result["datasets"]["orders"]
    assert orders["status"] == "FAILED"
    assert [f["error"] is not None for f in orders["files"]] == [False, True]
    assert any(message.startswith(f"{bad}: ") and expected in message for message in result["errors"])
    assert not (tmp_path / "lake" / "validated").exists()  # nothing half-published


def test_the_summary_beside_the_result_is_small_and_carries_no_data(
    spark: SparkSession, tmp_path: Path
) -> None:
    """What the state machine reads and alerts with: bounded, and free of the files' contents
    (a data row where the header should be, in each of 30 files)."""
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    secret = "4242,alice@example.com,SECRET-VALUE,2025-01-01,a,b,c,1\n"
    bad = [write_csv(tmp_path / f"bad{i}.csv", secret + secret) for i in range(30)]
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b1", "--orders", ",".join([good, *bad])
    )
    assert code == 0 and result is not None and result["status"] == "FAILED"
    path = tmp_path / "lake" / "_results" / "b1" / "validate.summary.json"
    text = path.read_text()
    assert len(text.encode()) < 8 * 1024
    assert "secret" not in text.lower() and "alice" not in text
    summary = json.loads(text)
    assert summary["status"] == "FAILED" and summary["batch_id"] == "b1"
    assert summary["datasets"]["orders"]["status"] == "FAILED"
    assert len(summary["errors"]) == 10 and summary["errors"][-1].startswith("… and 22 more")
    # the result file keeps what each file held, for the engineer who opens it
    assert "SECRET-VALUE".lower() in result["datasets"]["orders"]["files"][1]["excerpt"].lower()


def test_empty_parts_can_be_allowed(spark: SparkSession, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    empty = write_csv(tmp_path / "empty.csv", ORDERS_HEADER)
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b1", "--orders", f"{good},{empty}", "--allow-empty-files"
    )
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    assert [f["rows_read"] for f in result["datasets"]["orders"]["files"]] == [1, 0]


def test_invalid_utf8_in_a_row_quarantines_that_row(spark: SparkSession, tmp_path: Path) -> None:
    header = b"id,sku,cost,category,name,brand,retail_price,department\n"
    rows = b"1,S1,5.00,Jeans,Caf\xe9 jeans,L,20.00,Men\n" + b"".join(
        f"{i},S{i},5.00,Jeans,Jeans {i},L,20.00,Men\n".encode() for i in range(2, 40)
    )
    products = write_csv(tmp_path / "p.csv", header + rows)
    code, result = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--products", products)
    assert code == 0 and result is not None
    assert result["datasets"]["products"]["rule_counts"] == {"encoding:name": 1}
    assert result["status"] == "SUCCEEDED"  # 1 of 39 is under the 5% threshold


def test_missing_batch_id_is_a_configuration_error(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    code, result = run_validate(spark, tmp_path / "lake", "--orders", good)
    assert code == 2 and result is None
    assert "no batch id" in capsys.readouterr().err


def test_unknown_flag_is_a_configuration_error(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--ordrs", "x.csv")
    assert code == 2
    assert "unrecognized arguments: --ordrs" in capsys.readouterr().err


def test_missing_manifest_writes_an_error_result(spark: SparkSession, tmp_path: Path) -> None:
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b7", "--manifest", str(tmp_path / "nope.json")
    )
    assert code == 2 and result is not None
    assert result["status"] == "ERROR" and "does not exist" in result["errors"][0]


def test_internal_failure_exits_non_zero_with_an_error_result(spark: SparkSession, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    blocker = tmp_path / "lake" / "validated"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the validated tables' folder should be")
    code, result = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--orders", good)
    assert code == 1 and result is not None
    assert result["status"] == "ERROR" and result["errors"][0].startswith("internal error: ")


def test_same_file_listed_twice_is_read_once(spark: SparkSession, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    code, result = run_validate(spark, tmp_path / "lake", "--batch-id", "b1", "--orders", f"{good},{good}")
    assert code == 0 and result is not None
    assert result["datasets"]["orders"]["rows_read"] == 1
    assert pc.sum(delta_rows(tmp_path / "lake" / "validated" / "orders").column("order_id")).as_py() == 1


def test_valid_rfc4180_csv_is_accepted_as_written(spark: SparkSession, tmp_path: Path) -> None:
    """A UTF-8 BOM, CRLF line ends, a quoted delimiter, escaped quotes, a quoted field spanning
    lines and a last line without its newline: every record is one valid row. The file with the
    line break is found and read in multi-line mode; the other file is read line by line."""
    spanning = write_csv(
        tmp_path / "p1.csv",
        "\ufeffid,sku,cost,category,name,brand,retail_price,department\r\n"
        '1,S1,5.00,Jeans,"Slim, dark",L,20.00,Men\r\n'
        '2,S2,5.00,Jeans,"The ""best"" jeans",L,20.00,Men\r\n'
        '3,S3,5.00,Jeans,"two\r\nlines",L,20.00,Men\r\n'
        "4,S4,5.00,Jeans,Plain,L,20.00,Women",
    )
    plain = write_csv(
        tmp_path / "p2.csv",
        "id,sku,cost,category,name,brand,retail_price,department\n5,S5,1.00,Tops,T,B,2.00,Men\n",
    )
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b1", "--products", f"{spanning},{plain}"
    )
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    products = result["datasets"]["products"]
    assert [f["rows_read"] for f in products["files"]] == [4, 1]
    assert (products["rows_valid"], products["rows_quarantined"]) == (5, 0)
    names = dict(
        zip(
            *delta_rows(tmp_path / "lake" / "validated" / "products", ["id", "name"]).to_pydict().values(),
            strict=True,
        )
    )
    assert names[1] == "Slim, dark" and names[2] == 'The "best" jeans' and names[4] == "Plain"
    assert names[3].replace("\r\n", "\n") == "two\nlines"


def test_a_line_longer_than_the_limit_fails_its_dataset_unparsed(spark: SparkSession, tmp_path: Path) -> None:
    """One enormous row (here 5 KB against a 2 KB limit; the slow drills use 200 MB against the
    default) fails its dataset with the file and the limit named; its text is never echoed."""
    good = write_csv(tmp_path / "good.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    long = write_csv(
        tmp_path / "long.csv",
        ORDERS_HEADER + "2,10,processing,2025-01-01,,,,1\n3,10," + "SECRET" * 900 + ",2025-01-01,,,,1\n",
    )
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b1", "--orders", f"{good},{long}", "--max-line-bytes", "2048"
    )
    assert code == 0 and result is not None and result["status"] == "FAILED"
    orders = result["datasets"]["orders"]
    assert orders["status"] == "FAILED" and orders["files"][0]["error"] is None
    assert orders["files"][1]["error"] == (  # 5 + 5,400 + 16 bytes and a line feed
        "holds line(s) longer than 2,048 bytes (5,422 bytes in them): expected CSV rows of at most "
        "ECOM_MAX_LINE_BYTES=2048 bytes; the file was not parsed"
    )
    assert "SECRET" not in json.dumps(result)
    assert not (tmp_path / "lake" / "validated" / "orders").exists()


def test_a_rule_a_threshold_and_a_valid_value_change_by_editing_only_the_odcs_file(
    spark: SparkSession, tmp_path: Path
) -> None:
    orders = write_csv(
        tmp_path / "o.csv",
        ORDERS_HEADER
        + "1,10,processing,2025-01-01,,,,1\n"
        + "2,11,returned,2025-01-01,2025-01-04,2025-01-02,2025-01-03,1\n"
        + "3,12,processing,2025-01-01,,,,0\n"
        + "4,13,processing,2025-01-01,,,,2\n",
    )
    code, packaged = run_validate(spark, tmp_path / "lake1", "--batch-id", "b1", "--orders", orders)
    assert code == 0 and packaged is not None
    assert packaged["status"] == "FAILED"  # 1 of 4 (25%) above the packaged 5%
    assert packaged["datasets"]["orders"]["rule_counts"] == {"min:num_of_item": 1}

    def edit(document: dict[str, Any]) -> None:
        obj = document["schema"][0]
        props = {p["name"]: p for p in obj["properties"]}
        props["num_of_item"]["logicalTypeOptions"]["minimum"] = 0  # a rule
        props["status"]["quality"][0]["arguments"]["validValues"].remove("returned")  # a valid value
        obj["customProperties"][0]["value"] = 0.3  # the threshold

    contracts = edited_contracts(tmp_path, edit)
    code, edited = run_validate(
        spark, tmp_path / "lake2", "--batch-id", "b1", "--orders", orders, "--contracts-dir", str(contracts)
    )
    assert code == 0 and edited is not None
    assert edited["status"] == "SUCCEEDED"  # 1 of 4 (25%) under the edited 30%
    assert edited["datasets"]["orders"]["rule_counts"] == {"allowed_values:status": 1}
    assert edited["datasets"]["orders"]["quarantine_threshold"] == 0.3
    quarantined = delta_rows(tmp_path / "lake2" / "quarantine" / "orders", ["order_id"])
    assert quarantined.column("order_id").to_pylist() == ["2"]  # the raw text


@pytest.mark.parametrize(
    ("implementation", "expected"),
    [
        ("shipped_at < < created_at", "the condition does not compile"),
        ("shipped_at < creatd_at", "the condition does not compile"),
        ("num_of_item + 1", "the condition is a int, expected a boolean"),
    ],
)
def test_a_rule_that_does_not_compile_is_a_configuration_error_naming_file_and_rule(
    spark: SparkSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    implementation: str,
    expected: str,
) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["schema"][0]["quality"][0]["implementation"] = implementation

    contracts = edited_contracts(tmp_path, edit)
    orders = write_csv(tmp_path / "o.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    code, result = run_validate(
        spark, tmp_path / "lake", "--batch-id", "b1", "--orders", orders, "--contracts-dir", str(contracts)
    )
    assert code == 2 and result is not None and result["status"] == "ERROR"
    message = f"contract {contracts / 'orders.odcs.yaml'}: rule 'timestamps_out_of_order': {expected}"
    assert message in result["errors"][0]
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lake" / "validated").exists()


def test_a_column_added_to_the_contract_is_picked_up_by_the_next_batch(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    first = write_csv(tmp_path / "o1.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    assert run_validate(spark, lake, "--batch-id", "b1", "--orders", first)[0] == 0
    contracts = edited_contracts(tmp_path, add_channel)
    second = write_csv(
        tmp_path / "o2.csv",
        ORDERS_HEADER.replace("\n", ",channel\n")
        + "2,11,processing,2025-01-02,,,,1,web\n3,12,processing,2025-01-02,,,,x,app\n",
    )
    code, result = run_validate(
        spark,
        lake,
        "--batch-id",
        "b2",
        "--orders",
        second,
        "--contracts-dir",
        str(contracts),
        "--quarantine-threshold",
        "0.5",
    )
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED"
    rows = delta_rows(lake / "validated" / "orders", ["order_id", "channel"]).to_pylist()
    assert sorted(rows, key=lambda r: r["order_id"]) == [
        {"order_id": 1, "channel": None},  # written before the column existed
        {"order_id": 2, "channel": "web"},
    ]
    quarantined = delta_rows(lake / "quarantine" / "orders", ["order_id", "channel"]).to_pylist()
    assert quarantined == [{"order_id": "3", "channel": "app"}]


@pytest.mark.parametrize(
    ("edit", "body", "expected", "after"),
    [
        (
            lambda d: d["schema"][0]["properties"].pop(),
            ORDERS_HEADER.replace(",num_of_item", "") + "2,11,processing,2025-01-02,,,\n",
            "removes ['num_of_item']",
            {"num_of_item": None},  # the column is gone from the table
        ),
        (
            lambda d: d["schema"][0]["properties"][1].update(logicalType="string", physicalType="string"),
            ORDERS_HEADER + "2,11,processing,2025-01-02,,,,1\n",
            "retypes user_id from bigint to string",
            {"user_id": "string"},
        ),
    ],
    ids=["removed", "retyped"],
)
def test_a_removed_or_retyped_column_is_refused_unless_migration_is_asked_for(
    spark: SparkSession, tmp_path: Path, edit: Any, body: str, expected: str, after: dict[str, str | None]
) -> None:
    lake = tmp_path / "lake"
    first = write_csv(tmp_path / "o1.csv", ORDERS_HEADER + "1,10,processing,2025-01-01,,,,1\n")
    assert run_validate(spark, lake, "--batch-id", "b1", "--orders", first)[0] == 0
    contracts = edited_contracts(tmp_path, edit)
    second = write_csv(tmp_path / "o2.csv", body)
    args = ("--batch-id", "b2", "--orders", second, "--contracts-dir", str(contracts))
    history = spark.sql(f"DESCRIBE HISTORY delta.`{lake / 'validated' / 'orders'}`").count()

    code, result = run_validate(spark, lake, *args)
    assert code == 2 and result is not None and result["status"] == "ERROR"
    assert expected in result["errors"][0] and "--migrate-schema" in result["errors"][0]
    assert spark.sql(f"DESCRIBE HISTORY delta.`{lake / 'validated' / 'orders'}`").count() == history

    code, result = run_validate(spark, lake, *args, "--migrate-schema")
    assert code == 0 and result is not None and result["status"] == "SUCCEEDED", result
    table = spark.read.format("delta").load(str(lake / "validated" / "orders"))
    assert {column: dict(table.dtypes).get(column) for column in after} == after
    assert sorted(r["order_id"] for r in table.select("order_id").collect()) == [1, 2]


@pytest.mark.parametrize(
    ("limit", "status", "errors"),
    [
        (
            10,
            "FAILED",
            [
                "orders: 1 of 4 rows break allowed_values:status; its contract allows at most 10%",
                "batch not published: dataset(s) ['orders'] failed; valid rows were not written",
            ],
        ),
        (30, "SUCCEEDED", []),
    ],
)
def test_a_rules_own_limit_from_the_odcs_operator_fails_its_dataset(
    spark: SparkSession, tmp_path: Path, limit: int, status: str, errors: list[str]
) -> None:
    def edit(document: dict[str, Any]) -> None:
        check = next(p for p in document["schema"][0]["properties"] if p["name"] == "status")["quality"][0]
        del check["mustBe"]
        check.update(mustBeLessOrEqualTo=limit, unit="percent")

    contracts = edited_contracts(tmp_path, edit)
    orders = write_csv(
        tmp_path / "o.csv",
        ORDERS_HEADER
        + "".join(f"{i},1{i},processing,2025-01-01,,,,1\n" for i in range(1, 4))
        + "4,14,lost,2025-01-01,,,,1\n",
    )
    args = ("--batch-id", "b1", "--orders", orders, "--contracts-dir", str(contracts))
    code, result = run_validate(spark, tmp_path / "lake", *args, "--quarantine-threshold", "0.5")
    assert code == 0 and result is not None and result["status"] == status
    assert result["errors"] == errors


def test_datasets_are_validated_in_waves_parents_before_children() -> None:
    """products and orders reference nothing in the batch: validated side by side; order_items
    references both, so it waits for them (its foreign keys read their results)."""
    assert waves(load_contracts()) == [["products", "orders"], ["order_items"]]


def test_each_raw_file_is_looked_at_once_before_spark_reads_it(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its header check (first bytes) also gives its size, which sizes the batch for the JVM
    (``jobs.run``'s test checks the same of validate then transform in one session)."""
    from common.usecases import lifecycle
    from jobs import validate

    generate_batch(tmp_path / "in", GeneratorConfig(items=200, parts=2))
    raw = [uri for uris in truth_files(tmp_path / "in").values() for uri in uris]
    looks = count_looks(monkeypatch)
    # the job builds "its" session: the suite's, which it must not stop
    monkeypatch.setattr(lifecycle, "build_spark", lambda *_: spark)
    monkeypatch.setattr(spark, "stop", lambda: None)
    manifest = str(tmp_path / "in" / "manifest.json")
    argv = ["--lake-root", str(tmp_path / "lake"), "--manifest", manifest, "--quarantine-threshold", "0.5"]
    assert validate.main(argv) == ExitCode.OK
    assert len(raw) >= 3 and {uri: looks.get(uri, 0) for uri in raw} == dict.fromkeys(raw, 1)
