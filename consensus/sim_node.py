"""The simulated shell of one member: what the daemon does with a replica's actions (one synced batch
of every Persist, then sends, validation, delivery, fetches), its mempool with request timers, crashes
that cut an action list, and, for a Byzantine member, the strategy its traffic goes through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus import messages as wire
from consensus.adversary import Strategy
from consensus.block import Block, CommitCertificate, sha256
from consensus.messages import Message, ViewChange
from consensus.replica import (
    Action,
    Broadcast,
    Deliver,
    FetchBlocks,
    M,
    Persist,
    RecordEvidence,
    Replica,
    Send,
    ValidateBlock,
    ViewChanged,
)

if TYPE_CHECKING:
    from consensus.simulation import Simulation

INVALID_TX_PREFIX = b"\xff"
"""The dummy application rejects any block holding a transaction that starts with this byte."""
FETCH_BATCH = 16
MAX_TXS_PER_PROPOSAL = 8
SHELL_WATCHED_TXS = 32
"""The oldest mempool transactions a shell watches (a daemon watches its own few)."""


def make_signer(secret: bytes) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        return hashlib.blake2b(data, key=secret, digest_size=16).digest()
    return sign


class SimNode:
    """The shell of one replica: persisted map, ledger, mempool, and an optional Byzantine strategy
    (whose replica is then only its bookkeeping: what it sends goes through the strategy)."""

    def __init__(self, sim: Simulation, node_id: int, index: int, strategy: Strategy | None) -> None:
        self.sim, self.node_id, self.index, self.strategy = sim, node_id, index, strategy
        self.rng = sim.rng
        self.signer = sim.signers[index]
        self.persisted: dict[bytes, bytes] = {}
        self.ledger: list[tuple[Block, CommitCertificate]] = []
        self.committed_txs: set[bytes] = set()
        self.mempool: dict[bytes, int] = {}
        self.relayed: set[bytes] = set()
        self.alive = True
        self.crash_pending = False
        self.incarnation = 0
        self.audience: frozenset[int] | None = None
        self.ticks = 0
        self.lists_since_view_change: int | None = None
        self.replica = self._new_replica()

    @property
    def honest(self) -> bool:
        return self.strategy is None

    @property
    def behaviour(self) -> str | None:
        return None if self.strategy is None else self.strategy.name

    def sign(self, msg: M) -> M:
        return replace(msg, signature=self.signer(wire.signing_bytes(self.sim.chain_id, msg)))

    def genuine(self, msg: Message) -> bool:
        return self.sim.verify(msg.sender, wire.signing_bytes(self.sim.chain_id, msg), msg.signature)

    def transmit(self, to: int, msg: Message) -> None:
        """Send exactly `msg` (a Byzantine strategy's own traffic)."""
        if to != self.index:
            self.sim.transmit(self, to, msg, self.sim.now)

    def _new_replica(self) -> Replica:
        sim = self.sim
        head = self.ledger[-1] if self.ledger else None
        committed = (len(self.ledger), head[1].block_hash if head else sim.chain_id)
        replica = Replica(sim.replica_config, self.index, self.signer, sim.verify,
                          persisted=dict(self.persisted), committed=committed,
                          committed_cert=head[1] if head else None)
        if sim.config.quorum_override is not None:
            replica.quorum = sim.config.quorum_override
        return replica

    def crash(self) -> None:
        self.alive = False
        self.crash_pending = False
        self.mempool.clear()
        self.incarnation += 1
        self.sim.stats["crashes"] += 1

    def restart(self, now_ms: int) -> None:
        self.alive = True
        self.incarnation += 1
        self.replica = self._new_replica()
        self.sim.stats["restarts"] += 1
        self.sim.schedule(now_ms + self.sim.config.tick_ms, "tick", self.node_id)
        self.execute(self.replica.tick(now_ms), now_ms)

    def execute(self, actions: Sequence[Action], now_ms: int) -> None:
        """Run actions as the daemon does: every Persist in one batch, then the rest in order. A pending
        crash cuts the list: after the batch (the daemon's case) or, half the time, between two actions
        in list order (persists included, a stricter model)."""
        self._count_view_change_step(actions, now_ms)
        if self.crash_pending:
            self._crash_during(actions, now_ms)
            return
        self._persist([a for a in actions if isinstance(a, Persist)])
        self._run([a for a in actions if not isinstance(a, Persist)], now_ms)
        self._maybe_propose(now_ms)

    def _crash_during(self, actions: Sequence[Action], now_ms: int) -> None:
        rng = self.sim.rng
        if rng.random() < 0.5:
            persists = [a for a in actions if isinstance(a, Persist)]
            rest = [a for a in actions if not isinstance(a, Persist)]
            self._persist(persists if rng.random() < 0.8 else [])
            self._run(rest[:rng.randrange(len(rest) + 1)], now_ms)
        else:
            prefix = actions[:rng.randrange(len(actions) + 1)]
            self._persist([a for a in prefix if isinstance(a, Persist)])
            self._run([a for a in prefix if not isinstance(a, Persist)], now_ms)
        self.crash()
        self.sim.timeline.append((now_ms, self.node_id, "crash", 0))

    def _count_view_change_step(self, actions: Sequence[Action], now_ms: int) -> None:
        """The enumerated crash point: the k-th action list from the first VIEW-CHANGE this node sends."""
        step = self.sim.config.crash_view_change_step
        if step is None or self.node_id != self.sim.vc_victim:
            return
        if self.lists_since_view_change is None:
            if any(isinstance(a, Broadcast) and isinstance(a.msg, ViewChange) for a in actions):
                self.lists_since_view_change = 0
            else:
                return
        if self.lists_since_view_change == step:
            self.crash_pending = True
            self.sim.schedule(now_ms + self.sim.rng.randint(20, 400), "restart", self.node_id)
        self.lists_since_view_change += 1

    def _persist(self, persists: Sequence[Action]) -> None:
        for action in persists:
            assert isinstance(action, Persist)
            self.persisted[action.key] = action.value

    def _run(self, actions: Sequence[Action], now_ms: int) -> None:
        for action in actions:
            if isinstance(action, Broadcast):
                self.sim.broadcast(self, action.msg, now_ms)
            elif isinstance(action, Send):
                self.sim.send(self, action.to, action.msg, now_ms)
            elif isinstance(action, ValidateBlock):
                ok = all(self.sim.tx_valid(tx) for tx in action.block.txs)
                self.sim.schedule(now_ms + self.sim.rng.randint(0, 15), "validated", self.node_id,
                                  (self.incarnation, wire.hash_block(action.block), ok))
            elif isinstance(action, Deliver):
                self._deliver(action.block, action.cert)
                self.sim.timeline.append((now_ms, self.node_id, "deliver", action.block.height))
            elif isinstance(action, RecordEvidence):
                self.sim.stats["evidence_" + action.kind] += 1
                if self.honest:
                    self.sim.checker.evidence(self.node_id, action.kind, action.data, self.sim.honest_indices)
            elif isinstance(action, FetchBlocks):
                delay = self.sim.rng.randint(5, 40)
                if self.sim.faulty(now_ms):
                    delay += self.sim.adversary_delay(-1, self.index, action.from_height, None)
                self.sim.schedule(now_ms + delay, "fetch", self.node_id,
                                  (self.incarnation, action.from_height, action.peer))
            elif isinstance(action, ViewChanged):
                self.sim.stats["views_installed"] += 1
                self.sim.timeline.append((now_ms, self.node_id, "view", action.view))
            else:
                raise TypeError(f"unknown action {action!r}")

    def _deliver(self, block: Block, cert: CommitCertificate) -> None:
        if self.honest:
            self.sim.checker.delivered(self.node_id, len(self.ledger), block, cert)
        self.ledger.append((block, cert))
        self.committed_txs.update(block.txs)
        for tx in block.txs:
            self.mempool.pop(tx, None)
        self.sim.stats["deliveries"] += 1

    def _maybe_propose(self, now_ms: int) -> None:
        if not self.alive or not self.mempool or not self.replica.ready_to_propose:
            return
        txs: tuple[bytes, ...] | None = tuple(list(self.mempool)[:MAX_TXS_PER_PROPOSAL])
        if self.strategy is not None:
            txs = self.strategy.proposal(self, txs, now_ms)
        if txs is None:
            return
        actions = self.replica.propose(txs, now_ms)
        assert actions, "ready_to_propose promised that propose would act"
        self.execute(actions, now_ms)

    def on_tick(self, now_ms: int) -> None:
        self.ticks += 1
        if self.honest:
            self._shell_tick(now_ms)
        actions: list[Action] = []
        if self.mempool:
            actions += self.replica.note_pending(now_ms)
        actions += self.replica.tick(now_ms)
        self.execute(actions, now_ms)
        if self.strategy is not None and self.alive:
            self.strategy.on_tick(self, now_ms)

    def _shell_tick(self, now_ms: int) -> None:
        """What the daemon's mempool does: watch every valid pending transaction (request timers) and hand
        the ones waiting longer than a view timeout to every member (as a PBFT client would)."""
        cfg = self.sim.config
        for tx, since in list(self.mempool.items())[:SHELL_WATCHED_TXS]:
            self.replica.watch_tx(sha256(tx), now_ms)
            if now_ms - since >= cfg.view_timeout_ms and tx not in self.relayed and len(self.relayed) < 4096:
                self.relayed.add(tx)
                self.sim.relay(self, tx, now_ms)
        if self.ticks % cfg.memory_check_every == 0:
            self.sim.checker.memory(self.node_id, self.replica, self.sim.memory_limit)

    def fetch(self, from_height: int, peer: int | None, now_ms: int) -> None:
        server = self.sim.fetch_server(self, peer)
        if server is None:
            return
        blocks = server.ledger[from_height - 1:from_height - 1 + FETCH_BATCH]
        if server.strategy is not None:
            blocks = server.strategy.serve(server, blocks, from_height)
        for block, cert in blocks:
            before = self.replica.committed_height
            self.execute(self.replica.add_committed(block, cert, now_ms), now_ms)
            if not self.alive or self.replica.committed_height == before:
                return
