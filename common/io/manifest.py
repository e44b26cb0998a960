"""Batch manifests: which files of which dataset make up a batch.

Format (local path or s3:// URI)::

    {"batch_id": "20261122T014000Z-0001",
     "files": {"orders": ["s3://bucket/raw/orders/part-0.csv"], "order_items": [...], "products": [...]},
     "versions": {"s3://bucket/raw/orders/part-0.csv": {"version_id": "3HL4k...", "etag": "9b2cf5..."}}}

``versions`` (optional; the dispatcher writes it from what ingestion recorded) pins each S3 object to
the content that arrived: a batch reads that version even after the key was overwritten, and a
re-run reads it again (:func:`pin_versions`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from common.contracts import DATASETS
from common.errors import ConfigurationError, ManifestError, StorageError
from common.io import storage
from common.io.storage import ObjectVersion

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)


class _VersionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version_id: str | None = None
    etag: str | None = None


class _ManifestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_id: str | None = None
    files: dict[str, list[str]]
    versions: dict[str, _VersionModel] = {}


@dataclass(frozen=True)
class Batch:
    batch_id: str
    files: dict[str, list[str]]  # dataset -> URIs, de-duplicated, in given order
    versions: dict[str, ObjectVersion] = field(default_factory=dict)  # URI -> as it arrived
    read_from: dict[str, str] = field(default_factory=dict)  # URI -> the copy of that version read
    unreadable: dict[str, str] = field(default_factory=dict)  # URI -> why its version cannot be read


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
    versions: dict[str, ObjectVersion] = {}
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
        versions = {uri.strip(): ObjectVersion(v.version_id, v.etag) for uri, v in model.versions.items()}
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
    listed = {uri for uris in files.values() for uri in uris}
    strays = sorted(uri for uri in versions if uri not in listed or not storage.is_s3(uri))
    if strays:
        raise ManifestError(
            f"manifest {settings.manifest} records versions of {strays}: expected versions of the "
            "S3 objects its files list only"
        )
    return Batch(batch_id, files, versions)


def pin_versions(batch: Batch, copies: Callable[[str], str], settings: Settings) -> Batch:
    """Make the batch read each object as it arrived (its recorded version): in place while the
    object is still that version, else from a copy of that version at ``copies(uri)`` (made again
    on every run, so a re-run reads the same bytes). An object that changed and kept no version
    of what arrived (an unversioned bucket), or whose version is gone, is unreadable: the batch
    fails on that file and says why.

    Raises:
        StorageError: S3 could not be asked or the copy could not be made.
    """
    read_from: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for uri, recorded in batch.versions.items():
        now = storage.current_version(uri, settings)
        if now is not None and recorded.same_as(now):
            continue
        if not recorded.version_id:
            if now is not None:  # (a missing object: reading it says so)
                unreadable[uri] = (
                    f"changed since it arrived (ETag {now.etag}, recorded {recorded.etag}) and no "
                    "version of it was recorded: expected the object as it arrived; upload it again"
                )
            continue
        target = copies(uri)
        try:
            storage.copy_version(uri, recorded.version_id, target, settings)
        except FileNotFoundError:
            unreadable[uri] = (
                f"its version {recorded.version_id}, recorded on arrival, no longer exists (the "
                "object changed since and that version was removed): expected the object as it arrived"
            )
            continue
        log.info("%s changed since it arrived: version %s read from %s", uri, recorded.version_id, target)
        read_from[uri] = target
    return replace(batch, read_from=read_from, unreadable=unreadable)


def changed_since_pinned(batch: Batch, settings: Settings) -> dict[str, str]:
    """The objects read in place that are no longer their recorded version (overwritten while
    the batch read them), with what to do: the batch's rows may mix two contents.

    Raises:
        StorageError: S3 could not be asked.
    """
    changed: dict[str, str] = {}
    for uri, recorded in batch.versions.items():
        if uri in batch.read_from or uri in batch.unreadable:
            continue
        now = storage.current_version(uri, settings)
        if now is None or not recorded.same_as(now):
            remedy = (
                "re-run the batch, which reads the version recorded on arrival"
                if recorded.version_id
                else "upload it again (no version of what arrived was recorded)"
            )
            changed[uri] = f"changed while this batch read it; {remedy}"
    return changed


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
