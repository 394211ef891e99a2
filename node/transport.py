"""Peer transport: signed frames to and from the other members, without ever blocking the protocol task.

Owns the network handle, this node's `Sealer` and `Opener` (envelopes), the bounded outbox per peer and
lane and the gossip outbox, and the tasks that drain them. Sending never blocks the protocol task:
messages go into bounded queues, two per peer (the control lane for votes, transactions and shares; the
bulk lane for model-sized payloads, so that a vote never waits behind 4 MB of masked input) and one for
gossip, each drained by its own task in order. A slow or dead peer fills only its own queues; overflow
is dropped and counted, which the cores tolerate (PBFT retransmits, transactions are resubmitted,
phases have deadlines).

Inbound, every envelope is opened against the member the network authenticated as its source (the
connection's peer, or gossip's signed origin), and a request must be sealed for us; requests we send are
sealed for the one member asked. Whatever a handler raises on a peer's message (other than our own
broken invariant, an AssertionError or `InvariantError`) is contained here: counted, logged once per
member and kind of failure, and charged to the sender as a violation, so no peer input ends the daemon.
Fetches of content named by its SHA-256 check what they get, ask the members in random order with the
ones that answered badly last, and move on to the next member until one answers correctly.

May call `node.network`, `node.wire`, the metrics and the fault hooks; never the mempool, the round
driver, the proposer or sync (it hands authenticated envelopes to a `dispatch` callback instead).
"""

from __future__ import annotations

import hashlib
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import trio

from node.config import Genesis, NodeConfig
from node.hooks import FaultHooks
from node.network import LANES, NetLimits, Network, peer_id_from_public_key
from node.settings import RoundSettings
from node.status import Metrics
from node.wire import Envelope, Opener, Rejected, Sealer

logger = logging.getLogger("fednode")

FETCH_TIMEOUT_S = 10.0
OUTBOX_MAX_MESSAGES = 1024
BULK_KINDS = frozenset({"blob", "masked"})
"""Model-sized payloads: they travel on the bulk lane, so consensus votes never queue behind them."""
SEND_RETRY_S = 15.0
"""How long a message waits for its peer to (re)connect before it is dropped; one-shot messages such as a
masked input or sketch shares would otherwise be lost to a member that started a few seconds late."""

Outbox = trio.MemorySendChannel[tuple[str, bytes]]
Names = Callable[[bytes], "bytes | None"]
"""The name (digest) under which a fetched answer is known, None if it is not such content."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _lane(kind: str) -> str:
    return "bulk" if kind in BULK_KINDS else "control"


class Transport:
    """This node's outboxes and inbox. `start` once the network is open; the sends are then safe to call."""

    def __init__(self, cfg: NodeConfig, genesis: Genesis, index: int, settings: RoundSettings, sealer: Sealer,
                 opener: Opener, metrics: Metrics, phase_s: Counter[str], hooks: FaultHooks,
                 frame_max_bytes: int) -> None:
        self.cfg, self.genesis, self.index, self.settings = cfg, genesis, index, settings
        self.sealer, self.opener, self.metrics, self.phase_s, self.hooks = sealer, opener, metrics, phase_s, hooks
        self.peer_ids = [peer_id_from_public_key(m.public_key) for m in genesis.members]
        self.peer_index = {peer_id: i for i, peer_id in enumerate(self.peer_ids)}
        self.violations: Counter[tuple[int, str]] = Counter()
        """(member, reason) -> count: what each member's input made fail here (handlers, fetches)."""
        self._rng = random.Random()
        self.limits = NetLimits(frame_max_bytes=frame_max_bytes)
        self.net: Network | None = None
        self._peer_queues: dict[tuple[int, str], Outbox] = {}
        self._gossip_queue: Outbox | None = None

    def allowed_peers(self) -> dict[str, str]:
        """The genesis peer-id gate: peer id -> member name."""
        return {peer_id_from_public_key(m.public_key): m.name for m in self.genesis.members}

    async def start(self, net: Network, nursery: trio.Nursery) -> None:
        """Dial the other members and start one draining task per outbox."""
        self.net = net
        for addr in self._peer_addresses():
            await net.dial(addr)
        for peer in range(self.genesis.n):
            if peer == self.index:
                continue
            for lane in LANES:
                send, receive = trio.open_memory_channel[tuple[str, bytes]](OUTBOX_MAX_MESSAGES)
                self._peer_queues[(peer, lane)] = send
                nursery.start_soon(self._drain_peer, peer, lane, receive)
        gossip_send, gossip_receive = trio.open_memory_channel[tuple[str, bytes]](OUTBOX_MAX_MESSAGES)
        self._gossip_queue = gossip_send
        nursery.start_soon(self._drain_gossip, gossip_receive)

    def _peer_addresses(self) -> list[str]:
        if self.cfg.peers:
            return list(self.cfg.peers)
        return [f"{m.address}/p2p/{peer_id_from_public_key(m.public_key)}"
                for i, m in enumerate(self.genesis.members) if i != self.index]

    def connected_peers(self) -> list[str]:
        return self.net.connected_peers() if self.net is not None else []

    # ------------------------------------------------------------------ inbound

    async def serve_inbox(self, dispatch: Callable[[Envelope], Awaitable[None]], vector_bytes_max: int) -> None:
        """Open every inbound frame (envelope checks, sender bound to its peer id) and hand it to `dispatch`,
        containing whatever the handler raises on it (module docstring)."""
        assert self.net is not None
        async for kind, peer, data in self.net.inbox:
            max_bytes = max(vector_bytes_max, 1 << 20) + 1024 if kind == "direct" else 4 << 20
            try:
                env = self.opener.open(data, max_bytes, peer=self.peer_index[peer])
            except Rejected as exc:
                self.metrics.rejected.labels(exc.reason.name.lower()).inc()
                logger.debug("rejected message from %s: %s", peer[:12], exc)
                continue
            await contained(dispatch(env), env, self.violation)

    def violation(self, member: int, reason: str, detail: object = None) -> None:
        """Charge `member` with a violation: counted per reason, logged the first time only (with the
        traceback when there is one being handled)."""
        self.violations[(member, reason)] += 1
        self.metrics.rejected.labels(reason).inc()
        if self.violations[(member, reason)] == 1:
            logger.warning("member %d: %s%s (further ones counted, not logged)", member, reason,
                           "" if detail is None else f": {detail}", exc_info=sys.exc_info()[0] is not None)

    # ------------------------------------------------------------------ outbound

    async def broadcast(self, kind: str, height: int, payload: bytes) -> None:
        """A small message for every member, by the genesis `consensus_transport`: direct frames (N-1
        transmissions) or gossip ((N-1)^2, each signature-checked; see docs/benchmarks.md)."""
        if self.settings.consensus_transport == "direct":
            await self.send_to_all(kind, height, payload)
        else:
            await self.gossip(kind, height, payload)

    async def gossip(self, kind: str, height: int, payload: bytes) -> None:
        """Gossip a small message; one above gossipsub's bound goes to every member directly instead."""
        data = self.sealer.seal(kind, height, payload)
        if len(data) > self.limits.gossip_max_bytes:
            self._enqueue_all(kind, data)
            return
        self.metrics.bytes_sent.labels(kind).inc(len(data) * (self.genesis.n - 1))
        assert self._gossip_queue is not None, "gossip before the network started"
        self._enqueue(self._gossip_queue, kind, data)

    async def send(self, to: int, kind: str, height: int, payload: bytes) -> None:
        queue = self._peer_queues.get((to, _lane(kind)))
        if queue is None:  # the replica addressed us (seen during view changes): nothing to send
            logger.debug("dropping a %s send addressed to ourselves", kind)
            return
        data = self.sealer.seal(kind, height, payload, to=to)  # worthless to anyone it might be relayed to
        self.metrics.bytes_sent.labels(kind).inc(len(data))
        self._enqueue(queue, kind, data)

    async def send_to_all(self, kind: str, height: int, payload: bytes) -> None:
        """One direct frame to every member (model-sized payloads, PBFT messages with direct transport)."""
        self._enqueue_all(kind, self.sealer.seal(kind, height, payload))

    def _enqueue_all(self, kind: str, data: bytes) -> None:
        lane = _lane(kind)
        queues = [queue for (_peer, queue_lane), queue in self._peer_queues.items() if queue_lane == lane]
        self.metrics.bytes_sent.labels(kind).inc(len(data) * len(queues))
        for queue in queues:
            self._enqueue(queue, kind, data)

    def _enqueue(self, queue: Outbox, kind: str, data: bytes) -> None:
        try:
            queue.send_nowait((kind, data))
        except trio.WouldBlock:
            self.metrics.rejected.labels("outbox_full").inc()

    async def _drain_peer(self, peer: int, lane: str, queue: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        assert self.net is not None
        async for kind, data in queue:
            started = time.monotonic()
            delay_s = 0.05
            while not await self.net.send(self.peer_ids[peer], data, lane):
                if time.monotonic() - started > SEND_RETRY_S:
                    self.metrics.rejected.labels("send_failed").inc()
                    break
                await trio.sleep(delay_s)  # not connected yet (or reconnecting): keep order, try again
                delay_s = min(2 * delay_s, 1.0)
            if kind in BULK_KINDS:
                self.phase_s["transfer"] += time.monotonic() - started
            self.hooks.frame_delivered(kind)

    async def _drain_gossip(self, queue: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        assert self.net is not None
        async for _kind, data in queue:
            await self.net.publish(data)

    # ------------------------------------------------------------------ requests

    def fetch_order(self) -> list[str]:
        """The connected members to ask, in random order, those with fewer bad answers first: a member
        that sorts first cannot make itself everyone's first choice, and one that lied is asked last."""
        peers = list(self.connected_peers())
        self._rng.shuffle(peers)
        return sorted(peers, key=lambda peer: self.violations[(self.peer_index[peer], "bad_answer")])

    async def fetch(self, kind: str, digest: bytes, names: Names | None = None) -> bytes | None:
        """Content named by `digest` from the first member that answers with content it names.

        `names(data)` gives the name of an answer (default: its SHA-256; a masked input is named by the
        hash of its signed body). A member answering anything else is charged a `bad_answer` and the next
        one is asked; None once every connected member was asked."""
        name_of = names or sha256
        for peer in self.fetch_order():
            data = await self.request(peer, kind, digest)
            if data and name_of(data) == digest:
                return data
            if data:
                self.violation(self.peer_index[peer], "bad_answer", f"{kind} {digest.hex()[:16]}")
        return None

    async def request(self, peer: str, kind: str, payload: bytes, response_max_bytes: int | None = None) -> bytes:
        """One request, sealed for that member alone, to one peer; empty if it did not answer."""
        assert self.net is not None
        request = self.sealer.seal(kind, 0, payload, to=self.peer_index[peer])
        return await self.net.request(peer, request, FETCH_TIMEOUT_S, response_max_bytes) or b""

    def open_request(self, peer: str, data: bytes) -> Envelope:
        """Open a peer's request, which must be from that peer and sealed for us (raises `Rejected`)."""
        return self.opener.open(data, 1024, peer=self.peer_index[peer], addressed=True)

    # ------------------------------------------------------------------ accounting for /status

    def rejections(self) -> dict[str, int]:
        """Everything dropped so far, by reason: bad envelopes, the network layer's refusals, and what the
        daemon dropped (malformed or stale transactions, full outboxes, sends that never got through)."""
        out = {r.name.lower(): c for r, c in self.opener.rejected.items()}
        if self.net is not None:
            out |= {k.split(":", 1)[1]: v for k, v in self.net.stats.items() if k.startswith("rejected:")}
            if self.net.stats["stream_open_timeouts"]:
                out["stream_open_timeouts"] = self.net.stats["stream_open_timeouts"]
        return out | self.metrics.rejected_by_reason()


async def contained(handling: Awaitable[None], env: Envelope, violation: Callable[[int, str, object], None]) -> None:
    """Run a handler on a peer's message; anything it raises, except our own broken invariant, is that
    peer's violation (`handler_error`), not the end of the daemon."""
    try:
        await handling
    except AssertionError:  # InvariantError included: ours, not the peer's
        raise
    except Exception as exc:  # noqa: BLE001 - a peer's message must never end the daemon
        violation(env.sender, "handler_error", f"{env.type}: {type(exc).__name__}: {exc}")
