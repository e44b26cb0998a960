"""A fault-injecting HTTP proxy on 127.0.0.1, put between a job and MinIO or moto's server.

The job is pointed at the proxy's endpoint instead of the server's; the proxy forwards each request
unchanged (the Host header too, so SigV4 signatures still verify) unless a :class:`Fault` matches it.
A fault can answer with an error (S3's 503 SlowDown, DynamoDB's throttling), drop the connection
without an answer, or call a function (kill the job) before or after forwarding. Faults match on
method, a regular expression over the path and the ``X-Amz-Target`` header (DynamoDB's operation).

Test tooling only: it reads whole bodies into memory, which is fine for test-sized objects.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

# Headers that describe one connection, not the request: never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "expect"}

S3_SLOW_DOWN = (
    503,
    {"Content-Type": "application/xml"},
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>",
)
DYNAMODB_THROTTLED = (
    400,
    {"Content-Type": "application/x-amz-json-1.0"},
    b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
    b'"message":"The level of configured provisioned throughput for the table was exceeded."}',
)


@dataclass
class Fault:
    """What to do with matching requests.

    ``respond`` answers with (status, headers, body) instead of forwarding; ``drop`` closes the
    connection with no answer; ``before``/``after`` are called before forwarding (then the
    connection is dropped: the request never reaches the server) or after the server answered (then
    the answer is dropped). ``every`` fires on every n-th match, ``limit`` caps how often it fires.
    ``fatal``: once it fires, the proxy forwards no other request until cleared (it kills the job:
    nothing a dying process sends after that instant may land, whichever of its threads sent it).
    """

    method: str | None = None
    path: str = ""
    target: str = ""
    respond: tuple[int, dict[str, str], bytes] | None = None
    drop: bool = False
    before: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    every: int = 1
    limit: int | None = None
    fatal: bool = False
    matched: int = 0
    fired: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def claim(self, method: str, path: str, target: str) -> bool:
        """Count a request; True when this fault fires on it."""
        if self.method not in (None, method) or not self._pattern.search(path):
            return False
        if self.target and self.target not in target:
            return False
        self.matched += 1
        if self.matched % self.every or (self.limit is not None and self.fired >= self.limit):
            return False
        self.fired += 1
        return True


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the fault proxy only forwards to this machine, not {upstream}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self._lock = threading.Lock()
        self._halted = False  # a fatal fault fired: every later request is dropped

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.requests.clear()
            self._halted = False

    def decide(self, method: str, path: str, target: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            if self._halted:
                return _DROPPED
            for fault in self.faults:
                if fault.claim(method, path, target):
                    self._halted = fault.fatal
                    return fault
        return None


_DROPPED = Fault(drop=True)  # what a halted proxy does with every request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and a `100 Continue` for SDKs that expect one
    server: FaultProxy
    _upstreams: ClassVar[threading.local] = threading.local()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = getattr(self._upstreams, "connection", None)
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
            if connection is None:
                connection = http.client.HTTPConnection(*self.server.upstream, timeout=120)
                self._upstreams.connection = connection
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        connection.putheader(name, value)
                if body or self.command in ("PUT", "POST"):
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                connection = self._upstreams.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", length)
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        fault = self.server.decide(self.command, self.path, self.headers.get("X-Amz-Target", ""))
        if fault is not None and fault.respond is not None:
            status, headers, payload = fault.respond
            self._send(status, "Fault", list(headers.items()), payload)
            return
        if fault is not None and (fault.drop or fault.before is not None):
            if fault.before is not None:
                fault.before()
            self.close_connection = True
            return
        status, reason, headers, payload = self._forward(body)
        if fault is not None and fault.after is not None:
            fault.after()
            self.close_connection = True
            return
        self._send(status, reason, headers, payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A proxy to ``upstream`` (a 127.0.0.1 URL) for the block."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
