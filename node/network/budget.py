"""What a member may cost us, enforced before any payload is decoded: the bounds (`NetLimits`), the
per-peer token buckets of bytes and messages (`PeerBudget`), and the ledger that charges them, counts
every rejection and delivers into the inbox (`PeerLedger`).

A peer's direct frames and requests wait for its buckets, so a flooding peer's streams stall behind their
yamux flow-control windows (a peer that writes on regardless is cut by `node.libp2p_compat`, counted
here); its gossip is dropped when they are empty. May call `node.network.inbox`; never opens streams or
connections.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from node.network.inbox import FairInbox

logger = logging.getLogger(__name__)

GOSSIP_RPC_OVERHEAD_BYTES = 16 << 10
"""Room for the pubsub envelope (signature, key, seqno, topic) around a payload."""
GOSSIP_LIBRARY_MAX_BYTES = 1 << 20
"""py-libp2p silently drops an outbound pubsub RPC above 1 MiB."""


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



class PeerLedger:
    """The membership, bounds, statistics, budgets and inbox that every part of one `Network` shares."""

    def __init__(self, allowed: dict[str, str], limits: NetLimits) -> None:
        self.allowed = dict(allowed)
        self.limits = limits
        self.stats: collections.Counter[str] = collections.Counter()
        self.inbox = FairInbox(limits.inbox_max_items_per_peer)
        self._budgets: dict[str, PeerBudget] = {}

    def is_allowed(self, peer_id: ID) -> bool:
        return peer_id.to_base58() in self.allowed

    def reject(self, reason: str, peer_id: ID | str) -> None:
        self.stats[f"rejected:{reason}"] += 1
        logger.info("rejected %s from peer %s", reason, peer_id)

    def budget(self, peer: str) -> PeerBudget:
        budget = self._budgets.get(peer)
        if budget is None:
            assert peer in self.allowed, peer
            budget = self._budgets[peer] = PeerBudget.full(self.limits, time.monotonic())
        return budget

    async def pay(self, peer: str, size: int, messages: int = 1) -> None:
        """Charge `peer` for `size` bytes and `messages` and wait until its buckets are out of debt.

        Waiting stops reading the peer's stream, so its flow-control window closes and an honest sender
        blocks; one that writes on regardless breaks flow control and loses its connection."""
        wait_s = self.budget(peer).charge(size, time.monotonic(), messages)
        if wait_s > 0:
            self.stats["throttled_s"] += wait_s
            await trio.sleep(wait_s)

    def deliver(self, kind: str, peer: str, data: bytes) -> None:
        """Put a message in the inbox, dropping it (counted) when its member's queue is full."""
        self.stats[f"bytes_in:{kind}"] += len(data)
        self.stats[f"msgs_in:{kind}"] += 1
        if not self.inbox.put_nowait((kind, peer, data)):
            self.stats[f"rejected:inbox_full_{kind}"] += 1
