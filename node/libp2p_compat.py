"""Everything fednode does to py-libp2p 0.8.1 beyond calling its public API.

py-libp2p is the only networking library the design allows, and several of its
defaults are wrong for a small permissioned consortium (see docs/networking.md
for the evidence behind each item).  This module is the single place where we
configure, wrap or patch it, so that an upgrade of the library has one file to
re-check:

* security is Noise only (the default list also offers plaintext, secio, TLS);
* the stream muxer is yamux only (the default list also offers mplex);
* the swarm's auto-connector (which dials whatever the peerstore holds to keep
  50 connections) is off, and so are its own dial retries and negative-peer
  cache, because `node.network` runs its own reconnect loop with backoff;
* the 250 ms happy-eyeballs head start, which every single-address dial pays in
  full, is removed;
* the resource manager's global circuit breaker and "graceful degradation",
  which can refuse every connection for 60 s after a handful of failures, are off;
* connections from peers outside the genesis set are closed right after the
  Noise handshake, before any stream of theirs is accepted;
* every stream handler, including gossipsub's, is wrapped so that an exception
  caused by a peer's bytes resets that one stream instead of ending the host
  (an exception escaping a handler propagates through the connection's nursery
  and tears the whole swarm down), and so is every per-message pubsub task;
* gossipsub's per-peer outbound queue and its per-topic delivery queue (32
  entries each by default, overflow silently dropped) are enlarged, and its
  10 messages/s per peer per topic rate limit is raised (`NetLimits`);
* every other member is a gossipsub direct peer, and message sequence numbers
  are seeded with nanoseconds so a restarted node is not taken for a replay;
* yamux data frames carry up to 1 MiB instead of 64 KiB and a stream starts
  with an 8 MiB window instead of 256 KiB: the library spends ~0.25 ms of
  Python per frame, so a 4 MB model took 64 frames plus as many window updates
  (57 ms of CPU per 4 MB sent and received), and now takes 4 (25-35 ms);
* yamux returns receive window in batches, as go-yamux does: a WINDOW_UPDATE once the bytes read since the
  last one reach half the initial window (`_batched_window_update`). The library sent one for every read,
  i.e. one more encrypted frame each way for every PBFT vote or transaction we received, written before
  the message reached us (about a tenth of a node's CPU per committed block at N = 7);
* yamux flow control is enforced on what we receive. The library only logs a warning when a peer sends
  more than the receive window it was granted and keeps buffering (a member grew a victim by 130 MB/s
  that way); here a DATA frame that overruns its stream's window, a connection whose unread buffers
  together pass `YAMUX_CONN_BUFFER_MAX_BYTES`, or a peer opening more than `YAMUX_INBOUND_STREAMS_MAX`
  streams at once closes the whole connection before the bytes are stored, and the connection is
  marked with the reason (`flow_control_violation`) for `node.network` to count against that peer;
* a write to a secured connection is shielded from cancellation. The library
  encrypts a Noise message (advancing the nonce) and then awaits the socket; a
  timeout that lands in between (our 3 s bound on opening a stream, a request's
  deadline) left the nonce used but the message unsent, or half a message on
  the wire, and the peer's next decryption failed ("Failed authentication of
  message"), killing the connection and every frame in flight on it. Seen in
  7-node clusters as rounds stalled for a 30 s phase deadline; the reproduction
  is `tests/process/test_network.py::test_cancelled_writes_do_not_break_the_connection`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import libp2p.network.swarm as libp2p_swarm
import libp2p.pubsub.pubsub as libp2p_pubsub
import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import IHost, IMuxedConn, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.rcmgr.manager import new_resource_manager
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service.api import ManagerAPI
from libp2p.tools.anyio_service.trio_manager import TrioManager

logger = logging.getLogger(__name__)

GOSSIP_PROTOCOLS = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)
GOSSIP_OUTBOUND_QUEUE_RPCS = 4096
"""Per-peer outbound gossipsub queue length (library default 32, overflow dropped)."""
GOSSIP_SUBSCRIPTION_QUEUE_MESSAGES = 1024
"""Delivered-but-unread gossip per topic (library default 32, overflow dropped)."""

YAMUX_FRAME_MAX_BYTES = 1 << 20
"""Largest yamux data frame we send (library default 64 KiB). Noise still splits it into messages of at
most 64 KiB on the wire; what shrinks is the yamux bookkeeping, which costs far more per frame than the
encryption. A receiver accepts frames up to the library's MAX_WINDOW_SIZE (16 MiB), so this is within
what any py-libp2p 0.8.1 peer takes."""
YAMUX_INITIAL_WINDOW_BYTES = 8 << 20
"""Initial per-stream receive window (library default 256 KiB, auto-tuned up to 16 MiB). With 256 KiB a
4 MB model waits for window updates (the library polls for them every 10 ms) until the auto-tuning has
grown the window; 8 MiB lets a whole model go out at once. It bounds what one stream can make us buffer,
and is below the 16 MiB the library's auto-tuning would grant (ours does not grow it). Every member must use the same value:
yamux has no negotiation of the initial window, a sender assumes the receiver's."""

YAMUX_WINDOW_UPDATE_BYTES = YAMUX_INITIAL_WINDOW_BYTES // 2
"""Bytes read on a stream before their window goes back to the sender in one WINDOW_UPDATE (go-yamux: half
the window). Of what the receiver has read, at most this much is not yet returned, so the sender of a stream
that is read holds at least the other half: a 4 MB model never waits for an update."""

YAMUX_CONN_BUFFER_MAX_BYTES = 8 * YAMUX_INITIAL_WINDOW_BYTES
"""Unread bytes one connection may hold across all its streams: what a member can make us hold per
connection however many streams it opens. An honest peer comes near it only when both its direct lanes
wait for its byte budget (`node.network.budget.PeerBudget`) with full windows, 2 x 8 MiB at most (our windows
never grow: `_batched_window_update`)."""
YAMUX_INBOUND_STREAMS_MAX = 64
"""Streams a peer may have open towards us on one connection (2 lanes, a few requests, gossip)."""

ROUTER_DIAL_DISABLED_S = 10**9
"""Delay before gossipsub would dial direct peers itself: never, in practice."""

StreamHandler = Callable[[INetStream], Awaitable[None]]


def _apply_global_patches() -> None:
    """Patch the module constants that cannot be configured per host.

    All these patches are idempotent and process-wide; every fednode host in a
    process wants the same values.
    """
    libp2p_swarm._HAPPY_EYEBALLS_DELAY = 0.0  # type: ignore[attr-defined]
    libp2p_yamux.MAX_MESSAGE_SIZE = YAMUX_FRAME_MAX_BYTES  # type: ignore[misc]
    libp2p_yamux.DEFAULT_WINDOW_SIZE = YAMUX_INITIAL_WINDOW_BYTES  # type: ignore[misc]
    libp2p_pubsub.RpcQueue = functools.partial(  # type: ignore[misc,assignment]
        RpcQueue, max_size=GOSSIP_OUTBOUND_QUEUE_RPCS
    )
    libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE = GOSSIP_SUBSCRIPTION_QUEUE_MESSAGES  # type: ignore[attr-defined]
    if not getattr(SecureSession.write, "_fednode_shielded", False):
        SecureSession.write = _shielded_write(SecureSession.write)  # type: ignore[method-assign]
    if not getattr(Yamux.__init__, "_fednode_windowed", False):
        Yamux.__init__ = _windowed_init(Yamux.__init__)  # type: ignore[method-assign]
    YamuxStream._auto_tune_and_send_window_update = _batched_window_update  # type: ignore[method-assign]


class FlowControlViolation(trio.TooSlowError):
    """A peer sent yamux data it was not granted window for.

    A subclass of trio.TooSlowError because that is the one exception yamux's frame loop lets through
    every per-frame handler to its connection-level handler, which closes the connection (its log line
    then says "timed out reading DATA frame body"; ours names the violation).
    """


def flow_control_violation(muxed_conn: object) -> str | None:
    """The reason a connection was closed for a flow-control violation, if it was."""
    return getattr(muxed_conn, "_fednode_violation", None)


class _WindowedBuffer(bytearray):
    """One stream's receive buffer, which refuses bytes beyond the window its connection granted."""

    def __init__(self, conn: Yamux, stream_id: int, initial: bytes) -> None:
        super().__init__(initial)
        self._conn = conn
        self._stream_id = stream_id

    def extend(self, data: Any) -> None:  # type: ignore[override]
        stream = self._conn.streams.get(self._stream_id)
        if stream is not None and len(data) > stream.recv_window:
            _violate(self._conn, f"{len(data)} bytes on stream {self._stream_id} with a window of "
                                 f"{stream.recv_window}")
        buffered = sum(len(buffer) for buffer in self._conn.stream_buffers.values())
        if buffered + len(data) > YAMUX_CONN_BUFFER_MAX_BYTES:
            _violate(self._conn, f"{buffered + len(data)} unread bytes on one connection")
        super().extend(data)


class _WindowedBuffers(dict[int, bytearray]):
    """A connection's stream buffers, each a `_WindowedBuffer`, inbound streams capped in number."""

    def __init__(self, conn: Yamux) -> None:
        super().__init__()
        self._conn = conn

    def __setitem__(self, stream_id: int, initial: bytearray) -> None:
        stream = self._conn.streams.get(stream_id)
        if stream is not None and not stream.is_initiator:
            inbound = sum(1 for other in self._conn.streams.values() if not other.is_initiator)
            if inbound > YAMUX_INBOUND_STREAMS_MAX:
                _violate(self._conn, f"{inbound} streams opened at once")
        super().__setitem__(stream_id, _WindowedBuffer(self._conn, stream_id, initial))


def _violate(conn: Yamux, detail: str) -> None:
    """Mark the connection and raise what makes yamux's frame loop close it (module docstring)."""
    logger.warning("closing the connection of peer %s: flow-control violation: %s", conn.peer_id, detail)
    conn._fednode_violation = "flow_control_violation"  # type: ignore[attr-defined]
    raise FlowControlViolation(detail)


async def _batched_window_update(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Replaces `YamuxStream._auto_tune_and_send_window_update` (module docstring): give the sender back the
    window of what was read once that reaches `YAMUX_WINDOW_UPDATE_BYTES`, never grown beyond the initial
    window. Invariant: recv_window + unread bytes + bytes read but not yet returned = the initial window."""
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        increment = self._pending_recv_release
        if increment < YAMUX_WINDOW_UPDATE_BYTES:
            return
        self._pending_recv_release = 0
        self.recv_window += increment
    await self.send_window_update(increment)


def _windowed_init(init: Callable[..., None]) -> Callable[..., None]:
    """`Yamux.__init__` that gives the connection window-enforcing stream buffers."""

    @functools.wraps(init)
    def windowed(self: Yamux, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.stream_buffers = _WindowedBuffers(self)

    windowed._fednode_windowed = True  # type: ignore[attr-defined]
    return windowed


def _shielded_write(write: Callable[[Any, bytes], Awaitable[None]]) -> Callable[[Any, bytes], Awaitable[None]]:
    """`SecureSession.write` that always finishes once started (module docstring: cancelled writes).

    Only the write of one yamux frame (at most `YAMUX_FRAME_MAX_BYTES`) is shielded; waiting for yamux's
    write lock or for window stays cancellable. A peer that stops reading can still hold the writer
    until its TCP buffer drains or the connection closes, as it already held the lock's next waiter.
    """

    @functools.wraps(write)
    async def shielded(self: Any, data: bytes) -> None:
        with trio.CancelScope(shield=True):
            await write(self, data)

    shielded._fednode_shielded = True  # type: ignore[attr-defined]
    return shielded


def key_pair_from_seed(seed32: bytes) -> KeyPair:
    """Return the libp2p Ed25519 key pair for a pynacl `SigningKey` seed."""
    if len(seed32) != 32:
        raise ValueError(f"an Ed25519 seed is 32 bytes, got {len(seed32)}")
    return create_new_key_pair(seed32)


def build_host(seed32: bytes, listen_maddr: multiaddr.Multiaddr, dial_timeout_s: float) -> IHost:
    """Build a host that speaks Noise + yamux only and never retries on its own."""
    _apply_global_patches()
    key_pair = key_pair_from_seed(seed32)
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen_maddr],
        connection_config=ConnectionConfig(dial_timeout=dial_timeout_s, min_connections=0, low_watermark=0),
        resource_manager=new_resource_manager(enable_circuit_breaker=False, enable_graceful_degradation=False),
    )
    swarm = host.get_network()
    assert isinstance(swarm, Swarm)
    swarm.retry_config = RetryConfig(max_retries=0)
    swarm.auto_connector.maybe_connect = _never_auto_connect  # type: ignore[method-assign]
    return host


async def _never_auto_connect() -> None:
    """Replace the auto-connector, which would dial any peer in the peerstore."""


def forget_failed_dials(host: IHost, peer_id: ID) -> None:
    """Clear the swarm's 60 s negative cache so our own backoff decides when to dial."""
    swarm = host.get_network()
    assert isinstance(swarm, Swarm)
    swarm._negative_peer_cache.evict(str(peer_id))


def gate_connections(host: IHost, is_allowed: Callable[[ID], bool], on_reject: Callable[[ID], None]) -> None:
    """Refuse every connection whose authenticated peer is not allowed.

    The check runs in `Swarm.add_conn`, the first point where both directions
    have a Noise-authenticated peer id and before the connection accepts a
    stream or is announced to pubsub.  The resource scope that the inbound path
    attached to the connection is released here, otherwise every refused
    connection would leak a slot of the resource manager.
    """
    swarm = host.get_network()
    assert isinstance(swarm, Swarm)
    original_add_conn = swarm.add_conn

    async def gated_add_conn(muxed_conn: IMuxedConn, direction: str = "unknown"):  # type: ignore[no-untyped-def]
        if is_allowed(muxed_conn.peer_id):
            return await original_add_conn(muxed_conn, direction)
        on_reject(muxed_conn.peer_id)
        await _close_refused(muxed_conn)
        raise SwarmException(f"peer {muxed_conn.peer_id} is not a consortium member")

    swarm.add_conn = gated_add_conn  # type: ignore[method-assign]


async def _close_refused(muxed_conn: IMuxedConn) -> None:
    """Close a refused connection and release its resource scope, best effort."""
    scope = getattr(muxed_conn, "_resource_scope", None)
    if scope is not None:
        scope.close()
    with trio.CancelScope(shield=True):
        try:
            await muxed_conn.close()
        except Exception:  # the connection is being dropped anyway
            logger.debug("closing a refused connection failed", exc_info=True)


def guard_handler(
    handler: StreamHandler,
    is_allowed: Callable[[ID], bool],
    on_reject: Callable[[str, ID], None],
) -> StreamHandler:
    """Wrap a stream handler so no peer can end the host through it.

    Streams from peers outside the allowed set are reset unread (a second line
    of defence behind `gate_connections`).  Any `Exception` escaping the handler
    is counted and resets only this stream; `trio.Cancelled` and other
    `BaseException`s still propagate, so shutdown keeps working.
    """

    async def guarded(stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        if not is_allowed(peer_id):
            on_reject("stream_from_unknown_peer", peer_id)
            await reset_quietly(stream)
            return
        try:
            await handler(stream)
        except Exception:  # a peer's bytes must never end the host
            logger.info("stream handler failed for peer %s", peer_id, exc_info=True)
            on_reject("handler_error", peer_id)
            await reset_quietly(stream)

    return guarded


def guard_service_tasks(manager: ManagerAPI, on_error: Callable[[], None]) -> None:
    """Make every non-daemon task of a py-libp2p service swallow (and count) its exceptions.

    Pubsub processes each received message in a task of its own (`push_msg`)
    and reacts to subscriptions with more tasks; an exception there ends the
    whole pubsub service and with it the network.  Measured: a gossip message
    whose `key` field is not a protobuf public key makes `push_msg` raise
    `DecodeError`.  Daemon tasks (heartbeats, queues) are left alone: they are
    not driven by one peer's message, and the manager treats their end as fatal
    anyway.
    """
    assert isinstance(manager, TrioManager), f"unexpected service manager {manager!r}"
    original_run_task = manager.run_task

    def run_task(
        async_fn: Callable[..., Awaitable[Any]],
        *args: Any,
        daemon: bool = False,
        name: str | None = None,
        _internal: bool = False,
    ) -> None:
        if daemon or _internal:
            original_run_task(async_fn, *args, daemon=daemon, name=name, _internal=_internal)
            return

        async def guarded(*task_args: Any) -> None:
            try:
                await async_fn(*task_args)
            except Exception:  # a peer's message must never end the service
                logger.info("pubsub task %s failed", name or async_fn, exc_info=True)
                on_error()

        original_run_task(guarded, *args, name=name or getattr(async_fn, "__qualname__", None))

    manager.run_task = run_task  # type: ignore[method-assign,assignment]


async def reset_quietly(stream: INetStream) -> None:
    """Reset a stream whose peer misbehaved or went away; failure means it is gone."""
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except Exception:  # the stream is dead either way
            logger.debug("resetting a stream failed", exc_info=True)


def build_gossip(
    host: IHost,
    topic: str,
    members: list[ID],
    inbound_rpc_max_bytes: int,
    rate_per_topic_per_peer_per_s: float,
) -> tuple[Pubsub, GossipSub]:
    """Build gossipsub with limits chosen for a small, fully connected consortium.

    Every other member is a gossipsub *direct peer*: each publish and each
    first-time relay goes to all of them at once, without waiting for the
    heartbeat to graft a mesh (py-libp2p has no flood-publish, so a message
    published in the first heartbeat after a connection would otherwise reach
    nobody) and without the peer-score gate.  The router's own dialing of direct
    peers is pushed out of the way (`node.network` owns reconnection).
    Message ids are (origin, seqno) and the library seeds seqno with
    `int(time.time())`, so a node that published more messages than seconds
    elapsed before a restart would reuse seqnos, and peers would drop its new
    messages as already seen for the 120 s seen-cache window.  Seeding with
    nanoseconds (as go-libp2p does) makes reuse impossible in practice.
    Eclipse protection is off because membership is fixed by genesis and it
    demands three distinct IP addresses, which a loopback cluster never has.
    Peer exchange stays off for the same reason.
    """
    router = GossipSub(
        protocols=list(GOSSIP_PROTOCOLS),
        degree=max(1, len(members)),
        degree_low=1,
        degree_high=len(members) + 2,
        direct_peers=[PeerInfo(member, []) for member in members],
        direct_connect_initial_delay=ROUTER_DIAL_DISABLED_S,
        direct_connect_interval=ROUTER_DIAL_DISABLED_S,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        do_px=False,
        max_messages_per_topic_per_second=rate_per_topic_per_peer_per_s,
        eclipse_protection_enabled=False,
    )
    pubsub = Pubsub(
        host,
        router,
        strict_signing=True,
        max_inbound_rpc_size=inbound_rpc_max_bytes,
        max_subscriptions_per_peer=8,
        allowed_topics={topic},
    )
    pubsub.counter = time.time_ns()
    return pubsub, router
