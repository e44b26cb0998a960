"""Counts of an annotated dataset in one aggregation: rows and collapsed copies per split, and how
many rows each reason code (errors on quarantined and parked rows, warnings on valid rows) was
given."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.contracts.columns import COPIES, ERRORS, QUALITY, WARNINGS
from common.engine.annotate import PARKED, VALID

# Never reason codes: codes come from contracts and never start with "__".
_ROW = "__row__"
_WARNED = "__warned__"


def tally_frame(annotated: DataFrame) -> DataFrame:
    """``(_quality, code, rows, copies)``: every row counts once under ``__row__``, and once under
    each of its codes. Small: (number of codes + 2) x 2 rows at most."""
    is_valid = F.col(QUALITY) == VALID
    codes = F.when(is_valid, F.col(WARNINGS)).otherwise(F.col(ERRORS))
    warned = F.when(is_valid & (F.size(WARNINGS) > 0), F.array(F.lit(_WARNED))).otherwise(
        F.array().cast("array<string>")
    )
    markers = F.concat(F.array(F.lit(_ROW)), warned, codes)
    exploded = annotated.select(QUALITY, COPIES, F.explode(markers).alias("code"))
    return exploded.groupBy(QUALITY, "code").agg(
        F.count(F.lit(1)).alias("rows"), F.sum(COPIES).alias("copies")
    )


@dataclass
class Tallies:
    rows_valid: int = 0
    rows_quarantined: int = 0
    rows_parked: int = 0
    duplicates_collapsed: int = 0
    rule_counts: Counter[str] = field(default_factory=Counter)  # codes of quarantined rows
    parked_counts: Counter[str] = field(default_factory=Counter)  # codes of parked rows
    warning_counts: Counter[str] = field(default_factory=Counter)
    rows_with_warnings: int = 0

    @classmethod
    def from_rows(cls, rows: Iterable[Any]) -> Tallies:
        """Read the collected rows of :func:`tally_frame`."""
        out = cls()
        for row in rows:
            quality, code, count = row[QUALITY], row["code"], int(row["rows"])
            valid, parked = quality == VALID, quality == PARKED
            if code == _ROW:
                out.duplicates_collapsed += int(row["copies"]) - count
                if valid:
                    out.rows_valid = count
                elif parked:
                    out.rows_parked = count
                else:
                    out.rows_quarantined = count
            elif code == _WARNED:
                out.rows_with_warnings = count
            elif valid:
                out.warning_counts[code] = count
            elif parked:
                out.parked_counts[code] = count
            else:
                out.rule_counts[code] = count
        return out
