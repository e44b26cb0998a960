"""Batch manifests: which files of which dataset make up a batch.

Format (local path or s3:// URI)::

    {"batch_id": "20261122T014000Z-0001",
     "files": {"orders": ["s3://bucket/raw/orders/part-0.csv"], "order_items": [...], "products": [...]}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from common.contracts import DATASETS
from common.errors import ConfigurationError, ManifestError, StorageError
from common.io import storage

if TYPE_CHECKING:
    from common.settings import Settings


class _ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_id: str | None = None
    files: dict[str, list[str]]


@dataclass(frozen=True)
class Batch:
    batch_id: str
    files: dict[str, list[str]]  # dataset -> URIs, de-duplicated, in given order


def input_bytes(batch: Batch, settings: Settings) -> int:
    """The batch's raw input in bytes (a missing file counts 0: validating it says so)."""
    return sum(storage.size(uri, settings) or 0 for uris in batch.files.values() for uri in uris)


def _dedupe(uris: list[str]) -> list[str]:
    # The same file listed twice (a re-delivered event) must not be read twice.
    return list(dict.fromkeys(u.strip() for u in uris if u.strip()))


def resolve_batch(settings: Settings) -> Batch:
    """Build the batch from the manifest or from per-dataset flags.

    Raises:
        ManifestError: the manifest is missing, unreadable or malformed.
        ConfigurationError: no batch id, no files, unknown datasets, or both sources given.
    """
    flag_files = settings.files_by_dataset()
    if settings.manifest and flag_files:
        raise ConfigurationError(
            "give the batch's files either as --manifest or as per-dataset flags, not both"
        )
    batch_id = settings.batch_id
    files = flag_files
    if settings.manifest:
        try:
            text = storage.read_text(settings.manifest, settings)
        except FileNotFoundError as exc:
            raise ManifestError(f"manifest {settings.manifest} does not exist") from exc
        except (StorageError, UnicodeDecodeError) as exc:
            raise ManifestError(f"cannot read manifest {settings.manifest}: {exc}") from exc
        try:
            model = _ManifestModel.model_validate_json(text)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ManifestError(
                f"manifest {settings.manifest} is not valid: expected "
                '{"batch_id": "...", "files": {"orders": [...], ...}}: ' + str(exc)
            ) from exc
        if model.batch_id and batch_id and model.batch_id != batch_id:
            raise ManifestError(
                f"--batch-id {batch_id!r} disagrees with the manifest's batch_id {model.batch_id!r}"
            )
        batch_id = batch_id or model.batch_id
        files = model.files
    if not batch_id:
        raise ConfigurationError(
            "no batch id: pass --batch-id (ECOM_BATCH_ID) or put batch_id in the manifest"
        )
    unknown = sorted(set(files) - set(DATASETS))
    if unknown:
        raise ConfigurationError(f"unknown dataset(s) {unknown}: expected some of {list(DATASETS)}")
    files = {name: _dedupe(uris) for name, uris in files.items() if _dedupe(uris)}
    if not files:
        raise ConfigurationError(
            "the batch lists no files: pass --manifest or --orders/--order-items/--products"
        )
    _check_inputs(files, settings.input_prefixes())
    return Batch(batch_id, files)


def _check_inputs(files: dict[str, list[str]], prefixes: list[str]) -> None:
    """Refuse a batch that lists a file outside the allowed prefixes, or one object twice (under
    two spellings, or under two datasets): it would be read, and counted, twice. Objects are
    compared as Spark reads them (:func:`storage.spark_path`: one spelling per object).

    Raises:
        ConfigurationError: naming the file and what was expected.
    """
    # a prefix that names a folder keeps its trailing slash (resolving a local path drops it)
    allowed = [storage.spark_path(p).rstrip("/") + ("/" if p.endswith("/") else "") for p in prefixes]
    seen: dict[str, tuple[str, str]] = {}
    for dataset, uris in files.items():
        for uri in uris:
            key = storage.spark_path(uri)
            if allowed and not key.startswith(tuple(allowed)):
                raise ConfigurationError(
                    f"{uri} ({dataset}) is outside the allowed inputs {prefixes}: refused "
                    "(ECOM_ALLOWED_INPUT_PREFIXES)"
                )
            if key in seen:
                other_dataset, other = seen[key]
                raise ConfigurationError(
                    f"{uri} ({dataset}) is the same object as {other} ({other_dataset}): "
                    "expected each file once in a batch"
                )
            seen[key] = (dataset, uri)
