"""Parsing raw text into contract types, as Column functions.

Parsing is explicit and strict: a value that does not parse becomes null *and* is reported by
:func:`type_mismatch` as a type failure; it never becomes a silent null. Failure columns are true
when a row fails; the caller treats null as "not failed".
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contracts.model import ColumnSpec, decimal_precision_scale

# ISO-8601 date-time: date, optional time with `T` or space, optional fraction, optional zone
# (`Z`, `+hh:mm`, `+hhmm`, ` UTC`). No zone means UTC (the session time zone is UTC).
_TIMESTAMP_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?"
    r"( ?(Z|[+-]\d{2}(:?\d{2})?| UTC))?$"
)
_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_INTEGER_PATTERN = r"^[+-]?\d+$"
_DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_DOUBLE_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_BOOLEAN_VALUES = ["true", "false", "1", "0", "yes", "no", "t", "f"]
REPLACEMENT_CHAR = "\ufffd"


def clean_text(raw: Column) -> Column:
    """Trim a raw CSV field and turn the empty string into null."""
    trimmed = F.trim(raw)
    return F.when(trimmed == F.lit(""), F.lit(None)).otherwise(trimmed)


def parse_value(raw: Column, type_name: str) -> Column:
    """Parse a cleaned text column into ``type_name``; values that do not parse become null.

    Pair it with :func:`type_mismatch`, which reports exactly those values.
    """
    if type_name == "string":
        return raw
    if type_name == "timestamp":
        # Spark's cast reads every zone form the pattern admits (`Z`, `+hh:mm`, ` UTC`) itself.
        return F.when(raw.rlike(_TIMESTAMP_PATTERN), raw.try_cast("timestamp"))
    if type_name == "date":
        return F.when(raw.rlike(_DATE_PATTERN), raw.try_cast("date"))
    if type_name in {"int", "long"}:
        return F.when(raw.rlike(_INTEGER_PATTERN), raw.try_cast(type_name))
    if type_name == "double":
        return F.when(raw.rlike(_DOUBLE_PATTERN), raw.try_cast("double"))
    if type_name == "boolean":
        return F.when(F.lower(raw).isin(_BOOLEAN_VALUES), F.lower(raw).try_cast("boolean"))
    precision_scale = decimal_precision_scale(type_name)
    if precision_scale is not None:
        precision, scale = precision_scale
        return F.when(raw.rlike(_DECIMAL_PATTERN), raw.try_cast(f"decimal({precision},{scale})"))
    raise ValueError(f"unsupported type {type_name!r}")  # the contract loader prevents this


def type_mismatch(raw: Column, parsed: Column) -> Column:
    """True when a value was given but did not parse (wrong format, out of range, overflow)."""
    return raw.isNotNull() & parsed.isNull()


def bad_encoding(value: Column) -> Column:
    """True when the text held bytes that were not UTF-8 (the reader replaced them with U+FFFD)."""
    return value.contains(REPLACEMENT_CHAR)


def spark_type(type_name: str) -> T.DataType:
    """The Spark type of a contract type."""
    simple: dict[str, T.DataType] = {
        "string": T.StringType(),
        "int": T.IntegerType(),
        "long": T.LongType(),
        "double": T.DoubleType(),
        "timestamp": T.TimestampType(),
        "date": T.DateType(),
        "boolean": T.BooleanType(),
    }
    if type_name in simple:
        return simple[type_name]
    precision_scale = decimal_precision_scale(type_name)
    if precision_scale is None:
        raise ValueError(f"unsupported type {type_name!r}")
    return T.DecimalType(*precision_scale)


def typed(text: Column, spec: ColumnSpec) -> Column:
    """A cleaned text column parsed to its contract type and normalised."""
    value = parse_value(text, spec.type)
    if spec.normalize == "lower":
        return F.lower(value)
    if spec.normalize == "upper":
        return F.upper(value)
    return value
