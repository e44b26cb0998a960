"""Load and check the contracts: one ODCS v3 YAML file per dataset (``<dataset>.odcs.yaml``),
packaged beside this module or in a directory of the user's."""

from __future__ import annotations

from pathlib import Path

import yaml

from common.contracts.model import DATASETS, Contract
from common.contracts.odcs import check_against_standard, to_contract
from common.errors import ContractError

CONTRACTS_DIR = Path(__file__).parent
SUFFIX = ".odcs.yaml"


def contract_path(dataset: str, directory: Path | None = None) -> Path:
    """Where a dataset's contract file is expected."""
    return (directory or CONTRACTS_DIR) / f"{dataset}{SUFFIX}"


def load_contract(dataset: str, directory: Path | None = None) -> Contract:
    """Load and check one dataset's contract.

    Raises:
        ContractError: the file is missing, not YAML, breaks the ODCS v3 schema, or says something
            the pipeline cannot honour; the message names the file and the field.
    """
    path = contract_path(dataset, directory)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(f"no contract for dataset {dataset!r}: expected a file at {path}") from exc
    except yaml.YAMLError as exc:
        raise ContractError(f"contract {path} is not valid YAML: {exc}") from exc
    return to_contract(check_against_standard(raw, str(path)), dataset, str(path))


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
