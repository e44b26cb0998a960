"""Load and check the contract YAML files (one per dataset, packaged beside this module)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from common.contracts.model import DATASETS, Contract
from common.errors import ContractError

CONTRACTS_DIR = Path(__file__).parent


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
                    f"{contract.dataset}.{fk.column} references {fk.reference}, which no contract declares"
                )
    return contracts
