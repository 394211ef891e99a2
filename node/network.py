"""The libp2p transport of the daemon: it moves bytes between consortium members.

A `Network` owns one py-libp2p host (Noise + yamux only, see
`node.libp2p_compat`) and offers three ways to move bytes:

* `publish`: gossipsub on one topic, for small consensus messages;
* `send`: one long-lived direct stream per peer carrying length-prefixed
  frames, for anything up to a model blob;
* `request`: one stream per request/response exchange, for fetches.

Everything received lands in one `inbox`, queued per member (bounded) and
handed out one member at a time in turn.  Only members listed in `allowed` (the
genesis peer ids) can connect, open streams or get a message into the inbox.  This module never interprets payloads: signatures, decoding and
replay checks belong to the daemon.  What it guarantees is that no peer's bytes
can end the host, that every length is bounded before anything is read, and
that what a member costs us is bounded before any payload is decoded: each
peer has a token bucket of bytes and one of messages (`PeerBudget`); its direct
frames and requests wait for its buckets (so a flooding peer's streams stall
behind their flow-control windows), its gossip is dropped when they are empty.
A peer may write only where it was asked to: bytes on a direct stream we
opened, or on a request stream after its one request frame, are a violation
and reset the stream.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee, ISubscriptionAPI
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service.api import ServiceAPI

from node import libp2p_compat

logger = logging.getLogger(__name__)

DIRECT_PROTOCOL = TProtocol("/fednode/direct/1.0.0")
REQUEST_PROTOCOL = TProtocol("/fednode/request/1.0.0")
LANES = ("control", "bulk")
"""Direct-stream lanes: consensus votes, transactions and reveals; model-sized payloads."""
FRAME_HEADER = struct.Struct(">I")
READ_CHUNK_BYTES = 1 << 20
CONNECTED_CACHE_S = 0.1
GOSSIP_RPC_OVERHEAD_BYTES = 16 << 10
"""Room for the pubsub envelope (signature, key, seqno, topic) around a payload."""
GOSSIP_LIBRARY_MAX_BYTES = 1 << 20
"""py-libp2p silently drops an outbound pubsub RPC above 1 MiB."""

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


@dataclass(slots=True)
class TokenBucket:
    """Tokens refilled at `rate` per second up to `capacity`; a charge may run into debt.

    `charge` always takes the cost and returns how long the caller should wait for the debt to be repaid,
    so a frame larger than the capacity still passes (after its wait). Pure: the caller passes the
    monotonic time.
    """

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def available(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def charge(self, cost: float, now: float) -> float:
        self.tokens = self.available(now) - cost
        return max(0.0, -self.tokens / self.rate)


@dataclass(slots=True)
class PeerBudget:
    """What one peer may make us receive: bytes and messages, each a token bucket."""

    bytes: TokenBucket
    messages: TokenBucket

    @classmethod
    def full(cls, limits: NetLimits, now: float) -> PeerBudget:
        return cls(TokenBucket(limits.peer_bytes_per_s, limits.peer_bytes_burst, limits.peer_bytes_burst, now),
                   TokenBucket(limits.peer_msgs_per_s, limits.peer_msgs_burst, limits.peer_msgs_burst, now))

    def charge(self, size: int, now: float, messages: int = 1) -> float:
        """Take `size` bytes and `messages`; return the seconds to wait before taking more."""
        return max(self.bytes.charge(size, now), self.messages.charge(messages, now))

    def try_charge(self, size: int, now: float) -> bool:
        """Take one message of `size` bytes if both buckets hold enough, else take nothing."""
        if self.bytes.available(now) < size or self.messages.available(now) < 1:
            return False
        self.charge(size, now)
        return True


@dataclass(frozen=True, slots=True)
class NetLimits:
    """Every bound the network layer enforces; the defaults suit a 4-16 member consortium."""

    frame_max_bytes: int = 64 << 20
    gossip_max_bytes: int = 64 << 10
    gossip_inbound_rpc_max_bytes: int = 1 << 20
    gossip_rate_per_peer_per_s: float = 1000.0
    inbox_max_items_per_peer: int = 512
    inbound_requests_max_per_peer: int = 4
    inbound_direct_streams_max_per_peer: int = 4
    peer_bytes_per_s: float = float(16 << 20)
    """What one member's direct frames, requests and gossip may cost us, sustained; a round moves one
    model-sized masked input per member, a few MB."""
    peer_bytes_burst: float = float(64 << 20)
    peer_msgs_per_s: float = 1000.0
    peer_msgs_burst: float = 2000.0
    io_timeout_s: float = 60.0
    dial_timeout_s: float = 5.0
    stream_open_timeout_s: float = 3.0
    """Opening a stream can hang on a connection the peer is closing (both sides dialled at once);
    give up soon and retry on the surviving connection instead of stalling the lane for io_timeout_s."""
    reconnect_initial_s: float = 0.05
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        assert 0 < self.frame_max_bytes < 1 << 32, "frames carry a 4-byte length"
        assert 0 < self.gossip_max_bytes
        assert self.gossip_max_bytes + GOSSIP_RPC_OVERHEAD_BYTES <= self.gossip_inbound_rpc_max_bytes
        assert self.gossip_max_bytes + GOSSIP_RPC_OVERHEAD_BYTES <= GOSSIP_LIBRARY_MAX_BYTES
        assert self.inbox_max_items_per_peer > 0 and self.inbound_requests_max_per_peer > 0
        assert self.inbound_direct_streams_max_per_peer > 0
        assert 0 < self.reconnect_initial_s <= self.reconnect_max_s
        assert self.peer_bytes_per_s > 0 and self.peer_msgs_per_s > 0
        assert self.peer_bytes_burst >= self.gossip_inbound_rpc_max_bytes and self.peer_msgs_burst >= 1


class PeerViolation(Exception):
    """A peer sent bytes that break the framing rules; its stream is closed."""

    reason = "peer_violation"


class ListenError(OSError):
    """The host could not listen on the configured address (typically: port in use)."""


class FrameTooLarge(PeerViolation):
    """A frame header announced more bytes than `NetLimits.frame_max_bytes`."""

    reason = "frame_too_large"


class TruncatedFrame(PeerViolation):
    """The stream ended in the middle of a frame."""

    reason = "truncated_frame"


def peer_id_from_public_key(pub32: bytes) -> str:
    """Return the base58 libp2p peer id of an Ed25519 public key."""
    if len(pub32) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(pub32)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(pub32)).to_base58()


def peer_id_from_seed(seed32: bytes) -> str:
    """Return the base58 libp2p peer id of the Ed25519 key with this 32-byte seed."""
    return ID.from_pubkey(libp2p_compat.key_pair_from_seed(seed32).public_key).to_base58()


def encode_frame(data: bytes) -> bytes:
    """Prefix a payload with its 4-byte big-endian length."""
    return FRAME_HEADER.pack(len(data)) + data


class FrameReader:
    """Reads the length-prefixed frames of one stream, asking it for up to READ_CHUNK_BYTES at a time.

    Reading exactly the 4-byte length and then exactly the body costs two library reads per frame, and
    py-libp2p answers each read with its locks and (usually) a yamux window-update frame sent back; small
    consensus messages arrive several to a yamux frame, so reading whatever has arrived and cutting frames
    out of it locally does one read for many of them. Each frame's announced length is checked against
    `frame_max_bytes` before its body is awaited, and at most READ_CHUNK_BYTES beyond the frame being
    assembled is ever buffered.
    """

    def __init__(self, stream: INetStream, frame_max_bytes: int) -> None:
        self._stream = stream
        self._frame_max_bytes = frame_max_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes read from the stream and not yet returned as frames."""
        return len(self._buffer)

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = await self._stream.read(max(n - len(self._buffer), READ_CHUNK_BYTES))
            if not chunk:
                raise TruncatedFrame(f"stream ended after {len(self._buffer)} of {n} bytes")
            self._buffer += chunk

    async def next(self) -> bytes:
        """The next frame's payload; raises FrameTooLarge, or TruncatedFrame if the stream ends first."""
        await self._fill(FRAME_HEADER.size)
        (length,) = FRAME_HEADER.unpack_from(self._buffer)
        if length > self._frame_max_bytes:
            raise FrameTooLarge(f"frame of {length} bytes exceeds {self._frame_max_bytes}")
        end = FRAME_HEADER.size + length
        await self._fill(end)
        with memoryview(self._buffer) as view:
            frame = bytes(view[FRAME_HEADER.size:end])
        del self._buffer[:end]
        return frame


async def read_frame(stream: INetStream, frame_max_bytes: int) -> bytes:
    """Read the one frame of a request or response stream (bytes after it, if any, are dropped)."""
    return await FrameReader(stream, frame_max_bytes).next()


InboxItem = tuple[str, str, bytes]
"""(kind, peer id, data): kind is "gossip" or "direct"; for gossip the peer is the signed origin."""


@dataclass(frozen=True, slots=True)
class InboxStatistics:
    current_buffer_used: int


class FairInbox:
    """Received messages, one bounded queue per member, handed out one member at a time in turn.

    With one shared queue, a member flooding within its budget could fill it while the protocol task is
    busy, and every other member's messages arriving then would be dropped; here a member fills only its
    own queue, and an honest member's message waits behind at most one message of each other member.
    """

    def __init__(self, per_peer_max: int) -> None:
        self._per_peer_max = per_peer_max
        self._queues: dict[str, collections.deque[InboxItem]] = {}
        self._turns: collections.deque[str] = collections.deque()
        self._arrived = trio.Event()

    def put_nowait(self, item: InboxItem) -> bool:
        """Queue `item` behind its member's earlier ones; False (dropped) if that member's queue is full."""
        queue = self._queues.setdefault(item[1], collections.deque())
        if len(queue) >= self._per_peer_max:
            return False
        if not queue:
            self._turns.append(item[1])
        queue.append(item)
        self._arrived.set()
        return True

    async def receive(self) -> InboxItem:
        while not self._turns:
            await self._arrived.wait()
            self._arrived = trio.Event()
        peer = self._turns.popleft()
        queue = self._queues[peer]
        item = queue.popleft()
        if queue:
            self._turns.append(peer)
        return item

    def __aiter__(self) -> FairInbox:
        return self

    async def __anext__(self) -> InboxItem:
        return await self.receive()

    def statistics(self) -> InboxStatistics:
        return InboxStatistics(sum(len(queue) for queue in self._queues.values()))


class _ConnectionEvents(INotifee):
    """Wake the reconnect loops and `wait_connected` callers on connection changes, and count the
    connections closed because their peer broke flow control."""

    def __init__(self, changed: Callable[[], None], on_reject: Callable[[str, ID], None]) -> None:
        self._changed = changed
        self._on_reject = on_reject

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._changed()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        violation = libp2p_compat.flow_control_violation(conn.muxed_conn)
        if violation is not None:
            self._on_reject(violation, conn.muxed_conn.peer_id)
        self._changed()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


class Network:
    """A running libp2p host restricted to the consortium; build it with `open_network`."""

    def __init__(
        self,
        host: IHost,
        allowed: dict[str, str],
        topic: str,
        limits: NetLimits,
        nursery: trio.Nursery,
    ) -> None:
        self._host = host
        self._allowed = dict(allowed)
        self._topic = topic
        self._limits = limits
        self._nursery = nursery
        self.peer_id: str = host.get_id().to_base58()
        self.listen_addrs: list[str] = []
        self.stats: collections.Counter[str] = collections.Counter()
        self.inbox = FairInbox(limits.inbox_max_items_per_peer)
        self._request_handler: RequestHandler | None = None
        self._out_streams: dict[tuple[str, str], INetStream] = {}
        self._send_locks: dict[tuple[str, str], trio.Lock] = collections.defaultdict(trio.Lock)
        self._request_slots: dict[str, trio.Semaphore] = collections.defaultdict(
            lambda: trio.Semaphore(limits.inbound_requests_max_per_peer)
        )
        self._direct_slots: dict[str, trio.Semaphore] = collections.defaultdict(
            lambda: trio.Semaphore(limits.inbound_direct_streams_max_per_peer)
        )
        self._dialing: set[str] = set()
        self._connected: list[str] | None = None
        self._connected_until = 0.0
        self._conn_changed = trio.Event()
        self._pubsub: Pubsub | None = None
        self._rng = random.Random()
        self._budgets: dict[str, PeerBudget] = {}

    # ----------------------------------------------------------------- membership

    def _is_allowed(self, peer_id: ID) -> bool:
        return peer_id.to_base58() in self._allowed

    def _reject(self, reason: str, peer_id: ID | str) -> None:
        self.stats[f"rejected:{reason}"] += 1
        logger.info("rejected %s from peer %s", reason, peer_id)

    def _on_connection_change(self) -> None:
        self._connected = None
        self._conn_changed.set()
        self._conn_changed = trio.Event()

    def connected_peers(self) -> list[str]:
        """Return the allowed peers with at least one open connection, sorted (do not modify the list).

        Every send and every daemon event asks, so the answer is kept until a connection changes and at
        most CONNECTED_CACHE_S, in case the library changes its connection table without telling us.
        """
        now = time.monotonic()
        if self._connected is None or now >= self._connected_until:
            swarm = self._host.get_network()
            self._connected = sorted(pid.to_base58() for pid, conns in swarm.connections.items()
                                     if conns and self._is_allowed(pid))
            self._connected_until = now + CONNECTED_CACHE_S
        return self._connected

    async def wait_connected(self, peer_ids: list[str], timeout_s: float) -> bool:
        """Wait until all `peer_ids` are connected; False if `timeout_s` passes first."""
        with trio.move_on_after(timeout_s):
            while not set(peer_ids) <= set(self.connected_peers()):
                await self._conn_changed.wait()
            return True
        return False

    # ----------------------------------------------------------------- dialing

    async def dial(self, maddr: str) -> None:
        """Keep a connection to the member at `maddr` for the life of the network.

        Returns at once; a background task connects, and whenever the
        connection drops it reconnects with exponential backoff (with jitter,
        capped at `reconnect_max_s`).  Dialing a non-member is a configuration
        error and raises ValueError.
        """
        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        peer = info.peer_id.to_base58()
        if peer not in self._allowed:
            raise ValueError(f"{maddr} is not a consortium member")
        if peer == self.peer_id or peer in self._dialing:
            return
        self._dialing.add(peer)
        self._nursery.start_soon(self._keep_connected, info)

    async def _keep_connected(self, info: PeerInfo) -> None:
        """Dial, wait for the connection to drop, back off, dial again; forever.

        The backoff resets only after a connection that lasted at least
        `reconnect_max_s`: a peer that accepts the handshake and then drops us
        at once (say, one whose genesis lacks us) is redialed with growing
        delays, not in a tight loop.
        """
        backoff_s = self._limits.reconnect_initial_s
        peer = info.peer_id.to_base58()
        while True:
            if peer in self.connected_peers() or await self._connect_once(info):
                lifetime_s = await self._wait_disconnected(peer)
                if lifetime_s >= self._limits.reconnect_max_s:
                    backoff_s = self._limits.reconnect_initial_s
            await trio.sleep(backoff_s * (0.5 + self._rng.random()))
            backoff_s = min(2 * backoff_s, self._limits.reconnect_max_s)

    async def _wait_disconnected(self, peer: str) -> float:
        """Wait until no connection to `peer` is left; return how long that took."""
        start_s = trio.current_time()
        while peer in self.connected_peers():
            await self._conn_changed.wait()
        return trio.current_time() - start_s

    async def _connect_once(self, info: PeerInfo) -> bool:
        libp2p_compat.forget_failed_dials(self._host, info.peer_id)
        with trio.move_on_after(self._limits.dial_timeout_s):
            try:
                await self._host.connect(info)
                self.stats["dials_ok"] += 1
                return True
            except Exception as error:  # noqa: BLE001 - any dial failure means "retry later"
                logger.debug("dial %s failed: %r", info.peer_id, error)
        self.stats["dials_failed"] += 1
        return False

    # ----------------------------------------------------------------- inbox

    def _budget(self, peer: str) -> PeerBudget:
        budget = self._budgets.get(peer)
        if budget is None:
            assert peer in self._allowed, peer
            budget = self._budgets[peer] = PeerBudget.full(self._limits, time.monotonic())
        return budget

    async def _pay(self, peer: str, size: int, messages: int = 1) -> None:
        """Charge `peer` for `size` bytes and `messages` and wait until its buckets are out of debt.

        Waiting stops reading the peer's stream, so its flow-control window closes and an honest sender
        blocks; one that writes on regardless breaks flow control and loses its connection."""
        wait_s = self._budget(peer).charge(size, time.monotonic(), messages)
        if wait_s > 0:
            self.stats["throttled_s"] += wait_s
            await trio.sleep(wait_s)

    def _deliver(self, kind: str, peer: str, data: bytes) -> None:
        """Put a message in the inbox, dropping it (counted) when its member's queue is full."""
        self.stats[f"bytes_in:{kind}"] += len(data)
        self.stats[f"msgs_in:{kind}"] += 1
        if not self.inbox.put_nowait((kind, peer, data)):
            self.stats[f"rejected:inbox_full_{kind}"] += 1

    # ----------------------------------------------------------------- direct frames

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
        if peer_id not in self.connected_peers():
            return False
        frame = encode_frame(data)
        async with self._send_locks[(peer_id, lane)]:
            for _ in range(2):
                if await self._write_direct(peer_id, lane, frame):
                    self.stats["bytes_out:direct"] += len(data)
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
            for peer in self.connected_peers():
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
                        self.stats["stream_open_timeouts"] += 1
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
        self._reject("bytes_on_outbound_stream", peer_id)
        if self._out_streams.get((peer_id, lane)) is stream:
            del self._out_streams[(peer_id, lane)]
        await libp2p_compat.reset_quietly(stream)

    async def _serve_direct(self, stream: INetStream) -> None:
        """Read frames into the inbox until the stream ends.

        A sender needs one stream per lane (two per lane while a reconnect
        replaces one); the cap bounds what one member can make us buffer to
        `inbound_direct_streams_max_per_peer` partial frames.
        """
        peer = stream.muxed_conn.peer_id.to_base58()
        slots = self._direct_slots[peer]
        if slots.value == 0:
            self._reject("too_many_direct_streams", peer)
            await libp2p_compat.reset_quietly(stream)
            return
        reader = FrameReader(stream, self._limits.frame_max_bytes)
        async with slots:
            try:
                while True:
                    frame = await reader.next()
                    await self._pay(peer, len(frame))
                    self._deliver("direct", peer, frame)
            except PeerViolation as violation:
                self._reject(violation.reason, peer)
            except BaseLibp2pError:
                return
            await libp2p_compat.reset_quietly(stream)

    async def open_stream(self, peer_id: str, protocol: str) -> INetStream:
        """A raw stream to a member, for fault injection (`node.hooks.ShellAccess`): the shell's own
        traffic goes through `send` and `request`."""
        return await self._host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])

    # ----------------------------------------------------------------- request / response

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
        if peer_id not in self._allowed or len(data) > self._limits.frame_max_bytes:
            return None
        response_max = self._limits.frame_max_bytes if response_max_bytes is None else response_max_bytes
        assert 0 <= response_max <= self._limits.frame_max_bytes, response_max
        with trio.move_on_after(timeout_s):
            try:
                return await self._exchange(peer_id, data, response_max)
            except PeerViolation as violation:
                self._reject(violation.reason, peer_id)
            except BaseLibp2pError as error:
                logger.debug("request to %s failed: %r", peer_id, error)
        return None

    async def _exchange(self, peer_id: str, data: bytes, response_max_bytes: int) -> bytes:
        stream = await self._host.new_stream(ID.from_base58(peer_id), [REQUEST_PROTOCOL])
        try:
            await stream.write(encode_frame(data))
            self.stats["bytes_out:request"] += len(data)
            response = await read_frame(stream, response_max_bytes)
            self.stats["bytes_in:response"] += len(response)
            return response
        finally:
            await libp2p_compat.reset_quietly(stream)

    async def _serve_request(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        slots = self._request_slots[peer]
        if self._request_handler is None or slots.value == 0:
            self._reject("no_request_handler" if self._request_handler is None else "too_many_requests", peer)
            await libp2p_compat.reset_quietly(stream)
            return
        async with slots:
            try:
                data = await read_frame(stream, self._limits.frame_max_bytes)
                await self._pay(peer, len(data))
                self.stats["bytes_in:request"] += len(data)
                response = await self._request_handler(peer, data)
                await self._pay(peer, len(response), messages=0)  # an answer costs its asker, not us
                await stream.write(encode_frame(response))
                self.stats["bytes_out:response"] += len(response)
                await stream.close()
                await self._await_requester_reset(peer, stream)
            except PeerViolation as violation:
                self._reject(violation.reason, peer)
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
                    self._reject("bytes_after_request", peer)

    # ----------------------------------------------------------------- gossip

    async def publish(self, data: bytes) -> None:
        """Gossip `data` on the topic to every subscribed member (not echoed to us)."""
        if len(data) > self._limits.gossip_max_bytes:
            raise ValueError(f"gossip message of {len(data)} bytes exceeds {self._limits.gossip_max_bytes}")
        assert self._pubsub is not None, "publish before the network started"
        await self._pubsub.publish(self._topic, data)
        self.stats["bytes_out:gossip"] += len(data)

    async def wait_gossip_ready(self, peer_ids: list[str], timeout_s: float) -> bool:
        """Wait until each peer has a gossip stream with us and has joined the topic.

        A message published before that reaches such a peer only if it is still
        in gossipsub's message cache (a few heartbeats, i.e. seconds) when the
        peer's subscription arrives: the library replays that window to new
        subscribers.  The daemon must tolerate lost gossip anyway; tests and
        benchmarks wait here to measure gossip itself.
        """
        assert self._pubsub is not None, "wait before the network started"
        try:
            with trio.fail_after(timeout_s):
                for peer in peer_ids:
                    await self._pubsub.wait_for_peer(ID.from_base58(peer), timeout=timeout_s)
                    await self._pubsub.wait_for_subscription(ID.from_base58(peer), self._topic, timeout=timeout_s)
        except trio.TooSlowError:
            return False
        return True

    def _validate_gossip(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Refuse to accept or relay gossip from non-members, above the size bound, or beyond the budget of
        the member that forwarded it (not its origin, whose budget a replaying forwarder could drain)."""
        if len(msg.data) > self._limits.gossip_max_bytes:
            self._reject("gossip_too_large", forwarder)
            return False
        if not self._is_allowed(ID(msg.from_id)):
            self._reject("gossip_from_unknown_origin", forwarder)
            return False
        if not self._is_allowed(forwarder):
            self._reject("gossip_from_unknown_forwarder", forwarder)
            return False
        if not self._budget(forwarder.to_base58()).try_charge(len(msg.data), time.monotonic()):
            self._reject("gossip_over_budget", forwarder)
            return False
        return True

    async def _pump_gossip(self, subscription: ISubscriptionAPI) -> None:
        """Move gossip from the library's 32-slot subscription queue into the inbox."""
        while True:
            msg = await subscription.get()
            origin = ID(msg.from_id).to_base58()
            if origin != self.peer_id:
                self._deliver("gossip", origin, msg.data)

    async def _start_gossip(self) -> None:
        pubsub, router = libp2p_compat.build_gossip(
            self._host,
            self._topic,
            members=[ID.from_base58(peer) for peer in self._allowed if peer != self.peer_id],
            inbound_rpc_max_bytes=self._limits.gossip_inbound_rpc_max_bytes,
            rate_per_topic_per_peer_per_s=self._limits.gossip_rate_per_peer_per_s,
        )
        for protocol in router.get_protocols():
            self._set_handler(protocol, pubsub.stream_handler)
        pubsub.set_topic_validator(self._topic, self._validate_gossip, is_async_validator=False)
        self._pubsub = pubsub
        on_task_error = functools.partial(self._reject, "gossip_task_error", "?")
        await self._nursery.start(_run_service, router, on_task_error)
        await self._nursery.start(_run_service, pubsub, on_task_error)
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(self._topic)
        self._nursery.start_soon(self._pump_gossip, subscription)

    # ----------------------------------------------------------------- wiring

    def _set_handler(self, protocol: TProtocol, handler: libp2p_compat.StreamHandler) -> None:
        self._host.set_stream_handler(protocol, libp2p_compat.guard_handler(handler, self._is_allowed, self._reject))

    async def _start(self) -> None:
        libp2p_compat.gate_connections(self._host, self._is_allowed, lambda pid: self._reject("peer_not_allowed", pid))
        self._host.get_network().register_notifee(_ConnectionEvents(self._on_connection_change, self._reject))
        self._set_handler(DIRECT_PROTOCOL, self._serve_direct)
        self._set_handler(REQUEST_PROTOCOL, self._serve_request)
        await self._start_gossip()
        self.listen_addrs = [
            f"{addr}" if "/p2p/" in str(addr) else f"{addr}/p2p/{self.peer_id}" for addr in self._host.get_addrs()
        ]


async def _run_service(
    service: ServiceAPI,
    on_task_error: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined]
) -> None:
    """Run a py-libp2p service until cancelled, its tasks guarded, reporting when it has started."""
    async with background_trio_service(service) as manager:
        libp2p_compat.guard_service_tasks(manager, on_task_error)
        task_status.started()
        await trio.sleep_forever()


@asynccontextmanager
async def open_network(
    seed32: bytes,
    listen_host: str,
    listen_port: int,
    allowed: dict[str, str],
    topic: str,
    limits: NetLimits,
) -> AsyncIterator[Network]:
    """Start a host listening on `listen_host:listen_port` (0 = ephemeral) and yield it.

    `allowed` maps the base58 peer ids of the genesis members (ourselves
    included or not) to their names.  Leaving the block closes every
    connection and stops all background tasks.
    """
    listen_maddr = multiaddr.Multiaddr(f"/ip4/{listen_host}/tcp/{listen_port}")
    host = libp2p_compat.build_host(seed32, listen_maddr, limits.dial_timeout_s)
    try:
        async with host.run([listen_maddr]):
            if not host.get_addrs():
                raise ListenError(f"cannot listen on {listen_host}:{listen_port} (address in use?)")
            async with trio.open_nursery() as nursery:
                net = Network(host, allowed, topic, limits, nursery)
                await net._start()
                try:
                    yield net
                finally:
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        listen_error = _only_listen_error(group)
        if listen_error is None:
            raise
        raise listen_error from None


def _only_listen_error(group: BaseExceptionGroup) -> ListenError | None:
    """Return the ListenError if it is all the group holds, else None.

    py-libp2p only logs a failed listen; `open_network` raises ListenError inside
    the host's nurseries, which wrap it in exception groups.  Unwrapping it lets
    callers print one clear line.
    """
    listen_errors, rest = group.split(ListenError)
    if listen_errors is None or rest is not None:
        return None
    leaf: BaseException = listen_errors
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, ListenError)
    return leaf
