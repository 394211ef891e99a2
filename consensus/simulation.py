"""Deterministic simulation of a PBFT consortium: N replicas, a lossy network, crashes and liars.

Everything runs in one process on a simulated clock, driven by one `random.Random(seed)`, so a seed
reproduces a run exactly (VOPR / FoundationDB style). The shell of each honest node does what the real
daemon does with a replica's actions (persist, send, validate, deliver, fetch), through the same public
replica API. Faults are drawn per seed from the schedule in `SimConfig`:

* network: random delay (with occasional long tails, hence reordering), drop, duplication, partitions
  that heal, optional encode/decode of every message through the real wire codec;
* crashes: an honest node dies in the middle of executing an action list (so "persist before send" is
  really tested) and restarts from its persisted map and its ledger;
* Byzantine replicas, up to `byzantine` of them, each with one behaviour: `silent`, `equivocate`
  (primary sends different blocks to different backups), `conflicting_votes`, `forge` (bad signatures,
  other senders' names, bogus certificates inside VIEW-CHANGE and NEW-VIEW, invalid blocks), `replay`
  (re-sends old, validly signed messages of others) and `twins` (two honest copies of one identity).

The checker asserts safety on every delivery (no two honest nodes deliver different blocks at one height,
each node delivers heights 1, 2, 3... exactly once, every certificate verifies) and liveness at the end:
once faults stop, fresh transactions must be committed by every honest node within a bound.
Signatures are keyed BLAKE2b tags (cheap), checked through the replica's injected `verify`, so the real
verification paths run while thousands of seeds fit in minutes.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from consensus import codec
from consensus import messages as wire
from consensus.block import Block, CertificateError, CommitCertificate, verify_certificate
from consensus.messages import Commit, Message, NewView, Prepare, PreparedCertificate, PrePrepare, ViewChange
from consensus.quorum import max_faulty
from consensus.replica import (
    Action,
    Broadcast,
    Deliver,
    FetchBlocks,
    M,
    Persist,
    RecordEvidence,
    Replica,
    ReplicaConfig,
    Send,
    ValidateBlock,
    ViewChanged,
)

BEHAVIOURS = ("silent", "equivocate", "conflicting_votes", "forge", "replay", "twins")
INVALID_TX_PREFIX = b"\xff"
"""The dummy application rejects any block holding a transaction that starts with this byte."""
FETCH_BATCH = 16
MAX_TXS_PER_PROPOSAL = 8


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One family of runs; every random choice inside a run comes from its seed."""

    nodes: int = 4
    byzantine: int = 1
    behaviours: tuple[str, ...] = BEHAVIOURS
    checkpoint_interval: int = 4
    window: int = 8
    view_timeout_ms: int = 300
    max_view_timeout_ms: int = 4800
    tick_ms: int = 50
    fault_period_ms: int = 3000
    liveness_bound_ms: int = 30000
    liveness_txs: int = 3
    max_drop: float = 0.15
    max_duplicate: float = 0.1
    max_delay_ms: int = 40
    delay_tail: float = 0.05
    """Probability that a message is delayed by another 100-1000 ms during the fault period."""
    crashes: int = 2
    partitions: int = 2
    wire: bool = True
    quorum_override: int | None = None
    """Plants a bug: replicas use this quorum instead of the correct one (tests that the checker bites)."""


@dataclass(slots=True)
class RunResult:
    seed: int
    violations: list[str]
    live: bool
    heights: list[int]
    stats: Counter[str]
    recovery_ms: int | None
    """Simulated time from the end of the faults until every honest node committed the fresh txs."""


@dataclass(slots=True)
class SimReport:
    runs: int
    safety_violations: int
    liveness_failures: int
    runs_per_s: float
    failing_seeds: list[int]
    details: dict[int, list[str]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    recovery_ms: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        recovery = sorted(self.recovery_ms)
        return {"runs": self.runs, "safety_violations": self.safety_violations,
                "liveness_failures": self.liveness_failures, "runs_per_s": round(self.runs_per_s, 2),
                "failing_seeds": self.failing_seeds,
                "recovery_ms_p50": recovery[len(recovery) // 2] if recovery else None,
                "recovery_ms_p99": recovery[len(recovery) * 99 // 100] if recovery else None,
                "recovery_ms_max": recovery[-1] if recovery else None,
                "details": {str(s): v for s, v in self.details.items()}, "stats": dict(self.stats)}


def _signer(secret: bytes) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        return hashlib.blake2b(data, key=secret, digest_size=16).digest()
    return sign


class Checker:
    """Safety invariants, checked at every delivery by an honest node."""

    def __init__(self, chain_id: bytes, n: int, quorum: int, verify: Callable[[int, bytes, bytes], bool]) -> None:
        self.chain_id, self.n, self.quorum, self.verify = chain_id, n, quorum, verify
        self.chain: dict[int, bytes] = {}
        self.violations: list[str] = []

    def delivered(self, node: int, previous_height: int, block: Block, cert: CommitCertificate) -> None:
        block_hash = block.hash()
        if block.height != previous_height + 1:
            self.violations.append(f"node {node} delivered height {block.height} after {previous_height}")
        try:
            verify_certificate(self.chain_id, block, cert, n=self.n, quorum=self.quorum, verify=self.verify)
        except CertificateError as exc:
            self.violations.append(f"node {node} delivered height {block.height} with a bad certificate: {exc}")
        known = self.chain.setdefault(block.height, block_hash)
        if known != block_hash:
            self.violations.append(f"fork at height {block.height}: node {node} delivered "
                                   f"{block_hash.hex()[:12]}, another honest node {known.hex()[:12]}")


    def evidence(self, node: int, record: RecordEvidence, honest: frozenset[int]) -> None:
        """Evidence must hold two different messages validly signed by one replica, never an honest one."""
        first, second = (wire.decode(m) for m in codec.decode(record.data, max_bytes=2 * wire.MAX_MESSAGE_BYTES))
        signer = first.sender
        genuine = (second.sender == signer and first != second
                   and all(self.verify(signer, wire.signing_bytes(self.chain_id, m), m.signature)
                           for m in (first, second)))
        if not genuine or signer in honest:
            self.violations.append(f"node {node} recorded false {record.kind} evidence against replica {signer}")


class SimNode:
    """The shell of one replica: persisted map, ledger, mempool, and an optional Byzantine behaviour."""

    def __init__(self, sim: Simulation, node_id: int, index: int, behaviour: str | None) -> None:
        self.sim, self.node_id, self.index, self.behaviour = sim, node_id, index, behaviour
        self.persisted: dict[bytes, bytes] = {}
        self.ledger: list[tuple[Block, CommitCertificate]] = []
        self.committed_txs: set[bytes] = set()
        self.mempool: dict[bytes, None] = {}
        self.alive = True
        self.crash_pending = False
        self.incarnation = 0
        self.replayable: list[Message] = []
        self.audience: frozenset[int] | None = None
        self.replica = self._new_replica()

    @property
    def honest(self) -> bool:
        return self.behaviour is None

    def _new_replica(self) -> Replica:
        sim = self.sim
        head = self.ledger[-1] if self.ledger else None
        committed = (len(self.ledger), head[1].block_hash if head else sim.chain_id)
        replica = Replica(sim.replica_config, self.index, sim.signers[self.index], sim.verify,
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
        """Run actions in order; a pending crash cuts the list at a random point first."""
        if self.crash_pending:
            cut = self.sim.rng.randrange(len(actions) + 1)
            self._run(actions[:cut], now_ms)
            self.crash()
            self.sim.timeline.append((now_ms, self.node_id, "crash", 0))
            return
        self._run(actions, now_ms)
        self._maybe_propose(now_ms)

    def _run(self, actions: Sequence[Action], now_ms: int) -> None:
        for action in actions:
            if isinstance(action, Persist):
                self.persisted[action.key] = action.value
            elif isinstance(action, Broadcast):
                self.sim.broadcast(self, action.msg, now_ms)
            elif isinstance(action, Send):
                self.sim.send(self, action.to, action.msg, now_ms)
            elif isinstance(action, ValidateBlock):
                ok = not any(tx.startswith(INVALID_TX_PREFIX) for tx in action.block.txs)
                self.sim.schedule(now_ms + self.sim.rng.randint(0, 15), "validated", self.node_id,
                                  (self.incarnation, wire.hash_block(action.block), ok))
            elif isinstance(action, Deliver):
                self._deliver(action.block, action.cert)
                self.sim.timeline.append((now_ms, self.node_id, "deliver", action.block.height))
            elif isinstance(action, RecordEvidence):
                self.sim.stats["evidence_" + action.kind] += 1
                if self.honest:
                    self.sim.checker.evidence(self.node_id, action, self.sim.honest_indices)
            elif isinstance(action, FetchBlocks):
                self.sim.schedule(now_ms + self.sim.rng.randint(5, 40), "fetch", self.node_id,
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
        txs = tuple(list(self.mempool)[:MAX_TXS_PER_PROPOSAL])
        if self.behaviour == "forge" and self.sim.rng.random() < 0.5:
            txs = (INVALID_TX_PREFIX + self.sim.rng.randbytes(7), *txs[1:])
        actions = self.replica.propose(txs, now_ms)
        assert actions, "ready_to_propose promised that propose would act"
        self.execute(actions, now_ms)

    def on_tick(self, now_ms: int) -> None:
        actions: list[Action] = []
        if self.mempool:
            actions += self.replica.note_pending(now_ms)
        actions += self.replica.tick(now_ms)
        self.execute(actions, now_ms)
        if self.behaviour in ("forge", "replay"):
            self.sim.misbehave(self, now_ms)

    def fetch(self, from_height: int, peer: int | None, now_ms: int) -> None:
        server = self.sim.fetch_server(self, peer)
        if server is None:
            return
        blocks = server.ledger[from_height - 1:from_height - 1 + FETCH_BATCH]
        if not server.honest and blocks:
            block, cert = blocks[0]
            blocks = [(replace(block, txs=(*block.txs, b"tampered")), cert)]
        for block, cert in blocks:
            before = self.replica.committed_height
            self.execute(self.replica.add_committed(block, cert, now_ms), now_ms)
            if not self.alive or self.replica.committed_height == before:
                return


class Simulation:
    """One seeded run."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed, self.config = seed, config
        self.rng = random.Random(seed)
        n = config.nodes
        self.f = max_faulty(n)
        assert config.byzantine <= n, config
        self.chain_id = hashlib.sha256(b"fednode-sim/" + str(seed).encode()).digest()
        secrets = [hashlib.sha256(self.chain_id + bytes([i])).digest() for i in range(n)]
        self.signers = [_signer(s) for s in secrets]
        self.replica_config = ReplicaConfig(self.chain_id, n, self.f, config.checkpoint_interval, config.window,
                                            config.view_timeout_ms, config.max_view_timeout_ms)
        self.stats: Counter[str] = Counter()
        self.queue: list[tuple[int, int, str, int, Any]] = []
        self._wire_cache: dict[int, tuple[Message, Message]] = {}
        self.timeline: list[tuple[int, int, str, int]] = []
        """(time, node, event, value) for "view", "deliver" and "crash": what benchmarks measure."""
        self._seq = 0
        byzantine = self.rng.sample(range(n), config.byzantine)
        behaviour = {i: self.rng.choice(config.behaviours) for i in byzantine}
        self.nodes = [SimNode(self, i, i, behaviour.get(i)) for i in range(n)]
        for i in byzantine:
            if behaviour[i] == "twins":
                self.nodes.append(SimNode(self, len(self.nodes), i, "twins"))
        self.by_index: dict[int, list[SimNode]] = {}
        for node in self.nodes:
            self.by_index.setdefault(node.index, []).append(node)
        self.checker = Checker(self.chain_id, n, self.nodes[0].replica.quorum, self.verify)
        self.honest_indices = frozenset(node.index for node in self.nodes if node.honest)
        self._draw_faults()

    def verify(self, index: int, data: bytes, signature: bytes) -> bool:
        if not 0 <= index < self.config.nodes:
            return False
        return hmac.compare_digest(self.signers[index](data), signature)

    # ------------------------------------------------------------------ schedule

    def schedule(self, at_ms: int, kind: str, node_id: int, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (at_ms, self._seq, kind, node_id, payload))

    def _draw_faults(self) -> None:
        cfg, rng = self.config, self.rng
        end = cfg.fault_period_ms
        self.drop = rng.uniform(0, cfg.max_drop)
        self.duplicate = rng.uniform(0, cfg.max_duplicate)
        self.partitions: list[tuple[int, int, frozenset[int]]] = []
        for _ in range(rng.randint(0, cfg.partitions)):
            start = rng.randint(0, end - 100)
            side = frozenset(rng.sample(range(cfg.nodes), rng.randint(1, cfg.nodes - 1)))
            self.partitions.append((start, min(end, start + rng.randint(100, 1500)), side))
        honest = [node for node in self.nodes if node.honest]
        for _ in range(rng.randint(0, cfg.crashes)):
            node = rng.choice(honest)
            down = rng.randint(0, end - 200)
            self.schedule(down, "crash", node.node_id)
            self.schedule(min(end - 1, down + rng.randint(50, 1500)), "restart", node.node_id)
        for node in self.nodes:
            if node.behaviour == "twins":
                node.audience = frozenset(i for i in range(cfg.nodes) if rng.random() < 0.6)
            self.schedule(rng.randint(0, cfg.tick_ms), "tick", node.node_id)
        at = 0
        while at < end:
            at += rng.randint(20, 400)
            self.schedule(at, "tx", -1, rng.randbytes(8).lstrip(INVALID_TX_PREFIX).rjust(8, b"\0"))
        self.schedule(end, "faults_end", -1)

    def faulty(self, now_ms: int) -> bool:
        return now_ms < self.config.fault_period_ms

    def partitioned(self, a: int, b: int, now_ms: int) -> bool:
        return any(start <= now_ms < stop and ((a in side) != (b in side)) for start, stop, side in self.partitions)

    # ------------------------------------------------------------------ network

    def broadcast(self, src: SimNode, msg: Message, now_ms: int) -> None:
        for index in range(self.config.nodes):
            if index != src.index:
                self.send(src, index, msg, now_ms)

    def send(self, src: SimNode, to: int, msg: Message, now_ms: int) -> None:
        if src.behaviour is not None:
            for dst, out in self._byzantine_filter(src, to, msg):
                self._transmit(src, dst, out, now_ms)
            return
        self._transmit(src, to, msg, now_ms)

    def _transmit(self, src: SimNode, to: int, msg: Message, now_ms: int) -> None:
        if src.audience is not None and to not in src.audience:
            return
        rng = self.rng
        faulty = self.faulty(now_ms)
        copies = 1 + (faulty and rng.random() < self.duplicate)
        for _ in range(copies):
            if faulty and rng.random() < self.drop:
                self.stats["dropped"] += 1
                continue
            delay = rng.randint(1, self.config.max_delay_ms)
            if faulty and rng.random() < self.config.delay_tail:
                delay += rng.randint(100, 1000)
            for node in self.by_index.get(to, ()):
                self.schedule(now_ms + delay, "msg", node.node_id, (src.index, msg))

    def _on_msg(self, node: SimNode, src: int, msg: Message, now_ms: int) -> None:
        if self.partitioned(src, node.index, now_ms):
            self.stats["partitioned"] += 1
            return
        if self.config.wire:
            msg = self._through_wire(msg)
        self.stats["messages"] += 1
        if node.behaviour == "replay" and len(node.replayable) < 400:
            node.replayable.append(msg)
        node.execute(node.replica.receive(msg, now_ms), now_ms)

    def _through_wire(self, msg: Message) -> Message:
        """Encode and decode a message with the real codec, once per sent object (a broadcast shares it)."""
        cached = self._wire_cache.get(id(msg))
        if cached is None or cached[0] is not msg:
            cached = (msg, wire.decode(wire.encode(msg)))
            assert cached[1] == msg, "the wire codec must round-trip every message"
            self._wire_cache[id(msg)] = cached
        return cached[1]

    # ------------------------------------------------------------------ Byzantine behaviours

    def _byzantine_filter(self, src: SimNode, to: int, msg: Message) -> list[tuple[int, Message]]:
        """What a Byzantine node actually sends where its honest code would send `msg` to `to`."""
        rng = self.rng
        if src.behaviour == "silent":
            return []
        out: list[tuple[int, Message]] = [(to, msg)]
        if src.behaviour == "equivocate" and isinstance(msg, PrePrepare) and rng.random() < 0.5:
            other = replace(msg.block, txs=(*msg.block.txs, rng.randbytes(8)))
            return [(to, self._resign(src, replace(msg, block=other)))] + (out if rng.random() < 0.2 else [])
        if src.behaviour == "conflicting_votes" and isinstance(msg, (Prepare, Commit)) and rng.random() < 0.5:
            bogus: Message = self._resign(src, replace(msg, block_hash=rng.randbytes(32)))
            return [(to, bogus)] + (out if rng.random() < 0.5 else [])
        return out

    def _resign(self, src: SimNode, msg: M) -> M:
        return replace(msg, signature=self.signers[src.index](wire.signing_bytes(self.chain_id, msg)))

    def misbehave(self, node: SimNode, now_ms: int) -> None:
        """Unsolicited traffic of forgers and replayers, a few messages per tick."""
        rng = self.rng
        if rng.random() > 0.3:
            return
        to = rng.randrange(self.config.nodes)
        if node.behaviour == "replay":
            if node.replayable:
                self._transmit(node, to, rng.choice(node.replayable), now_ms)
            return
        self._transmit(node, to, self._forgery(node), now_ms)

    def _forgery(self, node: SimNode) -> Message:
        """A message that must be rejected: a bad signature, another's name, or a bogus certificate."""
        rng = self.rng
        replica = node.replica
        height = replica.committed_height + 1
        block = Block(self.chain_id, height, replica.last_hash, replica.view, node.index, (rng.randbytes(8),))
        victim = rng.randrange(self.config.nodes)
        choice = rng.randrange(5)
        if choice == 0:
            return Commit(replica.view, height, block.hash(), victim, rng.randbytes(16))
        if choice == 1:
            return PrePrepare(replica.view, height, block, victim, rng.randbytes(16))
        fake_prepares = tuple(Prepare(replica.view, height, block.hash(), s, rng.randbytes(16))
                              for s in range(self.config.nodes) if s != replica.primary(replica.view))
        pp = self._resign(node, PrePrepare(replica.view, height, block, replica.primary(replica.view)))
        vc = self._resign(node, ViewChange(replica.view + 1, None, PreparedCertificate(pp, fake_prepares),
                                           node.index))
        if choice == 2:
            return vc
        if choice == 3:
            return self._resign(node, ViewChange(replica.view + rng.randint(1, 100), None, None, node.index))
        target_view = next(v for v in range(replica.view + 1, replica.view + 1 + self.config.nodes)
                           if v % self.config.nodes == node.index)
        vcs = tuple(self._resign(node, replace(vc, new_view=target_view, sender=s)) if s == node.index
                    else ViewChange(target_view, None, None, s, rng.randbytes(16))
                    for s in range(self.config.nodes))
        return self._resign(node, NewView(target_view, vcs, None, node.index))

    def fetch_server(self, client: SimNode, peer: int | None) -> SimNode | None:
        candidates = [n for n in self.nodes if n.alive and n.index != client.index]
        hinted = [n for n in candidates if n.index == peer]
        pool = hinted or candidates
        return self.rng.choice(pool) if pool else None

    # ------------------------------------------------------------------ main loop

    def run(self) -> RunResult:
        cfg = self.config
        deadline = cfg.fault_period_ms + cfg.liveness_bound_ms
        liveness_txs: list[bytes] = []
        while self.queue:
            now, _, kind, node_id, payload = heapq.heappop(self.queue)
            if now > deadline:
                break
            node = self.nodes[node_id] if node_id >= 0 else None
            if kind == "faults_end":
                liveness_txs = self._end_faults(now)
            elif kind == "crash_primary":
                views = [n.replica.view for n in self.nodes if n.alive and n.replica.active]
                if views:
                    self.by_index[max(views) % cfg.nodes][0].crash_pending = True
                    for target in self.nodes:
                        target.mempool[b"failover" + self.rng.randbytes(4)] = None
                else:
                    self.schedule(now + cfg.tick_ms, "crash_primary", -1)
            elif kind == "tx":
                for target in self.nodes:
                    if target.alive and self.rng.random() < 0.8:
                        target.mempool[payload] = None
            elif node is None:
                raise AssertionError(kind)
            elif kind == "crash":
                if node.alive:
                    node.crash_pending = True
            elif kind == "restart":
                if not node.alive:
                    node.restart(now)
            elif not node.alive:
                continue
            elif kind == "tick":
                node.on_tick(now)
                self.schedule(now + cfg.tick_ms, "tick", node_id)
            elif kind == "msg":
                self._on_msg(node, payload[0], payload[1], now)
            elif kind == "validated":
                incarnation, block_hash, ok = payload
                if incarnation == node.incarnation:
                    node.execute(node.replica.block_validated(block_hash, ok, now), now)
            elif kind == "fetch":
                incarnation, from_height, peer = payload
                if incarnation == node.incarnation:
                    node.fetch(from_height, peer, now)
            if liveness_txs and kind in ("msg", "tick") and self._all_committed(liveness_txs):
                return self._result(now - cfg.fault_period_ms)
        return self._result(None)

    def _end_faults(self, now_ms: int) -> list[bytes]:
        for node in self.nodes:
            if node.crash_pending:
                node.crash_pending = False
            if not node.alive:
                node.restart(now_ms)
        txs = [b"live" + self.rng.randbytes(4) for _ in range(self.config.liveness_txs)]
        for node in self.nodes:
            node.mempool.update(dict.fromkeys(txs))
        return txs

    def _all_committed(self, txs: list[bytes]) -> bool:
        return all(node.committed_txs.issuperset(txs) for node in self.nodes if node.honest)

    def _result(self, recovery_ms: int | None) -> RunResult:
        live = recovery_ms is not None
        for node in self.nodes:
            self.stats.update({"replica_" + k: v for k, v in node.replica.stats.items()})
        self.stats["byzantine_" + ",".join(sorted(n.behaviour for n in self.nodes if n.behaviour))] += 1
        return RunResult(self.seed, list(self.checker.violations), live,
                         [len(n.ledger) for n in self.nodes if n.honest], self.stats, recovery_ms)


def run_one(seed: int, config: SimConfig) -> RunResult:
    return Simulation(seed, config).run()


def primary_failover_ms(nodes: int, seed: int, config: SimConfig | None = None) -> tuple[int, int]:
    """Crash the primary mid-run, with work pending everywhere, on an otherwise clean network (no
    drops, partitions or Byzantine replicas): return (ms until every live replica runs a new view, ms
    until the next block commits at all of them), both from the moment of the crash."""
    cfg = replace(config or SimConfig(), nodes=nodes, byzantine=0, crashes=0, partitions=0, max_drop=0.0,
                  max_duplicate=0.0, delay_tail=0.0, fault_period_ms=6000)
    sim = Simulation(seed, cfg)
    sim.schedule(1500, "crash_primary", -1)
    sim.run()
    crashed_at, victim = next((t, node) for t, node, event, _ in sim.timeline if event == "crash")
    height_at_crash = max(v for t, node, event, v in sim.timeline if event == "deliver" and t <= crashed_at)
    others = [i for i in range(nodes) if i != victim]
    view_at = max(min(t for t, node, event, v in sim.timeline if node == i and event == "view" and t >= crashed_at)
                  for i in others)
    commit_at = max(min(t for t, node, event, v in sim.timeline
                        if node == i and event == "deliver" and v > height_at_crash and t >= crashed_at)
                    for i in others)
    return view_at - crashed_at, commit_at - crashed_at


def run_simulations(nodes: int, byzantine: int, seeds: Iterable[int], *, config: SimConfig | None = None,
                    clock: Callable[[], float] | None = None, out: Any = None,
                    stop_after_failures: int | None = None) -> SimReport:
    """Run one simulation per seed; print every failing seed (to `out`) and summarise.

    `clock` (e.g. time.perf_counter) is only used to report runs per second: the protocol core may not
    read a clock, so the caller passes one in. `stop_after_failures` ends the sweep early (bug hunts).
    """
    base = config or SimConfig()
    cfg = replace(base, nodes=nodes, byzantine=byzantine)
    started = clock() if clock else 0.0
    report = SimReport(0, 0, 0, 0.0, [])
    for seed in seeds:
        result = run_one(seed, cfg)
        report.runs += 1
        report.stats.update(result.stats)
        if result.recovery_ms is not None:
            report.recovery_ms.append(result.recovery_ms)
        failed = False
        if result.violations:
            report.safety_violations += 1
            failed = True
        if not result.live:
            report.liveness_failures += 1
            failed = True
        if failed:
            report.failing_seeds.append(seed)
            liveness = [] if result.live else ["liveness: an honest node missed the post-fault transactions"]
            report.details[seed] = result.violations + liveness
            if out is not None:
                print(f"FAILED seed={seed} nodes={nodes} byzantine={byzantine}: {report.details[seed]}", file=out)
            if stop_after_failures is not None and len(report.failing_seeds) >= stop_after_failures:
                break
    elapsed = (clock() - started) if clock else 0.0
    report.runs_per_s = report.runs / elapsed if elapsed > 0 else 0.0
    return report
