"""The drills' fault proxy: a fatal fault stops everything after it, whichever thread sends it."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.fault_proxy import Fault, FaultProxy, fault_proxy


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    _Upstream.seen = []
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with fault_proxy(f"http://127.0.0.1:{upstream.server_address[1]}") as running:
            yield running
    finally:
        upstream.shutdown()
        upstream.server_close()


def _post(proxy: FaultProxy, path: str) -> int | None:
    """Status of a POST through the proxy on a new connection; None when it was dropped."""
    connection = http.client.HTTPConnection("127.0.0.1", proxy.server_address[1], timeout=10)
    try:
        connection.request("POST", path, body=b"{}")
        return connection.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        return None
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("fatal", "statuses", "seen"),
    [
        (False, [200, None, 200, 200], ["/first", "/second", "/third", "/fourth"]),
        # fatal: the fault's own request landed (its answer dropped), nothing after it
        (True, [200, None, None, None], ["/first", "/second"]),
    ],
    ids=["once", "fatal"],
)
def test_a_fatal_fault_drops_every_later_request_until_cleared(
    proxy: FaultProxy, fatal: bool, statuses: list[int | None], seen: list[str]
) -> None:
    fired: list[str] = []
    proxy.add(Fault("POST", "/second", after=lambda: fired.append("kill"), fatal=fatal))
    got = [_post(proxy, path) for path in ("/first", "/second", "/third", "/fourth")]
    assert fired == ["kill"]
    assert (got, _Upstream.seen) == (statuses, seen)
    proxy.clear()
    assert _post(proxy, "/fifth") == 200
    assert _Upstream.seen[-1] == "/fifth"
