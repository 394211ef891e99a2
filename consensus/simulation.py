"""Deterministic simulation of a PBFT consortium: N replicas, a lossy network, crashes and an adaptive
Byzantine adversary.

Everything runs in one process on a simulated clock, driven by one `random.Random(seed)`, so a seed
reproduces a run exactly (VOPR / FoundationDB style). The shell of each honest node does what the real
daemon does with a replica's actions (one synced batch of every `Persist` of a list, then sends,
validation, delivery, fetches), through the same public replica API, and watches every valid transaction
in its mempool (`watch_tx`), relaying the ones that wait too long to everyone. Faults are drawn per seed:

* network: random delay (with occasional long tails, hence reordering), drop, duplication, partitions
  that heal, optional encode/decode of every message through the real wire codec;
* crashes: an honest node dies while executing an action list, after the persist batch (as the daemon
  can) or, in half the crashes, between two persists (a stricter model), and restarts from its persisted
  map and its ledger. `crash_view_change_step=k` instead crashes one honest node deterministically at
  its k-th action list after it starts a view change: enumerating k places a restart at every step;
* Byzantine replicas, up to `byzantine` of them, each driven by a strategy of `consensus.adversary`
  that signs valid messages chosen adaptively (equivocation, fresh proposals after a forcing NEW-VIEW,
  chosen VIEW-CHANGE subsets and stale certificates, withheld COMMITs, floods, replay, censorship, a
  slow primary, forged certificates with repeated signers, twins);
* Twins (`twins=`): one identity runs as two honest copies that each talk to a chosen part of the
  network until the partition heals; `twins_scenarios` enumerates them.

`consensus.sim_checker` judges every run independently of the code under test: safety and validity on
every delivery, genuine evidence, per-peer memory; liveness is that every honest member's transaction
submitted once the faults stop commits at every honest node within `liveness_bound_ms`, whatever the
Byzantine members keep doing. Signatures are keyed BLAKE2b tags (cheap), checked through the replica's
injected `verify`, so the real verification paths run while thousands of seeds fit in minutes.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from consensus import messages as wire
from consensus.adversary import STRATEGIES, make
from consensus.messages import Message
from consensus.quorum import max_faulty
from consensus.replica import (
    ReplicaConfig,
)
from consensus.sim_checker import Checker, memory_limit
from consensus.sim_node import INVALID_TX_PREFIX, SHELL_WATCHED_TXS, SimNode, make_signer
from consensus.sim_report import RunResult, SimReport

BEHAVIOURS = tuple(STRATEGIES)
"""Every Byzantine strategy; a run gives each Byzantine member one, drawn from `SimConfig.behaviours`."""
TwinsScenario = tuple[int, frozenset[int], int]
"""(twinned identity, the replicas the first copy talks to, ms until the partition heals)."""


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
    max_drop: float = 0.15
    max_duplicate: float = 0.1
    max_delay_ms: int = 40
    delay_tail: float = 0.05
    """Probability that a message is delayed by another 100-1000 ms during the fault period."""
    crashes: int = 2
    partitions: int = 2
    wire: bool = True
    crash_view_change_step: int | None = None
    """Crash one honest node at its k-th action list after it starts its first view change."""
    twins: TwinsScenario | None = None
    memory_check_every: int = 10
    """Check an honest replica's memory every this many of its ticks."""
    quorum_override: int | None = None
    """Plants a bug: replicas use this quorum instead of the correct one (tests that the checker bites)."""


class Simulation:
    """One seeded run."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed, self.config = seed, config
        self.rng = random.Random(seed)
        self.now = 0
        n = config.nodes
        self.f = max_faulty(n)
        assert config.byzantine <= n, config
        self.chain_id = hashlib.sha256(b"fednode-sim/" + str(seed).encode()).digest()
        secrets = [hashlib.sha256(self.chain_id + bytes([i])).digest() for i in range(n)]
        self.signers = [make_signer(s) for s in secrets]
        self.replica_config = ReplicaConfig(self.chain_id, n, self.f, config.checkpoint_interval, config.window,
                                            config.view_timeout_ms, config.max_view_timeout_ms)
        self.memory_limit = memory_limit(n, config.window, config.checkpoint_interval, SHELL_WATCHED_TXS)
        self.stats: Counter[str] = Counter()
        self.queue: list[tuple[int, int, str, int, Any]] = []
        self._wire_cache: dict[int, tuple[Message, Message]] = {}
        self.timeline: list[tuple[int, int, str, int]] = []
        """(time, node, event, value) for "view", "deliver" and "crash": what benchmarks measure."""
        self._seq = 0
        self.nodes = self._make_nodes()
        self.by_index: dict[int, list[SimNode]] = {}
        for node in self.nodes:
            self.by_index.setdefault(node.index, []).append(node)
        self.honest_indices = frozenset(node.index for node in self.nodes if node.honest)
        self.checker = Checker(self.chain_id, n, self.f, self.verify, self.tx_valid)
        honest_nodes = [node.node_id for node in self.nodes if node.honest]
        self.vc_victim = self.rng.choice(honest_nodes) if honest_nodes else -1
        for node in self.nodes:
            if node.strategy is not None:
                node.strategy.setup(node)
        self._draw_faults()

    def _make_nodes(self) -> list[SimNode]:
        cfg = self.config
        if cfg.twins is not None:
            identity, audience, _ = cfg.twins
            nodes = [SimNode(self, i, i, make("twins") if i == identity else None) for i in range(cfg.nodes)]
            nodes.append(SimNode(self, cfg.nodes, identity, make("twins")))
            nodes[identity].audience = audience
            nodes[-1].audience = frozenset(range(cfg.nodes)) - audience
            return nodes
        byzantine = self.rng.sample(range(cfg.nodes), cfg.byzantine)
        strategy = {i: self.rng.choice(cfg.behaviours) for i in byzantine}
        nodes = [SimNode(self, i, i, make(strategy[i]) if i in strategy else None) for i in range(cfg.nodes)]
        for i in byzantine:
            if strategy[i] == "twins":
                twin = SimNode(self, len(nodes), i, make("twins"))
                nodes.append(twin)
                nodes[i].audience = frozenset(j for j in range(cfg.nodes) if self.rng.random() < 0.6)
                twin.audience = frozenset(j for j in range(cfg.nodes) if self.rng.random() < 0.6)
        return nodes

    def verify(self, index: int, data: bytes, signature: bytes) -> bool:
        if not 0 <= index < self.config.nodes:
            return False
        return hmac.compare_digest(self.signers[index](data), signature)

    # ------------------------------------------------------------------ application

    @staticmethod
    def tx_valid(tx: bytes) -> bool:
        return not tx.startswith(INVALID_TX_PREFIX)

    @staticmethod
    def origin(tx: bytes) -> int:
        """The member that submitted `tx` (its first byte)."""
        return tx[0] if tx else -1

    def new_tx(self, origin: int) -> bytes:
        return bytes([origin]) + self.rng.randbytes(7)

    def invalid_tx(self) -> bytes:
        return INVALID_TX_PREFIX + self.rng.randbytes(7)

    def relay(self, src: SimNode, tx: bytes, now_ms: int) -> None:
        """A transaction handed to every member (after a short network delay)."""
        self.schedule(now_ms + self.rng.randint(1, self.config.max_delay_ms), "tx", -1, tx)

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
        crashes = 0 if cfg.crash_view_change_step is not None else rng.randint(0, cfg.crashes)
        for _ in range(crashes):
            node = rng.choice(honest)
            down = rng.randint(0, end - 200)
            self.schedule(down, "crash", node.node_id)
            self.schedule(min(end - 1, down + rng.randint(50, 1500)), "restart", node.node_id)
        for node in self.nodes:
            self.schedule(rng.randint(0, cfg.tick_ms), "tick", node.node_id)
        at = 0
        while at < end:
            at += rng.randint(20, 400)
            self.schedule(at, "tx", -1, self.new_tx(rng.randrange(cfg.nodes)))
        if cfg.twins is not None:
            self.schedule(cfg.twins[2], "heal_twins", -1)
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
        if src.strategy is not None:
            for dst, out in src.strategy.outgoing(src, to, msg):
                self.transmit(src, dst, out, now_ms)
            return
        self.transmit(src, to, msg, now_ms)

    def transmit(self, src: SimNode, to: int, msg: Message, now_ms: int) -> None:
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
            if faulty:
                delay += self.adversary_delay(src.index, to, getattr(msg, "height", None), msg)
            for node in self.by_index.get(to, ()):
                if node.audience is None or src.index in node.audience:
                    self.schedule(now_ms + delay, "msg", node.node_id, (src.index, msg))

    def adversary_delay(self, src: int, to: int, height: int | None, msg: Message | None) -> int:
        """While faults last the network is asynchronous: the Byzantine strategies may hold back any
        message or catch-up answer (`msg` None, src -1) between members; safety must hold under every
        schedule."""
        return max((node.strategy.delay_ms(node, src, to, height, msg) for node in self.nodes
                    if node.strategy is not None and node.alive), default=0)

    def _on_msg(self, node: SimNode, src: int, msg: Message, now_ms: int) -> None:
        if self.partitioned(src, node.index, now_ms):
            self.stats["partitioned"] += 1
            return
        if self.config.wire:
            msg = self._through_wire(msg)
        self.stats["messages"] += 1
        if node.strategy is not None:
            node.strategy.on_receive(node, msg, now_ms)
        node.execute(node.replica.receive(msg, now_ms), now_ms)

    def _through_wire(self, msg: Message) -> Message:
        """Encode and decode a message with the real codec, once per sent object (a broadcast shares it)."""
        cached = self._wire_cache.get(id(msg))
        if cached is None or cached[0] is not msg:
            cached = (msg, wire.decode(wire.encode(msg)))
            assert cached[1] == msg, "the wire codec must round-trip every message"
            self._wire_cache[id(msg)] = cached
        return cached[1]

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
            self.now = now
            node = self.nodes[node_id] if node_id >= 0 else None
            if node is None:
                liveness_txs = self._global_event(kind, payload, now) or liveness_txs
            else:
                self._node_event(node, kind, payload, now)
            if liveness_txs and kind in ("msg", "tick") and self._all_committed(liveness_txs):
                return self._result(now - cfg.fault_period_ms)
        return self._result(None)

    def _global_event(self, kind: str, payload: Any, now: int) -> list[bytes] | None:
        if kind == "faults_end":
            return self._end_faults(now)
        if kind == "heal_twins":
            for node in self.nodes:
                node.audience = None if node.honest else frozenset(range(self.config.nodes))
        elif kind == "crash_primary":
            self._crash_primary(now)
        elif kind == "tx":
            for target in self.nodes:
                if target.alive and self.rng.random() < 0.8:
                    target.mempool.setdefault(payload, now)
        else:
            raise AssertionError(kind)
        return None

    def _node_event(self, node: SimNode, kind: str, payload: Any, now: int) -> None:
        if kind == "crash":
            node.crash_pending = node.alive
        elif kind == "restart":
            if not node.alive:
                node.restart(now)
        elif not node.alive:
            return
        elif kind == "tick":
            node.on_tick(now)
            self.schedule(now + self.config.tick_ms, "tick", node.node_id)
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

    def _crash_primary(self, now: int) -> None:
        views = [n.replica.view for n in self.nodes if n.alive and n.replica.active]
        if not views:
            self.schedule(now + self.config.tick_ms, "crash_primary", -1)
            return
        self.by_index[max(views) % self.config.nodes][0].crash_pending = True
        for target in self.nodes:
            target.mempool[b"failover" + self.rng.randbytes(4)] = now

    def _end_faults(self, now_ms: int) -> list[bytes]:
        """The network stabilises; every honest member submits a transaction, handed to every member."""
        for node in self.nodes:
            if node.crash_pending:
                node.crash_pending = False
            if not node.alive:
                node.restart(now_ms)
        txs = [self.new_tx(index) for index in sorted(self.honest_indices)]
        for node in self.nodes:
            node.mempool.update(dict.fromkeys(txs, now_ms))
        return txs

    def _all_committed(self, txs: list[bytes]) -> bool:
        return all(node.committed_txs.issuperset(txs) for node in self.nodes if node.honest)

    def _result(self, recovery_ms: int | None) -> RunResult:
        live = recovery_ms is not None
        for node in self.nodes:
            self.stats.update({"replica_" + k: v for k, v in node.replica.stats.items()})
            if node.honest:
                self.checker.memory(node.node_id, node.replica, self.memory_limit)
        strategies = tuple(sorted({n.behaviour for n in self.nodes if n.behaviour}))
        return RunResult(self.seed, list(self.checker.violations), list(self.checker.validity_violations), live,
                         [len(n.ledger) for n in self.nodes if n.honest], self.stats, recovery_ms, strategies,
                         self.checker.peak_memory)


def run_one(seed: int, config: SimConfig) -> RunResult:
    return Simulation(seed, config).run()


def twins_scenarios(nodes: int = 4, heals_ms: Sequence[int] = (600, 2400)) -> list[TwinsScenario]:
    """Twins for N nodes: each identity that is primary of view 0, of view 1, or of neither, twinned; every
    split of the other replicas between the two copies (each copy talks to its side); every heal time."""
    out: list[TwinsScenario] = []
    for identity in (0, 1, 2):
        others = [i for i in range(nodes) if i != identity]
        for size in range(len(others) + 1):
            for side in itertools.combinations(others, size):
                out += [(identity, frozenset(side), heal) for heal in heals_ms]
    return out


def run_twins(seeds_per_scenario: int = 1, config: SimConfig | None = None, out: Any = None) -> SimReport:
    """Run every Twins scenario for N=4 (with the usual random network faults, no other Byzantine member)."""
    base = replace(config or SimConfig(), nodes=4, byzantine=0)
    report = SimReport()
    for number, scenario in enumerate(twins_scenarios(base.nodes)):
        for seed in range(seeds_per_scenario):
            result = run_one(90_000 + 100 * number + seed, replace(base, twins=scenario))
            report.add(result, out, f"twins={scenario}")
    return report


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
    report = SimReport()
    for seed in seeds:
        report.add(run_one(seed, cfg), out, f"nodes={nodes} byzantine={byzantine}")
        if stop_after_failures is not None and len(report.failing_seeds) >= stop_after_failures:
            break
    elapsed = (clock() - started) if clock else 0.0
    report.runs_per_s = report.runs / elapsed if elapsed > 0 else 0.0
    return report

