"""Reserved column names, defined once. Every one starts with ``_``, and a contract may not declare
a column that does (see :class:`common.contracts.model.Contract`), so data can never collide with them.
"""

from __future__ import annotations

RESERVED_PREFIX = "_"

RAW_PREFIX = "_raw_"  # the cleaned source text of a column, kept on quarantined rows
CORRUPT = "_corrupt_record"  # the whole line, when it did not split into the header's fields
SOURCE_FILE = "_source_file"  # the URI of the file a row came from
COPIES = "_copies"  # how many identical rows were collapsed into this one
ERRORS = "_errors"  # reason codes that quarantine the row
WARNINGS = "_warnings"  # reason codes of warn-severity rules (the row is kept)
REASONS = "_reasons"  # the quarantine table's name for ``_errors``
ROW_HASH = "_row_hash"  # hash of the typed contract columns: did a record's content change?
BATCH_ID = "_batch_id"
PROCESSING_DATE = "_processing_date"
QUALITY = "_quality"  # "valid", "parked" or "quarantined": the one split of a batch's rows
PARKED_SINCE = "_parked_since"  # the processing date a parked row was first parked on


def raw(column: str) -> str:
    """The name of a column's cleaned source text."""
    return f"{RAW_PREFIX}{column}"
