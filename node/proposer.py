"""The proposer: what this node puts in the next block when it is the primary.

Owns no state of its own: it reads the mempool and the round contract, follows the contract's phases on
a shadow of it, and returns the transactions of the next block (or None: nothing to propose yet). It
drops pending transactions the backups would reject (`Contract.admissible`), so one stale or forged
transaction costs itself, not a view change. May call the contract, the mempool, the aggregator and the
phase timings; it never touches the network or the replica (the daemon proposes what it returns).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence

from node import contract as rc
from node.aggregation import Aggregator
from node.mempool import Mempool
from node.settings import WINDOWS, RoundSettings
from node.timings import Timings

MAX_PHASE_STEPS_PER_BLOCK = 3
ANSWER_BYTES_PER_BLOCK = 1 << 19
"""The dealers' answers (sealed sketch shares, up to `rc.MAX_ANSWER_BYTES` each, |V| (|V| - 1) in a round at
most) one block carries, so that a block stays well within what a peer accepts in a pre-prepare (1 MiB); the
rest go in the next blocks, well within the answers' window of a phase deadline."""
STATS_MERGE_WAIT_S = 0.5
"""How long the primary holds a block that closes the sketch phase (validated rounds) for the holders'
statistics, so that the same block can also close the validate phase (`_hold_for_statistics`). Holders
publish moments after the last dealer's shares reach them, so in a healthy round they arrive within one
message delay; the wait is paid in full only when a holder cannot publish (a dealer that dealt to some
holders only), where it is small against the phase deadline that follows."""
UNMASK_MERGE_WAIT_S = 0.5
"""How long the primary holds the unmask phase's reveals, once they recover every secret, for its own unmasking of
them to finish (with validation: the holders' shares of the sketch sum, sent with the reveals, must be in), so
that the reveals and the `result` share one block (`Proposer._unmask_step`): one PBFT commit less per secure
round. Past it the reveals commit alone and the result follows in a later block."""

RETRY_BACKOFF_BASE_S = 1.0
"""The pause before the round after two unnamed aborts in a row; it doubles with each further one (`retry_backoff_s`)."""
_STREAK_SCAN = 16
"""Unnamed aborts counted at most: the backoff reaches any phase deadline long before."""


def unnamed_abort_streak(outcomes: Sequence[rc.RoundOutcome]) -> int:
    """How many rounds in a row, up to the last outcome, aborted naming nobody (no member missing, convicted, in a
    dispute or listed as a statistics liar): the ledger excluded nobody, so the same cause will abort the retry
    (at N = 3f + 1 one lying statistics publisher makes every round's statistics undecidable, G3)."""
    streak = 0
    for outcome in reversed(outcomes[-_STREAK_SCAN:]):
        if outcome.committed or outcome.missing or outcome.convicted or outcome.disputes or outcome.liars:
            break
        streak += 1
    return streak


def retry_backoff_s(streak: int, cap_s: float) -> float:
    """How long the primary waits, after the round that ended a streak of `streak` unnamed aborts, before opening the
    next: nothing after one, then 1, 2, 4... s up to `cap_s` (the phase deadline). Such a streak cannot make progress
    while its cause stays, and without the pause the chain opens and aborts rounds as fast as blocks commit (2
    rounds and 8 blocks a second on a 7-node cluster under `--validator-fault forge-stats`), filling every member's
    disk; a member that stops lying is back in the rounds after one pause at most."""
    return 0.0 if streak < 2 else min(cap_s, RETRY_BACKOFF_BASE_S * 2.0 ** (streak - 2))


@dataclasses.dataclass(frozen=True)
class Signer:
    """Who we are on the ledger: enough to write our own transactions."""

    chain_id: bytes
    n: int
    index: int
    sign: Callable[[bytes], bytes]

    def tx(self, kind: str, round_id: int, fields: list[object]) -> bytes:
        return rc.make_tx(self.chain_id, kind, self.index, round_id, fields, self.sign)


class Proposer:
    """Builds the primary's next block from the mempool, following the round contract's phases."""

    def __init__(self, contract: rc.Contract, settings: RoundSettings, mempool: Mempool, aggregator: Aggregator,
                 timings: Timings, me: Signer, waiting_for_members: Callable[[], bool],
                 head_height: Callable[[], int], bench_empty_blocks: int) -> None:
        self.contract, self.settings, self.mempool, self.aggregator = contract, settings, mempool, aggregator
        self.timings, self.me, self.waiting_for_members = timings, me, waiting_for_members
        self.head_height, self.bench_empty_blocks = head_height, bench_empty_blocks

    def backing_off(self, c: rc.Contract) -> bool:
        """Whether contract `c`'s next round must wait (`retry_backoff_s`): its last round ended a streak of unnamed
        aborts less than the backoff ago, counted from when this process saw it end, or else first asked (the abort
        is in the block being built, so the open does not join it; or this process restarted since)."""
        s = c.state
        delay = retry_backoff_s(unnamed_abort_streak(s.outcomes), self.settings.phase_deadline_s)
        if delay <= 0:
            return False
        now = time.monotonic()
        return now - self.timings.round_closed_at.setdefault(s.round, now) < delay

    async def next_block_txs(self) -> list[bytes] | None:
        """What the primary proposes next, following the round contract's phases.

        One block may carry several phases when their inputs are all at hand: a round's `result`, the next
        round's `open`, and that round's key advertisements (which members submit ahead, see
        `RoundDriver.prepare_next_round`) with the `close` of the keys phase. Every block saved is one PBFT
        commit less on the round's critical path. In secure modes every block of an open round also carries
        what the next round's key phases have ready (`_ahead_txs`), so that round opens ready for masked
        inputs.
        """
        if self.contract.finished:
            return self._eval_txs(self.contract.shadow(), alone=True) or None
        s = self.contract.state
        if not s.open and s.round == 0 and self.head_height() < self.bench_empty_blocks:
            return []  # benchmarks only (genesis protocol.bench_empty_blocks): empty blocks before round 1
        shadow = self.contract.shadow()
        txs: list[bytes] = []
        for _ in range(MAX_PHASE_STEPS_PER_BLOCK):
            step, advanced = await self._phase_txs(shadow)
            txs += step
            if not advanced:
                break
            shadow.extend([shadow.parse(raw) for raw in step], self.me.index)
            if shadow.finished:
                break
        if self._hold_for_statistics(shadow, txs):
            return None
        txs = txs + self._ahead_txs(shadow) if txs else []
        txs += self._ready_txs(shadow)
        txs += self._eval_txs(shadow, alone=not txs)
        return txs or None

    def _ready_txs(self, shadow: rc.Contract) -> list[bytes]:
        """Absent members' pending `ready` and suspended members' late `blame`, last in the block: the phases
        before it were decided without them (a replica checks a close against the absent set as the block's
        earlier transactions left it)."""
        candidates = [tx for tx in self.mempool.txs.values()
                      if (tx.kind == "ready" or shadow.late_disclosure(tx)) and shadow.tx_valid_now(tx)]
        valid, invalid = shadow.admissible(candidates)
        for tx, exc in invalid:
            self.mempool.drop(tx, exc)
        shadow.extend(valid, self.me.index)
        return [tx.raw for tx in valid]

    def _eval_txs(self, shadow: rc.Contract, alone: bool) -> list[bytes]:
        """Members' pending `eval`s, last in the block. They ride in blocks the rounds commit anyway; a block
        of evals `alone` waits until the oldest has waited the batch window, so that the members' evals of a
        round, which arrive moments apart, share one block (after the last round, that is how they commit)."""
        candidates = [tx for tx in self.mempool.txs.values() if tx.kind == "eval" and shadow.tx_valid_now(tx)]
        if not candidates or (alone and time.monotonic() - self.mempool.oldest_arrival(candidates)
                              < self.settings.batch_window_s):
            return []
        valid, invalid = shadow.admissible(candidates)
        for tx, exc in invalid:
            self.mempool.drop(tx, exc)
        shadow.extend(valid, self.me.index)
        return [tx.raw for tx in valid]

    def _ahead_txs(self, shadow: rc.Contract) -> list[bytes]:
        """The next round's pending `sa` transactions, and the `close` of its phase ahead once complete.

        They only ride along in blocks the open round commits anyway: they never make the primary owe a
        block (`Daemon._work_pending`), and whatever is missing when the next round opens is that round's
        own phase then (contract module doc).
        """
        candidates = [tx for tx in self.mempool.txs.values() if shadow.tx_valid_ahead(tx)]
        valid, invalid = shadow.admissible(candidates)
        for tx, exc in invalid:
            self.mempool.drop(tx, exc)
        shadow.extend(valid, self.me.index)
        out = [tx.raw for tx in valid]
        if shadow.ahead_complete():
            close = self.me.tx("close", shadow.state.round + 1, [shadow.state.ahead_phase])
            shadow.extend([shadow.parse(close)], self.me.index)
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
        newest = max((self.mempool.arrival[d] for d in digests if d in self.mempool.arrival
                      and self.mempool.txs[d].kind == "dealt"), default=0.0)
        return time.monotonic() - newest < STATS_MERGE_WAIT_S

    async def _phase_txs(self, c: rc.Contract) -> tuple[list[bytes], bool]:
        """The transactions that move contract `c` on now, and whether they end its current phase.

        The cheap filter (`tx_valid_now`) decides; only a decision to propose pays for the full check the
        backups will make (`admissible`: decoding and signature checks), and if that drops anything, the
        decision is taken again without it. This runs on every event while the primary may propose.
        """
        s = c.state
        if not s.open:
            if self.waiting_for_members() or self.backing_off(c):
                return [], False
            return [self.me.tx("open", s.round + 1, [s.model_hash, list(range(self.me.n))])], True
        elapsed = self.timings.phase_elapsed_s(s.round, "validate") / self.settings.phase_deadline_s
        candidates = _within_answer_budget([tx for tx in self.mempool.txs.values() if tx.kind not in ("ready", "eval")
                                            and not c.late_disclosure(tx)
                                            and (tx.kind not in WINDOWS or elapsed <= WINDOWS[tx.kind])
                                            and c.tx_valid_now(tx)])
        step = await self._phase_step(c, candidates)
        if not step[0] or s.phase in ("unmask", "excise"):  # the unmask step checks its candidates itself (`_unmask_step`)
            return step
        pending, invalid = c.admissible(candidates)
        for tx, exc in invalid:
            self.mempool.drop(tx, exc)
        return await self._phase_step(c, pending) if invalid else step

    async def _phase_step(self, c: rc.Contract, pending: list[rc.Tx]) -> tuple[list[bytes], bool]:
        s = c.state
        if s.phase in ("unmask", "excise"):
            return await self._unmask_step(c, pending)
        kind, closing, _ = self.settings.contract.phase_info(s.phase)
        members = set(s.inputs) | {tx.author for tx in pending if tx.kind == kind}  # not complaints, answers
        late = self.timings.phase_elapsed_s(s.round, s.phase) > self.settings.phase_deadline_s
        enough = len(members) >= c.min_inputs(s.phase)
        # Absent members are not awaited, but a phase never closes below its minimum (a validated phase
        # needs 2t_v + 1 + f inputs whoever is absent): short of it, the phase aborts at its deadline.
        ready = enough and (members >= set(c.awaited(s.expected)) or late)
        raws = [tx.raw for tx in pending]
        if closing == "result" and ready:
            result = await self._result_tx(s, pending)
            if result is not None:
                return raws + [result], True
        elif closing == "accept" and ready:
            return raws + [self._accept_tx(c, pending)], True
        elif closing == "verdict" and ready:
            return raws + [self._verdict_tx(c, pending)], True
        elif closing == "close" and ready:
            return raws + [self.me.tx("close", s.round, [s.phase])], True
        if not enough and self._abort_due(c, pending):
            return raws + [self.me.tx("abort", s.round, [f"too few members in phase {s.phase}"])], True
        oldest = min((self.mempool.arrival.get(hashlib.sha256(raw).digest(), 0.0) for raw in raws),
                     default=time.monotonic())
        if raws and time.monotonic() - oldest >= self.settings.batch_window_s:
            return raws, False
        return [], False

    async def _unmask_step(self, c: rc.Contract, pending: list[rc.Tx]) -> tuple[list[bytes], bool]:
        """The unmask phase: the pending reveals (`sa`) once every awaited holder's is in or the batch window passed;
        with them an `abort` if they prove dealers faulty (`Membership.unmask_decision`), else, in the same block,
        the `result` (or `fail`) if our own unmasking of the reveals committed with them succeeds (else the reveals
        alone, and the result in a later block); an `abort` past the deadline. The excise phase's step is the same,
        on its excise reveals (its `result` is over S \\ L; no `fail`)."""
        s = c.state
        pending, invalid = c.admissible(pending)  # a junk reveal must neither stop the decision nor linger
        for tx, exc in invalid:
            self.mempool.drop(tx, exc)
        raws = [tx.raw for tx in pending]
        shadow = c.shadow()
        shadow.extend(pending, self.me.index)
        decision = shadow.unmask_decision()
        if decision.dealers:
            reason = (f"committed reveals prove members {[d - 1 for d in decision.dealers]} dealt shares "
                      f"contradicting their adverts")
            return raws + [self.me.tx("abort", s.round, [reason])], True
        holders = set(c.awaited(s.u1)) - set(s.convicted)
        oldest = min((self.mempool.arrival.get(hashlib.sha256(raw).digest(), 0.0) for raw in raws),
                     default=time.monotonic())
        revealed = shadow.state.excise_reveals if s.phase == "excise" else shadow.state.reveals
        batched = set(revealed) >= holders or time.monotonic() - oldest >= self.settings.batch_window_s
        if decision.complete and (not raws or batched):
            result = await self._result_tx(s, pending, shadow.committed_reveals(), shadow.committed_excise_reveals())
            if result is not None:
                return raws + [result], True
            newest = max(self.mempool.arrival.get(hashlib.sha256(raw).digest(), 0.0) for raw in raws) if raws else 0.0
            if time.monotonic() - newest < UNMASK_MERGE_WAIT_S:
                return [], False
        if self._abort_due(c, pending):
            return raws + [self.me.tx("abort", s.round, [f"too few members in phase {s.phase}"])], True
        if raws and batched:
            return raws, False
        return [], False

    def _abort_due(self, c: rc.Contract, pending: list[rc.Tx]) -> bool:
        """Whether the open phase, short of inputs, has waited what the contract asks before an abort
        (`Membership.abort_wait`): with a complaint in this very block as with an open one (G8), and never in the
        block of an answer, whose holder then had no time to publish or disclose."""
        s = c.state
        if s.answered_height > s.height or any(tx.kind == "answer" for tx in pending):
            return False
        deadlines, after_answer = c.abort_wait()
        if any(tx.kind == "complaint" for tx in pending):
            deadlines = rc.COMPLAINT_ABORT_DEADLINES
        deadline_s = self.settings.phase_deadline_s
        return (self.timings.phase_elapsed_s(s.round, s.phase) > deadlines * deadline_s
                and (not after_answer or self.timings.phase_elapsed_s(s.round, "answered") > after_answer * deadline_s))

    def _accept_tx(self, c: rc.Contract, pending: list[rc.Tx]) -> bytes:
        """The validate phase's close: `accept` with the members the statistics accept, or `abort`."""
        s = c.state
        published = {a: v[0] for a, v in s.inputs.items()} | {tx.author: tx.fields[0] for tx in pending
                                                              if tx.kind == "stats"}
        check = dataclasses.replace(c.validation_check(None), published=tuple(sorted(published.items())))
        outcome = self.aggregator.validation_outcome(check)  # type: ignore[arg-type]
        if outcome is None:
            return self.me.tx("abort", s.round, ["validation statistics cannot be reconstructed"])
        if len(outcome.accepted) < c.min_members:
            return self.me.tx("abort", s.round, [f"validation accepted only {outcome.accepted}"])
        return self.me.tx("accept", s.round, outcome.accept_fields())

    def _verdict_tx(self, c: rc.Contract, pending: list[rc.Tx]) -> bytes:
        """The blame phase's close: the `verdict` the ledger gives (`Rules.blame_judgement`), with our pending
        disclosures."""
        judged = c.blame_judgement({tx.author: (tx.fields[0], tx.fields[1]) for tx in pending  # type: ignore[misc]
                                    if tx.kind == "blame" and tx.round == c.state.round})
        return self.me.tx("verdict", c.state.round, [list(judged.convicted), rc.encode_disputes(judged.disputes)])

    async def _result_tx(self, s: rc.ContractState, pending: list[rc.Tx], reveals: tuple[bytes, ...] | None = None,
                         excise_reveals: tuple[bytes, ...] = ()) -> bytes | None:
        """The `result` (or `fail`) closing the phase, None if our aggregate is not ready; in the unmask
        phase unmasked from `reveals`, the committed ones with those the block carries before it; in the excise
        phase over S \\ L, from those and `excise_reveals` (committed and carried alike)."""
        if s.phase in ("unmask", "excise"):
            included, entries = s.summed_members(), s.survivor_entries()
        else:
            inputs = dict(s.inputs)
            for tx in pending:
                inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            included = tuple(sorted(inputs))
            entries = tuple((a, inputs[a][0], inputs[a][1]) for a in included)
        new_hash = await self.aggregator.aggregate(rc.AggregateCheck(s.round, s.model_hash, entries, b"", reveals,
                                                                     s.excised, excise_reveals), wait_s=0.0)
        if new_hash is None and s.phase == "unmask":
            failure = self.aggregator.known_failure(s.round)
            return None if failure is None else \
                self.me.tx("fail", s.round, [int(failure[0]), -1 if failure[1] is None else failure[1], failure[2]])
        if new_hash is None:
            return None
        return self.me.tx("result", s.round, [list(included), new_hash])


def _within_answer_budget(txs: list[rc.Tx]) -> list[rc.Tx]:
    """`txs` without the answers beyond `ANSWER_BYTES_PER_BLOCK`, in order."""
    kept, answers = [], 0
    for tx in txs:
        if tx.kind == "answer":
            answers += len(tx.raw)
            if answers > ANSWER_BYTES_PER_BLOCK:
                continue
        kept.append(tx)
    return kept
