"""Put a generated batch where the pipeline finds one: the landing zone's S3 layout.

Raw parts go to ``<root>/raw/<dataset>/<batch_id>/<file>`` (the ingestion Lambda's
``raw/<dataset>/[<group>/]<file>``) and the manifest to ``<root>/manifests/<batch_id>.json``,
the same shape and place the dispatcher writes for a real batch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from common.errors import ConfigurationError
from common.io.storage import join_uri, upload_file, write_text
from common.settings import Settings

log = logging.getLogger(__name__)


def stage_batch(manifest_path: Path, root_uri: str, settings: Settings) -> str:
    """Upload the files a local manifest lists and write its landing-zone manifest; returns its URI.

    Raises:
        ConfigurationError: the local manifest is unreadable or malformed.
        StorageError: a file cannot be uploaded.
    """
    try:
        local = json.loads(manifest_path.read_text(encoding="utf-8"))
        batch_id, files = str(local["batch_id"]), dict(local["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the generated manifest {manifest_path}: {exc}") from exc
    staged: dict[str, list[str]] = {}
    for dataset, paths in files.items():
        staged[dataset] = []
        for path in map(Path, paths):
            uri = join_uri(root_uri, "raw", dataset, batch_id, path.name)
            upload_file(path, uri, settings)
            staged[dataset].append(uri)
    manifest_uri = join_uri(root_uri, "manifests", f"{batch_id}.json")
    write_text(manifest_uri, json.dumps({"batch_id": batch_id, "files": staged}, indent=2) + "\n", settings)
    log.info("staged batch %s: %d files, manifest %s", batch_id, sum(map(len, staged.values())), manifest_uri)
    return manifest_uri
