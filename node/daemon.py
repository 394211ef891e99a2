"""The daemon: a thin trio shell that drives the pure cores with real I/O.

One trio task owns all protocol state (replica, contract, mempool), so there are no locks and no races
between handlers: every event (a peer message, a timer tick, a finished training job) is turned into
core calls on that task, and the actions the cores return are executed strictly in order:

    persist (synced to disk) -> send -> deliver (append to ledger, apply to the contract) -> advance

What this node signed is on disk before it leaves the node, so a restarted node can never sign a
conflicting message. Blocking work (torch training, evaluation, model aggregation) runs in worker threads
and comes back to the owning task as an event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import trio

from consensus import codec
from consensus import messages as pbft
from consensus.block import Block, CertificateError, CommitCertificate, check_link, verify_certificate
from consensus.replica import (
    Broadcast,
    Deliver,
    FetchBlocks,
    Persist,
    RecordEvidence,
    Replica,
    ReplicaConfig,
    Send,
    ValidateBlock,
    ViewChanged,
)
from ml.attacks import AttackContext, AttackError, make_attack, malicious_train
from ml.robust import RobustRule
from ml.train import TrainResult
from node import contract as rc
from node.config import ConfigError, Genesis, NodeConfig
from node.identity import Identity
from node.learning import Learner, LearningPlan, vector_bytes, vector_from_bytes
from node.network import LANES, NetLimits, Network, open_network, peer_id_from_public_key
from node.secure_round import (
    Gossip,
    LinearIdentityFailed,
    Output,
    SecureRound,
    SendShares,
    SendSketchSum,
    SubmitTx,
    ValidationOutcome,
    ValidationSetup,
    Weighting,
    apply_sum,
    decide_accepted,
    quant_params,
)
from node.status import Metrics, serve_status
from node.store import Store
from node.wire import DEFAULT_REPLAY_SPAN, MonotonicSeq, Opener, Rejected, Sealer
from smpc import messages as sam
from smpc.errors import InconsistentShares, MissingMessages, NotEnoughShares, ProtocolViolation, RoundAborted
from smpc.prg import SeededRandomBytes
from smpc.quantize import quantize
from smpc.secagg import RevealRefused
from smpc.validation import SketchParams

logger = logging.getLogger("fednode")

TICK_S = 0.05
"""Timer resolution: view-change and retransmission timers (seconds), resubmissions, phase deadlines. A tick
costs each of the N processes sharing the machine some CPU, so 20 ms ticks were 2-3% of a node's CPU."""
FETCH_TIMEOUT_S = 10.0
IN_FLIGHT_WAIT_S = 3.0
"""How long a model-sized payload named on the ledger may still be on its way before we fetch it: every
member sends its update to every peer, so asking for it at once would only transfer it twice."""
MAX_BLOCKS_PER_FETCH = 64
MAX_MEMPOOL_TXS = 4096
MAX_PENDING_BLOBS = 256
OUTBOX_MAX_MESSAGES = 1024
RESUBMIT_S = 1.0
MAX_PHASE_STEPS_PER_BLOCK = 3
STATS_MERGE_WAIT_S = 0.5
"""How long the primary holds a block that closes the sketch phase (validated rounds) for the holders'
statistics, so that the same block can also close the validate phase (`_hold_for_statistics`). Holders
publish moments after the last dealer's shares reach them, so in a healthy round they arrive within one
message delay; the wait is paid in full only when a holder cannot publish (a dealer that dealt to some
holders only), where it is small against the phase deadline that follows."""
BULK_KINDS = frozenset({"blob", "masked"})
"""Model-sized payloads: they travel on the bulk lane, so consensus votes never queue behind them."""
SEND_RETRY_S = 15.0
"""How long a message waits for its peer to (re)connect before it is dropped; one-shot messages such as a
masked input or sketch shares would otherwise be lost to a member that started a few seconds late."""


PROFILE_ENV = "FEDNODE_PROFILE"
"""Set to a directory to profile the daemon's CPU (see `Profiler`); unset in production."""
PROFILE_INTERVAL_S = 0.002
"""CPU time of the whole process between two samples."""

T = TypeVar("T")


class Profiler:
    """Opt-in sampling CPU profile of one daemon, every thread included, written when it stops.

    Round time on a small machine is the CPU time of all the members' daemons summed, so finding what to
    speed up needs each CPU-second of a process attributed to a call stack, including the training and
    quantizing that run in worker threads. cProfile cannot do that cheaply: it sees one thread, and its
    per-call overhead slows trio's scheduler and libp2p's many small reads several times, which on a
    loaded cluster causes view changes that a normal run does not have.

    The kernel sends SIGPROF after every `interval_s` of CPU the process uses (ITIMER_PROF); the handler
    runs on the main thread at the next bytecode boundary, i.e. in the frame that used the CPU (after a
    C call such as a signature check or a socket write returns, in the frame that made it). It reads
    every thread's CPU clock and charges what each used since the previous sample to that thread's
    current stack; a thread blocked in epoll or on a lock used nothing and is charged nothing. (A first
    version sampled from a thread instead: it could only take the GIL where the others released it, in
    socket calls, libsodium and fsync, and charged them the CPU of the Python work before.)

    On exit `dump` writes `<dir>/<name>-<pid>.folded` (one `thread;frame;frame... cpu_us` line per stack,
    the input format of flamegraph.pl and speedscope) and `<name>-<pid>.txt` (CPU by thread, and the
    functions with the most CPU, self and inclusive).
    """

    def __init__(self, directory: Path | None, interval_s: float = PROFILE_INTERVAL_S) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self._stacks: Counter[tuple[str, ...]] = Counter()
        self._last_cpu_ns: dict[int, int] = {}
        self._running = False

    @staticmethod
    def from_env() -> Profiler:
        value = os.environ.get(PROFILE_ENV)
        return Profiler(Path(value) if value else None)

    def start(self) -> None:
        """Start sampling; call on the main thread (signal handlers live there)."""
        if self.directory is not None and not self._running:
            self._running = True
            signal.signal(signal.SIGPROF, self._sample)
            signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)

    def _sample(self, _signum: int, main_frame: Any) -> None:
        main = threading.main_thread().ident
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            try:
                cpu_ns = time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
            except OSError:
                continue  # the thread just ended
            used_ns = cpu_ns - self._last_cpu_ns.get(ident, cpu_ns)
            self._last_cpu_ns[ident] = cpu_ns
            if used_ns > 0:
                stack = _stack_of(main_frame if ident == main else frame)
                self._stacks[(names.get(ident, "thread"), *stack)] += used_ns // 1000

    def dump(self, name: str) -> None:
        if not self._running or self.directory is None:
            return
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        self._running = False
        self.directory.mkdir(parents=True, exist_ok=True)
        base = self.directory / f"{name}-{os.getpid()}"
        with open(f"{base}.folded", "w") as out:
            out.writelines(";".join(stack) + f" {cpu_us}\n" for stack, cpu_us in self._stacks.most_common())
        Path(f"{base}.txt").write_text(profile_summary(self._stacks))
        logger.info("CPU profile written to %s.folded", base)


def _stack_of(frame: Any) -> list[str]:
    """`file:function` of each frame from the outermost in (line numbers left out: they split a function)."""
    out = []
    while frame is not None:
        code = frame.f_code
        out.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
        frame = frame.f_back
    return out[::-1]


def profile_summary(stacks: Mapping[tuple[str, ...], int], top: int = 40) -> str:
    """CPU per thread, then the functions with most self and inclusive CPU, from (thread, *frames) -> us."""
    total = sum(stacks.values()) or 1
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for (thread, *frames), cpu_us in stacks.items():
        threads[thread] += cpu_us
        if frames:
            own[frames[-1]] += cpu_us
        for frame in set(frames):
            inclusive[frame] += cpu_us
    lines = [f"total CPU {total / 1e6:.2f} s"]
    lines += [f"  thread {t}: {us / 1e6:.2f} s ({100 * us / total:.1f}%)" for t, us in threads.most_common()]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} functions by {title} CPU")
        lines += [f"  {us / 1e6:8.2f} s {100 * us / total:5.1f}%  {fn}" for fn, us in counter.most_common(top)]
    return "\n".join(lines) + "\n"


class InvariantError(AssertionError):
    """Our own state is inconsistent: the node stops loudly rather than carry on wrong."""


def protocol_params(genesis: Genesis) -> dict[str, Any]:
    return genesis.section("protocol")


@dataclass(frozen=True)
class RoundSettings:
    """Everything about rounds that genesis fixes, with defaults."""

    contract: rc.ContractParams
    weighting: Weighting
    phase_deadline_s: float
    unmask_grace_s: float
    batch_window_s: float
    consensus_transport: str
    validation: ValidationSetup | None


def round_settings(genesis: Genesis, plan: LearningPlan) -> RoundSettings:
    proto = protocol_params(genesis)
    sa = genesis.section("secure_aggregation")
    degree = int(sa.get("degree", max(0, genesis.n - genesis.f - 1)))
    if not 0 <= degree < genesis.n:
        raise ConfigError(f"genesis: secure_aggregation.degree must be in [0, {genesis.n - 1}]")
    secure = bool(sa.get("enabled", True))
    val = genesis.section("validation")
    validation_degree = int(val.get("degree", 1))
    validate = secure and bool(val.get("enabled", False))
    if validate and not (1 <= validation_degree and 2 * validation_degree + 1 <= genesis.n):
        raise ConfigError(f"genesis: validation.degree t must satisfy 2t+1 <= N = {genesis.n}")
    params = rc.ContractParams(
        chain_id=genesis.chain_id, n=genesis.n, rounds=int(genesis.raw.get("rounds", 1)),
        initial_model_hash=plan.initial_model_hash, min_updates=int(proto.get("min_updates", genesis.quorum)),
        secure=secure, degree=degree, vector_length=plan.n_params + 1, validate=validate,
        validation_degree=validation_degree)
    weighting = Weighting(clip_l2=float(sa.get("clip_l2", 10.0)), sample_cap=int(sa.get("sample_cap", 1000)))
    try:
        quant_params(weighting, genesis.n)
        rule = RobustRule(**{"f": genesis.f, **val.get("rule", {})})
        setup = ValidationSetup(validation_degree, SketchParams.for_clip(weighting.total_bound,
                                                                         int(val.get("sketch_width", 1000))), rule)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"genesis: secure_aggregation/validation: {exc}") from None
    transport = str(proto.get("consensus_transport", "direct"))
    if transport not in ("gossip", "direct"):
        raise ConfigError("genesis: protocol.consensus_transport must be 'gossip' or 'direct'")
    return RoundSettings(params, weighting, float(proto.get("phase_deadline_s", 30.0)),
                         float(proto.get("unmask_grace_s", 1.0)), float(proto.get("batch_window_s", 1.0)),
                         transport, setup if validate else None)


class Daemon:
    """One hospital's node. Construct with everything loaded; `run()` serves until cancelled."""

    def __init__(self, cfg: NodeConfig, genesis: Genesis, identity: Identity, store: Store,
                 plan: LearningPlan, learner: Learner) -> None:
        self.cfg, self.genesis, self.identity, self.store = cfg, genesis, identity, store
        self.plan, self.learner = plan, learner
        self.index = genesis.index_of(identity.public_key)
        self.name = genesis.members[self.index].name
        self.settings = round_settings(genesis, plan)
        self.quant = quant_params(self.settings.weighting, genesis.n)
        self.behaviour = cfg.behaviour
        attack = self.behaviour.get("attack")
        try:
            self.attack = make_attack(attack, **self.behaviour.get("attack_params", {})) if attack else None
        except AttackError as exc:
            raise ConfigError(f"node config: behaviour.attack: {exc}") from None
        self.vector_bytes_max = 4 * (plan.n_params + 1) + 4096
        self.contract = rc.Contract(self.settings.contract, genesis.verify)
        self.metrics = Metrics()
        self.models: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.aggregated: dict[tuple[int, bytes, tuple[tuple[int, bytes, int], ...]], bytes] = {}
        """AggregateCheck (round, global model, included) -> the new model's hash, for the last few rounds."""
        self.update_blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self.masked: OrderedDict[bytes, bytes] = OrderedDict()
        self.secure: dict[int, SecureRound] = {}
        self.mempool: OrderedDict[bytes, rc.Tx] = OrderedDict()
        self.mempool_arrival: dict[bytes, float] = {}
        self.own_txs: dict[bytes, bytes] = {}
        """Our transactions not yet committed, by digest: resubmitted to every member until they are."""
        self._resubmit_at = 0.0
        self.joined_rounds: set[int] = set()
        self.sat_out: set[int] = set()
        """Secure rounds whose keys we advertised before a restart (`_join_secure_round`)."""
        self._crash_round = int(self.behaviour.get("crash_after_input_round", 0))
        self._crash_armed = False
        self._masked_deliveries = 0
        self.phase_started: dict[tuple[int, str], float] = {}
        self.round_opened_at: dict[int, float] = {}
        self.evaluations: list[dict[str, Any]] = []
        self.phase_s: Counter[str] = Counter()
        self.proposing = False
        self.fetching = False
        self.applying_fetched = False
        self.net: Network | None = None
        self._peer_queues: dict[tuple[int, str], trio.MemorySendChannel[tuple[str, bytes]]] = {}
        self._gossip_queue: trio.MemorySendChannel[tuple[str, bytes]] | None = None
        self.nursery: trio.Nursery | None = None
        self.started_at = time.monotonic()
        self.bench_empty_blocks = int(protocol_params(genesis).get("bench_empty_blocks", 0))
        self.proposed_at: dict[int, float] = {}
        self.commit_latency_ms: list[float] = []
        self.profiler = Profiler.from_env()
        self._replay_ledger()
        proto = protocol_params(genesis)
        self.replica = Replica(
            ReplicaConfig(chain_id=genesis.chain_id, n=genesis.n, f=genesis.f,
                          checkpoint_interval=int(proto.get("checkpoint_interval", 16)),
                          view_timeout_ms=int(proto.get("view_timeout_ms", 2000))),
            self.index, identity.sign, genesis.verify,
            persisted=dict(store.items(b"pbft/")),
            committed=(store.head_height, store.head_hash()),
            committed_cert=head[1] if (head := store.block(store.head_height)) else None)
        now_us = time.time_ns() // 1000
        self.sealer = Sealer(genesis.chain_id, self.index, identity.sign, MonotonicSeq(lambda: time.time_ns() // 1000))
        self.opener = Opener(genesis.chain_id, genesis.n, genesis.verify, self._payload_limits(), self.index,
                             initial_floor=now_us - DEFAULT_REPLAY_SPAN)

    # ------------------------------------------------------------------ start-up

    def _payload_limits(self) -> dict[str, int]:
        return {"pbft": 4 << 20, "tx": rc.MAX_TX_BODY_BYTES + 256, "blob": self.vector_bytes_max,
                "masked": self.vector_bytes_max + 256, "sa": 1 << 20, "vshare": 1 << 20, "ssum": 1 << 20, "get_blob": 64,
                "get_masked": 64, "get_blocks": 64}

    def _replay_ledger(self) -> None:
        """Rebuild the contract from the verified stored chain; the ledger is the source of truth."""
        self.store.verify_chain(self.genesis.n, self.genesis.quorum, self.genesis.verify)
        initial = self.plan.initial_model()
        if self.plan.initial_model_hash and hashlib.sha256(vector_bytes(initial)).digest() != \
                self.plan.initial_model_hash:
            raise ConfigError("the initial model built here does not match genesis initial_model_hash "
                              "(different torch version or model spec?)")
        self._remember_model(initial)
        for block, _cert in self.store.blocks(1):
            for event in self.contract.apply_block(block):
                if isinstance(event, rc.RoundOutcome):
                    self.evaluations.append({"round": event.round, "committed": event.committed,
                                             "included": list(event.included), "height": event.height,
                                             "model_hash": event.model_hash.hex(), "replayed": True})
        blob = self.store.blob(self.contract.state.model_hash)
        if blob is not None:
            self._remember_model(vector_from_bytes(blob, self.plan.n_params))

    def _remember_model(self, vec: np.ndarray) -> bytes:
        digest = hashlib.sha256(vector_bytes(vec)).digest()
        self.models[digest] = vec
        while len(self.models) > 4:
            self.models.popitem(last=False)
        return digest

    # ------------------------------------------------------------------ main loop

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        allowed = {peer_id_from_public_key(m.public_key): m.name for m in self.genesis.members}
        self.peer_ids = [peer_id_from_public_key(m.public_key) for m in self.genesis.members]
        self.net_limits = NetLimits(frame_max_bytes=max(self.vector_bytes_max + 1024, 1 << 20))
        async with open_network(self.identity.seed, self.cfg.listen_host, self.cfg.listen_port, allowed,
                                "fednode/" + self.genesis.chain_id.hex()[:16], self.net_limits) as net, \
                trio.open_nursery() as nursery:
            self.net, self.nursery = net, nursery
            net.set_request_handler(self._serve_request)
            status_port = await nursery.start(serve_status, self.cfg.status_port, self.status, self.metrics)
            logger.info("%s (member %d) listening on %s, status on 127.0.0.1:%d", self.name, self.index,
                        net.listen_addrs, status_port)
            for addr in self._peer_addresses():
                await net.dial(addr)
            for (peer, lane), (send, receive) in self._open_queues().items():
                self._peer_queues[(peer, lane)] = send
                nursery.start_soon(self._drain_peer, peer, lane, receive)
            gossip_send, gossip_receive = trio.open_memory_channel[tuple[str, bytes]](OUTBOX_MAX_MESSAGES)
            self._gossip_queue = gossip_send
            nursery.start_soon(self._drain_gossip, gossip_receive)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._inbox_loop)
            nursery.start_soon(self._catch_up_loop)
            self.fetching = True  # ask once for missed blocks: an idle consortium sends nothing that would tell us
            task_status.started()

    def _open_queues(self) -> dict[tuple[int, str], tuple[trio.MemorySendChannel[tuple[str, bytes]],
                                                           trio.MemoryReceiveChannel[tuple[str, bytes]]]]:
        """One outbox per peer and lane (`node.network.LANES`), each drained in order by its own task."""
        return {(peer, lane): trio.open_memory_channel[tuple[str, bytes]](OUTBOX_MAX_MESSAGES)
                for peer in range(self.genesis.n) if peer != self.index for lane in LANES}

    def _peer_addresses(self) -> list[str]:
        if self.cfg.peers:
            return list(self.cfg.peers)
        return [f"{m.address}/p2p/{peer_id_from_public_key(m.public_key)}"
                for i, m in enumerate(self.genesis.members) if i != self.index]

    @staticmethod
    def _now_ms() -> int:
        return time.monotonic_ns() // 1_000_000

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            await self._execute(self.replica.tick(self._now_ms()))
            if time.monotonic() >= self._resubmit_at:
                self._resubmit_at = time.monotonic() + RESUBMIT_S
                await self._resubmit_own_txs()
            self._after_event()

    async def _resubmit_own_txs(self) -> None:
        """Send our transactions that are still valid but not committed after RESUBMIT_S to every member.

        A transaction first goes to the primary alone (only the proposer needs it, and one direct frame is
        the fastest path). Like a PBFT client whose request times out, we then send it to all replicas:
        it reaches a new primary after a view change, survives a dropped frame or a connection still
        forming at start-up, and arms every backup's view-change timer, so a primary that censors it is
        replaced.
        """
        for digest, raw in list(self.own_txs.items()):
            tx = self.mempool.get(digest)
            if tx is None:
                del self.own_txs[digest]
            elif self.contract.tx_valid_now(tx) and time.monotonic() - self.mempool_arrival[digest] >= RESUBMIT_S:
                await self._send_to_all("tx", tx.round, raw)

    async def _hand_own_txs_to(self, primary: int) -> None:
        """A new primary gets every transaction of ours not yet committed, the next round's key
        advertisement included: those are not valid yet, so `_resubmit_own_txs` would not send them, and
        without them the new primary cannot close the keys phase in the block that opens the round."""
        if primary == self.index:
            return
        for digest, raw in list(self.own_txs.items()):
            if digest in self.mempool:
                await self._send(primary, "tx", self.mempool[digest].round, raw)

    async def _inbox_loop(self) -> None:
        assert self.net is not None
        async for kind, peer, data in self.net.inbox:
            max_bytes = max(self.vector_bytes_max, 1 << 20) + 1024 if kind == "direct" else 4 << 20
            try:
                env = self.opener.open(data, max_bytes)
            except Rejected as exc:
                self.metrics.rejected.labels(exc.reason.name.lower()).inc()
                logger.debug("rejected message from %s: %s", peer[:12], exc)
                continue
            if self.peer_ids[env.sender] != peer:
                self.metrics.rejected.labels("sender_peer_mismatch").inc()
                continue
            await self._dispatch(env)
            self._after_event()

    async def _dispatch(self, env: Any) -> None:
        if env.type == "pbft":
            try:
                msg = pbft.decode(env.payload)
            except codec.DecodeError:
                self.metrics.rejected.labels("malformed_pbft").inc()
                return
            await self._execute(self.replica.receive(msg, self._now_ms()))
        elif env.type == "tx":
            self._accept_tx(env.payload)
        elif env.type == "blob":
            self._accept_update_blob(env.height, env.payload)
        elif env.type in ("sa", "masked"):
            self._accept_secagg(env.height, env.payload)
        elif env.type == "vshare":
            await self._accept_sketch_shares(env.height, env.sender, env.payload)
        elif env.type == "ssum":
            self._accept_sketch_sum(env.height, env.sender, env.payload)
        else:
            self.metrics.rejected.labels("unexpected_type").inc()

    def _after_event(self) -> None:
        """Advance: tell the replica about pending work and let the primary propose."""
        self.metrics.height.set(self.store.head_height)
        self.metrics.round.set(self.contract.state.round)
        self.metrics.view.set(self.replica.view)
        if self.net is not None:
            self.metrics.peers.set(len(self.net.connected_peers()))
        if self._work_pending():
            self.replica.note_pending(self._now_ms())
        if self.replica.is_primary and self.replica.ready_to_propose and not self.proposing:
            assert self.nursery is not None
            self.proposing = True
            self.nursery.start_soon(self._propose)

    def _since_open_s(self, round_id: int, now: float | None = None) -> float:
        """Seconds since this process saw `round_id` open (NaN if it did not: ahead, or before a restart)."""
        opened = self.round_opened_at.get(round_id)
        return (time.monotonic() if now is None else now) - opened if opened is not None else math.nan

    def _phase_elapsed_s(self, round_id: int, phase: str) -> float:
        started = self.phase_started.get((round_id, phase))
        return -1.0 if started is None else time.monotonic() - started

    def _waiting_for_members(self) -> bool:
        """At start-up, hold the first round until every member is connected (or a phase deadline passed):
        members start seconds apart, and a round opened without one waits its phase deadlines for it."""
        if self.contract.state.round > 0 or self.net is None:
            return False
        if time.monotonic() - self.started_at > self.settings.phase_deadline_s:
            return False
        return len(self.net.connected_peers()) < self.genesis.n - 1

    def _work_pending(self) -> bool:
        """Whether the primary owes the consortium a block: the view-change timer runs only then."""
        s = self.contract.state
        if self.contract.finished:
            return False
        if not s.open and self._waiting_for_members():
            return False
        if not s.open or any(self.contract.tx_valid_now(tx) for tx in self.mempool.values()):
            return True
        return self._phase_elapsed_s(s.round, s.phase) > self.settings.phase_deadline_s

    # ------------------------------------------------------------------ executing core actions

    async def _execute(self, actions: Sequence[Any]) -> None:
        """Run a core's actions in order; the order is the crash-safety contract (see module doc)."""
        persists = [(a.key, a.value) for a in actions if isinstance(a, Persist)]
        if persists:
            self.store.write_batch_sync(persists)
        for action in actions:
            if isinstance(action, Persist):
                continue
            if isinstance(action, Broadcast):
                await self._broadcast("pbft", 0, pbft.encode(action.msg))
            elif isinstance(action, Send):
                await self._send(action.to, "pbft", 0, pbft.encode(action.msg))
            elif isinstance(action, ValidateBlock):
                assert self.nursery is not None
                self.nursery.start_soon(self._validate_block, action.block)
            elif isinstance(action, Deliver):
                self._deliver(action.block, action.cert)
            elif isinstance(action, RecordEvidence):
                key = b"evidence/" + hashlib.sha256(action.data).digest()
                self.store.put_sync(key, codec.encode([action.kind, action.data]))
                logger.warning("recorded evidence of %s", action.kind)
            elif isinstance(action, FetchBlocks):
                self.fetching = True
            elif isinstance(action, ViewChanged):
                logger.info("entered view %d (primary %d)", action.view, action.view % self.genesis.n)
                await self._hand_own_txs_to(action.view % self.genesis.n)
            else:
                raise InvariantError(f"unknown action {action!r}")

    # Sending never blocks the protocol task: messages go into bounded queues, two per peer (the control
    # lane for votes, transactions and shares; the bulk lane for model-sized payloads, so that a vote never
    # waits behind 4 MB of masked input) and one for gossip, each drained by its own task in order. A slow
    # or dead peer fills only its own queues; overflow is dropped and counted, which the cores tolerate
    # (PBFT retransmits, transactions are resubmitted, phases have deadlines).

    async def _broadcast(self, kind: str, height: int, payload: bytes) -> None:
        """A small message for every member, by the genesis `consensus_transport`: direct frames (N-1
        transmissions) or gossip ((N-1)^2, each signature-checked; see docs/benchmarks.md)."""
        if self.settings.consensus_transport == "direct":
            await self._send_to_all(kind, height, payload)
        else:
            await self._gossip(kind, height, payload)

    async def _gossip(self, kind: str, height: int, payload: bytes) -> None:
        """Gossip a small message; one above gossipsub's bound goes to every member directly instead."""
        data = self.sealer.seal(kind, height, payload)
        if len(data) > self.net_limits.gossip_max_bytes:
            self._enqueue_all(kind, data)
            return
        self.metrics.bytes_sent.labels(kind).inc(len(data) * (self.genesis.n - 1))
        assert self._gossip_queue is not None, "gossip before the network started"
        self._enqueue(self._gossip_queue, kind, data)

    async def _send(self, to: int, kind: str, height: int, payload: bytes) -> None:
        queue = self._peer_queues.get((to, _lane(kind)))
        if queue is None:  # the replica addressed us (seen during view changes): nothing to send
            logger.debug("dropping a %s send addressed to ourselves", kind)
            return
        data = self.sealer.seal(kind, height, payload)
        self.metrics.bytes_sent.labels(kind).inc(len(data))
        self._enqueue(queue, kind, data)

    async def _send_to_all(self, kind: str, height: int, payload: bytes) -> None:
        """One direct frame to every member (model-sized payloads, PBFT messages with direct transport)."""
        self._enqueue_all(kind, self.sealer.seal(kind, height, payload))

    def _enqueue_all(self, kind: str, data: bytes) -> None:
        lane = _lane(kind)
        queues = [queue for (_peer, queue_lane), queue in self._peer_queues.items() if queue_lane == lane]
        self.metrics.bytes_sent.labels(kind).inc(len(data) * len(queues))
        for queue in queues:
            self._enqueue(queue, kind, data)

    def _enqueue(self, queue: trio.MemorySendChannel[tuple[str, bytes]], kind: str, data: bytes) -> None:
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
            if kind in ("blob", "masked"):
                self.phase_s["transfer"] += time.monotonic() - started
            if kind == "masked":
                self._masked_deliveries += 1
                self._maybe_crash()

    async def _drain_gossip(self, queue: trio.MemoryReceiveChannel[tuple[str, bytes]]) -> None:
        assert self.net is not None
        async for _kind, data in queue:
            await self.net.publish(data)

    async def _submit(self, outputs: Sequence[Output], round_id: int) -> None:
        """Carry out what a secure round asked for."""
        for out in outputs:
            if isinstance(out, SubmitTx):
                raw = self._misbehave_as_validator(out.raw)
                if raw is None:
                    continue
                self._accept_tx(raw)
                self.own_txs[hashlib.sha256(raw).digest()] = raw
                if (primary := self.replica.view % self.genesis.n) != self.index:
                    await self._send(primary, "tx", round_id, raw)
            elif isinstance(out, Gossip):
                await self._broadcast("sa", round_id, out.message)
            elif isinstance(out, SendShares):
                await self._send(out.to, "vshare", round_id, out.payload)
            elif isinstance(out, SendSketchSum):
                await self._send_to_all("ssum", round_id, out.payload)
            else:
                self.masked[out.digest] = out.message
                self._masked_deliveries = 0
                await self._send_to_all("masked", round_id, out.message)
                logger.info("round %d: masked input sent to every peer, %.2f s after the round opened", round_id,
                            self._since_open_s(round_id))
        self._after_event()

    # ------------------------------------------------------------------ ledger delivery

    def _deliver(self, block: Block, cert: CommitCertificate) -> None:
        """A block is final: store it (synced), apply it to the contract, react to what happened."""
        if block.height != self.store.head_height + 1:
            raise InvariantError(f"delivered height {block.height} after head {self.store.head_height}")
        new_models = {}
        for digest in rc.referenced_blobs(block, self.genesis.chain_id, self.genesis.n, self.genesis.verify):
            if digest in self.models:
                new_models[digest] = vector_bytes(self.models[digest])
        self.store.append_block(block, cert, new_models)
        if (proposed := self.proposed_at.pop(block.height, None)) is not None:
            self.commit_latency_ms.append(1000 * (time.monotonic() - proposed))
        for raw in block.txs:
            self._forget_tx(hashlib.sha256(raw).digest())
        assert self.nursery is not None
        for event in self.contract.apply_block(block):
            self._on_event(event)
        self._prune_mempool()

    def _on_event(self, event: rc.Event) -> None:
        assert self.nursery is not None
        now = time.monotonic()
        if isinstance(event, rc.RoundOpened):
            self.round_opened_at[event.round] = now
            self.phase_started[(event.round, self.contract.state.phase)] = now
            logger.info("round %d opened at height %d", event.round, event.height)
            if self.index in event.participants and not self.applying_fetched:
                self._join_round(event.round, event.participants, event.model_hash)
        elif isinstance(event, rc.SecAggCommitted):
            sr = self.secure.get(event.round)
            if sr is not None:
                sr.on_committed(event)
        elif isinstance(event, rc.PhaseClosed):
            self.phase_started[(event.round, self.settings.contract.phase_info(event.phase)[2])] = now
            since_open = self._since_open_s(event.round, now)
            if math.isnan(since_open):  # ahead (a key phase of the next round), or opened before a restart
                logger.info("round %d: phase %s closed%s at height %d with %d members", event.round, event.phase,
                            " ahead" if event.phase in ("keys", "shares") else "", event.height, len(event.members))
            else:
                logger.info("round %d: phase %s closed at height %d with %d members, %.2f s after the round "
                            "opened", event.round, event.phase, event.height, len(event.members), since_open)
            if event.phase == "validate":
                logger.info("round %d: validation accepted %s, rejected %s", event.round, list(event.members),
                            list(self.contract.state.rejected))
            sr = self.secure.get(event.round)
            if event.phase == "inputs" and event.round == self._crash_round and self.index in event.members:
                self._crash_armed = True  # fault injection: die before dealing shares or revealing anything
                self._maybe_crash()
                return
            if sr is not None:
                self.nursery.start_soon(self._submit, self._advance_secure(sr, event), event.round)
            s = self.contract.state
            if (self.settings.contract.phase_info(event.phase)[2] == "unmask" and s.open and s.round == event.round
                    and s.phase == "unmask"):
                self.nursery.start_soon(self._precompute_aggregate,
                                        rc.AggregateCheck(s.round, s.model_hash, s.survivor_entries(), b""))
        else:
            self.secure.pop(event.round, None)
            self.nursery.start_soon(self._finish_round, event, now, time.process_time())

    def _maybe_crash(self) -> None:
        """Fault injection (config `behaviour.crash_after_input_round`): once our masked input of that round
        is on the ledger and was written to every peer, SIGKILL ourselves, like a hospital losing power."""
        if self._crash_armed and self._masked_deliveries >= self.genesis.n - 1:
            logger.warning("behaviour: SIGKILL after sending the masked input of round %d", self._crash_round)
            for handler in logging.getLogger().handlers + logger.handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def _join_round(self, round_id: int, participants: tuple[int, ...], model_hash: bytes) -> None:
        """Take part in an open round: keys (secure mode) and local training."""
        assert self.nursery is not None
        if round_id in self.joined_rounds:
            return
        self.joined_rounds.add(round_id)
        if self.settings.contract.secure:
            if round_id not in self.secure or self.secure[round_id].config_members != frozenset(participants):
                self._join_secure_round(round_id, participants)
            self._prepare_next_round(round_id + 1)
        self.nursery.start_soon(self._train_round, round_id, model_hash)

    def _join_round_found_open(self) -> None:
        """After catching up: join the open round if our update can still count.

        A node that starts (or restarts) just after a round opened, or that lags and takes a block from a
        peer instead of committing it with the others, learns of the round from fetched blocks. In its
        first phase its keys or update are still welcome. In secure mode a round usually opens with its
        keys phase already closed (keys are advertised ahead, `_prepare_next_round`): if ours are in U1,
        our update still counts until the inputs phase closes, and without it the round would wait out a
        whole phase deadline for us (seen in 7-node clusters: a lagging node never trained).
        """
        s = self.contract.state
        if s.open and self.index in s.participants and self._can_still_contribute(s):
            self._join_round(s.round, s.participants, s.model_hash)
        elif s.open and self.settings.contract.secure:
            # Too late for this round (its keys closed in the block that opened it, without ours), but not
            # for the next: without keys advertised ahead, we would miss that one too.
            self._prepare_next_round(s.round + 1)

    def _can_still_contribute(self, s: rc.ContractState) -> bool:
        if s.phase == rc.PHASES[self.settings.contract.mode][0][0]:
            return self.index not in s.inputs
        return (s.round in self.secure and self.index in s.expected
                and (s.phase == "shares" or (s.phase == "inputs" and self.index not in s.inputs)))

    def _join_secure_round(self, round_id: int, participants: tuple[int, ...]) -> None:
        """Fresh secure-aggregation keys for `round_id`; their advertisement goes to the primary.

        The round's secrets live only in memory. A node that restarted must not advertise again for a round
        it advertised for before (two different advertisements are equivocation, and the ledger may commit
        the first, whose secrets are gone: nobody could decrypt our shares and the round would abort at
        unmasking). A synced marker, written before the advertisement leaves, names those rounds; we sit
        them out. `SecureRound.on_committed` is the second line of defence.
        """
        assert self.nursery is not None
        marker = b"secagg/advertised/%d" % round_id
        if round_id in self.sat_out:
            return
        if self.store.get(marker) is not None:
            self.sat_out.add(round_id)
            logger.warning("round %d: our keys were advertised before a restart and their secrets are lost; "
                           "sitting this round out", round_id)
            return
        self.store.put_sync(marker, b"")
        opened = rc.RoundOpened(round_id, participants, b"", 0)
        sr = self.secure[round_id] = SecureRound(
            self.settings.contract, opened, self.index, self.identity.sign, self.genesis.verify,
            SeededRandomBytes(os.urandom(32)), self.quant, self.settings.validation)
        for author, message in self.contract.committed_sa_messages(round_id):  # peers' keys already committed
            sr.on_committed(rc.SecAggCommitted(round_id, author, message))
        self.nursery.start_soon(self._submit, sr.start(), round_id)

    def _prepare_next_round(self, round_id: int) -> None:
        """Advertise our keys for the next round while this one runs, so the primary can open it and close
        its keys phase in the block that commits this round's result (one PBFT commit less per round).

        Every round opens with every member as a participant, so the next round's participants are known.
        Nothing is prepared for a round that may never open (this one is the last needed).
        """
        if round_id in self.secure or self.contract.committed_rounds + 1 >= self.contract.params.rounds:
            return
        self._join_secure_round(round_id, tuple(range(self.genesis.n)))

    def _advance_secure(self, sr: SecureRound, event: rc.PhaseClosed) -> list[Output]:
        """Move the round's secure-aggregation machine now, in block order (never from a spawned task,
        whose scheduling order trio does not promise); only sending its outputs is left to a task."""
        try:
            outputs = sr.on_phase_closed(event)
        except (RoundAborted, MissingMessages, RevealRefused) as exc:
            logger.warning("round %d: secure aggregation cannot continue here: %s", event.round, exc)
            return []
        self._record_violations(sr)
        return outputs

    def _record_violations(self, sr: SecureRound) -> None:
        for violation in sr.violations:
            self.metrics.rejected.labels("secagg_" + type(violation).__name__.lower()).inc()
            logger.warning("round %d: member %s violated secure aggregation: %s", sr.round,
                           None if violation.sender is None else violation.sender - 1, violation)
        sr.violations.clear()

    async def _finish_round(self, outcome: rc.RoundOutcome, committed: float, cpu_s: float) -> None:
        """Store and evaluate the round's model; record it. `committed`: monotonic time the outcome was applied;
        `cpu_s`: this process's CPU time then.

        `round_s` runs from the round's open to the end of this evaluation, `commit_s` to the commit only;
        `committed_at` (Unix time) and `cpu_at_commit_s` let benchmarks take the period and the CPU between
        consecutive rounds' commits.
        """
        committed_at = time.time() - (time.monotonic() - committed)
        vec = await self._model(outcome.model_hash)
        if self.store.blob(outcome.model_hash) is None:
            self.store.put_blob(vector_bytes(vec))
        result = await self._in_worker("evaluation", self.learner.evaluate, vec)
        self.evaluations.append({"round": outcome.round, "committed": outcome.committed,
                                 "included": list(outcome.included), "rejected": list(outcome.rejected),
                                 "accuracy": result.accuracy,
                                 "loss": result.loss, "height": outcome.height,
                                 "round_s": self._since_open_s(outcome.round),
                                 "commit_s": self._since_open_s(outcome.round, committed),
                                 "committed_at": committed_at, "cpu_at_commit_s": cpu_s,
                                 "model_hash": outcome.model_hash.hex()})
        self.metrics.accuracy.set(result.accuracy)
        logger.info("round %d %s: %d inputs, accuracy %.4f, height %d", outcome.round,
                    "committed" if outcome.committed else "aborted", len(outcome.included), result.accuracy,
                    outcome.height)

    # ------------------------------------------------------------------ training

    async def _train_round(self, round_id: int, model_hash: bytes) -> None:
        """Train on local data from the committed global model; contribute the weighted update."""
        vec = await self._model(model_hash)
        if hashlib.sha256(vector_bytes(vec)).digest() != model_hash:
            raise InvariantError("the model about to be trained does not match the committed hash")
        train = self._malicious_train if self.attack is not None else self.learner.train
        result = await self._in_worker("training", train, vec, round_id)
        weighted = self.settings.weighting.vector(result.update, result.n_samples)
        sr = self.secure.get(round_id)
        if self.settings.contract.secure and sr is None:
            # The round ended (or we sat it out) while we trained. In secure mode an update leaves this
            # node masked or not at all: never fall through to the plain path below.
            logger.info("round %d: ended before our update was ready; it stays here", round_id)
            return
        if sr is not None:
            started = time.monotonic()
            quantized = await self._in_worker("quantizing", quantize, weighted, self.quant,
                                              SeededRandomBytes(os.urandom(32)))
            outputs = sr.set_quantized(quantized)
            self.phase_s["masking"] += time.monotonic() - started
            await self._submit(outputs, round_id)
            return
        blob = vector_bytes(weighted)
        digest = hashlib.sha256(blob).digest()
        self._keep_update_blob(digest, blob)
        await self._send_to_all("blob", round_id, blob)
        logger.info("round %d: update sent to every peer, %.2f s after the round opened", round_id,
                    self._since_open_s(round_id))
        tx = rc.make_tx(self.genesis.chain_id, "update", self.index, round_id, [digest, result.n_samples],
                        self.identity.sign)
        await self._submit([SubmitTx(tx)], round_id)

    async def _in_worker(self, phase: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (torch, numpy passes over the model) in a worker thread; account its wall
        time in phase_s[phase] and the thread's own CPU time in phase_s[phase + "_cpu"]."""
        started = time.monotonic()

        def job() -> tuple[T, float]:
            cpu_started = time.thread_time()
            out = fn(*args)
            return out, time.thread_time() - cpu_started

        result, cpu_s = await trio.to_thread.run_sync(job)
        self.phase_s[phase] += time.monotonic() - started
        self.phase_s[phase + "_cpu"] += cpu_s
        return result

    def _malicious_train(self, vec: np.ndarray, round_id: int) -> TrainResult:
        """Fault injection (config `behaviour.attack`): what a poisoning hospital submits instead."""
        assert self.attack is not None
        local = self.learner.local
        ctx = AttackContext(round=round_id, node_index=self.index, n_nodes=self.genesis.n,
                            rng=np.random.default_rng([self.plan.seed, round_id, self.index]), global_params=vec,
                            n_malicious=int(self.behaviour.get("n_malicious", 1)),
                            n_classes=self.plan.model.n_classes)
        return malicious_train(self.attack, self.plan.model, vec, local.X_train, local.y_train, self.plan.training,
                               round_id * 1_009 + self.index, ctx)

    def _misbehave_as_validator(self, raw: bytes) -> bytes | None:
        """Fault injection (config `behaviour.validator`): withhold or corrupt our statistic shares."""
        mode = self.behaviour.get("validator")
        tx = self.contract.parse(raw)
        if mode is None or tx.kind != "stats":
            return raw
        if mode == "withhold":
            logger.info("behaviour: withholding statistics for round %d", tx.round)
            return None
        corrupted = bytearray(tx.fields[0])  # type: ignore[arg-type]
        corrupted[0] ^= 0x01
        return rc.make_tx(self.genesis.chain_id, "stats", self.index, tx.round, [bytes(corrupted)], self.identity.sign)

    async def _model(self, model_hash: bytes) -> np.ndarray:
        """The global model with this hash: from memory, the store, or a peer; verified by hash."""
        while True:
            if model_hash in self.models:
                return self.models[model_hash]
            blob = self.store.blob(model_hash) or await self._fetch("get_blob", model_hash)
            if blob is not None and hashlib.sha256(blob).digest() == model_hash:
                self._remember_model(vector_from_bytes(blob, self.plan.n_params))
                continue
            await trio.sleep(0.2)

    # ------------------------------------------------------------------ mempool and peer inputs

    def _accept_tx(self, raw: bytes) -> None:
        try:
            tx = self.contract.parse(raw)
        except rc.TxError:
            self.metrics.rejected.labels("bad_tx").inc()
            return
        if tx.kind not in ("update", "sa", "input", "dealt", "stats") or len(self.mempool) >= MAX_MEMPOOL_TXS:
            self.metrics.rejected.labels("unexpected_tx").inc()
            return
        s = self.contract.state
        if tx.round < s.round or (tx.round == s.round and not s.open):
            self.metrics.rejected.labels("stale_tx").inc()
            return
        digest = hashlib.sha256(raw).digest()
        if digest not in self.mempool:
            logger.debug("mempool: %s tx of member %d for round %d", tx.kind, tx.author, tx.round)
        self.mempool[digest] = tx
        self.mempool_arrival.setdefault(digest, time.monotonic())

    def _drop_tx(self, tx: rc.Tx, why: Exception) -> None:
        """A member's transaction that no block may carry (e.g. a wrong message for the phase): forget it."""
        self._forget_tx(hashlib.sha256(tx.raw).digest())
        self.metrics.rejected.labels("bad_tx").inc()
        logger.warning("dropped a %s tx of member %d for round %d: %s", tx.kind, tx.author, tx.round, why)

    def _prune_mempool(self) -> None:
        """Forget transactions of rounds that are over: they can never be committed."""
        s = self.contract.state
        for digest, tx in list(self.mempool.items()):
            if tx.round < s.round or (tx.round == s.round and not s.open):
                self._forget_tx(digest)

    def _forget_tx(self, digest: bytes) -> None:
        """Committed, invalid or stale: out of the mempool, and no longer ours to resubmit."""
        self.mempool.pop(digest, None)
        self.mempool_arrival.pop(digest, None)
        self.own_txs.pop(digest, None)

    def _accept_update_blob(self, round_id: int, blob: bytes) -> None:
        s = self.contract.state
        if len(blob) != 4 * (self.plan.n_params + 1) or round_id not in (s.round, s.round + 1):
            self.metrics.rejected.labels("unexpected_blob").inc()
            return
        self._keep_update_blob(hashlib.sha256(blob).digest(), blob)

    def _accept_secagg(self, round_id: int, data: bytes) -> None:
        sr = self.secure.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("secagg_no_round").inc()
            return
        try:
            message = sr.decode(data)
        except ProtocolViolation:
            self.metrics.rejected.labels("secagg_malformed").inc()
            return
        if isinstance(message, sam.MaskedInput):
            self.masked[message.digest()] = data
            while len(self.masked) > MAX_PENDING_BLOBS:
                self.masked.popitem(last=False)
        sr.on_message(message)
        self._record_violations(sr)

    async def _accept_sketch_shares(self, round_id: int, sender: int, payload: bytes) -> None:
        sr = self.secure.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("vshare_no_round").inc()
            return
        try:
            outputs = sr.on_sketch_shares(sender, payload)
        except (codec.DecodeError, ValueError):
            self.metrics.rejected.labels("vshare_malformed").inc()
            return
        await self._submit(outputs, round_id)

    def _accept_sketch_sum(self, round_id: int, sender: int, payload: bytes) -> None:
        sr = self.secure.get(round_id)
        if sr is None:
            self.metrics.rejected.labels("ssum_no_round").inc()
            return
        try:
            sr.on_sketch_sum(sender, payload)
        except (codec.DecodeError, ValueError):
            self.metrics.rejected.labels("ssum_malformed").inc()

    def _keep_update_blob(self, digest: bytes, blob: bytes) -> None:
        self.update_blobs[digest] = blob
        while len(self.update_blobs) > MAX_PENDING_BLOBS:
            self.update_blobs.popitem(last=False)

    async def _update_vector(self, digest: bytes) -> np.ndarray | None:
        blob = await self._arrived(self.update_blobs, digest, IN_FLIGHT_WAIT_S)
        if blob is None:
            blob = await self._fetch("get_blob", digest)
            if blob is None or hashlib.sha256(blob).digest() != digest:
                return None
            self._keep_update_blob(digest, blob)
        try:
            return vector_from_bytes(blob, self.plan.n_params + 1)
        except ValueError:
            return None

    @staticmethod
    async def _arrived(received: Mapping[bytes, bytes], digest: bytes, wait_s: float) -> bytes | None:
        """Wait up to `wait_s` for the payload named `digest` to arrive from its author."""
        deadline = time.monotonic() + wait_s
        while (data := received.get(digest)) is None and time.monotonic() < deadline:
            await trio.sleep(0.02)
        return data

    async def _fetch(self, kind: str, digest: bytes) -> bytes | None:
        """Ask connected peers in turn for content named by `digest`; the caller verifies what comes back."""
        assert self.net is not None
        request = self.sealer.seal(kind, 0, digest)
        for peer in self.net.connected_peers():
            data = await self.net.request(peer, request, FETCH_TIMEOUT_S)
            if data:
                return data
        return None

    async def _serve_request(self, peer: str, data: bytes) -> bytes:
        try:
            env = self.opener.open(data, 1024)
        except Rejected as exc:
            self.metrics.rejected.labels(exc.reason.name.lower()).inc()
            return b""
        if env.type == "get_blob" and len(env.payload) == 32:
            blob = self.update_blobs.get(env.payload) or self.store.blob(env.payload)
            if blob is None and env.payload in self.models:
                blob = vector_bytes(self.models[env.payload])
            return blob or b""
        if env.type == "get_masked" and len(env.payload) == 32:
            return self.masked.get(env.payload, b"")
        if env.type == "get_blocks":
            return self._blocks_response(env.payload)
        return b""

    def _blocks_response(self, payload: bytes) -> bytes:
        try:
            start = codec.expect_int(codec.decode(payload, max_bytes=32), "from_height", lo=1)
        except codec.DecodeError:
            return b""
        out = []
        for height in range(start, min(start + MAX_BLOCKS_PER_FETCH, self.store.head_height + 1)):
            stored = self.store.block(height)
            assert stored is not None
            out.append([stored[0].encode(), stored[1].encode()])
        return codec.encode(out)

    # ------------------------------------------------------------------ catch-up

    async def _catch_up_loop(self) -> None:
        """Fetch committed blocks we missed from peers; every block is checked against its certificate."""
        while True:
            await trio.sleep(0.5 if not self.fetching else 0.05)
            if not self.fetching:
                continue
            self.fetching = False
            await self._catch_up_once()

    async def _catch_up_once(self) -> None:
        assert self.net is not None
        if not self.net.connected_peers() and self.genesis.n > 1:
            self.fetching = True  # no peer connected yet: ask again on the next pass
            return
        for peer in self.net.connected_peers():
            request = self.sealer.seal("get_blocks", 0, codec.encode(self.store.head_height + 1))
            data = await self.net.request(peer, request, FETCH_TIMEOUT_S)
            if not data:
                continue
            try:
                items = codec.decode(data, max_bytes=MAX_BLOCKS_PER_FETCH * (5 << 20),
                                     max_items=MAX_BLOCKS_PER_FETCH)
                pairs = [(Block.decode(b), CommitCertificate.decode(c)) for b, c in items]
            except (codec.DecodeError, ValueError, TypeError):
                self.metrics.rejected.labels("bad_catch_up").inc()
                continue
            for block, cert in pairs:
                if block.height <= self.store.head_height:
                    continue
                if not await self._add_fetched(block, cert):
                    break
            if pairs:
                self.fetching = True
                return

    async def _add_fetched(self, block: Block, cert: CommitCertificate) -> bool:
        head = self.store.block(self.store.head_height)
        try:
            check_link(self.genesis.chain_id, head[0] if head else None, block)
            verify_certificate(self.genesis.chain_id, block, cert, n=self.genesis.n, quorum=self.genesis.quorum,
                               verify=self.genesis.verify)
        except CertificateError as exc:
            self.metrics.rejected.labels("bad_fetched_block").inc()
            logger.warning("fetched block %d rejected: %s", block.height, exc)
            return False
        self.applying_fetched = True  # a round opened by a fetched block may be past: see _join_round_found_open
        try:
            await self._execute(self.replica.add_committed(block, cert, self._now_ms()))
        finally:
            self.applying_fetched = False
        self._join_round_found_open()
        self._after_event()
        return True

    # ------------------------------------------------------------------ validation and proposals

    async def _validate_block(self, block: Block) -> None:
        if block.height != self.store.head_height + 1:
            logger.debug("not validating block %d at head %d", block.height, self.store.head_height)
            return
        started = time.monotonic()
        ok = await self._block_ok(block)
        elapsed = time.monotonic() - started
        self.phase_s["validation"] += elapsed
        logger.debug("block %d from %d validated in %.3fs: %s", block.height, block.proposer, elapsed, ok)
        await self._execute(self.replica.block_validated(block.hash(), ok, self._now_ms()))
        self._after_event()

    async def _block_ok(self, block: Block) -> bool:
        """Vote only for blocks whose every transaction is valid and whose results we reproduce."""
        try:
            checks = self.contract.check_block(block)
        except rc.TxError as exc:
            logger.warning("block %d from %d rejected: %s", block.height, block.proposer, exc)
            return False
        for check in checks:
            if isinstance(check, rc.DeadlineCheck):
                if self._phase_elapsed_s(check.round, check.phase) < 0.8 * self.settings.phase_deadline_s:
                    logger.warning("block %d ends phase %s of round %d before its deadline", block.height,
                                   check.phase, check.round)
                    return False
            elif isinstance(check, rc.ValidationCheck):
                outcome = self._validation_outcome(check)
                for holder in outcome.statistics.inconsistent_publishers if outcome is not None else ():
                    self.metrics.rejected.labels("wrong_statistic_shares").inc()
                    logger.warning("round %d: member %d published statistic shares inconsistent with the others "
                                   "(corrected; evidence in block %d)", check.round, holder - 1, block.height)
                if check.accepted is None:
                    if outcome is not None and len(outcome.accepted) >= self.contract.min_members:
                        logger.warning("block %d aborts round %d, whose statistics we reconstruct", block.height,
                                       check.round)
                        return False
                elif outcome is None or outcome.accepted != check.accepted:
                    logger.warning("block %d: accepted set %s does not match ours", block.height, check.accepted)
                    return False
            elif await self._aggregate(check, wait_s=self.settings.phase_deadline_s) != check.new_model_hash:
                logger.warning("block %d: round %d aggregate does not match ours", block.height, check.round)
                return False
        return True

    async def _aggregate(self, check: rc.AggregateCheck, wait_s: float) -> bytes | None:
        """Compute the round's new global model from its inputs; remember it; return its hash (computed once
        per check: the primary proposing, a replica checking and `_precompute_aggregate` share it)."""
        key = (check.round, check.global_model_hash, check.included)
        if (known := self.aggregated.get(key)) is not None and known in self.models:
            return known
        global_vec = await self._model(check.global_model_hash)
        if self.settings.contract.secure:
            total = await self._secure_sum(check, wait_s)
        else:
            total = await self._plain_sum(check)
        if total is None:
            return None
        try:
            new_vec = apply_sum(global_vec, total)
        except ValueError:
            return None
        self.aggregated[key] = digest = self._remember_model(new_vec)
        while len(self.aggregated) > 8:
            del self.aggregated[next(iter(self.aggregated))]
        return digest

    async def _precompute_aggregate(self, check: rc.AggregateCheck) -> None:
        """The unmask phase began (the survivors are fixed): unmask as soon as the reveals are in, so that
        when the primary's `result` arrives this replica votes at once instead of unmasking only then."""
        await self._aggregate(check, wait_s=self.settings.phase_deadline_s)

    async def _plain_sum(self, check: rc.AggregateCheck) -> np.ndarray | None:
        """The float64 sum of the included update vectors, added one by one in ledger order (the order fixes
        the rounding, so every node gets the same bits; no N x L float64 matrix is ever built)."""
        total: np.ndarray | None = None
        for _author, digest, _n in check.included:
            vec = await self._update_vector(digest)
            if vec is None:
                return None
            if total is None:
                total = vec.astype(np.float64)
            else:
                np.add(total, vec, out=total)
        return total

    async def _secure_sum(self, check: rc.AggregateCheck, wait_s: float) -> np.ndarray | None:
        """Unmask the survivors' sum: wait for reveals, fetch missing masked inputs, give up after wait_s."""
        sr = self.secure.get(check.round)
        if sr is None:
            return None
        deadline = time.monotonic() + wait_s
        while True:
            if self.secure.get(check.round) is not sr:
                return None  # the round ended (committed or aborted) while we waited
            late = self._phase_elapsed_s(check.round, "unmask") > self.settings.unmask_grace_s
            try:
                total = sr.try_sum(late and sr.enough_reveals)  # on this task: the machine is not thread-safe
            except MissingMessages as exc:
                in_flight = self._phase_elapsed_s(check.round, "unmask") < IN_FLIGHT_WAIT_S
                for author, digest, _ in check.included:
                    if author + 1 not in exc.missing:
                        continue
                    data = self.masked.get(digest) or (None if in_flight else await self._fetch("get_masked", digest))
                    if data:
                        self._accept_secagg(check.round, data)  # again if it came before its phase here
                total = None
            except RoundAborted as exc:
                logger.warning("round %d: cannot unmask: %s", check.round, exc)
                if isinstance(exc, LinearIdentityFailed):
                    self.store.put_sync(b"evidence/identity/%d" % check.round,
                                        codec.encode(["linear_identity", check.round, str(exc)]))
                return None
            if total is not None:
                return total
            if time.monotonic() > deadline:
                return None
            await trio.sleep(0.05)

    def _validation_outcome(self, check: rc.ValidationCheck) -> ValidationOutcome | None:
        assert self.settings.validation is not None
        try:
            return decide_accepted(check, self.settings.validation, self.quant)
        except (NotEnoughShares, InconsistentShares, ValueError) as exc:
            logger.warning("validation statistics cannot be reconstructed: %s", exc)
            return None

    async def _propose(self) -> None:
        try:
            txs = await self._next_block_txs()
            if txs is not None and self.replica.is_primary and self.replica.ready_to_propose:
                logger.debug("proposing height %d: %s", self.store.head_height + 1,
                             [self.contract.parse(raw).kind for raw in txs])
                self.proposed_at[self.store.head_height + 1] = time.monotonic()
                await self._execute(self.replica.propose(tuple(txs), self._now_ms()))
        finally:
            self.proposing = False

    def _my_tx(self, kind: str, round_id: int, fields: list[object]) -> bytes:
        return rc.make_tx(self.genesis.chain_id, kind, self.index, round_id, fields, self.identity.sign)

    async def _next_block_txs(self) -> list[bytes] | None:
        """What the primary proposes next, following the round contract's phases.

        One block may carry several phases when their inputs are all at hand: a round's `result`, the next
        round's `open`, and that round's key advertisements (which members submit ahead, see
        `_prepare_next_round`) with the `close` of the keys phase. Every block saved is one PBFT commit
        less on the round's critical path. In secure modes every block of an open round also carries what
        the next round's key phases have ready (`_ahead_txs`), so that round opens ready for masked inputs.
        """
        if self.contract.finished:
            return None
        s = self.contract.state
        if not s.open and s.round == 0 and self.store.head_height < self.bench_empty_blocks:
            return []  # benchmarks only (genesis protocol.bench_empty_blocks): empty blocks before round 1
        shadow = self.contract.shadow()
        txs: list[bytes] = []
        for _ in range(MAX_PHASE_STEPS_PER_BLOCK):
            step, advanced = await self._phase_txs(shadow)
            txs += step
            if not advanced:
                break
            shadow.extend([shadow.parse(raw) for raw in step], self.index)
            if shadow.finished:
                break
        if self._hold_for_statistics(shadow, txs):
            return None
        return txs + self._ahead_txs(shadow) if txs else None

    def _ahead_txs(self, shadow: rc.Contract) -> list[bytes]:
        """The next round's pending `sa` transactions, and the `close` of its phase ahead once complete.

        They only ride along in blocks the open round commits anyway: they never make the primary owe a
        block (`_work_pending`), and whatever is missing when the next round opens is that round's own
        phase then (contract module doc).
        """
        candidates = [tx for tx in self.mempool.values() if shadow.tx_valid_ahead(tx)]
        valid, invalid = shadow.admissible(candidates)
        for tx, exc in invalid:
            self._drop_tx(tx, exc)
        shadow.extend(valid, self.index)
        out = [tx.raw for tx in valid]
        if shadow.ahead_complete():
            close = self._my_tx("close", shadow.state.round + 1, [shadow.state.ahead_phase])
            shadow.extend([shadow.parse(close)], self.index)
            out.append(close)
        return out

    def _hold_for_statistics(self, shadow: rc.Contract, txs: list[bytes]) -> bool:
        """Whether to wait before proposing `txs`, which close the sketch phase with every U3 member as V
        but leave the validate phase open: every holder has then dealt, so each will publish statistics over
        V = U3 as soon as the last shares reach it (`SecureRound._maybe_publish_statistics`), and waiting
        up to STATS_MERGE_WAIT_S after the last `dealt` arrived lets this block also accept: one PBFT
        commit less per validated round."""
        s, now = self.contract.state, shadow.state
        if not (s.open and s.phase == "sketch" and now.open and now.round == s.round and now.phase == "validate"
                and len(now.expected) == len(s.expected)):
            return False
        digests = [hashlib.sha256(raw).digest() for raw in txs]
        newest = max((self.mempool_arrival[d] for d in digests if d in self.mempool_arrival
                      and self.mempool[d].kind == "dealt"), default=0.0)
        return time.monotonic() - newest < STATS_MERGE_WAIT_S

    async def _phase_txs(self, c: rc.Contract) -> tuple[list[bytes], bool]:
        """The transactions that move contract `c` on now, and whether they end its current phase.

        The cheap filter (`tx_valid_now`) decides; only a decision to propose pays for the full check the
        backups will make (`admissible`: decoding and signature checks), and if that drops anything, the
        decision is taken again without it. This runs on every event while the primary may propose.
        """
        s = c.state
        if not s.open:
            if self._waiting_for_members():
                return [], False
            return [self._my_tx("open", s.round + 1, [s.model_hash, list(range(self.genesis.n))])], True
        candidates = [tx for tx in self.mempool.values() if c.tx_valid_now(tx)]
        step = await self._phase_step(c, candidates)
        if not step[0]:
            return step
        pending, invalid = c.admissible(candidates)
        for tx, exc in invalid:
            self._drop_tx(tx, exc)
        return await self._phase_step(c, pending) if invalid else step

    async def _phase_step(self, c: rc.Contract, pending: list[rc.Tx]) -> tuple[list[bytes], bool]:
        s = c.state
        members = set(s.inputs) | {tx.author for tx in pending}
        late = self._phase_elapsed_s(s.round, s.phase) > self.settings.phase_deadline_s
        enough = len(members) >= c.min_inputs(s.phase)
        ready = len(members) == len(s.expected) or (late and enough)
        raws = [tx.raw for tx in pending]
        _, closing, _ = self.settings.contract.phase_info(s.phase)
        if s.phase == "unmask" or (closing == "result" and ready):
            result = await self._result_tx(s, pending)
            if result is not None:
                return raws + [result], True
        elif closing == "accept" and ready:
            published = {a: v[0] for a, v in s.inputs.items()} | {tx.author: tx.fields[0] for tx in pending}
            check = dataclasses.replace(c.validation_check(None), published=tuple(sorted(published.items())))
            outcome = self._validation_outcome(check)  # type: ignore[arg-type]
            if outcome is None:
                return raws + [self._my_tx("abort", s.round, ["validation statistics cannot be reconstructed"])], True
            if len(outcome.accepted) < c.min_members:
                return raws + [self._my_tx("abort", s.round, [f"validation accepted only {outcome.accepted}"])], True
            return raws + [self._my_tx("accept", s.round, [list(outcome.accepted)])], True
        elif closing == "close" and ready:
            return raws + [self._my_tx("close", s.round, [s.phase])], True
        if late and not enough:
            return raws + [self._my_tx("abort", s.round, [f"too few members in phase {s.phase}"])], True
        oldest = min((self.mempool_arrival.get(hashlib.sha256(raw).digest(), 0.0) for raw in raws),
                     default=time.monotonic())
        if raws and time.monotonic() - oldest >= self.settings.batch_window_s:
            return raws, False
        return [], False

    async def _result_tx(self, s: rc.ContractState, pending: list[rc.Tx]) -> bytes | None:
        if s.phase == "unmask":
            included, entries = s.expected, s.survivor_entries()
        else:
            inputs = dict(s.inputs)
            for tx in pending:
                inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            included = tuple(sorted(inputs))
            entries = tuple((a, inputs[a][0], inputs[a][1]) for a in included)
        new_hash = await self._aggregate(rc.AggregateCheck(s.round, s.model_hash, entries, b""), wait_s=0.0)
        if new_hash is None:
            return None
        return self._my_tx("result", s.round, [list(included), new_hash])

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        s = self.contract.state
        return {
            "name": self.name, "index": self.index, "chain_id": self.genesis.chain_id.hex(),
            "height": self.store.head_height, "head_hash": self.store.head_hash().hex(),
            "round": s.round, "round_open": s.open, "phase": s.phase, "rounds": self.contract.params.rounds,
            "secure": self.settings.contract.secure, "validation": self.settings.validation is not None,
            "rejections": {str(k): v for k, v in sorted(s.rejections.items())},
            "finished": self.contract.finished and all("accuracy" in e or e.get("replayed")
                                                       for e in self.evaluations[-1:]),
            "view": self.replica.view, "primary": self.replica.view % self.genesis.n,
            "peers": len(self.net.connected_peers()) if self.net else 0,
            "evaluations": self.evaluations, "phase_s": dict(self.phase_s),
            "bytes_sent": {k: int(v) for k, v in self._bytes_sent().items()},
            "uptime_s": time.monotonic() - self.started_at,
            "commit_latency_ms": self.commit_latency_ms,
            "rejected": self._rejections(),
        }

    def _rejections(self) -> dict[str, int]:
        """Everything dropped so far, by reason: bad envelopes, the network layer's refusals, and what the
        daemon dropped (malformed or stale transactions, full outboxes, sends that never got through)."""
        out = {r.name.lower(): c for r, c in self.opener.rejected.items()}
        if self.net is not None:
            out |= {k.split(":", 1)[1]: v for k, v in self.net.stats.items() if k.startswith("rejected:")}
            if self.net.stats["stream_open_timeouts"]:
                out["stream_open_timeouts"] = self.net.stats["stream_open_timeouts"]
        out |= {sample.labels["reason"]: int(sample.value) for metric in self.metrics.rejected.collect()
                for sample in metric.samples if sample.name.endswith("_total") and sample.value}
        return out

    def _bytes_sent(self) -> dict[str, float]:
        return {sample.labels["kind"]: sample.value for metric in self.metrics.bytes_sent.collect()
                for sample in metric.samples if sample.name.endswith("_total")}


def _lane(kind: str) -> str:
    return "bulk" if kind in BULK_KINDS else "control"


async def run_until_signalled(daemon: Daemon) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (the store is closed by the caller)."""
    daemon.profiler.start()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                async for signum in signals:
                    logger.info("received %s, stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        daemon.profiler.dump(daemon.name)
