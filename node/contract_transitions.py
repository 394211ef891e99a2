"""The round contract's phase transitions: how a valid transaction changes the state, and the events it yields.

Owns `Contract._apply`: opening a round (taking over the key phases that ran ahead), recording inputs,
closing phases (fixing U1, U2, U3, V, S), the blame phase a `fail` opens, the excise phase a convicting `verdict`
opens, ending a round with its `RoundOutcome` (a `verdict`'s convicted and disputes recorded). Runs only after
`node.contract_rules` accepted the transaction. A mixin; pure, may call `node.contract_membership`, `node.contract_evals`,
`node.contract_state`, `node.contract_tx` and `node.contract_events`.
"""

from __future__ import annotations

import dataclasses

from node.contract_evals import Evaluations
from node.contract_events import (
    AnswerCommitted,
    BlameStarted,
    ComplaintCommitted,
    Event,
    ExciseStarted,
    LateVerdict,
    PhaseClosed,
    RoundOpened,
    RoundOutcome,
    SecAggCommitted,
)
from node.contract_membership import Membership, disclosure_of
from node.contract_state import PHASES, PROPOSER_DUTIES
from node.contract_tx import Tx
from smpc import blame


class Transitions(Membership, Evaluations):
    """The state transitions of `node.contract.Contract`."""

    def _apply_ahead(self, tx: Tx, height: int) -> list[Event]:
        s = self.state
        if tx.kind == "sa":
            s.ahead_inputs[tx.author] = tx.fields[0]  # type: ignore[assignment]
            return [SecAggCommitted(tx.round, tx.author, tx.fields[0])]  # type: ignore[arg-type]
        members = tuple(sorted(s.ahead_inputs))
        closed = PhaseClosed(tx.round, s.ahead_phase, members, (), height)
        if s.ahead_phase == "keys":
            s.ahead_u1, s.ahead_phase, s.ahead_adverts = members, "shares", dict(s.ahead_inputs)
        else:
            s.ahead_u2, s.ahead_phase, s.ahead_bundles = members, "inputs", dict(s.ahead_inputs)
        s.ahead_inputs = {}
        return [closed]

    def _apply(self, tx: Tx, height: int) -> list[Event]:
        s, p = self.state, self.params
        # An eval is about a past round, and a proposer's duties (`PROPOSER_DUTIES`) are its duty as primary: neither
        # says that its author takes part again (a withholder named by the abort it proposes stays absent).
        if tx.kind == "blame" and tx.author in s.suspended:
            return self._judge_late(tx)
        if tx.author in s.absent and tx.kind != "eval" and tx.kind not in PROPOSER_DUTIES:
            s.absent = tuple(m for m in s.absent if m != tx.author)
            s.absent_since.pop(tx.author, None)
        if tx.kind == "ready":
            return []
        if tx.kind == "eval":
            return [self._apply_eval(tx, height)]
        if tx.kind in ("sa", "close") and tx.round == s.round + 1 and self._ahead_open():
            return self._apply_ahead(tx, height)
        if tx.kind == "open":
            s.round, s.open, s.phase = tx.round, True, PHASES[p.mode][0][0]
            s.participants = tx.fields[1]  # type: ignore[assignment]
            s.expected = self.takes_part(s.participants, s.round)
            s.inputs, s.digests, s.weights, s.u1, s.rejected = {}, {}, {}, (), ()
            s.seed_commitments, s.dealt_hashes, s.complaints, s.liars = {}, {}, {}, ()
            s.excluded = self.eligible(s.absent)
            s.channel_keys, s.answers, s.dealt_digests, s.answered_height = {}, {}, {}, 0
            s.holders, s.summed, s.failure, s.disclosures, s.bases = (), (), (0, -1), {}, b""
            s.adverts, s.bundles, s.reveals = {}, {}, {}
            s.excised, s.excise_reveals, s.verdict = (), {}, None
            if s.ahead_phase and s.participants == tuple(range(p.n)):
                # The key phases that ran ahead become this round's: it opens in the first incomplete one.
                s.phase = s.ahead_phase
                s.u1, s.adverts, s.bundles = s.ahead_u1, s.ahead_adverts, s.ahead_bundles
                # A member convicted since its keys ran ahead is in U1 or U2 but expected no more (a dropout).
                s.expected = self.takes_part({"keys": s.participants, "shares": s.ahead_u1,
                                              "inputs": s.ahead_u2}[s.ahead_phase], s.round)
                # What ran ahead from a member benched (or convicted, suspended) since is not this round's input.
                s.inputs = {a: (m, 0) for a, m in s.ahead_inputs.items() if a in s.expected}
            s.ahead_phase, s.ahead_inputs, s.ahead_u1, s.ahead_u2 = ("keys" if p.secure else ""), {}, (), ()
            s.ahead_adverts, s.ahead_bundles = {}, {}
            self._forget_old_evals()
            return [RoundOpened(s.round, s.participants, s.model_hash, height, s.disputes)]
        if tx.kind == "update":
            s.inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            return []
        if tx.kind == "input":
            s.inputs[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            s.seed_commitments[tx.author] = tx.fields[2]  # type: ignore[assignment]
            return []
        if tx.kind == "complaint":
            s.complaints[(tx.author, tx.fields[0])] = "open"  # type: ignore[index]
            return [ComplaintCommitted(s.round, tx.author, tx.fields[0])]  # type: ignore[arg-type]
        if tx.kind == "answer":
            s.complaints[(tx.fields[0], tx.author)] = "answered"  # type: ignore[index]
            s.answers[(tx.fields[0], tx.author)] = tx.fields[1]  # type: ignore[index,assignment]
            s.answered_height = height
            return [AnswerCommitted(s.round, tx.author, tx.fields[0], tx.fields[1])]  # type: ignore[arg-type]
        if tx.kind == "disclose":
            s.complaints[(tx.author, tx.fields[0])] = "bad"  # type: ignore[index]
            return []
        if tx.kind == "fail":
            return [self._start_blame(tx, height)]
        if tx.kind == "blame":
            s.inputs[tx.author] = (b"", 0)
            s.disclosures[tx.author] = (tx.fields[0], tx.fields[1])  # type: ignore[assignment]
            return []
        if tx.kind == "sa" and s.phase in ("unmask", "excise"):
            (s.reveals if s.phase == "unmask" else s.excise_reveals)[tx.author] = tx.fields[0]  # type: ignore[assignment]
            return [SecAggCommitted(s.round, tx.author, tx.fields[0])]  # type: ignore[arg-type]
        if tx.kind == "reveal":
            s.channel_keys[tx.author] = tx.fields[1]  # type: ignore[assignment]
        if tx.kind == "dealt":
            hashes: bytes = tx.fields[1]  # type: ignore[assignment]
            s.dealt_hashes[tx.author] = {h: hashes[32 * i : 32 * i + 32] for i, h in enumerate(s.expected)}
            s.dealt_digests[tx.author] = tx.fields[0]  # type: ignore[assignment]
        if tx.kind in ("sa", "stats", "dealt", "reveal"):
            s.inputs[tx.author] = (tx.fields[0], 0)  # type: ignore[assignment]
            return [SecAggCommitted(s.round, tx.author, tx.fields[0])] if tx.kind == "sa" else []  # type: ignore[arg-type]
        if tx.kind in ("close", "accept"):
            members = tuple(sorted(s.inputs)) if tx.kind == "close" else tuple(tx.fields[0])  # type: ignore[arg-type]
            if s.phase == "keys":
                s.u1, s.adverts = members, {a: s.inputs[a][0] for a in members}  # type: ignore[misc]
                left_out = tuple(m for m in s.participants if m not in members)
                self._mark_absent(left_out)
                # Kept out of this round from now on, even if back mid-round (`ready`, keys ahead for the next
                # round): an abort of a later phase must not name it again (red team rt2-3).
                s.excluded = tuple(sorted(set(s.excluded) | set(self.eligible(left_out))))
            if s.phase == "shares":
                s.bundles = {a: s.inputs[a][0] for a in members}  # type: ignore[misc]
            if s.phase == "seed":
                s.holders = members
            if s.phase == "inputs":
                s.digests = {a: s.inputs[a][0] for a in members}
                s.weights = {a: s.inputs[a][1] for a in members}
            if tx.kind == "accept":
                s.rejected = tuple(a for a in s.expected if a not in members)
                s.liars, s.next_clip_bound_micro = tx.fields[1], tx.fields[2]  # type: ignore[assignment]
                for a in s.rejected:
                    s.rejections[a] = s.rejections.get(a, 0) + 1
                s.digests = {a: d for a, d in s.digests.items() if a in members}
                s.weights = {a: w for a, w in s.weights.items() if a in members}
            with_inputs = s.phase in ("inputs", "validate")
            digests = tuple((a, s.digests[a]) for a in members) if with_inputs else ()
            weights = tuple((a, s.weights[a]) for a in members) if with_inputs else ()
            payloads = tuple((a, s.inputs[a][0]) for a in members) if s.phase in ("seed", "sketch") else ()
            channels = tuple((a, s.channel_keys[a]) for a in members) if s.phase == "seed" else ()
            closed = PhaseClosed(s.round, s.phase, members, digests, height, weights, payloads,  # type: ignore[arg-type]
                                 channels)
            if s.phase == "inputs" and p.validate:  # validation starts: the excluded neither reveal nor deal
                self._fix_excluded(members)
                members = tuple(m for m in members if m not in s.excluded)
            s.phase, s.expected, s.inputs = self.params.phase_info(s.phase)[2], members, {}
            return [closed]
        verdict = self._verdict_outcome(tx, height) if tx.kind == "verdict" else None
        if verdict is not None and (started := self._start_excise(verdict, height)) is not None:
            return [started]
        s.open = False
        if tx.kind == "result" and s.phase == "collect":
            self._mark_absent(tuple(m for m in s.participants if m not in tx.fields[0]))  # type: ignore[operator]
        if tx.kind == "result":
            s.model_hash = tx.fields[1]  # type: ignore[assignment]
            s.clip_bound_micro = s.next_clip_bound_micro or s.clip_bound_micro
            outcome = RoundOutcome(tx.round, True, tx.fields[0], s.model_hash, height,  # type: ignore[arg-type]
                                   s.rejected, liars=s.liars)
            if s.verdict is not None:  # an excise phase's result keeps its verdict's convictions
                outcome = dataclasses.replace(outcome, missing=s.verdict.missing, convicted=s.verdict.convicted,
                                              disputes=s.verdict.disputes)
            self._forgive(outcome.included)
        elif verdict is not None:
            outcome = verdict
        elif s.phase == "excise":
            # Its verdict's convictions stand; the committed excise reveals may prove a convicted dealer faulty too
            # (an abort at once, naming nobody absent), else the abort came past the deadline: who did not reveal
            # is named.
            assert s.verdict is not None, "an excise phase keeps its verdict"
            dealers = self.proven_dealers()
            withheld = () if dealers else self._missing_inputs()
            self._mark_absent(withheld)
            convicted = s.verdict.convicted + self._convict(dealers, ())
            outcome = dataclasses.replace(s.verdict, height=height, convicted=tuple(sorted(convicted)),
                                          missing=tuple(sorted(set(s.verdict.missing) | set(withheld))))
        else:
            # An unmask-phase abort convicts the dealers the committed reveals prove faulty (`proven_dealers`), at
            # once, naming nobody absent; past its deadline it names the members of U1 that did not reveal.
            dealers = self.proven_dealers() if s.phase == "unmask" else ()
            missing = () if dealers else self._missing_inputs()
            self._mark_absent(missing)
            convicted = self._convict(dealers, ()) if s.phase == "unmask" else ()
            outcome = RoundOutcome(tx.round, False, (), s.model_hash, height, missing=missing, liars=s.liars,
                                   convicted=convicted)
        s.outcomes.append(outcome)
        return [outcome]

    def _start_blame(self, tx: Tx, height: int) -> BlameStarted:
        """A `fail` ends the unmask phase: S's members and R's holders disclose (`smpc.blame`); without validation
        there are no holders (R is empty), and S's members disclose their pair scalars alone."""
        s = self.state
        s.failure, s.bases = (tx.fields[0], tx.fields[1]), tx.fields[2]  # type: ignore[assignment]
        disclosers = s.holders if self.params.validate else s.expected  # validated: S is within R
        s.summed, s.phase, s.expected, s.inputs = s.expected, "blame", disclosers, {}
        weight, coordinate = s.failure
        return BlameStarted(s.round, s.summed, s.holders, weight == 1, None if coordinate == -1 else coordinate,
                            height)

    def _start_excise(self, verdict: RoundOutcome, height: int) -> ExciseStarted | None:
        """A `verdict` that convicts members L of S, with at least `min_members` of S left, does not end the round:
        its convictions are recorded (`_verdict_outcome`, as `verdict`, the outcome an abort would have had) and the
        excise phase opens, expecting the excise reveals of U1 but the convicted (docs/validation.md, "Excising
        convicted survivors"; with validation, the holders' shares of the sketches' sum over S \\ L travel off the
        ledger). None: the verdict ends the round (no member of S convicted; too few left)."""
        s = self.state
        excised = tuple(sorted(m for m in verdict.convicted if m in s.summed))
        if not excised or len(s.summed) - len(excised) < self.min_members:
            return None
        s.phase, s.excised, s.verdict, s.excise_reveals, s.inputs = "excise", excised, verdict, {}, {}
        s.expected = tuple(m for m in s.u1 if m not in s.convicted)
        return ExciseStarted(s.round, s.summed, excised, height)

    def _verdict_outcome(self, tx: Tx, height: int) -> RoundOutcome:
        """The blame phase's `verdict` aborts the round: its convicted are kept out of later rounds, its disputed
        pairs mask no more, the members of S that did not disclose are suspended until they do (`_judge_late`),
        and the other holders that did not disclose are absent (like a phase's missing inputs)."""
        s = self.state
        disclosures = {a: disclosure_of(a, *s.disclosures[a], s.summed, s.disputes) for a in sorted(s.disclosures)}
        record = self.pending_record(disclosures, blame.verdict(self.blame_ledger(disclosures), {
            a: d.pairs for a, d in disclosures.items() if a in s.summed}))
        missing = tuple(a for a in s.expected if a not in s.inputs and a not in record.awaiting)
        self._mark_absent(missing)
        if record.awaiting:
            s.pending[s.round] = record
            s.suspended.update(dict.fromkeys(record.awaiting, s.round))
            s.absent = tuple(m for m in s.absent if m not in record.awaiting)
            for m in record.awaiting:
                s.absent_since.pop(m, None)
        convicted = self._convict(tx.fields[0], tx.fields[1])  # type: ignore[arg-type]
        return RoundOutcome(tx.round, False, (), s.model_hash, height, missing=missing, liars=s.liars,
                            convicted=convicted, disputes=tx.fields[1])  # type: ignore[arg-type]

    def _judge_late(self, tx: Tx) -> list[Event]:
        """A suspended member's `blame` (`Membership.settle_late`): it is released, and it and the members whose
        z_l[b*] its shares decode are judged (convicted, or cleared with the disputes their pairs show with the
        cleared; pairs are kept for the partners still suspended). Once nobody is undecided, the holders outside S
        owe nothing more and are released too."""
        s = self.state
        round_id = s.suspended[tx.author]
        record = s.pending[round_id]
        disclosure = disclosure_of(tx.author, tx.fields[0], tx.fields[1], record.summed, record.disputed)  # type: ignore[arg-type]
        judged = self.settle_late(record, tx.author, disclosure)
        owing = {tx.author} | (set() if record.undecided else record.awaiting - set(record.summed))
        for member in sorted(owing):
            self._release(member)
        convicted = self._convict(judged.convicted, judged.disputes)
        return [LateVerdict(round_id, tx.author, convicted, judged.disputes)]
