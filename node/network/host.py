"""The `Network` handle and its set-up: `open_network` starts one py-libp2p host (Noise + yamux only, see
`node.libp2p_compat`), wires its parts together and yields the handle the daemon uses.

Owns the host's lifetime and the listen addresses; every behaviour lives in a part, to which `Network`
only delegates: `node.network.connections` (gate, connected set, dialing), `node.network.direct`,
`node.network.requests`, `node.network.gossip`, sharing one `node.network.budget.PeerLedger`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetStream

from node import libp2p_compat
from node.network.budget import NetLimits, PeerLedger
from node.network.connections import Connections
from node.network.direct import DirectStreams
from node.network.frames import DIRECT_PROTOCOL, REQUEST_PROTOCOL
from node.network.gossip import Gossip
from node.network.requests import RequestHandler, Requests


class ListenError(OSError):
    """The host could not listen on the configured address (typically: port in use)."""


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
        self._ledger = PeerLedger(allowed, limits)
        self._connections = Connections(host, self._ledger, nursery)
        self._direct = DirectStreams(host, self._ledger, self._connections, nursery)
        self._requests = Requests(host, self._ledger)
        self._gossip = Gossip(host, self._ledger, self._connections, topic, nursery)
        self.peer_id: str = self._connections.peer_id
        self.listen_addrs: list[str] = []
        self.stats = self._ledger.stats
        self.inbox = self._ledger.inbox

    # ----------------------------------------------------------------- connections

    def connected_peers(self) -> list[str]:
        """The allowed peers with at least one open connection, sorted (do not modify the list)."""
        return self._connections.connected_peers()

    async def wait_connected(self, peer_ids: list[str], timeout_s: float) -> bool:
        """Wait until all `peer_ids` are connected; False if `timeout_s` passes first."""
        return await self._connections.wait_connected(peer_ids, timeout_s)

    async def dial(self, maddr: str) -> None:
        """Keep a connection to the member at `maddr` for the life of the network (see `Connections.dial`)."""
        await self._connections.dial(maddr)

    # ----------------------------------------------------------------- direct frames

    async def send(self, peer_id: str, data: bytes, lane: str = "control") -> bool:
        """Send one frame on the direct stream of `lane` to a connected member (see `DirectStreams.send`)."""
        return await self._direct.send(peer_id, data, lane)

    async def broadcast(self, data: bytes) -> list[str]:
        """Send one direct frame to every connected member at once; return who got it."""
        return await self._direct.broadcast(data)

    async def open_stream(self, peer_id: str, protocol: str) -> INetStream:
        """A raw stream to a member, for fault injection (`node.hooks.ShellAccess`)."""
        return await self._direct.open_stream(peer_id, protocol)

    # ----------------------------------------------------------------- request / response

    def set_request_handler(self, fn: RequestHandler) -> None:
        """Install `async fn(peer_id, data) -> bytes`, which answers `request` calls."""
        self._requests.set_request_handler(fn)

    async def request(self, peer_id: str, data: bytes, timeout_s: float,
                      response_max_bytes: int | None = None) -> bytes | None:
        """Send a request frame on a fresh stream and return the response frame (see `Requests.request`)."""
        return await self._requests.request(peer_id, data, timeout_s, response_max_bytes)

    # ----------------------------------------------------------------- gossip

    async def publish(self, data: bytes) -> None:
        """Gossip `data` on the topic to every subscribed member (not echoed to us)."""
        await self._gossip.publish(data)

    async def wait_gossip_ready(self, peer_ids: list[str], timeout_s: float) -> bool:
        """Wait until each peer has a gossip stream with us and has joined the topic."""
        return await self._gossip.wait_gossip_ready(peer_ids, timeout_s)

    # ----------------------------------------------------------------- wiring

    async def _start(self) -> None:
        self._connections.start()
        self._connections.set_handler(DIRECT_PROTOCOL, self._direct.serve)
        self._connections.set_handler(REQUEST_PROTOCOL, self._requests.serve)
        await self._gossip.start()
        self.listen_addrs = [
            f"{addr}" if "/p2p/" in str(addr) else f"{addr}/p2p/{self.peer_id}" for addr in self._host.get_addrs()
        ]


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
