"""Validation rules as Column functions.

Each function returns a boolean ``Column`` that is true when a row *fails* the rule; nulls are
treated as "not failed" by the caller (``F.coalesce(col, F.lit(False))``), so a rule never has
to handle the null case of another rule. Parsing is explicit and strict: a value that does not
parse is reported as a type failure, it never becomes a silent null.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.contract import Rule, decimal_precision_scale

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


def _timestamp_text(raw: Column) -> Column:
    # Spark's cast reads `Z` and `+hh:mm` itself; ` UTC` (BigQuery exports) it does not.
    return F.regexp_replace(raw, r" UTC$", "Z")


def parse_value(raw: Column, type_name: str) -> Column:
    """Parse a cleaned text column into ``type_name``; values that do not parse become null.

    Pair it with :func:`type_mismatch`, which reports exactly those values.
    """
    if type_name == "string":
        return raw
    if type_name == "timestamp":
        return F.when(raw.rlike(_TIMESTAMP_PATTERN), _timestamp_text(raw).try_cast("timestamp"))
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


def is_null(raw: Column) -> Column:
    """True when the field is missing or blank."""
    return raw.isNull()


def not_in(value: Column, allowed: list[str], ignore_case: bool) -> Column:
    """True when a present value is not among ``allowed``."""
    if ignore_case:
        return F.lower(value).isin([v.lower() for v in allowed]) == F.lit(False)
    return value.isin(allowed) == F.lit(False)


def below(value: Column, bound: float) -> Column:
    """True when a present value is smaller than ``bound``."""
    return value < F.lit(bound)


def above(value: Column, bound: float) -> Column:
    """True when a present value is larger than ``bound``."""
    return value > F.lit(bound)


def bad_encoding(value: Column) -> Column:
    """True when the text held bytes that were not UTF-8 (the reader replaced them with U+FFFD)."""
    return value.contains(REPLACEMENT_CHAR)


def rule_failures(rule: Rule, typed: dict[str, Column], raw: dict[str, Column]) -> list[tuple[str, Column]]:
    """Return ``(reason code, failed?)`` pairs for one declarative rule.

    Args:
        rule: the rule from the contract.
        typed: column name -> parsed column.
        raw: column name -> cleaned text column (for not-null checks, which must not
            confuse "missing" with "did not parse").
    """
    if rule.rule == "not_null":
        return [(f"not_null:{c}", is_null(raw[c])) for c in rule.columns]
    if rule.rule == "expression":
        assert rule.name is not None and rule.expr is not None
        return [(rule.name, F.expr(rule.expr))]
    assert rule.column is not None
    column = typed[rule.column]
    code = f"{rule.rule}:{rule.column}"
    if rule.rule == "allowed_values":
        return [(code, not_in(column, rule.values, rule.ignore_case))]
    assert rule.value is not None
    if rule.rule == "min":
        return [(code, below(column, rule.value))]
    return [(code, above(column, rule.value))]


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
