"""Reason codes that do not come from a contract's rule list: their names and descriptions, once.

Codes of declared rules (``not_null:<col>``, ``min:<col>``, an expression's name, ...) are owned by
the rule kinds in :mod:`common.contracts.model`; those that name a column are made by :func:`code`.
"""

from __future__ import annotations

MALFORMED_ROW = "malformed_row"
DUPLICATE_KEY = "duplicate_key"


def code(kind: str, column: str) -> str:
    """The reason code of a rule of ``kind`` broken in ``column``: ``<kind>:<column>``. Every code
    that names a column is made here, those of declared rules included."""
    return f"{kind}:{column}"


def column_of(reason: str) -> str:
    """The column a code made by :func:`code` names."""
    return reason.split(":", 1)[1]


def type_code(column: str) -> str:
    return code("type", column)


def encoding_code(column: str) -> str:
    return code("encoding", column)


def parent_missing_code(column: str) -> str:
    return code("parent_missing", column)


def parent_quarantined_code(column: str) -> str:
    return code("parent_quarantined", column)


def parent_never_arrived_code(column: str) -> str:
    return code("parent_never_arrived", column)


def type_description(column: str, type_name: str) -> str:
    return f"{column} is not a valid {type_name}"


def encoding_description(column: str) -> str:
    return f"{column} contains bytes that are not valid UTF-8"


MALFORMED_ROW_DESCRIPTION = "the line does not split into the expected number of fields"
DUPLICATE_KEY_DESCRIPTION = "another row of this batch has the same primary key with different content"


def parent_missing_description(column: str, reference: str) -> str:
    return f"{column} matches no {reference} in this or any earlier batch"


def parent_quarantined_description(column: str, reference: str) -> str:
    return f"{column} matches only quarantined rows of {reference}"


def parent_never_arrived_description(column: str, reference: str, days: int) -> str:
    return f"{column} matched no {reference} for more than {days} day(s) of parking"
