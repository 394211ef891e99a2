"""The round driver: this node's part in each federated round, from the committed `open` to the result.

Owns which rounds this node joined or sits out, the evaluations of committed models, and the worker
threads for training, quantizing and evaluation. On the contract's events (a round opened, a phase
closed, a round ended) it joins the round (secure-aggregation keys, ahead for the next round too),
trains on the committed global model, contributes the update (plaintext blob plus `update` transaction,
or masked input and the secure round's messages) and finally stores and evaluates the new model. May
call the transport (sends), the mempool (our own transactions), the content caches, this node's secure
rounds, the aggregator (to unmask early) and the fault hooks; never the proposer, block validation or
sync.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import trio

from consensus import codec
from node import contract as rc
from node.aggregation import Aggregator
from node.consortium import consortium_accuracy
from node.content import Content
from node.hooks import FaultHooks
from node.identity import Identity
from node.learning import Learner, vector_bytes
from node.mempool import Mempool
from node.secure_round import Output, SecureRound, SendShares, SendSketchSum, SubmitTx
from node.secure_rounds import SecureRounds
from node.settings import InvariantError, RoundSettings
from node.status import Metrics
from node.store import Store
from node.timings import Timings
from node.transport import Transport
from smpc.errors import MissingMessages, RoundAborted
from smpc.prg import SeededRandomBytes
from smpc.quantize import QuantParams, quantize
from smpc.secagg import RevealRefused

logger = logging.getLogger("fednode")

T = TypeVar("T")
READY_INTERVAL_S = 1.0
DISCLOSURE_KEY = b"blame/disclosure/%d"
"""Our `blame` for a round, synced when its blame phase starts: one per blame phase we took part in."""


class RoundDriver:
    """Joins, trains for and finishes the rounds the ledger opens; the daemon feeds it contract events."""

    def __init__(self, *, contract: rc.Contract, settings: RoundSettings, quant: QuantParams, index: int,
                 identity: Identity, store: Store, learner: Learner, content: Content, secure: SecureRounds,
                 mempool: Mempool, transport: Transport, aggregator: Aggregator, timings: Timings,
                 hooks: FaultHooks, metrics: Metrics, primary: Callable[[], int],
                 after_event: Callable[[], None]) -> None:
        self.contract, self.settings, self.quant, self.index = contract, settings, quant, index
        self.identity, self.store, self.learner, self.content = identity, store, learner, content
        self.secure, self.mempool, self.transport, self.aggregator = secure, mempool, transport, aggregator
        self.timings, self.hooks, self.metrics = timings, hooks, metrics
        self.primary, self.after_event = primary, after_event
        self.n = contract.params.n
        self.joined_rounds: set[int] = set()
        self.ready_sent = (0, -READY_INTERVAL_S)
        """(round id, monotonic time) of the last `ready` we submitted (`announce_presence`)."""
        self.sat_out: set[int] = set()
        """Secure rounds whose keys we advertised before a restart (`_join_secure_round`)."""
        self.evaluations: list[dict[str, Any]] = []
        self.ledger_evals: dict[int, dict[int, tuple[int, int]]] = {}
        """Every member's committed `eval` per round (at most N per committed round): the consortium accuracy."""
        self.applying_fetched = False
        """Set while blocks taken from a peer are applied: a round they open may be past (`join_found_open`)."""
        self.disclosed_late: set[int] = set()
        """Rounds whose stored blame disclosure we submitted again while suspended (`disclose_owed`)."""
        self.nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ contract events

    def on_event(self, event: rc.Event) -> None:
        """React to what a committed block did to the contract, in block order."""
        assert self.nursery is not None
        now = time.monotonic()
        if isinstance(event, rc.RoundOpened):
            self.timings.round_opened_at[event.round] = now
            self.timings.phase_started[(event.round, self.contract.state.phase)] = now
            logger.info("round %d opened at height %d", event.round, event.height)
            if self.index in event.participants and not self.applying_fetched:
                self._join_round(event.round, event.participants, event.model_hash, event.disputes)
        elif isinstance(event, rc.SecAggCommitted):
            sr = self.secure.get(event.round)
            if sr is not None:
                sr.on_committed(event)
        elif isinstance(event, rc.PhaseClosed):
            self._on_phase_closed(event, now)
        elif isinstance(event, rc.EvalCommitted):
            self.record_eval(event)
        elif isinstance(event, rc.BlameStarted):
            self._on_blame_started(event, now)
        elif isinstance(event, rc.ExciseStarted):
            self._on_excise_started(event, now)
        elif isinstance(event, rc.LateVerdict):
            logger.info("member %d disclosed late for round %d's blame phase: convicted %s, disputes %s",
                        event.member, event.round, list(event.convicted), list(event.disputes))
        elif isinstance(event, (rc.ComplaintCommitted, rc.AnswerCommitted)):
            if isinstance(event, rc.AnswerCommitted):  # an abort waits after the last answer (`abort_wait`)
                self.timings.phase_started[(event.round, "answered")] = now
            self._on_complaint(event)
        else:
            self.timings.round_closed_at[event.round] = now
            self.secure.rounds.pop(event.round, None)
            self.nursery.start_soon(self._finish_round, event, now, time.process_time())

    def _on_phase_closed(self, event: rc.PhaseClosed, now: float) -> None:
        assert self.nursery is not None
        self.timings.phase_started[(event.round, self.settings.contract.phase_info(event.phase)[2])] = now
        since_open = self.timings.since_open_s(event.round, now)
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
        if self.hooks.phase_closed(event):
            return
        if sr is not None:
            self.nursery.start_soon(self.submit, self._advance_secure(sr, event), event.round)
        s = self.contract.state
        if (self.settings.contract.phase_info(event.phase)[2] == "unmask" and s.open and s.round == event.round
                and s.phase == "unmask"):
            self.nursery.start_soon(self.aggregator.precompute,
                                    rc.AggregateCheck(s.round, s.model_hash, s.survivor_entries(), b""))

    def _on_blame_started(self, event: rc.BlameStarted, now: float) -> None:
        """Unmasking S failed at every replica: we disclose what the verdict needs (`SecureRound.on_blame_started`)."""
        assert self.nursery is not None
        self.timings.phase_started[(event.round, "blame")] = now
        logger.warning("round %d: the unmasked sum fails (weight %s, sketch coordinate %s): blame phase",
                       event.round, event.weight, event.coordinate)
        sr = self.secure.get(event.round)
        if sr is not None:
            outputs = sr.on_blame_started(event, self.hooks.blame_disclosure)
            for out in outputs:
                if isinstance(out, SubmitTx):  # synced first: a restart must not lose what the ledger may wait for
                    self.store.put_sync(DISCLOSURE_KEY % event.round, out.raw)
            self.nursery.start_soon(self.submit, outputs, event.round)

    def _on_excise_started(self, event: rc.ExciseStarted, now: float) -> None:
        """The verdict convicted members of S: we reveal our shares of their mask keys and, with validation, send our
        share of the sketches' sum over S \\ L (`SecureRound.on_excise_started`), and excise as soon as the committed
        excise reveals (and the sketch-sum shares over S \\ L) allow."""
        assert self.nursery is not None
        self.timings.phase_started[(event.round, "excise")] = now
        logger.warning("round %d: the verdict convicted %s of S: the round finishes without them (excise phase)",
                       event.round, list(event.excised))
        sr = self.secure.get(event.round)
        if sr is not None:
            self.nursery.start_soon(self.submit, sr.on_excise_started(event), event.round)
        s = self.contract.state
        if s.open and s.round == event.round and s.phase == "excise":
            self.nursery.start_soon(self.aggregator.precompute, rc.AggregateCheck(
                s.round, s.model_hash, s.survivor_entries(), b"", None, s.excised))

    def _on_complaint(self, event: rc.ComplaintCommitted | rc.AnswerCommitted) -> None:
        """A complaint against us is answered; an answer to ours gives us the dealer's shares (in block order)."""
        assert self.nursery is not None
        if isinstance(event, rc.ComplaintCommitted):
            logger.warning("round %d: member %d complains that member %d sent it no valid sketch shares",
                           event.round, event.holder, event.dealer)
        sr = self.secure.get(event.round)
        if sr is None:
            return
        outputs = sr.on_complaint(event)
        self.secure.record_violations(sr)
        self.nursery.start_soon(self.submit, outputs, event.round)

    # ------------------------------------------------------------------ joining

    def _join_round(self, round_id: int, participants: tuple[int, ...], model_hash: bytes,
                    disputes: tuple[tuple[int, int], ...]) -> None:
        """Take part in an open round: keys (secure mode) and local training; no pairwise mask between the pairs
        the ledger held disputed when it opened."""
        assert self.nursery is not None
        if round_id in self.joined_rounds:
            return
        self.joined_rounds.add(round_id)
        s = self.contract.state
        if not self.contract.takes_part((self.index,), round_id):
            logger.warning("round %d: the ledger keeps us out of it (absent %d times; back from round %d)", round_id,
                           s.strikes.get(self.index, 0), s.absent_since.get(self.index, round_id))
            if self.settings.contract.secure:
                self.prepare_next_round(round_id + 1)  # our bench may end with the next round
            return
        if self.settings.contract.secure:
            sr = self.secure.get(round_id)
            if sr is None and s.round == round_id and s.phase != "keys" and self.index not in s.u1:
                # The round opened with its key phases run ahead without our keys (we were absent or benched):
                # a machine started now could never catch up with the phases already closed.
                logger.info("round %d opened with its keys phase closed without ours: sitting it out", round_id)
                self.prepare_next_round(round_id + 1)
                return
            if sr is None or sr.config_members != frozenset(participants):
                self._join_secure_round(round_id, participants)
            if (sr := self.secure.get(round_id)) is not None:
                sr.set_disputes(disputes)  # before we mask: fixed by the verdicts before the open
            self.prepare_next_round(round_id + 1)
        self.nursery.start_soon(self.train_round, round_id, model_hash)

    def join_found_open(self) -> None:
        """After catching up: join the open round if our update can still count.

        A node that starts (or restarts) just after a round opened, or that lags and takes a block from a
        peer instead of committing it with the others, learns of the round from fetched blocks. In its
        first phase its keys or update are still welcome. In secure mode a round usually opens with its
        keys phase already closed (keys are advertised ahead, `prepare_next_round`): if ours are in U1,
        our update still counts until the inputs phase closes, and without it the round would wait out a
        whole phase deadline for us (seen in 7-node clusters: a lagging node never trained).
        """
        s = self.contract.state
        if s.open and self.index in s.participants and self._can_still_contribute(s):
            self._join_round(s.round, s.participants, s.model_hash, s.disputes)  # no verdict since the open
        elif s.open and self.settings.contract.secure:
            # Too late for this round (its keys closed in the block that opened it, without ours), but not
            # for the next: without keys advertised ahead, we would miss that one too.
            self.prepare_next_round(s.round + 1)

    def disclose_owed(self) -> None:
        """Suspended for a blame phase we did not disclose in (we crashed or lagged): submit the disclosure we
        stored when that phase started, once per run, so that the contract judges and releases us. Our pair keys
        die with a restart, the disclosure (public once committed anyway) does not."""
        assert self.nursery is not None
        round_id = self.contract.state.suspended.get(self.index)
        if round_id is None or round_id in self.disclosed_late:
            return
        raw = self.store.get(DISCLOSURE_KEY % round_id)
        if raw is None:
            return
        self.disclosed_late.add(round_id)
        logger.warning("suspended for round %d's blame phase: submitting the disclosure we stored", round_id)
        self.nursery.start_soon(self.submit, [SubmitTx(raw)], round_id)

    def announce_presence(self) -> None:
        """Back after missing a round's first phase (the contract lists us absent, and no phase waits for us):
        say so with `ready`, once per round id and at most every READY_INTERVAL_S (a node catching up passes
        many past rounds in which it was absent), so that the phases from then on wait for us again."""
        assert self.nursery is not None
        self.disclose_owed()
        round_id = self.contract.ready_round
        now = time.monotonic()
        last_round, last_at = self.ready_sent
        if self.index not in self.contract.state.absent or round_id <= last_round or self.contract.finished \
                or now - last_at < READY_INTERVAL_S or not self.contract.takes_part((self.index,), round_id):
            return
        self.ready_sent = (round_id, now)
        logger.info("missed a round: telling the consortium we are back (ready for round %d)", round_id)
        tx = rc.make_tx(self.contract.params.chain_id, "ready", self.index, round_id, [], self.identity.sign)
        self.nursery.start_soon(self.submit, [SubmitTx(tx)], round_id)

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
        sr = self.secure.rounds[round_id] = SecureRound(
            self.settings.contract, opened, self.index, self.identity.sign, self.contract.verify,
            SeededRandomBytes(os.urandom(32)), self.quant, self.settings.validation)
        for author, message in self.contract.committed_sa_messages(round_id):  # peers' keys already committed
            sr.on_committed(rc.SecAggCommitted(round_id, author, message))
        self.nursery.start_soon(self.submit, sr.start(), round_id)

    def prepare_next_round(self, round_id: int) -> None:
        """Advertise our keys for the next round while this one runs, so the primary can open it and close
        its keys phase in the block that commits this round's result (one PBFT commit less per round).

        Every round opens with every member as a participant, so the next round's participants are known.
        Nothing is prepared for a round that may never open (this one is the last needed).
        """
        if round_id in self.secure or self.contract.committed_rounds + 1 >= self.contract.params.rounds \
                or not self.contract.takes_part((self.index,), round_id):
            return
        self._join_secure_round(round_id, tuple(range(self.n)))

    def _advance_secure(self, sr: SecureRound, event: rc.PhaseClosed) -> list[Output]:
        """Move the round's secure-aggregation machine now, in block order (never from a spawned task,
        whose scheduling order trio does not promise); only sending its outputs is left to a task."""
        try:
            outputs = sr.on_phase_closed(event)
        except (RoundAborted, MissingMessages, RevealRefused) as exc:
            logger.warning("round %d: secure aggregation cannot continue here: %s", event.round, exc)
            return []
        except codec.DecodeError as exc:
            # A member's message held for this phase turned out undecodable only now. Peer input: the round
            # is lost here, the block (delivered in this very call) is not, and neither is the daemon.
            logger.warning("round %d: a member's held message does not decode (%s); the round cannot "
                           "continue here", event.round, exc)
            return []
        self.secure.record_violations(sr)
        return outputs

    # ------------------------------------------------------------------ training and contributing

    def clip_bound(self, round_id: int) -> float | None:
        """The ledger's per-round bound B of the open round `round_id` (None: clip to C alone). B changes only
        when a round commits; once `round_id` is over here its update is not sent, and C alone is returned."""
        s = self.contract.state
        return rc.clip_bound_value(s.clip_bound_micro) if s.round == round_id else None

    async def train_round(self, round_id: int, model_hash: bytes) -> None:
        """Train on local data from the committed global model; contribute the weighted update."""
        vec = await self.content.model(model_hash)
        if hashlib.sha256(vector_bytes(vec)).digest() != model_hash:
            raise InvariantError("the model about to be trained does not match the committed hash")
        result = await self._in_worker("training", self.hooks.train_fn(self.learner.train), vec, round_id)
        weighted = self.settings.weighting.vector(result.update, result.n_samples, self.clip_bound(round_id))
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
            self.timings.phase_s["masking"] += time.monotonic() - started
            await self.submit(outputs, round_id)
            return
        blob = vector_bytes(weighted)
        digest = hashlib.sha256(blob).digest()
        self.content.keep_update_blob(self.index, digest, blob)
        await self.transport.send_to_all("blob", round_id, blob)
        logger.info("round %d: update sent to every peer, %.2f s after the round opened", round_id,
                    self.timings.since_open_s(round_id))
        tx = rc.make_tx(self.contract.params.chain_id, "update", self.index, round_id, [digest, result.n_samples],
                        self.identity.sign)
        await self.submit([SubmitTx(tx)], round_id)

    async def submit(self, outputs: Sequence[Output], round_id: int) -> None:
        """Carry out what a secure round (or training) asked for."""
        for honest in outputs:
            out = self.hooks.secure_output(honest)
            if isinstance(out, SubmitTx):
                raw = self.hooks.outgoing_tx(out.raw)
                if raw is not None:
                    await self.mempool.submit_own(raw, round_id, self.primary())
            elif isinstance(out, SendShares):
                await self.transport.send(out.to, "vshare", round_id, out.payload)
            elif isinstance(out, SendSketchSum):
                await self.transport.send_to_all("ssum", round_id, out.payload)
            else:
                self.content.keep_masked(self.index + 1, out.digest, out.message)  # smpc numbers members from 1
                self.hooks.masked_input_sent(round_id)
                await self.transport.send_to_all("masked", round_id, out.message)
                logger.info("round %d: masked input sent to every peer, %.2f s after the round opened", round_id,
                            self.timings.since_open_s(round_id))
        self.after_event()

    async def _in_worker(self, phase: str, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (torch, numpy passes over the model) in a worker thread; account its wall
        time in phase_s[phase] and the thread's own CPU time in phase_s[phase + "_cpu"]."""
        started = time.monotonic()

        def job() -> tuple[T, float]:
            cpu_started = time.thread_time()
            out = fn(*args)
            return out, time.thread_time() - cpu_started

        result, cpu_s = await trio.to_thread.run_sync(job)
        self.timings.phase_s[phase] += time.monotonic() - started
        self.timings.phase_s[phase + "_cpu"] += cpu_s
        return result

    # ------------------------------------------------------------------ finishing

    def record_eval(self, event: rc.EvalCommitted) -> None:
        self.ledger_evals.setdefault(event.round, {})[event.author] = (event.correct, event.total)

    def consortium_figures(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Per round with committed evals: the pooled and median accuracy of the members' evals (`/status`)."""
        return [{"round": r, **summary} for r in sorted(self.ledger_evals)
                if (summary := consortium_accuracy(self.ledger_evals[r], names)) is not None]

    async def _finish_round(self, outcome: rc.RoundOutcome, committed: float, cpu_s: float) -> None:
        """Store and evaluate the round's model; record it and, for a committed round, put our evaluation on the
        ledger (`eval`: the consortium accuracy is pooled from the members'). `committed`: monotonic time the
        outcome was applied; `cpu_s`: this process's CPU time then.

        `round_s` runs from the round's open to the end of this evaluation, `commit_s` to the commit only;
        `committed_at` (Unix time) and `cpu_at_commit_s` let benchmarks take the period and the CPU between
        consecutive rounds' commits.
        """
        committed_at = time.time() - (time.monotonic() - committed)
        vec = await self.content.model(outcome.model_hash)
        if self.store.blob(outcome.model_hash) is None:
            self.store.put_blob(vector_bytes(vec))
        result = await self._in_worker("evaluation", self.learner.evaluate, vec)
        self.evaluations.append({"round": outcome.round, "committed": outcome.committed,
                                 "included": list(outcome.included), "rejected": list(outcome.rejected),
                                 "missing": list(outcome.missing), "liars": list(outcome.liars),
                                 "convicted": list(outcome.convicted),
                                 "disputes": [list(pair) for pair in outcome.disputes],
                                 "accuracy": result.accuracy, "held_out_rows": result.n,
                                 "loss": result.loss, "height": outcome.height,
                                 "round_s": self.timings.since_open_s(outcome.round),
                                 "commit_s": self.timings.since_open_s(outcome.round, committed),
                                 "committed_at": committed_at, "cpu_at_commit_s": cpu_s,
                                 "model_hash": outcome.model_hash.hex()})
        self.metrics.accuracy.set(result.accuracy)
        if outcome.committed:
            correct = round(result.accuracy * result.n)
            tx = rc.make_tx(self.contract.params.chain_id, "eval", self.index, outcome.round,
                            [outcome.model_hash, correct, result.n], self.identity.sign)
            await self.submit([SubmitTx(tx)], outcome.round)
        logger.info("round %d %s: %d inputs, accuracy %.4f, height %d%s", outcome.round,
                    "committed" if outcome.committed else "aborted", len(outcome.included), result.accuracy,
                    outcome.height, f", missing {list(outcome.missing)}" if outcome.missing else "")
        if outcome.convicted or outcome.disputes:
            logger.warning("round %d: the ledger convicts %s (kept out of later rounds: a blame verdict, or committed "
                           "reveals proving its dealing bad); disputed pairs %s (no pairwise mask between them from "
                           "now on)", outcome.round, list(outcome.convicted), [list(pair) for pair in outcome.disputes])
