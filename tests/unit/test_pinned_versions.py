"""A batch reads each S3 object as it arrived: the version its manifest records (moto's S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from common.errors import ManifestError
from common.io import storage
from common.io.lake import Lake
from common.io.manifest import Batch, changed_since_pinned, pin_versions, resolve_batch
from common.io.storage import ObjectVersion
from tests.conftest import make_settings

REGION, BUCKET = "us-east-1", "ecom-pins"
LAKE = f"s3://{BUCKET}/lake"
URI = f"s3://{BUCKET}/raw/orders/part-0.csv"
FIRST, SECOND = b"order_id\n1\n", b"order_id\n2\n3\n"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ECOM_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def _arrive(s3: Any, body: bytes = FIRST, versioned: bool = True) -> ObjectVersion:
    """Put the object as the shop does; what ingestion records of it (from S3's event)."""
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket=BUCKET, Key="raw/orders/part-0.csv", Body=body)
    return ObjectVersion(put.get("VersionId"), put["ETag"].strip('"'))


def _overwrite(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="raw/orders/part-0.csv", Body=SECOND)


def _pinned(recorded: ObjectVersion) -> Batch:
    batch = Batch("b-1", {"orders": [URI]}, {URI: recorded})
    return pin_versions(batch, partial(Lake(LAKE).pinned, "b-1"), make_settings(lake_root=LAKE))


def _content(uri: str) -> bytes:
    return storage.read_text(uri, make_settings()).encode()


def test_an_object_still_as_it_arrived_is_read_in_place(s3: Any) -> None:
    batch = _pinned(_arrive(s3))
    assert (batch.read_from, batch.unreadable) == ({}, {})
    assert URI not in batch.read_from  # read in place
    assert changed_since_pinned(batch, make_settings()) == {}


def test_an_overwritten_object_is_read_from_a_copy_of_its_recorded_version(s3: Any) -> None:
    recorded = _arrive(s3)
    _overwrite(s3)
    batch = _pinned(recorded)
    copy = f"{LAKE}/_pinned/b-1/{BUCKET}/raw/orders/part-0.csv"
    assert batch.read_from == {URI: copy}
    assert _content(copy) == FIRST and _content(URI) == SECOND
    # the copy is not "changed while read": the check looks at objects read in place only
    assert changed_since_pinned(batch, make_settings()) == {}
    # a re-run reads the same bytes, however often the key changed since
    s3.put_object(Bucket=BUCKET, Key="raw/orders/part-0.csv", Body=b"order_id\n9\n")
    assert _content(_pinned(recorded).read_from[URI]) == FIRST


def test_a_deleted_object_is_read_from_its_recorded_version(s3: Any) -> None:
    recorded = _arrive(s3)
    s3.delete_object(Bucket=BUCKET, Key="raw/orders/part-0.csv")  # a delete marker, in a versioned bucket
    assert _content(_pinned(recorded).read_from[URI]) == FIRST


def test_a_changed_object_whose_version_is_gone_is_unreadable(s3: Any) -> None:
    recorded = _arrive(s3)
    _overwrite(s3)
    assert recorded.version_id
    s3.delete_object(Bucket=BUCKET, Key="raw/orders/part-0.csv", VersionId=recorded.version_id)
    batch = _pinned(recorded)
    assert batch.read_from == {}
    assert batch.unreadable[URI].startswith(
        f"its version {recorded.version_id}, recorded on arrival, no longer"
    )


def test_a_changed_object_of_an_unversioned_bucket_is_unreadable(s3: Any) -> None:
    recorded = _arrive(s3, versioned=False)
    assert recorded.version_id is None
    _overwrite(s3)
    batch = _pinned(recorded)
    assert batch.read_from == {}
    message = batch.unreadable[URI]
    assert message.startswith("changed since it arrived (ETag ") and f"recorded {recorded.etag}" in message
    assert "2\n3" not in message  # names versions, never the content


def test_an_object_overwritten_while_the_batch_read_it_is_reported(s3: Any) -> None:
    versioned = _pinned(_arrive(s3))
    _overwrite(s3)
    assert changed_since_pinned(versioned, make_settings()) == {
        URI: "changed while this batch read it; re-run the batch, which reads the version recorded on arrival"
    }


def test_a_manifest_may_pin_only_the_s3_objects_it_lists(tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    versions = {
        URI: {"version_id": "v1", "etag": "e1"},
        f"s3://{BUCKET}/raw/orders/other.csv": {"etag": "e2"},
    }
    manifest.write_text(json.dumps({"batch_id": "b-1", "files": {"orders": [URI]}, "versions": versions}))
    with pytest.raises(ManifestError, match=r"records versions of \['s3://ecom-pins/raw/orders/other.csv'\]"):
        resolve_batch(make_settings(manifest=str(manifest)))
    del versions[f"s3://{BUCKET}/raw/orders/other.csv"]
    manifest.write_text(json.dumps({"batch_id": "b-1", "files": {"orders": [URI]}, "versions": versions}))
    assert resolve_batch(make_settings(manifest=str(manifest))).versions == {URI: ObjectVersion("v1", "e1")}


def test_an_object_of_a_suspended_bucket_is_compared_by_its_etag(s3: Any) -> None:
    """Versioning suspended: each new upload replaces the object's only version (S3's "null"
    version, which ingestion does not record): a changed object is unreadable, not read as its
    replacement."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=BUCKET, Key="raw/orders/part-0.csv", Body=FIRST)
    recorded = ObjectVersion(None, put["ETag"].strip('"'))  # what ingestion records of "null"
    assert storage.current_version(URI, make_settings()) == recorded
    _overwrite(s3)
    assert _pinned(recorded).unreadable[URI].startswith("changed since it arrived (ETag ")
