"""Small contracts written in the test itself, for tests about the engine rather than about the
packaged contracts: a change to ``common/contracts/*.odcs.yaml`` cannot move them."""

from __future__ import annotations

import yaml

from common.contracts.model import Contract
from common.contracts.odcs import check_against_standard, to_contract

_HEAD = """
apiVersion: v3.2.0
kind: DataContract
id: test-{name}
name: {name}
version: 1.0.0
status: active
schema:
- name: {name}
  physicalName: {name}
  physicalType: table
  logicalType: object
  properties:
"""

_KEY = """
  - name: id
    logicalType: integer
    physicalType: bigint
    primaryKey: true
    primaryKeyPosition: 1
    required: true
"""

# A parent: a key, a required bounded integer and an optional text.
PARENTS = (
    _KEY
    + """
  - name: size
    logicalType: integer
    physicalType: int
    required: true
    logicalTypeOptions:
      minimum: 1
  - name: label
    logicalType: string
    physicalType: string
"""
)

# Its child: a key and a required foreign key to parents.id.
CHILDREN = (
    _KEY
    + """
  - name: parent_id
    logicalType: integer
    physicalType: bigint
    required: true
    relationships:
    - type: foreignKey
      to: parents.id
"""
)


def inline_contract(name: str, properties: str) -> Contract:
    """The contract named ``name`` whose schema object holds ``properties`` (ODCS YAML)."""
    text = _HEAD.format(name=name) + properties
    return to_contract(
        check_against_standard(yaml.safe_load(text), f"<inline {name}>"), name, f"<inline {name}>"
    )
