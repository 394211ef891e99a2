"""Requests: one fresh stream per request/response exchange, one frame each way.

Owns the request handler and the per-peer cap on requests being served. A requester may write only its
one request frame; anything after it is a violation. Each request, and each answer we send, is paid for
by the asking peer through `node.network.budget.PeerLedger`. May call `node.network.frames`,
`node.network.budget` and `node.libp2p_compat`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from node import libp2p_compat
from node.network.budget import PeerLedger
from node.network.frames import READ_CHUNK_BYTES, REQUEST_PROTOCOL, PeerViolation, encode_frame, read_frame

logger = logging.getLogger(__name__)

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class Requests:
    """The request/response side of one `Network`."""

    def __init__(self, host: IHost, ledger: PeerLedger) -> None:
        self._host = host
        self._ledger = ledger
        self._limits = ledger.limits
        self._request_handler: RequestHandler | None = None
        self._request_slots: dict[str, trio.Semaphore] = collections.defaultdict(
            lambda: trio.Semaphore(ledger.limits.inbound_requests_max_per_peer)
        )

    def set_request_handler(self, fn: RequestHandler) -> None:
        """Install `async fn(peer_id, data) -> bytes`, which answers `request` calls."""
        self._request_handler = fn

    async def request(self, peer_id: str, data: bytes, timeout_s: float,
                      response_max_bytes: int | None = None) -> bytes | None:
        """Send a request frame on a fresh stream and return the response frame.

        Returns None if the peer is not a member, cannot be reached, has no
        handler, answers with a frame above `response_max_bytes` (default
        `frame_max_bytes`; refused from its header, before it is read), or
        does not answer in time.
        """
        if peer_id not in self._ledger.allowed or len(data) > self._limits.frame_max_bytes:
            return None
        response_max = self._limits.frame_max_bytes if response_max_bytes is None else response_max_bytes
        assert 0 <= response_max <= self._limits.frame_max_bytes, response_max
        with trio.move_on_after(timeout_s):
            try:
                return await self._exchange(peer_id, data, response_max)
            except PeerViolation as violation:
                self._ledger.reject(violation.reason, peer_id)
            except BaseLibp2pError as error:
                logger.debug("request to %s failed: %r", peer_id, error)
        return None

    async def _exchange(self, peer_id: str, data: bytes, response_max_bytes: int) -> bytes:
        stream = await self._host.new_stream(ID.from_base58(peer_id), [REQUEST_PROTOCOL])
        try:
            await stream.write(encode_frame(data))
            self._ledger.stats["bytes_out:request"] += len(data)
            response = await read_frame(stream, response_max_bytes)
            self._ledger.stats["bytes_in:response"] += len(response)
            return response
        finally:
            await libp2p_compat.reset_quietly(stream)

    async def serve(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        slots = self._request_slots[peer]
        if self._request_handler is None or slots.value == 0:
            self._ledger.reject("no_request_handler" if self._request_handler is None else "too_many_requests", peer)
            await libp2p_compat.reset_quietly(stream)
            return
        async with slots:
            try:
                data = await read_frame(stream, self._limits.frame_max_bytes)
                await self._ledger.pay(peer, len(data))
                self._ledger.stats["bytes_in:request"] += len(data)
                response = await self._request_handler(peer, data)
                await self._ledger.pay(peer, len(response), messages=0)  # an answer costs its asker, not us
                await stream.write(encode_frame(response))
                self._ledger.stats["bytes_out:response"] += len(response)
                await stream.close()
                await self._await_requester_reset(peer, stream)
            except PeerViolation as violation:
                self._ledger.reject(violation.reason, peer)
            except BaseLibp2pError:
                pass
            finally:
                await libp2p_compat.reset_quietly(stream)

    async def _await_requester_reset(self, peer: str, stream: INetStream) -> None:
        """After the response, wait (at most `io_timeout_s`) for the requester to reset the stream, as
        `request` does once it has read the response; resetting first could discard the response's tail
        from its buffer. A requester that writes anything more breaks the protocol."""
        with trio.move_on_after(self._limits.io_timeout_s):
            with contextlib.suppress(BaseLibp2pError):
                if await stream.read(READ_CHUNK_BYTES):
                    self._ledger.reject("bytes_after_request", peer)
