"""Raw CSV input: check each file's header in Python, then read all values as text with Spark.

Reading every field as a string is deliberate: Spark's CSV reader with a typed schema turns an
unparseable value into a silent null. Types are parsed later by rules that report failures.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contract import Contract
from common.errors import InputFileError

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
SOURCE_FILE = "_source_file"
_PROBE_BYTES = 1 << 16
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True)
class CheckedFile:
    """A raw file whose header matched the contract."""

    uri: str
    local_path: Path
    header: tuple[str, ...]  # the file's columns in file order, mapped to contract names
    has_rows: bool


def _first_line(data: bytes) -> tuple[bytes, bytes]:
    line, _, rest = data.partition(b"\n")
    return line.rstrip(b"\r"), rest


def inspect_file(uri: str, path: Path, contract: Contract, extra_columns: str) -> CheckedFile:
    """Check one file's header against the contract.

    Raises:
        InputFileError: empty file, undecodable or wrongly delimited header, duplicate, missing
            or (unless ``extra_columns == "ignore"``) unexpected columns.
    """
    expected = ",".join(contract.column_names)
    with path.open("rb") as handle:
        data = handle.read(_PROBE_BYTES)
        while b"\n" not in data:  # header longer than the probe: keep reading to its end
            more = handle.read(_PROBE_BYTES)
            if not more:
                break
            data += more
        if b"\n" in data and not data.partition(b"\n")[2].strip():
            data += handle.read(_PROBE_BYTES)  # peek further so a header-only file is recognised
    if not data.strip():
        raise InputFileError(uri, f"file is empty: expected a header line `{expected}` followed by data rows")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError(uri, "file is UTF-16 encoded: expected UTF-8 (re-export the file as UTF-8)")
    data = data.removeprefix(b"\xef\xbb\xbf")
    line, rest = _first_line(data)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            uri,
            f"header is not valid UTF-8 (byte {line[exc.start]:#04x} at offset {exc.start}): expected UTF-8",
        ) from exc
    columns = [c.strip().lower() for c in next(csv.reader([text]))]
    if len(columns) == 1 and len(contract.columns) > 1:
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in text:
                raise InputFileError(
                    uri,
                    f"header is {name}-delimited ({text!r}): expected comma-separated columns `{expected}`",
                )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InputFileError(uri, f"header repeats column(s) {duplicates}: each column must appear once")
    known = {c.lower(): c for c in contract.column_names}
    missing = [c for c in contract.column_names if c.lower() not in columns]
    extra = [c for c in columns if c not in known]
    if missing:
        raise InputFileError(
            uri,
            f"missing required column(s) {missing}: expected columns `{expected}` (any order), "
            f"found `{','.join(columns)}`",
        )
    if extra and extra_columns == "reject":
        raise InputFileError(
            uri,
            f"unexpected column(s) {extra}: expected columns `{expected}`; "
            "set ECOM_EXTRA_COLUMNS=ignore (--extra-columns ignore) to drop them",
        )
    header = tuple(known.get(c, c) for c in columns)
    return CheckedFile(uri, path, header, has_rows=bool(rest.strip()))


def count_data_lines(path: Path) -> int:
    """Data rows of a CSV file whose fields never span lines: non-blank lines after the header.

    Used as the independent "rows read" figure of the accounting check (bytes scanned at memory
    speed, no second CSV parse). Spark skips blank lines too.
    """
    count = 0
    header_seen = False
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()  # a line cut by the chunk boundary, completed by the next chunk
            if lines and not header_seen:
                lines, header_seen = lines[1:], True
            count += sum(1 for line in lines if line.strip())
    if tail.strip() and header_seen:  # a last line without a final newline
        count += 1
    return count


def _normalised_path(column: str) -> Column:
    """Spark's ``file:/a%20b.csv`` -> ``/a b.csv``, to match the paths we staged."""
    return F.url_decode(F.regexp_replace(F.col(column), r"^file:(//)?", ""))


def read_raw(spark: SparkSession, files: list[CheckedFile], contract: Contract, multiline: bool) -> DataFrame:
    """Read checked files as text: one column per contract column, plus the source file URI and
    the raw line of any row that did not split into the header's number of fields.
    """
    by_header: dict[tuple[str, ...], list[CheckedFile]] = defaultdict(list)
    for checked in files:
        by_header[checked.header].append(checked)
    uri_of = F.create_map(*[F.lit(x) for f in files for x in (str(f.local_path), f.uri)])
    frames = []
    for header, group in by_header.items():
        schema = T.StructType(
            [T.StructField(c, T.StringType()) for c in header] + [T.StructField(CORRUPT, T.StringType())]
        )
        frame = spark.read.csv(
            [str(f.local_path) for f in group],
            schema=schema,
            header=True,
            enforceSchema=True,  # positional: the schema above is the file's own header order
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT,
            quote='"',
            escape='"',
            multiLine=multiline,
            encoding="UTF-8",
        )
        frame = frame.select(
            *contract.column_names,
            CORRUPT,
            uri_of[_normalised_path("_metadata.file_path")].alias(SOURCE_FILE),
        )
        frames.append(frame)
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
