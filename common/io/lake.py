"""The lake's layout, in one place: where each table and each result lives under the lake root."""

from __future__ import annotations

from dataclasses import dataclass

from common.io.storage import join_uri


@dataclass(frozen=True)
class Lake:
    """Paths under a lake root (a local folder or ``s3://bucket/prefix``)."""

    root: str

    def validated(self, dataset: str) -> str:
        return join_uri(self.root, "validated", dataset)

    def quarantine(self, dataset: str) -> str:
        return join_uri(self.root, "quarantine", dataset)

    def parked(self, dataset: str) -> str:
        """Rows waiting for a parent that has not arrived yet."""
        return join_uri(self.root, "parked", dataset)

    def kpi(self, table: str) -> str:
        return join_uri(self.root, "kpi", table)

    def result(self, batch_id: str, job: str) -> str:
        return join_uri(self.root, "_results", batch_id, f"{job}.json")

    def pinned(self, batch_id: str, uri: str) -> str:
        """Where a batch keeps a copy of the version of ``uri`` (``s3://bucket/key``) it was cut
        with, when the object has changed since: ``_pinned/<batch>/<bucket>/<key>``."""
        return join_uri(self.root, "_pinned", batch_id, uri.split("://", 1)[-1])

    def runs(self) -> str:
        """The run ledger: one row per job run (append-only Delta table)."""
        return join_uri(self.root, "_runs")

    def reports_index(self) -> str:
        return join_uri(self.root, "_reports", "index.html")


def beside(result_uri: str, name: str) -> str:
    """A file in the same folder as a result (``…/B/validate.json`` -> ``…/B/<name>``)."""
    return result_uri.rsplit("/", 1)[0] + "/" + name


def report_uri(result_uri: str) -> str:
    """The batch's HTML report, beside its validation result."""
    return beside(result_uri, "report.html")
