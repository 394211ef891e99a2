"""The node's local HTTP endpoint: `/status` (JSON) and `/metrics` (Prometheus text format).

It listens on 127.0.0.1 unless the node config sets `status_host`; off loopback every request must carry
`Authorization: Bearer <status_token>` (the config refuses a non-loopback host without a token). It is for
the hospital's own operators and monitoring, never for peers. The server is deliberately tiny (HTTP/1.0, GET only, one request per connection, bounded request size),
so it needs no web framework and cannot be made to hold much: a slow or malformed client is cut off.
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4096
CLIENT_TIMEOUT_S = 5.0


class Metrics:
    """The Prometheus series one daemon exports, in a registry of its own (not the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.height = Gauge("fednode_committed_height", "Height of the last committed block", registry=self.registry)
        self.round = Gauge("fednode_round", "Current federated round", registry=self.registry)
        self.view = Gauge("fednode_view", "Current PBFT view", registry=self.registry)
        self.peers = Gauge("fednode_connected_peers", "Connected consortium members", registry=self.registry)
        self.accuracy = Gauge("fednode_global_accuracy", "Held-out accuracy of the global model",
                              registry=self.registry)
        self.rejected = Counter("fednode_rejected_messages", "Peer messages rejected, by reason", ["reason"],
                                registry=self.registry)
        self.phase_seconds = Counter("fednode_phase_seconds", "Time spent per round phase", ["phase"],
                                     registry=self.registry)
        self.bytes_sent = Counter("fednode_bytes_sent", "Bytes sent to peers, by kind", ["kind"],
                                  registry=self.registry)

    def bytes_sent_by_kind(self) -> dict[str, int]:
        return {sample.labels["kind"]: int(sample.value) for metric in self.bytes_sent.collect()
                for sample in metric.samples if sample.name.endswith("_total")}

    def rejected_by_reason(self) -> dict[str, int]:
        return {sample.labels["reason"]: int(sample.value) for metric in self.rejected.collect()
                for sample in metric.samples if sample.name.endswith("_total") and sample.value}


async def serve_status(port: int, status: Callable[[], dict[str, Any]], metrics: Metrics,
                       *, host: str = "127.0.0.1", token: str | None = None,
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled on `host`:`port`; reports the bound port through `task_status`.

    With `token`, a request without the header `Authorization: Bearer <token>` is answered 401.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        with trio.move_on_after(CLIENT_TIMEOUT_S):
            try:
                await _answer(stream, status, metrics, token)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await stream.aclose()

    await trio.serve_listeners(handle, listeners)


def authorized(request: bytes, token: str | None) -> bool:
    """Whether the request's headers carry `Authorization: Bearer <token>` (always true without a token)."""
    if token is None:
        return True
    for line in request.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            scheme, _, credential = value.strip().partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), token.encode())
    return False


async def _answer(stream: trio.SocketStream, status: Callable[[], dict[str, Any]], metrics: Metrics,
                  token: str | None = None) -> None:
    request = b""
    while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST_BYTES:
        chunk = await stream.receive_some(MAX_REQUEST_BYTES)
        if not chunk:
            break
        request += chunk
    parts = request.split(b"\r\n", 1)[0].split()
    path = parts[1].decode("ascii", "replace") if len(parts) >= 2 and parts[0] == b"GET" else ""
    if not authorized(request, token):
        code, ctype, body = 401, "text/plain", b"send Authorization: Bearer <status_token>\n"
    elif path == "/status":
        code, ctype, body = 200, "application/json", json.dumps(status()).encode()
    elif path == "/metrics":
        code, ctype, body = 200, "text/plain; version=0.0.4", generate_latest(metrics.registry)
    else:
        code, ctype, body = 404, "text/plain", b"try /status or /metrics\n"
    reason = {200: "OK", 401: "Unauthorized"}.get(code, "Not Found")
    head = f"HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\n" \
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    await stream.send_all(head.encode() + body)


def fetch_status(port: int, timeout_s: float = 3.0, *, host: str = "127.0.0.1",
                 token: str | None = None) -> dict[str, Any]:
    """Blocking client used by `fednode status` and `fednode cluster`; raises OSError when unreachable."""
    conn = http.client.HTTPConnection("127.0.0.1" if host in ("0.0.0.0", "::") else host, port, timeout=timeout_s)
    try:
        conn.request("GET", "/status", headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"status endpoint answered {response.status}")
        return json.loads(response.read())
    finally:
        conn.close()
