from __future__ import annotations

from pathlib import Path

import pytest

from common.contracts import load_contract, load_contracts
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


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "orders.yaml").write_text(body)
    return tmp_path


def test_rule_naming_an_undeclared_column_is_rejected(tmp_path: Path) -> None:
    directory = _write(
        tmp_path,
        "dataset: orders\nprimary_key: [order_id]\ncolumns: {order_id: {type: long}}\n"
        "rules: [{rule: not_null, columns: [user_id]}]\n",
    )
    with pytest.raises(ContractError, match="user_id"):
        load_contract("orders", directory)


def test_unknown_type_is_rejected(tmp_path: Path) -> None:
    directory = _write(
        tmp_path, "dataset: orders\nprimary_key: [order_id]\ncolumns: {order_id: {type: bigint}}\n"
    )
    with pytest.raises(ContractError, match="unknown type 'bigint'"):
        load_contract("orders", directory)


def test_misspelled_rule_field_is_rejected(tmp_path: Path) -> None:
    directory = _write(
        tmp_path,
        "dataset: orders\nprimary_key: [order_id]\ncolumns: {order_id: {type: long}}\n"
        "rules: [{rule: min, column: order_id, vaule: 1}]\n",
    )
    with pytest.raises(ContractError, match="vaule"):
        load_contract("orders", directory)


def test_missing_contract_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="expected a file at"):
        load_contract("orders", tmp_path)


def test_a_column_may_not_take_a_reserved_name(tmp_path: Path) -> None:
    directory = _write(
        tmp_path,
        "dataset: orders\nprimary_key: [order_id]\n"
        "columns: {order_id: {type: long}, _batch_id: {type: string}}\n",
    )
    with pytest.raises(ContractError, match=r"\['_batch_id'\] start with '_', which is reserved"):
        load_contract("orders", directory)


def test_an_unknown_rule_kind_is_rejected_by_name(tmp_path: Path) -> None:
    directory = _write(
        tmp_path,
        "dataset: orders\nprimary_key: [order_id]\ncolumns: {order_id: {type: long}}\n"
        "rules: [{rule: between, column: order_id}]\n",
    )
    with pytest.raises(ContractError, match="between"):
        load_contract("orders", directory)


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
