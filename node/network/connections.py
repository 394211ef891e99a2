"""The libp2p host's membership gate and its connections: peer ids, who may connect or open a stream,
which members are connected, and the reconnect loop that keeps a connection to each dialled member.

Owns the connection table's view and the dialing; it never reads or writes a stream. May call
`node.libp2p_compat` (gating, guarded handlers, dial hygiene) and `node.network.budget.PeerLedger` (to
count rejections and dials).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from node import libp2p_compat
from node.network.budget import PeerLedger

logger = logging.getLogger(__name__)

CONNECTED_CACHE_S = 0.1


def peer_id_from_public_key(pub32: bytes) -> str:
    """Return the base58 libp2p peer id of an Ed25519 public key."""
    if len(pub32) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(pub32)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(pub32)).to_base58()


def peer_id_from_seed(seed32: bytes) -> str:
    """Return the base58 libp2p peer id of the Ed25519 key with this 32-byte seed."""
    return ID.from_pubkey(libp2p_compat.key_pair_from_seed(seed32).public_key).to_base58()


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


class Connections:
    """The consortium's connections on one host: the gate, the connected set and the dial loops."""

    def __init__(self, host: IHost, ledger: PeerLedger, nursery: trio.Nursery) -> None:
        self._host = host
        self._ledger = ledger
        self._nursery = nursery
        self.peer_id: str = host.get_id().to_base58()
        self._dialing: set[str] = set()
        self._connected: list[str] | None = None
        self._connected_until = 0.0
        self._conn_changed = trio.Event()
        self._rng = random.Random()

    def start(self) -> None:
        """Refuse non-members' connections and watch connection changes."""
        ledger = self._ledger
        libp2p_compat.gate_connections(self._host, ledger.is_allowed, lambda pid: ledger.reject("peer_not_allowed", pid))
        self._host.get_network().register_notifee(_ConnectionEvents(self._on_connection_change, ledger.reject))

    def set_handler(self, protocol: TProtocol, handler: libp2p_compat.StreamHandler) -> None:
        """Serve `protocol` with `handler`, for members only and with its errors contained."""
        guarded = libp2p_compat.guard_handler(handler, self._ledger.is_allowed, self._ledger.reject)
        self._host.set_stream_handler(protocol, guarded)

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
                                     if conns and self._ledger.is_allowed(pid))
            self._connected_until = now + CONNECTED_CACHE_S
        return self._connected

    async def wait_connected(self, peer_ids: list[str], timeout_s: float) -> bool:
        """Wait until all `peer_ids` are connected; False if `timeout_s` passes first."""
        with trio.move_on_after(timeout_s):
            while not set(peer_ids) <= set(self.connected_peers()):
                await self._conn_changed.wait()
            return True
        return False

    async def dial(self, maddr: str) -> None:
        """Keep a connection to the member at `maddr` for the life of the network.

        Returns at once; a background task connects, and whenever the
        connection drops it reconnects with exponential backoff (with jitter,
        capped at `reconnect_max_s`).  Dialing a non-member is a configuration
        error and raises ValueError.
        """
        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        peer = info.peer_id.to_base58()
        if peer not in self._ledger.allowed:
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
        backoff_s = self._ledger.limits.reconnect_initial_s
        peer = info.peer_id.to_base58()
        while True:
            if peer in self.connected_peers() or await self._connect_once(info):
                lifetime_s = await self._wait_disconnected(peer)
                if lifetime_s >= self._ledger.limits.reconnect_max_s:
                    backoff_s = self._ledger.limits.reconnect_initial_s
            await trio.sleep(backoff_s * (0.5 + self._rng.random()))
            backoff_s = min(2 * backoff_s, self._ledger.limits.reconnect_max_s)

    async def _wait_disconnected(self, peer: str) -> float:
        """Wait until no connection to `peer` is left; return how long that took."""
        start_s = trio.current_time()
        while peer in self.connected_peers():
            await self._conn_changed.wait()
        return trio.current_time() - start_s

    async def _connect_once(self, info: PeerInfo) -> bool:
        libp2p_compat.forget_failed_dials(self._host, info.peer_id)
        with trio.move_on_after(self._ledger.limits.dial_timeout_s):
            try:
                await self._host.connect(info)
                self._ledger.stats["dials_ok"] += 1
                return True
            except Exception as error:  # noqa: BLE001 - any dial failure means "retry later"
                logger.debug("dial %s failed: %r", info.peer_id, error)
        self._ledger.stats["dials_failed"] += 1
        return False
