"""Data contracts: the model, its YAML files, reserved column names and reason codes."""

from common.contracts.loader import CONTRACTS_DIR, load_contract, load_contracts
from common.contracts.model import DATASETS, ColumnSpec, Contract, ForeignKey

__all__ = [
    "CONTRACTS_DIR",
    "DATASETS",
    "ColumnSpec",
    "Contract",
    "ForeignKey",
    "load_contract",
    "load_contracts",
]
