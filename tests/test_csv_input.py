"""Header checks: every bad file gets a message naming the file, the column and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.contract import load_contract
from common.csv_input import inspect_file
from common.errors import InputFileError
from tests.conftest import write_csv

PRODUCTS = load_contract("products")
HEADER = "id,sku,cost,category,name,brand,retail_price,department"
ROW = "1,S1,5.00,Jeans,Plain jeans,Levi's,20.00,Men"


def _inspect(tmp_path: Path, content: str | bytes, extra: str = "reject") -> object:
    path = Path(write_csv(tmp_path / "p.csv", content))
    return inspect_file("s3://bucket/raw/products/p.csv", path, PRODUCTS, extra)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty: expected a header line `id,sku,cost"),
        ("\n\n", "file is empty"),
        (HEADER.replace(",brand", "") + "\n1,S1,5,J,N,20,Men\n", r"missing required column\(s\) \['brand'\]"),
        (
            HEADER + ",color\n" + ROW + ",red\n",
            r"unexpected column\(s\) \['color'\].*ECOM_EXTRA_COLUMNS=ignore",
        ),
        (
            HEADER.replace(",", ";") + "\n" + ROW.replace(",", ";") + "\n",
            "semicolon-delimited.*expected comma-separated",
        ),
        (HEADER.replace(",", "\t") + "\n", "tab-delimited"),
        (HEADER + ",id\n", r"repeats column\(s\) \['id'\]"),
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
    assert checked.header == ("department", "retail_price", "brand", "name", "category", "cost", "sku", "id")  # type: ignore[attr-defined]
    assert checked.has_rows  # type: ignore[attr-defined]


def test_header_only_file_is_recognised(tmp_path: Path) -> None:
    assert not _inspect(tmp_path, HEADER + "\n").has_rows  # type: ignore[attr-defined]
    assert not _inspect(tmp_path, HEADER).has_rows  # type: ignore[attr-defined]


def test_extra_column_can_be_ignored(tmp_path: Path) -> None:
    checked = _inspect(tmp_path, HEADER + ",color\n" + ROW + ",red\n", extra="ignore")
    assert checked.header[-1] == "color"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (HEADER + "\n" + ROW + "\n" + ROW + "\n", 2),
        (HEADER + "\r\n" + ROW + "\r\n\r\n" + ROW, 2),  # CRLF, a blank line, no final newline
        (HEADER + "\n\n   \n" + ROW + "\n", 1),  # blank and whitespace-only lines are not rows
        (HEADER + "\n", 0),
        (HEADER, 0),
        ("", 0),
    ],
)
def test_data_lines_are_counted_independently_of_spark(tmp_path: Path, content: str, rows: int) -> None:
    from common.csv_input import count_data_lines

    assert count_data_lines(Path(write_csv(tmp_path / "c.csv", content))) == rows
