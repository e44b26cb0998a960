"""The data-contract model: a dataset's columns and types, keys and rules. Knows nothing of Spark.

Rule kinds form a discriminated union on ``rule``. Each kind owns, in one class, its arguments,
its reason codes, their descriptions and its failure condition, written as a Spark SQL boolean
expression over the parsed columns (and ``_raw_<col>``, the cleaned text) that is true when a
row breaks the rule; a code that names a column is made by :func:`reasons.code`. The engine
evaluates those expressions: adding a rule kind touches this module, its mapping from ODCS
(:mod:`common.contracts.odcs`) and the reason codes of docs/contracts.md, not the engine.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.contracts import reasons
from common.contracts.columns import RESERVED_PREFIX, raw

# The three datasets of a batch, parents first so foreign keys can be checked in this order.
DATASETS: tuple[str, ...] = ("products", "orders", "order_items")

_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
SIMPLE_TYPES = ("string", "int", "long", "double", "timestamp", "date", "boolean")

Severity = Literal["error", "warn"]


def is_valid_type(type_name: str) -> bool:
    """Tell whether ``type_name`` is a column type contracts may use."""
    return type_name in SIMPLE_TYPES or _DECIMAL.match(type_name) is not None


def decimal_precision_scale(type_name: str) -> tuple[int, int] | None:
    """Return ``(precision, scale)`` for ``decimal(p,s)``, else None."""
    match = _DECIMAL.match(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def quote_identifier(name: str) -> str:
    """A column name as a Spark SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def quote_literal(value: str) -> str:
    """A string as a Spark SQL literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    type: str
    normalize: Literal["lower", "upper"] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _known_type(self) -> ColumnSpec:
        if not is_valid_type(self.type):
            raise ValueError(
                f"unknown type {self.type!r}; expected one of {list(SIMPLE_TYPES)} or decimal(p,s)"
            )
        return self


class ParentRef(_Strict):
    dataset: str
    column: str


class ForeignKey(_Strict):
    column: str
    references: ParentRef
    # Days a row whose parent has not arrived yet is parked (kept aside and re-checked by every
    # later run) before it is quarantined as ``parent_never_arrived``; 0 quarantines it at once.
    park_for_days: int = Field(default=0, ge=0)

    @property
    def reference(self) -> str:
        return f"{self.references.dataset}.{self.references.column}"


class RuleLimit(_Strict):
    """How many rows may break a rule before its dataset FAILS (beyond the rows it quarantines or
    warns about): at most ``value`` rows, or ``value`` percent of the rows read; ``inclusive`` False
    means strictly fewer."""

    value: float = Field(ge=0)
    unit: Literal["rows", "percent"] = "rows"
    inclusive: bool = True

    def exceeded(self, broken: int, rows_read: int) -> bool:
        amount = broken if self.unit == "rows" else (100.0 * broken / rows_read if rows_read else 0.0)
        return amount > self.value if self.inclusive else amount >= self.value

    def describe(self) -> str:
        bound = "at most" if self.inclusive else "fewer than"
        return f"{bound} {self.value:g}{'%' if self.unit == 'percent' else ' rows'}"


class _Rule(_Strict):
    severity: Severity = "error"
    description: str | None = None
    limit: RuleLimit | None = None  # none: only the dataset's quarantine threshold bounds it

    def columns_used(self) -> list[str]:
        raise NotImplementedError

    def conditions(self) -> list[tuple[str, str]]:
        """``(reason code, Spark SQL condition that is true when a row breaks the rule)`` pairs."""
        raise NotImplementedError

    def default_description(self, code: str) -> str:
        raise NotImplementedError

    def codes(self) -> list[str]:
        return [code for code, _ in self.conditions()]

    def descriptions(self) -> dict[str, str]:
        return {code: self.description or self.default_description(code) for code in self.codes()}


class NotNullRule(_Rule):
    """Each listed column must hold a value (blank counts as missing)."""

    rule: Literal["not_null"]
    columns: list[str] = Field(min_length=1)

    def columns_used(self) -> list[str]:
        return list(self.columns)

    def conditions(self) -> list[tuple[str, str]]:
        # The cleaned text, not the parsed value: "missing" must not be confused with "did not parse".
        return [(reasons.code(self.rule, c), f"{quote_identifier(raw(c))} IS NULL") for c in self.columns]

    def default_description(self, code: str) -> str:
        return f"{reasons.column_of(code)} must not be empty"


class AllowedValuesRule(_Rule):
    """A present value must be one of ``values``."""

    rule: Literal["allowed_values"]
    column: str
    values: list[str] = Field(min_length=1)
    ignore_case: bool = False

    def columns_used(self) -> list[str]:
        return [self.column]

    def conditions(self) -> list[tuple[str, str]]:
        column = quote_identifier(self.column)
        values = [v.lower() for v in self.values] if self.ignore_case else self.values
        subject = f"lower({column})" if self.ignore_case else column
        listed = ", ".join(quote_literal(v) for v in values)
        return [(reasons.code(self.rule, self.column), f"{subject} NOT IN ({listed})")]

    def default_description(self, code: str) -> str:
        case = " (case-insensitive)" if self.ignore_case else ""
        return f"{self.column} must be one of {', '.join(self.values)}{case}"


class _BoundRule(_Rule):
    """A present value must not lie beyond ``value`` (``_broken_when`` compares the two)."""

    column: str
    value: float
    _broken_when: str = ""  # "<" or ">": the comparison that breaks the rule
    _word: str = ""  # ">=" or "<=": how the description states the bound

    def columns_used(self) -> list[str]:
        return [self.column]

    def conditions(self) -> list[tuple[str, str]]:
        condition = f"{quote_identifier(self.column)} {self._broken_when} {_number(self.value)}"
        return [(reasons.code(self.rule, self.column), condition)]  # type: ignore[attr-defined]

    def default_description(self, code: str) -> str:
        return f"{self.column} must be {self._word} {self.value:g}"


class MinRule(_BoundRule):
    """A present value must be at least ``value``."""

    rule: Literal["min"]
    _broken_when = "<"
    _word = ">="


class MaxRule(_BoundRule):
    """A present value must be at most ``value``."""

    rule: Literal["max"]
    _broken_when = ">"
    _word = "<="


class ExpressionRule(_Rule):
    """A Spark SQL boolean over the parsed columns; true means the rule is broken."""

    rule: Literal["expression"]
    name: str = Field(min_length=1)
    expr: str = Field(min_length=1)

    def columns_used(self) -> list[str]:
        return []  # checked when the expression is resolved against the schema

    def conditions(self) -> list[tuple[str, str]]:
        return [(self.name, self.expr)]

    def default_description(self, code: str) -> str:
        return code


Rule = Annotated[
    NotNullRule | AllowedValuesRule | MinRule | MaxRule | ExpressionRule, Field(discriminator="rule")
]


class Contract(_Strict):
    dataset: str
    description: str | None = None
    primary_key: list[str] = Field(min_length=1)
    columns: dict[str, ColumnSpec]
    foreign_keys: list[ForeignKey] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    # A batch FAILS when this dataset quarantines more than this share of its rows.
    quarantine_threshold: float = Field(default=0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _references_exist(self) -> Contract:
        reserved = sorted(c for c in self.columns if c.startswith(RESERVED_PREFIX))
        if reserved:
            raise ValueError(
                f"column name(s) {reserved} start with {RESERVED_PREFIX!r}, which is reserved for the "
                "pipeline's own columns: rename them"
            )
        known = set(self.columns)
        used = list(self.primary_key) + [fk.column for fk in self.foreign_keys]
        for rule in self.rules:
            used += rule.columns_used()
        unknown = sorted({c for c in used if c not in known})
        if unknown:
            raise ValueError(f"rules or keys name columns not declared under `columns`: {unknown}")
        return self

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def rule_limits(self) -> dict[str, tuple[Severity, RuleLimit]]:
        """Every reason code whose rule carries a limit, with the rule's severity and limit."""
        return {
            code: (rule.severity, rule.limit)
            for rule in self.rules
            if rule.limit is not None
            for code in rule.codes()
        }

    def rules_of(self, severity: Severity) -> list[tuple[str, str]]:
        """Every ``(code, condition)`` of the declared rules with this severity."""
        return [pair for rule in self.rules if rule.severity == severity for pair in rule.conditions()]

    def rule_descriptions(self) -> dict[str, str]:
        """Human-readable meaning of every reason code this contract can produce."""
        out: dict[str, str] = {reasons.MALFORMED_ROW: reasons.MALFORMED_ROW_DESCRIPTION}
        for name, spec in self.columns.items():
            out[reasons.type_code(name)] = reasons.type_description(name, spec.type)
            out[reasons.encoding_code(name)] = reasons.encoding_description(name)
        for rule in self.rules:
            out.update(rule.descriptions())
        out[reasons.DUPLICATE_KEY] = reasons.DUPLICATE_KEY_DESCRIPTION
        for fk in self.foreign_keys:
            out[reasons.parent_missing_code(fk.column)] = reasons.parent_missing_description(
                fk.column, fk.reference
            )
            out[reasons.parent_quarantined_code(fk.column)] = reasons.parent_quarantined_description(
                fk.column, fk.reference
            )
            if fk.park_for_days:
                out[reasons.parent_never_arrived_code(fk.column)] = reasons.parent_never_arrived_description(
                    fk.column, fk.reference, fk.park_for_days
                )
        return out

    @property
    def parks(self) -> bool:
        """True when some foreign key parks rows whose parent has not arrived yet."""
        return any(fk.park_for_days for fk in self.foreign_keys)
