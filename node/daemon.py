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

import hashlib
import logging
import math
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import trio
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

from consensus import codec
from consensus import messages as pbft
from consensus.block import Block, CertificateError, CommitCertificate, check_link, verify_certificate
from ml.train import fedavg
from node import contract as rc
from node.config import ConfigError, Genesis, NodeConfig
from node.identity import Identity
from node.learning import Learner, LearningPlan, vector_bytes, vector_from_bytes
from node.network import NetLimits, Network, open_network, peer_id_from_public_key
from node.status import Metrics, serve_status
from node.store import Store
from node.wire import DEFAULT_REPLAY_SPAN, MonotonicSeq, Opener, Rejected, Sealer

logger = logging.getLogger("fednode")

TICK_S = 0.02
FETCH_TIMEOUT_S = 10.0
MAX_BLOCKS_PER_FETCH = 64
MAX_MEMPOOL_TXS = 4096
MAX_PENDING_BLOBS = 256
UPDATE_BATCH_WINDOW_S = 0.25
"""How long the primary holds a pending update hoping the round's other updates arrive to share its block."""


class InvariantError(AssertionError):
    """Our own state is inconsistent: the node stops loudly rather than carry on wrong."""


def protocol_params(genesis: Genesis) -> dict[str, Any]:
    return genesis.section("protocol")


class Daemon:
    """One hospital's node. Construct with everything loaded; `run()` serves until cancelled."""

    def __init__(self, cfg: NodeConfig, genesis: Genesis, identity: Identity, store: Store,
                 plan: LearningPlan, learner: Learner) -> None:
        self.cfg, self.genesis, self.identity, self.store = cfg, genesis, identity, store
        self.plan, self.learner = plan, learner
        self.index = genesis.index_of(identity.public_key)
        self.name = genesis.members[self.index].name
        proto = protocol_params(genesis)
        self.round_deadline_s = float(proto.get("round_deadline_s", 30.0))
        self.behaviour = cfg.behaviour
        n_params = plan.n_params
        self.blob_max_bytes = 4 * n_params + 4096
        self.contract = rc.Contract(rc.ContractParams(
            chain_id=genesis.chain_id, n=genesis.n, rounds=int(genesis.raw.get("rounds", 1)),
            initial_model_hash=plan.initial_model_hash, min_updates=int(proto.get("min_updates", genesis.quorum))),
            genesis.verify)
        self.metrics = Metrics()
        self.models: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.update_blobs: OrderedDict[bytes, bytes] = OrderedDict()
        self.mempool: OrderedDict[bytes, rc.Tx] = OrderedDict()
        self.mempool_arrival: dict[bytes, float] = {}
        self.round_opened_at: dict[int, float] = {}
        self.trained_rounds: set[int] = set()
        self.evaluations: list[dict[str, Any]] = []
        self.phase_s: Counter[str] = Counter()
        self.proposing = False
        self.fetching = False
        self.net: Network | None = None
        self.nursery: trio.Nursery | None = None
        self.started_at = time.monotonic()
        self._replay_ledger()
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
        return {"pbft": 4 << 20, "tx": rc.MAX_TX_BODY_BYTES + 256, "blob": self.blob_max_bytes,
                "get_blob": 64, "get_blocks": 64}

    def _replay_ledger(self) -> None:
        """Rebuild the contract from the verified stored chain; the ledger is the source of truth."""
        self.store.verify_chain(self.genesis.n, self.genesis.quorum, self.genesis.verify)
        initial = self.plan.initial_model()
        if self.plan.initial_model_hash and hashlib.sha256(vector_bytes(initial)).digest() != \
                self.plan.initial_model_hash:
            raise ConfigError("the initial model built here does not match genesis initial_model_hash "
                              "(different torch version or model spec?)")
        self._remember_model(initial)
        for height in range(1, self.store.head_height + 1):
            stored = self.store.block(height)
            if stored is None:
                raise InvariantError(f"stored chain has a hole at height {height}")
            self.contract.apply_block(stored[0])
        head_model = self.contract.state.model_hash
        blob = self.store.blob(head_model)
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
        limits = NetLimits(frame_max_bytes=max(self.blob_max_bytes + 1024, 1 << 20))
        async with open_network(self.identity.seed, self.cfg.listen_host, self.cfg.listen_port, allowed,
                                "fednode/" + self.genesis.chain_id.hex()[:16], limits) as net, \
                trio.open_nursery() as nursery:
            self.net, self.nursery = net, nursery
            net.set_request_handler(self._serve_request)
            status_port = await nursery.start(serve_status, self.cfg.status_port, self.status, self.metrics)
            logger.info("%s (member %d) listening on %s, status on 127.0.0.1:%d", self.name, self.index,
                        net.listen_addrs, status_port)
            for addr in self._peer_addresses():
                await net.dial(addr)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._inbox_loop)
            nursery.start_soon(self._catch_up_loop)
            task_status.started()
            await self._execute(self.replica.tick(self._now_ms()))
            self._after_event()

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
            self._after_event()

    async def _inbox_loop(self) -> None:
        assert self.net is not None
        async for kind, peer, data in self.net.inbox:
            max_bytes = self.blob_max_bytes + 1024 if kind == "direct" else 4 << 20
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
            self._accept_update_blob(env.height, env.sender, env.payload)
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

    def _work_pending(self) -> bool:
        s = self.contract.state
        if self.contract.finished:
            return False
        if any(self.contract.tx_valid_now(tx) for tx in self.mempool.values()):
            return True
        opened = self.round_opened_at.get(s.round)
        return s.open and opened is not None and time.monotonic() - opened > self.round_deadline_s

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
                await self._gossip("pbft", 0, pbft.encode(action.msg))
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
            else:
                raise InvariantError(f"unknown action {action!r}")

    async def _gossip(self, kind: str, height: int, payload: bytes) -> None:
        assert self.net is not None
        data = self.sealer.seal(kind, height, payload)
        self.metrics.bytes_sent.labels(kind).inc(len(data))
        await self.net.publish(data)

    async def _send(self, to: int, kind: str, height: int, payload: bytes) -> bool:
        assert self.net is not None
        data = self.sealer.seal(kind, height, payload)
        self.metrics.bytes_sent.labels(kind).inc(len(data))
        return await self.net.send(self.peer_ids[to], data)

    # ------------------------------------------------------------------ ledger delivery

    def _deliver(self, block: Block, cert: CommitCertificate) -> None:
        """A block is final: store it (synced), apply it to the contract, react to the new state."""
        if block.height != self.store.head_height + 1:
            raise InvariantError(f"delivered height {block.height} after head {self.store.head_height}")
        new_models = {}
        for digest in rc.referenced_blobs(block, self.genesis.chain_id, self.genesis.n, self.genesis.verify):
            if digest in self.models:
                new_models[digest] = vector_bytes(self.models[digest])
        self.store.append_block(block, cert, new_models)
        outcomes = self.contract.apply_block(block)
        for raw in block.txs:
            self.mempool.pop(hashlib.sha256(raw).digest(), None)
            self.mempool_arrival.pop(hashlib.sha256(raw).digest(), None)
        s = self.contract.state
        if s.open and s.round not in self.round_opened_at:
            self.round_opened_at[s.round] = time.monotonic()
            logger.info("round %d opened at height %d", s.round, block.height)
            if self.index in s.participants and s.round not in self.trained_rounds:
                self.trained_rounds.add(s.round)
                assert self.nursery is not None
                self.nursery.start_soon(self._train_round, s.round, s.model_hash)
        for outcome in outcomes:
            assert self.nursery is not None
            self.nursery.start_soon(self._finish_round, outcome)

    async def _finish_round(self, outcome: rc.RoundOutcome) -> None:
        vec = await self._model(outcome.model_hash)
        if self.store.blob(outcome.model_hash) is None:
            self.store.put_blob(vector_bytes(vec))
        result = await trio.to_thread.run_sync(self.learner.evaluate, vec)
        opened = self.round_opened_at.get(outcome.round)
        wall_s = time.monotonic() - opened if opened is not None else math.nan
        self.evaluations.append({"round": outcome.round, "committed": outcome.committed,
                                 "included": list(outcome.included), "accuracy": result.accuracy,
                                 "loss": result.loss, "height": outcome.height, "round_s": wall_s,
                                 "model_hash": outcome.model_hash.hex()})
        self.metrics.accuracy.set(result.accuracy)
        logger.info("round %d %s: %d updates, accuracy %.4f, height %d", outcome.round,
                    "committed" if outcome.committed else "aborted", len(outcome.included), result.accuracy,
                    outcome.height)

    # ------------------------------------------------------------------ training

    async def _train_round(self, round_id: int, model_hash: bytes) -> None:
        """Train on local data from the committed global model and publish the update."""
        vec = await self._model(model_hash)
        started = time.monotonic()
        result = await trio.to_thread.run_sync(self.learner.train, vec, round_id)
        self.phase_s["training"] += time.monotonic() - started
        blob = vector_bytes(result.update)
        digest = hashlib.sha256(blob).digest()
        self._keep_update_blob(digest, blob)
        started = time.monotonic()
        for peer in range(self.genesis.n):
            if peer != self.index:
                await self._send(peer, "blob", round_id, blob)
        self.phase_s["transfer"] += time.monotonic() - started
        tx = rc.make_tx(self.genesis.chain_id, "update", self.index, round_id, [digest, result.n_samples],
                        self.identity.sign)
        self._accept_tx(tx)
        await self._gossip("tx", round_id, tx)
        self._after_event()

    async def _model(self, model_hash: bytes) -> np.ndarray:
        """The global model with this hash: from memory, the store, or a peer; verified by hash."""
        while True:
            if model_hash in self.models:
                return self.models[model_hash]
            blob = self.store.blob(model_hash) or await self._fetch_blob(model_hash)
            if blob is not None and hashlib.sha256(blob).digest() == model_hash:
                self._remember_model(vector_from_bytes(blob, self.plan.n_params))
                continue
            await trio.sleep(0.2)

    # ------------------------------------------------------------------ mempool and blobs

    def _accept_tx(self, raw: bytes) -> None:
        try:
            tx = self.contract.parse(raw)
        except rc.TxError:
            self.metrics.rejected.labels("bad_tx").inc()
            return
        if tx.kind != "update" or len(self.mempool) >= MAX_MEMPOOL_TXS:
            self.metrics.rejected.labels("unexpected_tx").inc()
            return
        digest = hashlib.sha256(raw).digest()
        self.mempool[digest] = tx
        self.mempool_arrival.setdefault(digest, time.monotonic())

    def _accept_update_blob(self, round_id: int, sender: int, blob: bytes) -> None:
        s = self.contract.state
        if len(blob) != 4 * self.plan.n_params or round_id not in (s.round, s.round + 1):
            self.metrics.rejected.labels("unexpected_blob").inc()
            return
        self._keep_update_blob(hashlib.sha256(blob).digest(), blob)

    def _keep_update_blob(self, digest: bytes, blob: bytes) -> None:
        self.update_blobs[digest] = blob
        while len(self.update_blobs) > MAX_PENDING_BLOBS:
            self.update_blobs.popitem(last=False)

    async def _update_vector(self, digest: bytes) -> np.ndarray | None:
        blob = self.update_blobs.get(digest)
        if blob is None:
            blob = await self._fetch_blob(digest)
            if blob is None or hashlib.sha256(blob).digest() != digest:
                return None
            self._keep_update_blob(digest, blob)
        try:
            return vector_from_bytes(blob, self.plan.n_params)
        except ValueError:
            return None

    async def _fetch_blob(self, digest: bytes) -> bytes | None:
        assert self.net is not None
        request = self.sealer.seal("get_blob", 0, digest)
        for peer in self.net.connected_peers():
            data = await self.net.request(peer, request, FETCH_TIMEOUT_S)
            if data and hashlib.sha256(data).digest() == digest:
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
        await self._execute(self.replica.add_committed(block, cert, self._now_ms()))
        self._after_event()
        return True

    # ------------------------------------------------------------------ validation and proposals

    async def _validate_block(self, block: Block) -> None:
        ok = await self._block_ok(block)
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
                opened = self.round_opened_at.get(check.round)
                if opened is None or time.monotonic() - opened < 0.8 * self.round_deadline_s:
                    logger.warning("block %d closes round %d before its deadline", block.height, check.round)
                    return False
            elif await self._aggregate(check) != check.new_model_hash:
                logger.warning("block %d: round %d aggregate does not match ours", block.height, check.round)
                return False
        return True

    async def _aggregate(self, check: rc.AggregateCheck) -> bytes | None:
        """Compute fedavg of the included updates; remember the model; return its hash."""
        global_vec = await self._model(check.global_model_hash)
        vectors = []
        for _author, digest, _n in check.included:
            vec = await self._update_vector(digest)
            if vec is None:
                return None
            vectors.append(vec)
        weights = [float(n) for _a, _d, n in check.included]
        new_vec = await trio.to_thread.run_sync(fedavg, global_vec, vectors, weights)
        return self._remember_model(new_vec)

    async def _propose(self) -> None:
        try:
            txs = await self._next_block_txs()
            if txs is not None and self.replica.is_primary and self.replica.ready_to_propose:
                await self._execute(self.replica.propose(tuple(txs), self._now_ms()))
        finally:
            self.proposing = False

    async def _next_block_txs(self) -> list[bytes] | None:
        """What the primary proposes next, following the round contract."""
        s = self.contract.state
        if self.contract.finished:
            return None
        if not s.open:
            participants = list(range(self.genesis.n))
            return [rc.make_tx(self.genesis.chain_id, "open", self.index, s.round + 1,
                               [s.model_hash, participants], self.identity.sign)]
        pending = [tx for tx in self.mempool.values() if self.contract.tx_valid_now(tx)]
        authors = set(s.updates) | {tx.author for tx in pending}
        opened = self.round_opened_at.get(s.round, time.monotonic())
        late = time.monotonic() - opened > self.round_deadline_s
        if len(authors) == len(s.participants) or (late and len(authors) >= self.contract.params.min_updates):
            result = await self._result_tx(s, pending)
            if result is not None:
                return [tx.raw for tx in pending] + [result]
        if late and len(authors) < self.contract.params.min_updates:
            return [tx.raw for tx in pending] + [rc.make_tx(self.genesis.chain_id, "abort", self.index, s.round,
                                                            ["too few updates before the deadline"],
                                                            self.identity.sign)]
        oldest = min((self.mempool_arrival.get(hashlib.sha256(tx.raw).digest(), 0.0) for tx in pending),
                     default=time.monotonic())
        if pending and time.monotonic() - oldest >= UPDATE_BATCH_WINDOW_S:
            return [tx.raw for tx in pending]
        return None

    async def _result_tx(self, s: rc.ContractState, pending: list[rc.Tx]) -> bytes | None:
        updates = dict(s.updates)
        for tx in pending:
            updates[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
        included = tuple(sorted(updates))
        check = rc.AggregateCheck(s.round, s.model_hash,
                                  tuple((a, updates[a][0], updates[a][1]) for a in included), b"")
        new_hash = await self._aggregate(check)
        if new_hash is None:
            return None
        return rc.make_tx(self.genesis.chain_id, "result", self.index, s.round, [list(included), new_hash],
                          self.identity.sign)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        s = self.contract.state
        return {
            "name": self.name, "index": self.index, "chain_id": self.genesis.chain_id.hex(),
            "height": self.store.head_height, "head_hash": self.store.head_hash().hex(),
            "round": s.round, "round_open": s.open, "rounds": self.contract.params.rounds,
            "finished": self.contract.finished and len(self.evaluations) >= len(s.outcomes),
            "view": self.replica.view, "primary": self.replica.view % self.genesis.n,
            "peers": len(self.net.connected_peers()) if self.net else 0,
            "evaluations": self.evaluations, "phase_s": dict(self.phase_s),
            "uptime_s": time.monotonic() - self.started_at,
            "rejected": {r.name.lower(): c for r, c in self.opener.rejected.items()},
        }


async def run_until_signalled(daemon: Daemon) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (the store is closed by the caller)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            async for signum in signals:
                logger.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
