"""Gossip: gossipsub on one topic, for small consensus messages.

Owns the pubsub service and its router, the topic validator that refuses non-members, oversized messages
and forwarders over their budget, and the pump that moves accepted messages into the inbox. May call
`node.libp2p_compat` (to build and guard the services), `node.network.budget` and
`node.network.connections` (to register the router's protocols behind the membership gate).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import trio
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from libp2p.tools.anyio_service.api import ServiceAPI

from node import libp2p_compat
from node.network.budget import PeerLedger
from node.network.connections import Connections


class Gossip:
    """The gossip side of one `Network`."""

    def __init__(self, host: IHost, ledger: PeerLedger, connections: Connections, topic: str,
                 nursery: trio.Nursery) -> None:
        self._host = host
        self._ledger = ledger
        self._limits = ledger.limits
        self._connections = connections
        self._topic = topic
        self._nursery = nursery
        self._pubsub: Pubsub | None = None

    async def publish(self, data: bytes) -> None:
        """Gossip `data` on the topic to every subscribed member (not echoed to us)."""
        if len(data) > self._limits.gossip_max_bytes:
            raise ValueError(f"gossip message of {len(data)} bytes exceeds {self._limits.gossip_max_bytes}")
        assert self._pubsub is not None, "publish before the network started"
        await self._pubsub.publish(self._topic, data)
        self._ledger.stats["bytes_out:gossip"] += len(data)

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
            self._ledger.reject("gossip_too_large", forwarder)
            return False
        if not self._ledger.is_allowed(ID(msg.from_id)):
            self._ledger.reject("gossip_from_unknown_origin", forwarder)
            return False
        if not self._ledger.is_allowed(forwarder):
            self._ledger.reject("gossip_from_unknown_forwarder", forwarder)
            return False
        if not self._ledger.budget(forwarder.to_base58()).try_charge(len(msg.data), time.monotonic()):
            self._ledger.reject("gossip_over_budget", forwarder)
            return False
        return True

    async def _pump_gossip(self, subscription: ISubscriptionAPI) -> None:
        """Move gossip from the library's 32-slot subscription queue into the inbox."""
        while True:
            msg = await subscription.get()
            origin = ID(msg.from_id).to_base58()
            if origin != self._connections.peer_id:
                self._ledger.deliver("gossip", origin, msg.data)

    async def start(self) -> None:
        """Run the router and pubsub services, subscribe to the topic and pump it into the inbox."""
        pubsub, router = libp2p_compat.build_gossip(
            self._host,
            self._topic,
            members=[ID.from_base58(peer) for peer in self._ledger.allowed if peer != self._connections.peer_id],
            inbound_rpc_max_bytes=self._limits.gossip_inbound_rpc_max_bytes,
            rate_per_topic_per_peer_per_s=self._limits.gossip_rate_per_peer_per_s,
        )
        for protocol in router.get_protocols():
            self._connections.set_handler(protocol, pubsub.stream_handler)
        pubsub.set_topic_validator(self._topic, self._validate_gossip, is_async_validator=False)
        self._pubsub = pubsub
        on_task_error = functools.partial(self._ledger.reject, "gossip_task_error", "?")
        await self._nursery.start(_run_service, router, on_task_error)
        await self._nursery.start(_run_service, pubsub, on_task_error)
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(self._topic)
        self._nursery.start_soon(self._pump_gossip, subscription)


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

