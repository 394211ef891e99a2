"""Direct streams: one long-lived stream per member and lane carrying length-prefixed frames, written by
`send`/`broadcast` and read into the inbox by `serve`.

Owns the outbound streams and the per-peer caps on inbound ones. A peer may write only on the streams it
opened: bytes on one we opened are a violation. Every inbound frame is paid for through
`node.network.budget.PeerLedger` before it is delivered. May call `node.network.frames`,
`node.network.budget`, `node.network.connections` (who is connected) and `node.libp2p_compat`.
"""

from __future__ import annotations

import collections
import logging

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from node import libp2p_compat
from node.network.budget import PeerLedger
from node.network.connections import Connections
from node.network.frames import DIRECT_PROTOCOL, LANES, READ_CHUNK_BYTES, FrameReader, PeerViolation, encode_frame

logger = logging.getLogger(__name__)


class DirectStreams:
    """The direct-stream side of one `Network`."""

    def __init__(self, host: IHost, ledger: PeerLedger, connections: Connections, nursery: trio.Nursery) -> None:
        self._host = host
        self._ledger = ledger
        self._limits = ledger.limits
        self._connections = connections
        self._nursery = nursery
        self._out_streams: dict[tuple[str, str], INetStream] = {}
        self._send_locks: dict[tuple[str, str], trio.Lock] = collections.defaultdict(trio.Lock)
        self._direct_slots: dict[str, trio.Semaphore] = collections.defaultdict(
            lambda: trio.Semaphore(ledger.limits.inbound_direct_streams_max_per_peer)
        )

    async def send(self, peer_id: str, data: bytes, lane: str = "control") -> bool:
        """Send one frame on the long-lived direct stream of `lane` to a connected member.

        Returns False if the peer is not connected, the stream breaks, or the
        write does not finish within `io_timeout_s`; the daemon decides whether
        to retry.  True means the frame was handed to the connection, not that
        the peer processed it.  Frames to one peer on one lane are written one
        at a time, in call order.  Each lane (`LANES`) has its own yamux stream,
        so a small consensus vote on the control lane never queues behind a
        model-sized frame on the bulk lane.
        """
        assert lane in LANES, lane
        if len(data) > self._limits.frame_max_bytes:
            raise ValueError(f"frame of {len(data)} bytes exceeds {self._limits.frame_max_bytes}")
        if peer_id not in self._connections.connected_peers():
            return False
        frame = encode_frame(data)
        async with self._send_locks[(peer_id, lane)]:
            for _ in range(2):
                if await self._write_direct(peer_id, lane, frame):
                    self._ledger.stats["bytes_out:direct"] += len(data)
                    return True
        return False

    async def broadcast(self, data: bytes) -> list[str]:
        """Send one direct frame to every connected member at once; return who got it.

        This is the fallback for messages too large for gossip (above
        `gossip_max_bytes`): receivers see them as kind "direct", and unlike
        gossip they are not relayed, so a member we are not connected to misses them.
        """
        reached: list[str] = []

        async def send_one(peer: str) -> None:
            if await self.send(peer, data):
                reached.append(peer)

        async with trio.open_nursery() as nursery:
            for peer in self._connections.connected_peers():
                nursery.start_soon(send_one, peer)
        return sorted(reached)

    async def _write_direct(self, peer_id: str, lane: str, frame: bytes) -> bool:
        """Write a frame, opening the lane's direct stream if needed; drop the stream on failure."""
        with trio.move_on_after(self._limits.io_timeout_s):
            try:
                stream = self._out_streams.get((peer_id, lane))
                if stream is None:
                    with trio.move_on_after(self._limits.stream_open_timeout_s):
                        stream = await self._host.new_stream(ID.from_base58(peer_id), [DIRECT_PROTOCOL])
                    if stream is None:
                        self._ledger.stats["stream_open_timeouts"] += 1
                        logger.debug("opening a %s stream to %s timed out", lane, peer_id)
                        return False
                    self._out_streams[(peer_id, lane)] = stream
                    self._nursery.start_soon(self._watch_outbound, peer_id, lane, stream)
                await stream.write(frame)
                return True
            except BaseLibp2pError as error:
                logger.debug("direct stream to %s broke: %r", peer_id, error)
        stale = self._out_streams.pop((peer_id, lane), None)
        if stale is not None:
            await libp2p_compat.reset_quietly(stale)
        return False

    async def _watch_outbound(self, peer_id: str, lane: str, stream: INetStream) -> None:
        """Read a direct stream we opened, on which the peer must never write: any byte is a violation.

        Without a reader those bytes would sit in the stream's buffer for the stream's life."""
        try:
            data = await stream.read(READ_CHUNK_BYTES)
        except BaseLibp2pError:
            return
        if not data:
            return
        self._ledger.reject("bytes_on_outbound_stream", peer_id)
        if self._out_streams.get((peer_id, lane)) is stream:
            del self._out_streams[(peer_id, lane)]
        await libp2p_compat.reset_quietly(stream)

    async def serve(self, stream: INetStream) -> None:
        """Read frames into the inbox until the stream ends.

        A sender needs one stream per lane (two per lane while a reconnect
        replaces one); the cap bounds what one member can make us buffer to
        `inbound_direct_streams_max_per_peer` partial frames.
        """
        peer = stream.muxed_conn.peer_id.to_base58()
        slots = self._direct_slots[peer]
        if slots.value == 0:
            self._ledger.reject("too_many_direct_streams", peer)
            await libp2p_compat.reset_quietly(stream)
            return
        reader = FrameReader(stream, self._limits.frame_max_bytes)
        async with slots:
            try:
                while True:
                    frame = await reader.next()
                    await self._ledger.pay(peer, len(frame))
                    self._ledger.deliver("direct", peer, frame)
            except PeerViolation as violation:
                self._ledger.reject(violation.reason, peer)
            except BaseLibp2pError:
                return
            await libp2p_compat.reset_quietly(stream)

    async def open_stream(self, peer_id: str, protocol: str) -> INetStream:
        """A raw stream to a member, for fault injection (`node.hooks.ShellAccess`): the shell's own
        traffic goes through `send` and `request`."""
        return await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])
