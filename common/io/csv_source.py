"""Raw CSV input: check each file's header from its first bytes, then let Spark read every value
as text straight from where the file lives (local disk or S3 through S3A).

Reading every field as a string is deliberate: Spark's CSV reader with a typed schema turns an
unparseable value into a silent null. Types are parsed later by rules that report failures.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts.columns import CORRUPT, SOURCE_FILE
from common.contracts.model import Contract
from common.errors import InputFileError, shorten
from common.io import storage

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)

HEAD_BYTES = 1 << 20  # the most of a file read to find and check its header line
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}
_ARCHIVES = {  # magic bytes of compressed files that reach us as "CSV"
    b"\x1f\x8b": "gzip-compressed",
    b"PK\x03\x04": "a ZIP archive",
    b"BZh": "bzip2-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
}
_LINE_MAX_LENGTH = "mapreduce.input.linerecordreader.line.maxlength"
_MAX_ECHO = 200  # never keep more than this many characters of a header as an excerpt
_REPORTED = "reported_path"
_LOCAL_SCHEME = r"^file:(//)?"  # how Spark prefixes a local file's path; stripped before decoding


@dataclass(frozen=True)
class CheckedFile:
    """A raw file whose header matched the contract."""

    uri: str
    header: tuple[str, ...]  # the file's columns in file order, mapped to contract names
    has_rows: bool
    multiline: bool = False  # holds a quoted field spanning lines (found by count_rows)
    size: int = 0  # bytes
    long_line_bytes: int = 0  # bytes in lines longer than the limit (found by count_rows): refused
    reported_path: str | None = None  # how Spark names the file in its rows (found by count_rows)
    read_from: str | None = None  # a copy of the version the batch was cut with (the object changed)

    def too_long_message(self, limit: int) -> str:
        return (
            f"holds line(s) longer than {limit:,} bytes ({self.long_line_bytes:,} bytes in them): expected "
            f"CSV rows of at most ECOM_MAX_LINE_BYTES={limit} bytes; the file was not parsed"
        )

    @property
    def spark_path(self) -> str:
        """What Spark reads: the file, or the copy of its version it is read from."""
        return storage.spark_path(self.read_from or self.uri)


def check_header(
    uri: str,
    head: bytes,
    size: int,
    contract: Contract,
    extra_columns: str,
    others: Sequence[Contract] = (),
) -> CheckedFile:
    """Check one file's header (from its first bytes) against the contract.

    Args:
        head: the first bytes of the file (up to :data:`HEAD_BYTES`).
        size: the file's whole size in bytes.
        others: the other datasets' contracts: a header that lacks columns of ``contract`` but has
            all of another's is named as that dataset's (a file listed under the wrong dataset).

    Raises:
        InputFileError: empty file, undecodable or wrongly delimited header, duplicate, missing
            or (unless ``extra_columns == "ignore"``) unexpected columns.
    """
    expected = ",".join(contract.column_names)
    if not head.strip():
        raise InputFileError(uri, f"file is empty: expected a header line `{expected}` followed by data rows")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputFileError(uri, "file is UTF-16 encoded: expected UTF-8 (re-export the file as UTF-8)")
    for magic, kind in _ARCHIVES.items():
        if head.startswith(magic):
            raise InputFileError(
                uri, f"file is {kind}: expected a plain UTF-8 CSV file (decompress it first)"
            )
    if b"\x00" in head[:HEAD_BYTES]:
        raise InputFileError(
            uri, "not a text/CSV file (it holds NUL bytes, as binary files do): expected a UTF-8 CSV file"
        )
    data = head.removeprefix(b"\xef\xbb\xbf")
    if b"\n" not in data and size > len(head):
        raise InputFileError(
            uri, f"no end of the header line in the first {HEAD_BYTES} bytes: expected a header `{expected}`"
        )
    line, _, rest = data.partition(b"\n")
    line = line.rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            uri,
            f"header is not valid UTF-8 (byte {line[exc.start]:#04x} at offset {exc.start}): expected UTF-8",
        ) from exc
    try:
        columns = [c.strip().lower() for c in next(csv.reader([text]))]
    except csv.Error as exc:
        raise InputFileError(uri, f"header is not a CSV line ({exc}): expected columns `{expected}`") from exc
    if len(columns) == 1 and len(contract.columns) > 1:
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in text:
                raise InputFileError(
                    uri,
                    f"header is {name}-delimited: expected comma-separated columns `{expected}`",
                    excerpt=shorten(text, _MAX_ECHO),
                )
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise InputFileError(
            uri,
            f"header repeats {len(duplicates)} column name(s): each column must appear once",
            excerpt=shorten(",".join(duplicates), _MAX_ECHO),
        )
    known = {c.lower(): c for c in contract.column_names}
    missing = [c for c in contract.column_names if c.lower() not in columns]
    extra = [c for c in columns if c not in known]
    if missing:
        fits = [o.dataset for o in others if all(c.lower() in columns for c in o.column_names)]
        hint = f"; it has every column of `{fits[0]}`: is it listed under the wrong dataset?" if fits else ""
        raise InputFileError(
            uri,
            f"missing required column(s) {missing}: expected columns `{expected}` (any order); "
            f"the header has {len(columns)} column(s){hint}",
            excerpt=shorten(",".join(columns), _MAX_ECHO),
        )
    if extra and extra_columns == "reject":
        raise InputFileError(
            uri,
            f"{len(extra)} unexpected column(s): expected columns `{expected}`; "
            "set ECOM_EXTRA_COLUMNS=ignore (--extra-columns ignore) to drop them",
            excerpt=shorten(",".join(extra), _MAX_ECHO),
        )
    header = tuple(known.get(c, c) for c in columns)
    has_rows = bool(rest.strip()) or size > len(head)
    return CheckedFile(uri, header, has_rows=has_rows, size=size)


def inspect_file(
    uri: str,
    contract: Contract,
    settings: Settings,
    others: Sequence[Contract] = (),
    read_from: str | None = None,
) -> CheckedFile:
    """Read the first bytes of ``uri`` (or of ``read_from``, a copy of the version the batch
    reads) and check its header (see :func:`check_header` for ``others``); never the whole file.

    Raises:
        InputFileError: the file is missing or its header is unusable.
        StorageError: the file cannot be read.
    """
    if uri.endswith("/"):
        raise InputFileError(uri, "is a folder, not a file: expected a CSV file listed by the batch")
    try:
        head, size = storage.read_head(read_from or uri, HEAD_BYTES, settings)
    except FileNotFoundError as exc:
        raise InputFileError(uri, "file does not exist: expected a CSV file listed by the batch") from exc
    except IsADirectoryError as exc:
        raise InputFileError(uri, "is a folder, not a file: expected a CSV file listed by the batch") from exc
    checked = check_header(uri, head, size, contract, settings.extra_columns, others)
    return replace(checked, read_from=read_from)


def _decoded_path(path: Column) -> Column:
    """Spark reports ``file:/a%20b.csv`` for the local ``/a b.csv`` and percent-encodes S3 keys:
    its path decoded (a literal ``+`` kept)."""
    stripped = F.regexp_replace(path, _LOCAL_SCHEME, "")
    return F.url_decode(F.regexp_replace(stripped, r"\+", "%2B"))


def _uri_of(reported: str, files: list[CheckedFile]) -> str:
    """The URI of a file Spark reported as ``reported`` (:func:`_decoded_path`, in Python)."""
    decoded = unquote(re.sub(_LOCAL_SCHEME, "", reported))
    return next((f.uri for f in files if f.spark_path == decoded), decoded)


def _file_uri_column(files: list[CheckedFile]) -> Column:
    """The URI each row came from, as the batch names it: looked up by the very path Spark
    reports when :func:`count_rows` saw it (a cheap lookup per row), else by the decoded path."""
    reported = F.col("_metadata.file_path")
    decoded = _decoded_path(reported)
    by_path = F.create_map(*[F.lit(x) for f in files for x in (f.spark_path, f.uri)])
    by_decoded = F.coalesce(by_path[decoded], decoded)
    seen = [f for f in files if f.reported_path is not None]
    if not seen:
        return by_decoded
    by_reported = F.create_map(*[F.lit(x) for f in seen for x in (f.reported_path, f.uri)])
    return F.coalesce(by_reported[reported], by_decoded)


def count_rows(
    spark: SparkSession, files: list[CheckedFile], multiline: bool, max_line_bytes: int
) -> tuple[dict[str, int], list[CheckedFile]]:
    """Rows read per file, counted by Spark apart from the validation plan (for the accounting
    check); the files come back marked ``multiline`` where a quoted field spans lines, and with
    ``long_line_bytes`` where a line is longer than ``max_line_bytes``.

    A row is a non-blank line after the header, unless the file holds a line with an odd number of
    ``"`` (RFC 4180 doubles a quote inside a quoted field, so a complete record always has an even
    number): then a quoted field continues on the next line, and that file's records are counted
    (and later read) by Spark's CSV reader in multi-line mode, so a field with a line break is one
    row, not two malformed ones. ``multiline`` True reads every file that way.

    Memory stays bounded by the limit: Hadoop's line reader skips a longer line instead of holding
    it. Lines are split at line feeds here, so each line end is exactly one byte and a skipped line
    is found exactly, by the bytes of the file its lines do not account for. (Spark's CSV reader
    also ends a line at a lone carriage return: files holding one are counted again its way.)
    """
    tallied = _tally_lines(spark, files, max_line_bytes, lf_only=True)
    tallies = {uri: t.counts for uri, t in tallied.items()}
    lone_cr = [f for f in files if f.uri in tallies and tallies[f.uri]["lone_cr"]]
    if lone_cr:
        for uri, recount in _tally_lines(spark, lone_cr, max_line_bytes, lf_only=False).items():
            tallies[uri] = {**tallies[uri], "lines": recount.counts["lines"], "odd": recount.counts["odd"]}
    marked = []
    for checked in files:
        row = tallies.get(checked.uri)
        # Every line of a file was skipped when it has no row (its size is all in long lines).
        long_bytes = checked.size if row is None else _long_line_bytes(row)
        spans = multiline or bool(row and row["odd"])
        reported = tallied[checked.uri].reported if checked.uri in tallied else None
        marked.append(replace(checked, multiline=spans, long_line_bytes=long_bytes, reported_path=reported))
    # Every file has a header line (checked before), which is not a row.
    counts = {uri: int(row["lines"]) - 1 for uri, row in tallies.items()}
    readable = [f for f in marked if f.multiline and not f.long_line_bytes]
    if readable:
        log.info("quoted fields span lines in %d file(s): read as multi-line CSV", len(readable))
        counts.update(_count_records(spark, readable, max_line_bytes))
    return counts, marked


class _Tally(NamedTuple):
    reported: str  # the file's path as Spark reports it
    counts: dict[str, int]


def _tally_lines(
    spark: SparkSession, files: list[CheckedFile], max_line_bytes: int, lf_only: bool
) -> dict[str, _Tally]:
    """Per file: lines, non-blank lines, lines with an odd number of quotes, bytes in lines and
    in over-long lines, lines holding a lone carriage return, and the file's size."""
    reader = spark.read.option(_LINE_MAX_LENGTH, str(max_line_bytes + 3))
    if lf_only:
        reader = reader.option("lineSep", "\n")
    value = F.col("value")
    size = F.octet_length(value)
    too_long = (size - value.endswith("\r").cast("int")) > max_line_bytes
    # An over-long line is only measured, never decoded or searched.
    blank = F.when(too_long, F.lit(False)).otherwise(value.rlike(r"^\s*$"))
    odd_quotes = F.size(F.split(value, '"')) % 2 == 0  # n quotes -> n + 1 pieces
    cr_at = F.locate("\r", value)
    lone_cr = (cr_at > 0) & (cr_at < F.length(value))
    counted = (
        reader.text([f.spark_path for f in files])
        # Grouped by the path as Spark reports it: mapped to the batch's URI once per file, below.
        .groupBy(F.col("_metadata.file_path").alias(_REPORTED))
        .agg(
            F.count(F.lit(1)).alias("all"),
            F.sum((~blank).cast("int")).alias("lines"),
            F.sum(F.when(too_long, 0).otherwise(odd_quotes.cast("int"))).alias("odd"),
            F.sum(F.when(too_long, 0).otherwise(lone_cr.cast("int"))).alias("lone_cr"),
            F.sum(size).alias("bytes"),
            F.sum(F.when(too_long, size).otherwise(0)).alias("long_bytes"),
            F.max("_metadata.file_size").alias("size"),
        )
        .collect()
    )
    return {
        _uri_of(row[_REPORTED], files): _Tally(
            row[_REPORTED], {k: int(row[k] or 0) for k in row.asDict() if k != _REPORTED}
        )
        for row in counted
    }


def _long_line_bytes(row: dict[str, int]) -> int:
    """Bytes of a file in lines longer than the limit: those returned (measured), plus those the
    line reader skipped, i.e. what the returned lines and their one-byte line ends leave over
    (up to 3 bytes are a UTF-8 byte-order mark and a last line without a line end)."""
    unaccounted = row["size"] - row["bytes"] - row["all"]
    return row["long_bytes"] + (unaccounted if unaccounted > 3 else 0)


def _count_records(spark: SparkSession, files: list[CheckedFile], max_chars: int) -> dict[str, int]:
    frame = read_raw(spark, files, None, multiline=True, max_chars=max_chars)
    counts = frame.groupBy(SOURCE_FILE).count().collect()
    return {row[SOURCE_FILE]: int(row["count"]) for row in counts}


def read_raw(
    spark: SparkSession,
    files: list[CheckedFile],
    contract: Contract | None,
    multiline: bool,
    max_chars: int = -1,
) -> DataFrame:
    """Read checked files as text: one column per contract column, plus the source file URI and
    the raw line of any row that did not split into the header's number of fields.

    ``contract`` None keeps each file's own header columns (all files must share one header).
    A file marked ``multiline`` (or every file, with ``multiline``) is read in multi-line mode.
    ``max_chars`` bounds a field (a multi-line field can be longer than any of its lines): a longer
    one stops the read with the parser's error instead of filling the memory.
    """
    by_header: dict[tuple[tuple[str, ...], bool], list[CheckedFile]] = defaultdict(list)
    for checked in files:
        by_header[(checked.header, multiline or checked.multiline)].append(checked)
    frames = []
    for (header, spans), group in by_header.items():
        schema = T.StructType(
            [T.StructField(c, T.StringType()) for c in header] + [T.StructField(CORRUPT, T.StringType())]
        )
        frame = spark.read.csv(
            [f.spark_path for f in group],
            schema=schema,
            header=True,
            enforceSchema=True,  # positional: the schema above is the file's own header order
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT,
            quote='"',
            escape='"',
            multiLine=spans,
            encoding="UTF-8",
            maxCharsPerColumn=max_chars,
        )
        columns = contract.column_names if contract is not None else list(header)
        frames.append(frame.select(*columns, CORRUPT, _file_uri_column(group).alias(SOURCE_FILE)))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
