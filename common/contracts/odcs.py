"""Read an Open Data Contract Standard (ODCS v3) document into the pipeline's :class:`Contract`.

The document is checked twice: against the standard's own JSON Schema (so a misspelt field such as
``requried`` is an error, not a silently ignored key) and by the standard's pydantic model. It is then
mapped onto our rule kinds. What we honour, field by field (the README lists the same):

- ``schema[0]``: exactly one object, named after the dataset; its ``description``.
- a property's ``name``, ``physicalType`` (Spark SQL: ``bigint``, ``int``, ``double``,
  ``decimal(p,s)``, ``string``, ``timestamp``, ``date``, ``boolean``) and a matching ``logicalType``;
  ``description``; ``required`` (→ ``not_null:<col>``); ``primaryKey`` with ``primaryKeyPosition``;
  ``unique`` (only on a single-column primary key, which is unique by construction);
  ``logicalTypeOptions.minimum`` / ``maximum`` (→ ``min:<col>`` / ``max:<col>``);
  ``relationships`` of type ``foreignKey`` with ``to: <dataset>.<column>`` (and our
  ``customProperties`` ``parkFor``: days a row whose parent has not arrived yet waits); ``quality``
  checks of the library metrics ``nullValues`` (→ ``not_null:<col>``) and ``invalidValues`` with
  ``arguments.validValues`` (→ ``allowed_values:<col>``), each with a ``severity`` and ``mustBe: 0``
  (row by row) or ``mustBeLessOrEqualTo`` / ``mustBeLessThan`` with ``unit: rows|percent`` (the
  rule's own limit: more breaking rows than that FAIL the dataset).
- the object's ``quality`` checks of ``type: custom`` with ``engine: spark-sql``: ``name`` (the reason
  code), ``implementation`` (a Spark SQL condition, true when a row breaks it), ``severity``,
  ``description``.
- ``customProperties`` (our extension points): on the object, ``quarantineThreshold`` (a share,
  0..1); on a property, ``normalize`` (``lower`` / ``upper``); on an ``invalidValues`` check,
  ``ignoreCase``.

Severity ``error`` quarantines the row; ``warning`` keeps it and counts it. Anything that would
constrain data but that we do not enforce (a ``pattern``, ``maxLength``, an ``sql`` check, ...) is
refused with the field named, so a contract never promises a check that does not run.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
from open_data_contract_standard.model import (
    CustomProperty,
    DataQuality,
    OpenDataContractStandard,
    SchemaObject,
    SchemaProperty,
)
from pydantic import ValidationError

from common.contracts.model import Contract
from common.errors import ContractError

# physicalType (Spark SQL spelling) -> (our column type, the logicalType it must be declared with)
_TYPES: dict[str, tuple[str, str]] = {
    "bigint": ("long", "integer"),
    "int": ("int", "integer"),
    "double": ("double", "number"),
    "string": ("string", "string"),
    "timestamp": ("timestamp", "timestamp"),
    "date": ("date", "date"),
    "boolean": ("boolean", "boolean"),
}
_SEVERITIES = {"error": "error", "warning": "warn"}
_SPARK_SQL = "spark-sql"
_HONOURED_OPTIONS = {"minimum": "min", "maximum": "max"}
# Fields of a property or check that only document (they never constrain a row): accepted, ignored.
_DOCUMENTARY_QUALITY_TYPES = {"text"}


def _schema_validator() -> jsonschema.protocols.Validator:
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text("utf-8")
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the document)"


def check_against_standard(document: Any, source: str) -> OpenDataContractStandard:
    """Validate a parsed YAML document against the ODCS JSON Schema and its pydantic model.

    Raises:
        ContractError: naming the file and the first offending field.
    """
    errors = sorted(_schema_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        # The deepest cause says the most ("'requried' was unexpected"), not the oneOf wrapper.
        deepest = max(first.context or [first], key=lambda e: len(list(e.absolute_path)))
        raise ContractError(
            f"contract {source} breaks the ODCS v3 schema at {_where(deepest.absolute_path)}: "
            f"{deepest.message}" + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else "")
        )
    try:
        return OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        raise ContractError(f"contract {source} is not an ODCS v3 document: {exc}") from exc


def _properties(items: list[CustomProperty] | None) -> dict[str, Any]:
    return {p.property: p.value for p in items or [] if p.property is not None}


class _Mapper:
    """Walks one ODCS document, building the keyword arguments of :class:`Contract`."""

    def __init__(self, dataset: str, source: str) -> None:
        self.dataset = dataset
        self.source = source
        self.not_null: list[str] = []
        self.rules: list[dict[str, Any]] = []
        self.columns: dict[str, dict[str, Any]] = {}
        self.keys: list[tuple[int, str]] = []
        self.foreign_keys: list[dict[str, Any]] = []

    def fail(self, where: str, message: str) -> ContractError:
        return ContractError(f"contract {self.source}, {where}: {message}")

    def severity(self, check: DataQuality, where: str) -> str:
        given = check.severity or "error"
        if given not in _SEVERITIES:
            raise self.fail(where, f"severity {given!r} is not one of {sorted(_SEVERITIES)}")
        return _SEVERITIES[given]

    def column_type(self, prop: SchemaProperty, where: str) -> str:
        physical = (prop.physicalType or "").strip().lower()
        if physical.startswith("decimal"):
            column_type, logical = physical.replace(" ", ""), "number"
        elif physical in _TYPES:
            column_type, logical = _TYPES[physical]
        else:
            raise self.fail(
                where,
                f"physicalType {prop.physicalType!r} is not one we read; expected one of "
                f"{sorted(_TYPES)} or decimal(p,s)",
            )
        if prop.logicalType != logical:
            raise self.fail(
                where,
                f"logicalType {prop.logicalType!r} does not match physicalType {physical!r}: "
                f"expected {logical!r}",
            )
        return column_type

    def column(self, index: int, prop: SchemaProperty) -> None:
        where = f"schema[0].properties[{index}] ({prop.name})"
        name = prop.name or ""
        if name in self.columns:
            raise self.fail(where, f"column {name!r} is declared twice")
        custom = _properties(prop.customProperties)
        unknown = sorted(set(custom) - {"normalize"})
        if unknown:
            raise self.fail(where, f"customProperties {unknown} are not ours; this level knows 'normalize'")
        spec: dict[str, Any] = {"type": self.column_type(prop, where)}
        if "normalize" in custom:
            spec["normalize"] = custom["normalize"]
        if prop.description:
            spec["description"] = prop.description
        self.columns[name] = spec
        if prop.required:
            self.not_null.append(name)
        if prop.primaryKey:
            self.keys.append((prop.primaryKeyPosition or 1, name))
        if prop.unique and not prop.primaryKey:
            raise self.fail(
                where, "unique is enforced only on the primary key; declare primaryKey: true or remove it"
            )
        options = dict(prop.logicalTypeOptions or {})
        unsupported = sorted(set(options) - set(_HONOURED_OPTIONS))
        if unsupported:
            raise self.fail(
                where,
                f"logicalTypeOptions {unsupported} are not enforced by this pipeline; "
                f"only {sorted(_HONOURED_OPTIONS)} are: remove them or express the check as a quality rule",
            )
        for option, kind in _HONOURED_OPTIONS.items():
            if option in options:
                self.rules.append({"rule": kind, "column": name, "value": options[option]})
        for rel_index, rel in enumerate(prop.relationships or []):
            target = rel.to if isinstance(rel.to, str) else None
            if (rel.type or "foreignKey") != "foreignKey" or target is None or target.count(".") != 1:
                raise self.fail(
                    f"{where}.relationships[{rel_index}]",
                    "expected a foreignKey with to: <dataset>.<column>",
                )
            parent, parent_column = target.split(".")
            self.foreign_keys.append(
                {
                    "column": name,
                    "references": {"dataset": parent, "column": parent_column},
                    "park_for_days": self.park_for(
                        rel.customProperties, f"{where}.relationships[{rel_index}]"
                    ),
                }
            )
        for q_index, check in enumerate(prop.quality or []):
            self.column_check(name, check, f"{where}.quality[{q_index}]")

    def park_for(self, items: list[CustomProperty] | None, where: str) -> int:
        """A relationship's ``parkFor`` (``7d``, or a whole number of days; 0 or absent: never park)."""
        custom = _properties(items)
        unknown = sorted(set(custom) - {"parkFor"})
        if unknown:
            raise self.fail(where, f"customProperties {unknown} are not ours; this level knows 'parkFor'")
        value = str(custom.get("parkFor", 0)).strip().lower()
        match = re.fullmatch(r"(\d+)d?", value)
        if match is None:
            raise self.fail(where, f"parkFor {value!r} is not a number of days: expected e.g. 7d, or 0")
        return int(match.group(1))

    def column_check(self, name: str, check: DataQuality, where: str) -> None:
        if (check.type or "library") in _DOCUMENTARY_QUALITY_TYPES:
            return
        metric = check.metric or check.rule
        if (check.type or "library") != "library" or metric not in ("nullValues", "invalidValues"):
            raise self.fail(
                where,
                f"a {check.type or 'library'} check of metric {metric!r} is not one we run; "
                "on a property we run the library metrics nullValues and invalidValues",
            )
        custom = _properties(check.customProperties)
        severity = self.severity(check, where)
        rule: dict[str, Any] = {"severity": severity}
        limit = self.limit(check, where)
        if limit is not None:
            rule["limit"] = limit
        if check.description:
            rule["description"] = check.description
        if metric == "nullValues":
            self.rules.append({"rule": "not_null", "columns": [name], **rule})
            return
        arguments = check.arguments or {}
        values = arguments.get("validValues")
        if not isinstance(values, list) or not values or set(arguments) != {"validValues"}:
            raise self.fail(where, "invalidValues needs arguments: {validValues: [...]} (and nothing else)")
        unknown = sorted(set(custom) - {"ignoreCase"})
        if unknown:
            raise self.fail(where, f"customProperties {unknown} are not ours; this check knows 'ignoreCase'")
        self.rules.append(
            {
                "rule": "allowed_values",
                "column": name,
                "values": [str(v) for v in values],
                "ignore_case": bool(custom.get("ignoreCase", False)),
                **rule,
            }
        )

    def limit(self, check: DataQuality, where: str) -> dict[str, Any] | None:
        """``mustBe: 0`` reads row by row: each offending row is quarantined (or warned about), the
        dataset bounded by its quarantine threshold. ``mustBeLessOrEqualTo`` / ``mustBeLessThan``
        with ``unit: rows`` or ``percent`` also limit how many rows may break the rule."""
        others = (
            "mustNotBe",
            "mustBeGreaterThan",
            "mustBeGreaterOrEqualTo",
            "mustBeBetween",
            "mustNotBeBetween",
        )
        if any(getattr(check, op) is not None for op in others):
            raise self.fail(
                where, "of the operators we honour mustBe: 0, mustBeLessOrEqualTo and mustBeLessThan"
            )
        if check.mustBe is not None:
            if check.mustBe != 0:
                raise self.fail(where, "mustBe must be 0 (each breaking row is handled by its severity)")
            return None
        unit = check.unit or "rows"
        if unit not in ("rows", "percent"):
            raise self.fail(where, f"unit {unit!r} is not rows or percent")
        if check.mustBeLessOrEqualTo is not None:
            return {"value": check.mustBeLessOrEqualTo, "unit": unit, "inclusive": True}
        if check.mustBeLessThan is not None:
            return {"value": check.mustBeLessThan, "unit": unit, "inclusive": False}
        raise self.fail(where, "expected an operator: mustBe: 0, mustBeLessOrEqualTo or mustBeLessThan")

    def object_check(self, index: int, check: DataQuality) -> None:
        where = f"schema[0].quality[{index}] ({check.name})"
        if (check.type or "library") in _DOCUMENTARY_QUALITY_TYPES:
            return
        if check.type != "custom" or check.engine != _SPARK_SQL or not isinstance(check.implementation, str):
            raise self.fail(
                where,
                f"on the object we run checks of type: custom, engine: {_SPARK_SQL}, "
                "with implementation: a Spark SQL condition that is true when a row breaks the rule",
            )
        if not check.name:
            raise self.fail(where, "a check needs a name: it is the reason code rows carry")
        rule: dict[str, Any] = {
            "rule": "expression",
            "name": check.name,
            "expr": check.implementation.strip(),
            "severity": self.severity(check, where),
        }
        if check.description:
            rule["description"] = check.description.strip()
        self.rules.append(rule)

    def contract(self, obj: SchemaObject) -> dict[str, Any]:
        custom = _properties(obj.customProperties)
        unknown = sorted(set(custom) - {"quarantineThreshold"})
        if unknown:
            raise self.fail(
                "schema[0]",
                f"customProperties {unknown} are not ours; this level knows 'quarantineThreshold'",
            )
        for index, prop in enumerate(obj.properties or []):
            self.column(index, prop)
        for index, check in enumerate(obj.quality or []):
            self.object_check(index, check)
        positions = [p for p, _ in self.keys]
        if len(set(positions)) != len(positions):
            raise self.fail("schema[0]", f"primaryKeyPosition values repeat: {sorted(positions)}")
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "description": obj.description,
            "primary_key": [name for _, name in sorted(self.keys)],
            "columns": self.columns,
            "foreign_keys": self.foreign_keys,
            "rules": ([{"rule": "not_null", "columns": self.not_null}] if self.not_null else []) + self.rules,
        }
        if "quarantineThreshold" in custom:
            out["quarantine_threshold"] = custom["quarantineThreshold"]
        return out


def to_contract(document: OpenDataContractStandard, dataset: str, source: str) -> Contract:
    """Map a checked ODCS document onto the dataset's :class:`Contract`.

    Raises:
        ContractError: the document says something we cannot honour, naming the file and field.
    """
    objects = document.schema_ or []
    if len(objects) != 1 or objects[0].name != dataset:
        found = [o.name for o in objects]
        raise ContractError(
            f"contract {source}: expected schema to hold exactly one object named {dataset!r}, found {found}"
        )
    mapped = _Mapper(dataset, source).contract(objects[0])
    try:
        return Contract.model_validate(mapped)
    except ValidationError as exc:
        raise ContractError(f"contract {source} is invalid: {exc}") from exc
