"""Data contracts: load and check the declarative YAML files under ``common/contracts/``.

A contract names a dataset's columns and types, its primary key, foreign keys and rules. The
job never hard-codes a column name: it reads them from here, so a data engineer changes a rule
by editing YAML, not Python.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import ContractError

CONTRACTS_DIR = Path(__file__).parent / "contracts"

# The three datasets of a batch, parents first so foreign keys can be checked in this order.
DATASETS: tuple[str, ...] = ("products", "orders", "order_items")

_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_SIMPLE_TYPES = {"string", "int", "long", "double", "timestamp", "date", "boolean"}

Severity = Literal["error", "warn"]


def is_valid_type(type_name: str) -> bool:
    """Tell whether ``type_name`` is a column type contracts may use."""
    return type_name in _SIMPLE_TYPES or _DECIMAL.match(type_name) is not None


def decimal_precision_scale(type_name: str) -> tuple[int, int] | None:
    """Return ``(precision, scale)`` for ``decimal(p,s)``, else None."""
    match = _DECIMAL.match(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


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
                f"unknown type {self.type!r}; expected one of {sorted(_SIMPLE_TYPES)} or decimal(p,s)"
            )
        return self


class ParentRef(_Strict):
    dataset: str
    column: str


class ForeignKey(_Strict):
    column: str
    references: ParentRef


class Rule(_Strict):
    """One declarative rule. ``rule`` picks the kind; the other fields are its arguments."""

    rule: Literal["not_null", "allowed_values", "min", "max", "expression"]
    severity: Severity = "error"
    name: str | None = None
    description: str | None = None
    column: str | None = None
    columns: list[str] = Field(default_factory=list)
    values: list[str] = Field(default_factory=list)
    ignore_case: bool = False
    value: float | None = None
    expr: str | None = None

    @model_validator(mode="after")
    def _arguments(self) -> Rule:
        needs_column = {"allowed_values", "min", "max"}
        if self.rule == "not_null" and not self.columns:
            raise ValueError("not_null needs `columns`")
        if self.rule in needs_column and not self.column:
            raise ValueError(f"{self.rule} needs `column`")
        if self.rule == "allowed_values" and not self.values:
            raise ValueError("allowed_values needs `values`")
        if self.rule in {"min", "max"} and self.value is None:
            raise ValueError(f"{self.rule} needs `value`")
        if self.rule == "expression" and not (self.expr and self.name):
            raise ValueError("expression needs `name` and `expr`")
        return self

    def codes(self) -> list[str]:
        """Reason codes this rule can emit: ``<rule>:<column>`` or the expression's name."""
        if self.rule == "expression":
            assert self.name is not None
            return [self.name]
        if self.rule == "not_null":
            return [f"not_null:{c}" for c in self.columns]
        return [f"{self.rule}:{self.column}"]

    def columns_used(self) -> list[str]:
        return list(self.columns) + ([self.column] if self.column else [])


class Contract(_Strict):
    dataset: str
    description: str | None = None
    primary_key: list[str]
    columns: dict[str, ColumnSpec]
    foreign_keys: list[ForeignKey] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_exist(self) -> Contract:
        known = set(self.columns)
        used = list(self.primary_key) + [fk.column for fk in self.foreign_keys]
        for rule in self.rules:
            used += rule.columns_used()
        unknown = sorted({c for c in used if c not in known})
        if unknown:
            raise ValueError(f"rules or keys name columns not declared under `columns`: {unknown}")
        if not self.primary_key:
            raise ValueError("primary_key must name at least one column")
        return self

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def rule_descriptions(self) -> dict[str, str]:
        """Human-readable meaning of every reason code this contract can produce."""
        out: dict[str, str] = {"malformed_row": "the line does not split into the expected number of fields"}
        for name, spec in self.columns.items():
            out[f"type:{name}"] = f"{name} is not a valid {spec.type}"
            out[f"encoding:{name}"] = f"{name} contains bytes that are not valid UTF-8"
        for rule in self.rules:
            for code in rule.codes():
                out[code] = rule.description or _default_description(rule, code)
        out["duplicate_key"] = "another row of this batch has the same primary key with different content"
        for fk in self.foreign_keys:
            ref = f"{fk.references.dataset}.{fk.references.column}"
            out[f"parent_missing:{fk.column}"] = f"{fk.column} matches no {ref} in this or any earlier batch"
            out[f"parent_quarantined:{fk.column}"] = f"{fk.column} matches only quarantined rows of {ref}"
        return out


def _default_description(rule: Rule, code: str) -> str:
    if rule.rule == "not_null":
        return f"{code.split(':', 1)[1]} must not be empty"
    if rule.rule == "allowed_values":
        case = " (case-insensitive)" if rule.ignore_case else ""
        return f"{rule.column} must be one of {', '.join(rule.values)}{case}"
    if rule.rule == "min":
        return f"{rule.column} must be >= {rule.value:g}"
    if rule.rule == "max":
        return f"{rule.column} must be <= {rule.value:g}"
    return code


def load_contract(dataset: str, directory: Path | None = None) -> Contract:
    """Load and check one dataset's contract.

    Raises:
        ContractError: the file is missing, not YAML, or breaks the contract schema.
    """
    path = (directory or CONTRACTS_DIR) / f"{dataset}.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(f"no contract for dataset {dataset!r}: expected a file at {path}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"contract {path} is not valid YAML: {exc}") from exc
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(f"contract {path} is invalid: {exc}") from exc
    if contract.dataset != dataset:
        raise ContractError(f"contract {path} declares dataset {contract.dataset!r}, expected {dataset!r}")
    return contract


def load_contracts(directory: Path | None = None) -> dict[str, Contract]:
    """Load every dataset's contract and check that foreign keys point at declared columns.

    Raises:
        ContractError: a contract is invalid or a foreign key names an unknown dataset/column.
    """
    contracts = {name: load_contract(name, directory) for name in DATASETS}
    for contract in contracts.values():
        for fk in contract.foreign_keys:
            parent = contracts.get(fk.references.dataset)
            if parent is None or fk.references.column not in parent.columns:
                raise ContractError(
                    f"{contract.dataset}.{fk.column} references {fk.references.dataset}."
                    f"{fk.references.column}, which no contract declares"
                )
    return contracts
