"""The status endpoint: with a token, only requests carrying `Authorization: Bearer <token>` are answered."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from node.status import Metrics, authorized, serve_status

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize("headers, ok", [
    (b"", False),
    (b"Authorization: Bearer wrong\r\n", False),
    (b"Authorization: Basic " + TOKEN.encode() + b"\r\n", False),
    (b"Authorization: Bearer " + TOKEN.encode() + b"\r\n", True),
    (b"authorization:   bearer " + TOKEN.encode() + b"\r\n", True),
])
def test_authorized(headers: bytes, ok: bool) -> None:
    request = b"GET /status HTTP/1.0\r\n" + headers + b"\r\n"
    assert authorized(request, TOKEN) is ok
    assert authorized(request, None)


async def _get(port: int, headers: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /status HTTP/1.0\r\n" + headers + b"\r\n")
    reply = b""
    while chunk := await stream.receive_some(65536):
        reply += chunk
    return reply


def test_server_answers_401_without_the_token() -> None:
    replies: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_status(
                0, lambda: {"height": 7}, Metrics(), token=TOKEN, task_status=task_status))
            replies["none"] = await _get(port, b"")
            replies["token"] = await _get(port, b"Authorization: Bearer " + TOKEN.encode() + b"\r\n")
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert replies["none"].startswith(b"HTTP/1.0 401")
    assert replies["token"].startswith(b"HTTP/1.0 200") and replies["token"].endswith(b'{"height": 7}')
