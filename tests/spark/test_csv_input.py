"""Header checks: every bad file gets a message naming the file, the column and what was expected."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from common.contracts import load_contract
from common.contracts.columns import SOURCE_FILE
from common.errors import ConfigurationError, InputFileError
from common.io.csv_source import HEAD_BYTES, CheckedFile, check_header, count_rows, inspect_file, read_raw
from tests.conftest import make_settings, write_csv

PRODUCTS = load_contract("products")
HEADER = "id,sku,cost,category,name,brand,retail_price,department"
ROW = "1,S1,5.00,Jeans,Plain jeans,Levi's,20.00,Men"


def _inspect(tmp_path: Path, content: str | bytes, extra: str = "reject") -> CheckedFile:
    data = content.encode() if isinstance(content, str) else content
    return check_header("s3://bucket/raw/products/p.csv", data[:HEAD_BYTES], len(data), PRODUCTS, extra)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty: expected a header line `id,sku,cost"),
        ("\n\n", "file is empty"),
        (HEADER.replace(",brand", "") + "\n1,S1,5,J,N,20,Men\n", r"missing required column\(s\) \['brand'\]"),
        (
            HEADER + ",color\n" + ROW + ",red\n",
            r"1 unexpected column\(s\): expected columns `id,sku.*ECOM_EXTRA_COLUMNS=ignore",
        ),
        (
            HEADER.replace(",", ";") + "\n" + ROW.replace(",", ";") + "\n",
            "semicolon-delimited.*expected comma-separated",
        ),
        (HEADER.replace(",", "\t") + "\n", "tab-delimited"),
        (HEADER + ",id\n", r"repeats 1 column name\(s\)"),
    ],
)
def test_bad_headers_are_explained(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(InputFileError, match=message) as info:
        _inspect(tmp_path, content)
    assert info.value.file == "s3://bucket/raw/products/p.csv"


def test_utf16_file_is_rejected_with_the_expected_encoding(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="UTF-16 encoded: expected UTF-8"):
        _inspect(tmp_path, (HEADER + "\n" + ROW + "\n").encode("utf-16"))


def test_non_utf8_header_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="header is not valid UTF-8"):
        _inspect(tmp_path, HEADER.replace("name", "n\xe4me").encode("latin-1") + b"\n")


def test_column_order_and_case_do_not_matter_and_bom_is_accepted(tmp_path: Path) -> None:
    header = "\ufeffDepartment,retail_price,brand,name,category,cost,sku,ID"
    checked = _inspect(tmp_path, header + "\nMen,20,L,N,J,5,S,1\n")
    assert checked.header == ("department", "retail_price", "brand", "name", "category", "cost", "sku", "id")
    assert checked.has_rows


def test_header_only_file_is_recognised(tmp_path: Path) -> None:
    assert not _inspect(tmp_path, HEADER + "\n").has_rows
    assert not _inspect(tmp_path, HEADER).has_rows


def test_extra_column_can_be_ignored(tmp_path: Path) -> None:
    checked = _inspect(tmp_path, HEADER + ",color\n" + ROW + ",red\n", extra="ignore")
    assert checked.header[-1] == "color"


def test_header_longer_than_the_probe_is_refused_without_reading_on(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no end of the header line"):
        _inspect(tmp_path, "x" * (HEAD_BYTES + 10))


def test_header_with_an_enormous_field_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="header is not a CSV line"):
        _inspect(tmp_path, HEADER + "," + "y" * 200_000 + "\n" + ROW + "\n")


def test_rows_beyond_the_probe_count_as_rows(tmp_path: Path) -> None:
    data = (HEADER + "\n" + " " * HEAD_BYTES + "\n" + ROW + "\n").encode()
    assert check_header("p.csv", data[:HEAD_BYTES], len(data), PRODUCTS, "reject").has_rows


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (HEADER + "\n" + ROW + "\n" + ROW + "\n", 2),
        (HEADER + "\r\n" + ROW + "\r\n\r\n" + ROW, 2),  # CRLF, a blank line, no final newline
        (HEADER + "\n\n   \n" + ROW + "\n", 1),  # blank and whitespace-only lines are not rows
        (HEADER + "\r" + ROW + "\r" + ROW + "\r", 2),  # lone carriage returns end lines too
        ("\ufeff" + HEADER + "\r\n" + ROW + "\r\n", 1),  # a byte-order mark
        (HEADER + "\n", 0),
        (HEADER, 0),
    ],
)
def test_data_lines_are_counted_apart_from_the_csv_parser(
    spark: SparkSession, tmp_path: Path, content: str, rows: int
) -> None:
    path = write_csv(tmp_path / "c d+e.csv", content)  # a space and a plus in the name survive
    checked = CheckedFile(path, tuple(PRODUCTS.column_names), has_rows=True)
    assert count_rows(spark, [checked], multiline=False, max_line_bytes=1 << 20)[0] == {path: rows}


def test_each_row_names_the_file_it_came_from(spark: SparkSession, tmp_path: Path) -> None:
    """Rows are traced to their file by the path Spark reported when the files were counted, and
    by the decoded path for files not counted: both name the batch's URIs, awkward names too."""
    ids = {"a b+c.csv": ["1", "2"], "d%e.csv": ["3"], "f.csv": ["4", "5", "6"]}
    paths = {
        write_csv(
            tmp_path / name, HEADER + "\n" + "".join(ROW.replace("1,", f"{i},", 1) + "\n" for i in rows)
        ): rows
        for name, rows in ids.items()
    }
    files = [CheckedFile(p, tuple(PRODUCTS.column_names), has_rows=True) for p in paths]
    counts, counted = count_rows(spark, files, multiline=False, max_line_bytes=1 << 20)
    assert counts == {p: len(rows) for p, rows in paths.items()}
    assert all(f.reported_path for f in counted)
    for checked in (counted, files):
        frame = read_raw(spark, checked, PRODUCTS, multiline=False)
        got = sorted((r["id"], r[SOURCE_FILE]) for r in frame.collect())
        assert got == sorted((i, p) for p, rows in paths.items() for i in rows)


LIMIT = 2048


@pytest.mark.parametrize(
    ("lines", "end", "long_bytes"),
    [
        ([ROW, "9," + "x" * 5000, ROW], "\n", 5002),  # skipped by the line reader, found by its bytes
        ([ROW, "9," + "x" * 5000, ROW], "\r\n", 5003),  # its CR counts: only LF ends a line here
        ([ROW, "x" * (LIMIT + 1), ROW], "\n", LIMIT + 1),  # just over: returned and measured
        ([ROW, "x" * 3 * LIMIT], "\n", 3 * LIMIT),  # the last line (no file here ends in a line end)
    ],
)
def test_lines_longer_than_the_limit_are_measured_never_held(
    spark: SparkSession, tmp_path: Path, lines: list[str], end: str, long_bytes: int
) -> None:
    path = write_csv(tmp_path / "long.csv", end.join([HEADER, *lines]))
    checked = inspect_file(path, PRODUCTS, make_settings())
    _, marked = count_rows(spark, [checked], multiline=False, max_line_bytes=LIMIT)
    assert marked[0].long_line_bytes == long_bytes


@pytest.mark.parametrize(
    "lines",
    [
        [ROW, "x" * LIMIT, ROW],  # at the limit (its CR not counted)
        [ROW] * 3000,  # more line ends than the limit: no false alarm
    ],
)
def test_lines_within_the_limit_are_counted_and_raise_no_alarm(
    spark: SparkSession, tmp_path: Path, lines: list[str]
) -> None:
    path = write_csv(tmp_path / "within.csv", "\r\n".join([HEADER, *lines]))
    checked = inspect_file(path, PRODUCTS, make_settings())
    counts, marked = count_rows(spark, [checked], multiline=False, max_line_bytes=LIMIT)
    assert marked[0].long_line_bytes == 0
    assert counts == {path: len(lines)}


@pytest.mark.parametrize(
    "first_line",
    [
        "4242;alice@example.com;SECRET-VALUE",  # a data row, semicolon-delimited
        "4242,alice@example.com,SECRET-VALUE,1,2,3,4,5",  # a data row where the header should be
        HEADER + ",SECRET-VALUE",  # an unexpected column
        "SECRET-VALUE,SECRET-VALUE,x",  # repeated names
    ],
)
def test_header_errors_keep_what_the_file_held_out_of_the_message(tmp_path: Path, first_line: str) -> None:
    """The message goes to alerts (e-mail): it names the problem and the expected columns, and
    what the file held is only in the excerpt, shortened (kept in the result file)."""
    with pytest.raises(InputFileError) as info:
        _inspect(tmp_path, first_line + "\n" + ROW + "\n")
    assert "secret" not in info.value.message.lower() and "alice" not in info.value.message
    assert info.value.excerpt is not None and "secret-value" in info.value.excerpt.lower()


def test_an_excerpt_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as info:
        _inspect(tmp_path, "x;" * 5000 + "\n")
    assert info.value.excerpt is not None and len(info.value.excerpt) <= 201


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (gzip.compress((HEADER + "\n" + ROW + "\n").encode()), "file is gzip-compressed: expected a plain"),
        (b"PK\x03\x04" + b"\x00" * 40, "file is a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not a text/CSV file"),
        (HEADER.encode() + b"\n1,S\x00,5,J,N,L,20,Men\n", "not a text/CSV file"),
    ],
)
def test_binary_and_compressed_files_are_named_for_what_they_are(content: bytes, message: str) -> None:
    """Not "tab-delimited" or "not valid UTF-8": the message says what the file is."""
    with pytest.raises(InputFileError, match=message):
        check_header("raw/products/p.csv", content[:HEAD_BYTES], len(content), PRODUCTS, "reject")


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    for uri in (str(tmp_path / "orders"), str(tmp_path / "orders") + "/", "s3://bucket/raw/orders/"):
        with pytest.raises(InputFileError, match="is a folder, not a file"):
            inspect_file(uri, PRODUCTS, make_settings())


def _resolve(**files: list[str]) -> Any:
    from common.io.manifest import resolve_batch

    return resolve_batch(make_settings(batch_id="b1", **{k: [",".join(v)] for k, v in files.items()}))


def test_the_same_object_twice_in_a_batch_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", "x\n")
    with pytest.raises(ConfigurationError, match=r"is the same object as .* \(orders\)"):
        _resolve(orders=[path], order_items=[str(tmp_path / "." / "o.csv")])
    with pytest.raises(ConfigurationError, match=r"is the same object as s3://b/raw/o\.csv"):
        _resolve(orders=["s3://b/raw/o.csv", "s3a://b/raw/o.csv"])
    assert _resolve(orders=[path, path]).files == {"orders": [path]}  # a repeated line is one file


def test_files_outside_the_allowed_prefixes_are_refused() -> None:
    from common.io.manifest import resolve_batch

    settings = make_settings(
        batch_id="b1",
        orders=["s3://data/raw/orders/a.csv,s3://other-bucket/secrets.csv"],
        allowed_input_prefixes="s3://data/raw/",
    )
    with pytest.raises(ConfigurationError, match=r"s3://other-bucket/secrets.csv \(orders\) is outside"):
        resolve_batch(settings)
    allowed = make_settings(
        batch_id="b1", orders=["s3a://data/raw/orders/a.csv"], allowed_input_prefixes="s3://data/raw/"
    )
    assert resolve_batch(allowed).files == {"orders": ["s3a://data/raw/orders/a.csv"]}
    sibling = make_settings(
        batch_id="b1", orders=["s3://data/rawfoo/a.csv"], allowed_input_prefixes="s3://data/raw/"
    )
    with pytest.raises(ConfigurationError, match="is outside"):  # a prefix that names a folder is a folder
        resolve_batch(sibling)


def test_a_file_listed_under_the_wrong_dataset_is_named_for_what_it_is() -> None:
    orders = load_contract("orders")
    head = b"order_id,user_id,status,created_at,returned_at,shipped_at,delivered_at,num_of_item\n1,2,x,,,,,1"
    items = load_contract("order_items")
    with pytest.raises(InputFileError) as raised:
        check_header("s3://b/raw/order_items/o.csv", head, len(head), items, "reject", [orders, PRODUCTS])
    assert raised.value.message.endswith(
        "the header has 8 column(s); it has every column of `orders`: is it listed under the wrong dataset?"
    )
    with pytest.raises(InputFileError) as raised:  # no other contract fits: no hint
        check_header("s3://b/raw/order_items/o.csv", head, len(head), items, "reject", [PRODUCTS])
    assert raised.value.message.endswith("the header has 8 column(s)")
