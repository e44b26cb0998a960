from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.contracts import DATASETS, load_contract, load_contracts
from common.contracts.loader import contract_path
from common.contracts.model import RuleLimit
from common.errors import ContractError


def test_packaged_contracts_declare_the_thelook_layout() -> None:
    contracts = load_contracts()
    assert contracts["orders"].column_names == [
        "order_id",
        "user_id",
        "status",
        "created_at",
        "returned_at",
        "shipped_at",
        "delivered_at",
        "num_of_item",
    ]
    assert contracts["order_items"].column_names == [
        "id",
        "order_id",
        "user_id",
        "product_id",
        "status",
        "created_at",
        "shipped_at",
        "delivered_at",
        "returned_at",
        "sale_price",
    ]
    assert contracts["products"].column_names == [
        "id",
        "sku",
        "cost",
        "category",
        "name",
        "brand",
        "retail_price",
        "department",
    ]
    assert [(fk.column, fk.references.dataset) for fk in contracts["order_items"].foreign_keys] == [
        ("order_id", "orders"),
        ("product_id", "products"),
    ]


def test_required_columns_match_the_issue() -> None:
    contracts = load_contracts()

    def not_null(name: str) -> set[str]:
        return {c for r in contracts[name].rules if r.rule == "not_null" for c in r.columns}

    assert not_null("orders") == {"order_id", "user_id", "status", "created_at"}
    assert not_null("order_items") == {
        "id",
        "order_id",
        "user_id",
        "product_id",
        "status",
        "created_at",
        "sale_price",
    }
    assert not_null("products") == {"id", "category", "cost", "retail_price"}


def _orders() -> dict[str, Any]:
    """The packaged orders contract as a plain document, to be edited by a test."""
    return yaml.safe_load(contract_path("orders").read_text(encoding="utf-8"))


def _prop(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in document["schema"][0]["properties"] if p["name"] == name)


def _load(tmp_path: Path, document: dict[str, Any]) -> None:
    (tmp_path / "orders.odcs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    load_contract("orders", tmp_path)


def test_a_foreign_key_to_an_undeclared_column_is_rejected(tmp_path: Path) -> None:
    for name in DATASETS:
        shutil.copy(contract_path(name), tmp_path)
    items = yaml.safe_load((tmp_path / "order_items.odcs.yaml").read_text())
    _prop(items, "product_id")["relationships"] = [{"type": "foreignKey", "to": "products.product_id"}]
    (tmp_path / "order_items.odcs.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    with pytest.raises(ContractError, match=r"order_items.product_id references products.product_id"):
        load_contracts(tmp_path)


def test_a_physical_type_we_cannot_read_is_rejected_by_field(tmp_path: Path) -> None:
    document = _orders()
    _prop(document, "user_id")["physicalType"] = "varchar(10)"
    with pytest.raises(
        ContractError, match=r"schema\[0\]\.properties\[1\] \(user_id\): physicalType 'varchar"
    ):
        _load(tmp_path, document)


def test_a_logical_type_that_contradicts_the_physical_one_is_rejected(tmp_path: Path) -> None:
    document = _orders()
    _prop(document, "user_id")["logicalType"] = "number"
    with pytest.raises(
        ContractError,
        match=r"\(user_id\): logicalType 'number' does not match physicalType 'bigint': expected 'integer'",
    ):
        _load(tmp_path, document)


def test_a_misspelt_field_is_rejected_by_the_standards_schema(tmp_path: Path) -> None:
    """The standard's pydantic model alone ignores unknown nested keys: `requried` would silently
    drop a not-null check. The JSON Schema refuses it, naming the place."""
    document = _orders()
    _prop(document, "user_id")["requried"] = True
    with pytest.raises(ContractError, match=r"schema\[0\]\.properties\[1\].*'requried' was unexpected"):
        _load(tmp_path, document)


def test_a_check_we_do_not_run_is_refused_not_ignored(tmp_path: Path) -> None:
    document = _orders()
    _prop(document, "status")["logicalTypeOptions"] = {"maxLength": 20}
    with pytest.raises(
        ContractError, match=r"\(status\): logicalTypeOptions \['maxLength'\] are not enforced"
    ):
        _load(tmp_path, document)
    document = _orders()
    document["schema"][0]["quality"].append({"type": "sql", "query": "SELECT 1", "mustBe": 1})
    with pytest.raises(ContractError, match=r"schema\[0\]\.quality\[2\].*type: custom, engine: spark-sql"):
        _load(tmp_path, document)


def test_unique_is_honoured_only_on_the_primary_key(tmp_path: Path) -> None:
    document = _orders()
    _prop(document, "order_id")["unique"] = True
    _load(tmp_path, document)  # the key is unique by construction
    _prop(document, "user_id")["unique"] = True
    with pytest.raises(ContractError, match=r"\(user_id\): unique is enforced only on the primary key"):
        _load(tmp_path, document)


def test_an_unknown_severity_is_rejected(tmp_path: Path) -> None:
    document = _orders()
    document["schema"][0]["quality"][0]["severity"] = "info"
    with pytest.raises(ContractError, match=r"severity 'info' is not one of \['error', 'warning'\]"):
        _load(tmp_path, document)


def test_missing_contract_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"expected a file at .*orders\.odcs\.yaml"):
        load_contract("orders", tmp_path)


def test_a_column_may_not_take_a_reserved_name(tmp_path: Path) -> None:
    document = _orders()
    document["schema"][0]["properties"].append(
        {"name": "_batch_id", "logicalType": "string", "physicalType": "string"}
    )
    with pytest.raises(ContractError, match=r"\['_batch_id'\] start with '_', which is reserved"):
        _load(tmp_path, document)


def test_the_document_must_describe_its_own_dataset(tmp_path: Path) -> None:
    document = _orders()
    document["schema"][0]["name"] = "order"
    with pytest.raises(ContractError, match=r"exactly one object named 'orders', found \['order'\]"):
        _load(tmp_path, document)


def test_the_odcs_fields_map_onto_our_rule_kinds() -> None:
    """Each honoured ODCS field, read from the packaged files, becomes the rule it stands for."""
    contracts = load_contracts()
    orders = contracts["orders"]
    assert orders.primary_key == ["order_id"]
    assert orders.columns["status"].normalize == "lower"
    assert orders.columns["num_of_item"].type == "int"
    assert orders.quarantine_threshold == 0.05
    assert [r.rule for r in orders.rules] == ["not_null", "allowed_values", "min", "expression", "expression"]
    assert orders.rules_of("warn")[0][0] == "timestamps_out_of_order"
    assert contracts["products"].columns["cost"].type == "decimal(12,2)"


def test_each_rule_kind_owns_its_codes_descriptions_and_condition() -> None:
    rules = {type(r).__name__: r for r in load_contracts()["order_items"].rules}
    assert rules["AllowedValuesRule"].conditions() == [
        (
            "allowed_values:status",
            "lower(`status`) NOT IN ('pending', 'processing', 'shipped', 'delivered', 'complete', "
            "'cancelled', 'returned')",
        )
    ]
    assert rules["MinRule"].conditions() == [("min:sale_price", "`sale_price` < 0")]
    assert rules["MinRule"].descriptions() == {"min:sale_price": "sale_price must be >= 0"}
    assert rules["NotNullRule"].conditions()[0] == ("not_null:id", "`_raw_id` IS NULL")


def test_a_quality_operator_we_cannot_honour_is_refused(tmp_path: Path) -> None:
    document = _orders()
    _prop(document, "status")["quality"][0]["mustBe"] = 3
    with pytest.raises(ContractError, match=r"\(status\)\.quality\[0\]: mustBe must be 0"):
        _load(tmp_path, document)
    document = _orders()
    check = _prop(document, "status")["quality"][0]
    del check["mustBe"]
    check.update(mustBeLessThan=5, unit="gallons")
    with pytest.raises(ContractError, match=r"unit 'gallons' is not rows or percent"):
        _load(tmp_path, document)
    check["unit"] = "percent"
    _load(tmp_path, document)
    [rule] = [r for r in load_contract("orders", tmp_path).rules if r.rule == "allowed_values"]
    assert rule.limit is not None and (rule.limit.value, rule.limit.unit, rule.limit.inclusive) == (
        5,
        "percent",
        False,
    )


@pytest.mark.parametrize(
    ("limit", "broken", "read", "exceeded"),
    [
        (RuleLimit(value=10, unit="percent"), 1, 10, False),  # at most 10%: exactly 10% is allowed
        (RuleLimit(value=10, unit="percent", inclusive=False), 1, 10, True),  # fewer than 10%
        (RuleLimit(value=10, unit="percent"), 2, 10, True),
        (RuleLimit(value=2), 2, 1000, False),  # rows
        (RuleLimit(value=2), 3, 1000, True),
        (RuleLimit(value=0, unit="percent"), 0, 0, False),  # nothing read: nothing broken
    ],
)
def test_a_rule_limit_is_exceeded_only_beyond_its_bound(
    limit: RuleLimit, broken: int, read: int, exceeded: bool
) -> None:
    assert limit.exceeded(broken, read) is exceeded
