"""Local paths and S3 URIs behind one small API: boto3 for small objects (manifests, results,
the first bytes of raw files); Spark reaches the same URIs through Hadoop S3A (:func:`spark_path`).

Business code calls these functions; it never builds a boto3 client itself.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from common.errors import StorageError
from common.io import aws

if TYPE_CHECKING:
    from common.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


@dataclass(frozen=True)
class ObjectVersion:
    """Which content of an S3 object: its version id (a versioned bucket) and its ETag (quotes
    stripped); either may be unknown."""

    version_id: str | None = None
    etag: str | None = None

    def same_as(self, other: ObjectVersion) -> bool:
        """The same content as far as both say: by version id when both have one, else by ETag
        (True when they share neither)."""
        if self.version_id and other.version_id:
            return self.version_id == other.version_id
        if self.etag and other.etag:
            return self.etag == other.etag
        return True


def is_s3(uri: str) -> bool:
    """True for ``s3://`` (and ``s3a://``) URIs."""
    return uri.startswith(("s3://", "s3a://"))


def parse_s3(uri: str) -> S3Location:
    """Split ``s3://bucket/key`` into bucket and key.

    Raises:
        StorageError: the URI has no bucket.
    """
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return S3Location(parsed.netloc, parsed.path.lstrip("/"))


def local_path(uri: str) -> Path:
    """Turn a local path or ``file://`` URI into a Path."""
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri)


def s3_client(settings: Settings) -> Any:
    """The run's S3 client for the configured endpoint (AWS when none is set)."""
    return aws.client(settings, "s3")


def _is_not_found(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"}


def exists(uri: str, settings: Settings) -> bool:
    """True when the file or object exists.

    Raises:
        StorageError: S3 answered with something other than found/not found.
    """
    if not is_s3(uri):
        return local_path(uri).is_file()
    loc = parse_s3(uri)
    try:
        s3_client(settings).head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except ClientError as exc:
        if _is_not_found(exc):
            return False
        raise StorageError(f"cannot check {uri}: {exc}") from exc


def read_text(uri: str, settings: Settings) -> str:
    """Read a UTF-8 text file or object.

    Raises:
        FileNotFoundError: it does not exist.
        StorageError: it cannot be read.
    """
    if not is_s3(uri):
        return local_path(uri).read_text(encoding="utf-8")
    loc = parse_s3(uri)
    try:
        body = s3_client(settings).get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
    except ClientError as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(uri) from exc
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    return str(body.decode("utf-8"))


def write_text(uri: str, text: str, settings: Settings, content_type: str = "application/json") -> None:
    """Write a UTF-8 text file (atomically, via rename) or object.

    Raises:
        StorageError: it cannot be written.
    """
    if not is_s3(uri):
        path = local_path(uri)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc}") from exc
        return
    loc = parse_s3(uri)
    try:
        s3_client(settings).put_object(
            Bucket=loc.bucket, Key=loc.key, Body=text.encode("utf-8"), ContentType=content_type
        )
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"cannot write {uri}: {exc}") from exc


def spark_path(uri: str) -> str:
    """The path Spark and Hadoop read and write for ``uri``: ``s3://`` becomes ``s3a://`` (Hadoop S3A).

    The one place the scheme is mapped; local paths are made absolute.
    """
    if uri.startswith("s3://"):
        return "s3a://" + uri.removeprefix("s3://")
    if is_s3(uri):
        return uri
    return str(local_path(uri).resolve())


def catalog_uri(uri: str) -> str:
    """The location a catalog (Glue, Athena) records for ``uri``: ``s3://`` for S3 (``s3a://`` is
    Hadoop's name for it), an absolute ``file://`` URI for a local path."""
    if uri.startswith("s3a://"):
        return "s3://" + uri.removeprefix("s3a://")
    if is_s3(uri):
        return uri
    return local_path(uri).resolve().as_uri()


def read_head(uri: str, limit: int, settings: Settings) -> tuple[bytes, int]:
    """The first ``limit`` bytes of a file or object, and its whole size, without reading the rest.

    Raises:
        IsADirectoryError: a local path is a directory.
        FileNotFoundError: it does not exist (or is a "folder" key).
        StorageError: it cannot be read.
    """
    if not is_s3(uri):
        path = local_path(uri)
        if path.is_dir():
            raise IsADirectoryError(uri)
        if not path.is_file():
            raise FileNotFoundError(uri)
        with path.open("rb") as handle:
            return handle.read(limit), path.stat().st_size
    loc = parse_s3(uri)
    if not loc.key or loc.key.endswith("/"):
        raise FileNotFoundError(uri)
    try:
        response = s3_client(settings).get_object(
            Bucket=loc.bucket, Key=loc.key, Range=f"bytes=0-{limit - 1}"
        )
        data = response["Body"].read()
    except ClientError as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(uri) from exc
        if exc.response.get("Error", {}).get("Code") == "InvalidRange":  # a zero-byte object
            return b"", 0
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"cannot read {uri}: {exc}") from exc
    content_range = str(response.get("ContentRange") or "")
    size = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else len(data)
    return bytes(data), size


def size(uri: str, settings: Settings) -> int | None:
    """The size in bytes of a file or object; None when it is missing or cannot be asked (the
    job that reads it says why)."""
    try:
        if not is_s3(uri):
            path = local_path(uri)
            return path.stat().st_size if path.is_file() else None
        loc = parse_s3(uri)
        return int(s3_client(settings).head_object(Bucket=loc.bucket, Key=loc.key)["ContentLength"])
    except (OSError, ClientError, BotoCoreError, ValueError):
        return None


def current_version(uri: str, settings: Settings) -> ObjectVersion | None:
    """The S3 object's current version id and ETag; None when it does not exist.

    Raises:
        StorageError: S3 answered with something other than found/not found.
    """
    loc = parse_s3(uri)
    try:
        head = s3_client(settings).head_object(Bucket=loc.bucket, Key=loc.key)
    except ClientError as exc:
        if _is_not_found(exc):
            return None
        raise StorageError(f"cannot check {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"cannot check {uri}: {exc}") from exc
    etag = str(head.get("ETag") or "").strip('"') or None
    version = head.get("VersionId")  # "null": a bucket whose versioning is suspended (or was off)
    return ObjectVersion(version if version and version != "null" else None, etag)


def copy_version(uri: str, version_id: str, target: str, settings: Settings) -> None:
    """Copy one version of the S3 object ``uri`` to ``target``: server-side (multipart when large)
    to an S3 URI, downloaded to a local path.

    Raises:
        FileNotFoundError: that version (or the object) does not exist.
        StorageError: it cannot be copied.
    """
    loc = parse_s3(uri)
    client = s3_client(settings)
    try:
        if is_s3(target):
            dest = parse_s3(target)
            source = {"Bucket": loc.bucket, "Key": loc.key, "VersionId": version_id}
            client.copy(source, dest.bucket, dest.key)
        else:
            path = local_path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(loc.bucket, loc.key, str(path), ExtraArgs={"VersionId": version_id})
    except ClientError as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(uri) from exc
        raise StorageError(f"cannot copy version {version_id} of {uri} to {target}: {exc}") from exc
    except (BotoCoreError, OSError) as exc:
        raise StorageError(f"cannot copy version {version_id} of {uri} to {target}: {exc}") from exc


def join_uri(root: str, *parts: str) -> str:
    """Join path segments onto a local root or an S3 URI."""
    if is_s3(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root).joinpath(*parts))


def upload_file(path: Path, uri: str, settings: Settings) -> None:
    """Copy a local file to ``uri`` (an S3 object, multipart when large, or a local path).

    Raises:
        StorageError: it cannot be read or written.
    """
    if not is_s3(uri):
        target = local_path(uri)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        except OSError as exc:
            raise StorageError(f"cannot copy {path} to {uri}: {exc}") from exc
        return
    loc = parse_s3(uri)
    try:
        s3_client(settings).upload_file(str(path), loc.bucket, loc.key)
    except (ClientError, BotoCoreError, OSError) as exc:
        raise StorageError(f"cannot upload {path} to {uri}: {exc}") from exc
