"""Whether a transaction is valid in the round contract's current state, and what a replica must check.

Owns `Contract._validate` and the cheap mempool filters (`tx_valid_now`, `tx_valid_ahead`): which kind,
author and round each phase accepts, the closing rules, and the `Check`s (aggregate, validation, deadline, failure, verdict)
a block needs before a replica may vote for it. Raises `TxError` for a peer's fault; never changes the
state. A mixin; pure, may call `node.contract_membership`, `node.contract_evals`, `node.contract_state`, `node.contract_tx`,
`node.contract_events` and the secure-aggregation message checks of `smpc` (and `smpc.blame`'s, for disclosures).
"""

from __future__ import annotations

import hashlib

from node.contract_evals import Evaluations
from node.contract_events import (
    AggregateCheck,
    Check,
    DeadlineCheck,
    FailureCheck,
    UnmaskAbortCheck,
    ValidationCheck,
    WindowCheck,
)
from node.contract_membership import Membership, disclosure_of
from node.contract_state import PROPOSER_DUTIES, SA_MESSAGE_OF_PHASE
from node.contract_tx import BoundedMemo, ComplaintRefused, RevealRefusal, Tx, TxError, Verify
from smpc import blame
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.errors import MalformedMessage, ProtocolViolation
from smpc.field import vector_from_bytes as field_vector_from_bytes
from smpc.secagg import (
    SecretKind,
    allowed_excise_reveal,
    allowed_reveal,
    check_bundle_recipients,
    revealed_shares,
    share_commitment,
    verify_message,
)
from smpc.validation import seed_commitment


class Rules(Membership, Evaluations):
    """The validation half of `node.contract.Contract`."""

    verify: Verify
    _sa_verified: BoundedMemo[tuple[bytes, int, tuple[int, ...]], sam.Message]

    @property
    def committed_rounds(self) -> int:
        return sum(1 for o in self.state.outcomes if o.committed)

    @property
    def finished(self) -> bool:
        """True once `rounds` rounds have committed; an aborted round is retried under the next round id."""
        return not self.state.open and self.committed_rounds >= self.params.rounds

    def tx_valid_now(self, tx: Tx) -> bool:
        """Whether a member's pending input would be valid in the next block (mempool filtering).

        Also cheap checks of the payload's kind: an `sa` message of the phase's type, `stats` of the length
        for the candidates V (a holder publishes over U3 before V is fixed, `SecureRound`; if V came out
        smaller, those statistics wait here, never proposed, until the round's end prunes them).
        """
        s = self.state
        if tx.kind == "ready":
            return self._ready_valid(tx)
        if tx.kind == "blame" and tx.author in s.suspended:
            return self.late_disclosure(tx)
        if tx.kind == "eval":
            return self.eval_error(tx) is None
        if tx.kind in ("complaint", "answer", "disclose"):
            return self.complaint_refusal(tx, judge=False) is None
        if tx.kind == "sa" and s.phase in ("unmask", "excise"):
            return self.reveal_refusal(tx, judge=False) is None
        return (s.open and tx.round == s.round and tx.kind == self.params.phase_info(s.phase)[0]
                and tx.author in s.expected and tx.author not in s.inputs
                and (tx.kind != "sa" or sam.peek_tag(tx.fields[0]) == SA_MESSAGE_OF_PHASE[s.phase].TAG)  # type: ignore[arg-type]
                and (tx.kind != "stats" or len(tx.fields[0]) == 8 * self._statistics_count())  # type: ignore[arg-type]
                and (tx.kind != "stats" or self._unanswered_complaint(tx.author) is None)
                and (tx.kind != "dealt" or len(tx.fields[1]) == 32 * len(s.expected)))  # type: ignore[arg-type]

    def _unanswered_complaint(self, holder: int) -> int | None:
        """The dealer of `holder`'s unanswered complaint, if any. Such a holder lacks that dealer's shares, so
        statistics from it are refused: otherwise a holder and its colluding dealer (which never answers) would
        hold the phase open for the 4 deadlines an unanswered complaint buys, then publish just before the
        abort, every round, with nobody named (red team r9 a2). An honest holder publishes only once answered."""
        return next((dealer for (who, dealer), status in self.state.complaints.items()
                     if who == holder and status == "open"), None)

    def _disclosure_refusal(self, tx: Tx, judge: bool) -> ComplaintRefused | None:
        """A `disclose` [dealer, channel secret] proves `dealer`'s answer bad: the secret must be the one whose
        public key the holder committed for that dealer in its `reveal`, and with it the committed answer must
        fail to yield valid shares (`smpc.validation_messages.answer_fault`). It exposes that one channel, whose
        dealer is then proven faulty; a good answer's channel is never disclosed by an honest holder. Without
        `judge` (the mempool's cheap filter) only the state is checked, not the secret nor the answer."""
        s, p = self.state, self.params
        holder, dealer = tx.author, tx.fields[0]
        state = s.complaints.get((holder, dealer))  # type: ignore[arg-type]
        if state != "answered":
            return ComplaintRefused("not_answered", f"member {dealer} has no answer to member {holder} to disprove")
        if not judge:
            return None
        committed = s.channel_keys.get(holder, b"")[32 * dealer : 32 * dealer + 32]  # type: ignore[operator]
        if vm.channel_public_key(tx.fields[1]) != committed:  # type: ignore[arg-type]
            return ComplaintRefused("wrong_channel_secret", f"member {holder} committed another key for {dealer}")
        limits = vm.ValidationLimits(s.round, p.sketch_width, p.validation_degree, frozenset(s.participants))
        fault = vm.answer_fault(s.answers[(holder, dealer)], tx.fields[1], limits, p.chain_id,  # type: ignore[index,arg-type]
                                self.verify, dealer, holder, s.dealt_digests[dealer])  # type: ignore[arg-type]
        return ComplaintRefused("answer_valid", f"member {dealer}'s answer is good") if fault is None else None

    def complaint_refusal(self, tx: Tx, judge: bool = True) -> ComplaintRefused | None:
        """Why a `complaint`, `answer` or `disclose` cannot be committed now, None if it can. A complaint [dealer]:
        in the validate phase, from a holder of V without statistics yet, against another dealer of V, once per
        pair (so at most |V| - 1 per holder). An answer [holder, sealed]: from the dealer of an unanswered
        complaint, carrying exactly the sealed bundle whose hash its `dealt` committed for that holder (at most
        |V| (|V| - 1) answers a round, each within `MAX_ANSWER_BYTES`). A disclosure: `_disclosure_refusal`."""
        s = self.state
        if not (s.open and s.phase == "validate" and tx.round == s.round):
            return ComplaintRefused("not_validating", f"round {tx.round} is not validating")
        holder, dealer = (tx.author, tx.fields[0]) if tx.kind != "answer" else (tx.fields[0], tx.author)
        if holder not in s.expected:
            return ComplaintRefused("not_a_holder", f"member {holder} holds no shares of V")
        if dealer not in s.expected:
            return ComplaintRefused("not_a_dealer", f"member {dealer} dealt no sketch of V")
        if holder == dealer:
            return ComplaintRefused("self", f"member {holder} about itself")
        if tx.kind == "complaint":
            if (holder, dealer) in s.complaints:
                return ComplaintRefused("duplicate", f"member {holder} already complained about {dealer}")
            if holder in s.inputs:
                return ComplaintRefused("already_published", f"member {holder} published its statistics")
            return None
        if tx.kind == "disclose":
            return self._disclosure_refusal(tx, judge)
        if (holder, dealer) not in s.complaints:
            return ComplaintRefused("no_complaint", f"member {holder} did not complain about {dealer}")
        if s.complaints[(holder, dealer)] != "open":
            return ComplaintRefused("already_answered", f"member {dealer} already answered {holder}")
        if hashlib.sha256(tx.fields[1]).digest() != s.dealt_hashes[dealer][holder]:  # type: ignore[arg-type]
            return ComplaintRefused("wrong_ciphertext", f"member {dealer} committed another ciphertext for {holder}")
        return None

    def reveal_refusal(self, tx: Tx, judge: bool = True) -> RevealRefusal | None:
        """Why an unmask-phase reveal, `sa` [UnmaskShares], cannot be committed now, None if it can. One per member of
        U1 (not convicted) per round; signed by its author; revealing only self-seed shares of survivors and
        mask-key shares of the dropped members of U2 (`smpc.secagg.allowed_reveal`), each a share that opens its
        owner's committed commitment to this holder's share. So a reveal holds at most one 40-byte share per member
        of U2, and a round at most |U1| reveals. Without `judge` (the mempool's cheap filter) the message itself is
        not checked. In an excise phase the same for an excise reveal (`smpc.secagg.allowed_excise_reveal`: mask-key
        shares of the convicted L only, from a member of U1 not convicted; docs/validation.md, "Excising convicted
        survivors"); one in the unmask phase, of survivors' mask keys alone, is refused `not_excising`."""
        s = self.state
        excising = s.phase == "excise"
        if not (s.open and s.phase in ("unmask", "excise") and tx.round == s.round):
            return RevealRefusal("not_unmasking", f"round {tx.round} is not unmasking")
        if tx.author not in s.u1 or tx.author in s.convicted:
            return RevealRefusal("not_a_holder", f"member {tx.author} holds no shares of U2")
        if tx.author in (s.excise_reveals if excising else s.reveals):
            return RevealRefusal("duplicate", f"member {tx.author} already revealed")
        if not judge:
            return None
        config = self.params.round_config(s.round, s.participants)
        try:
            message = sam.decode(tx.fields[0], config.limits)  # type: ignore[arg-type]
            verify_message(message, config, lambda i, data, sig: self.verify(i - 1, data, sig))
            if not isinstance(message, sam.UnmaskShares) or message.sender != tx.author + 1:
                raise MalformedMessage("not its author's UnmaskShares")
            shares = revealed_shares([message])
        except (ProtocolViolation, MalformedMessage) as exc:
            return RevealRefusal("malformed", f"member {tx.author}: {exc}")
        survivors = {a + 1 for a in s.expected}
        allowed = allowed_excise_reveal(message.sender, message, {a + 1 for a in s.u1}, {a + 1 for a in s.excised}) \
            if excising else allowed_reveal(message.sender, message, {a + 1 for a in s.u1}, survivors,
                                            {a + 1 for a in s.bundles} - survivors)
        if not allowed and not excising and not message.self_seed_shares and message.mask_key_shares and \
                all(owner in survivors for owner, _ in message.mask_key_shares):
            return RevealRefusal("not_excising", f"member {tx.author} reveals survivors' mask keys, but no verdict "
                                                 f"convicted them")
        if not allowed:
            return RevealRefusal("not_allowed", f"member {tx.author} reveals a share it must not reveal")
        for owner, kind in shares:
            bundle = self.committed_sa(s.bundles[owner - 1])
            assert isinstance(bundle, sam.ShareKeys), "a committed bundle is a ShareKeys"
            share = dict(message.self_seed_shares if kind is SecretKind.SELF_SEED else message.mask_key_shares)[owner]
            committed = bundle.commitment(message.sender, kind is SecretKind.MASK_KEY)
            if committed != share_commitment(config.chain_id, s.round, owner, message.sender, kind, share):
                return RevealRefusal("off_commitment", f"member {tx.author}'s share of member {owner - 1}'s "
                                                       f"{kind.value} does not open its commitment")
        self._sa_verified.put((tx.fields[0], s.round, s.participants), message)  # type: ignore[arg-type]
        return None

    def tx_valid_ahead(self, tx: Tx) -> bool:
        """Whether a member's pending `sa` tx for the next round would be valid in the next block, as part of
        that round's key phases running ahead (cheap checks, like `tx_valid_now`)."""
        s = self.state
        return (self._ahead_open() and tx.round == s.round + 1 and tx.kind == "sa"
                and tx.author in self._ahead_expected() and tx.author not in s.ahead_inputs
                and sam.peek_tag(tx.fields[0]) == SA_MESSAGE_OF_PHASE[s.ahead_phase].TAG)  # type: ignore[arg-type]

    def _statistics_count(self) -> int:
        """Statistics of the validate phase: every candidate's norm and every pair's distance."""
        return len(self.state.expected) * (len(self.state.expected) + 1) // 2

    def validation_check(self, accepted: tuple[int, ...] | None, liars: tuple[int, ...] = (),
                         next_clip_bound_micro: int = 0) -> ValidationCheck:
        """What the robust rule decides on in the validate phase: the published statistic shares so far,
        the candidates' committed weights and their earlier rejections (the primary proposes from this;
        a replica checks an `accept`, with the liars it names, or an `abort` against it)."""
        s = self.state
        assert s.open and s.phase == "validate", "validation_check outside the validate phase"
        return ValidationCheck(s.round, s.expected, tuple((a, s.inputs[a][0]) for a in sorted(s.inputs)),  # type: ignore[misc]
                               accepted, self.effective_faulty, tuple((a, s.weights[a]) for a in s.expected),
                               tuple((a, s.rejections.get(a, 0)) for a in s.expected), liars, s.clip_bound_micro,
                               next_clip_bound_micro, len(s.convicted))

    def _validate(self, tx: Tx, proposer: int) -> list[Check]:
        s, p = self.state, self.params
        if tx.kind in PROPOSER_DUTIES and tx.author != proposer:
            raise TxError(f"{tx.kind} tx must be authored by the block proposer")
        if tx.kind == "open":
            model_hash, participants = tx.fields
            if s.open or tx.round != s.round + 1 or self.finished:
                raise TxError(f"cannot open round {tx.round} (current {s.round}, open={s.open})")
            if model_hash != s.model_hash:
                raise TxError("open names a model other than the current global model")
            if len(participants) < self.min_members:  # type: ignore[arg-type]
                raise TxError("too few participants to ever complete the round")
            return []
        if tx.kind in ("sa", "close") and tx.round == s.round + 1 and self._ahead_open():
            return self._validate_ahead(tx)
        if tx.kind == "ready":
            if not self._ready_valid(tx):
                raise TxError(f"ready from member {tx.author} for round {tx.round}: it is not absent, or the "
                              f"round is before it went missing or after {s.round + 1}")
            return []
        if tx.kind == "eval":
            if (why := self.eval_error(tx)) is not None:
                raise TxError(f"eval from member {tx.author} for round {tx.round}: {why}")
            return []
        if tx.kind == "blame" and tx.author in s.suspended:
            self._check_late_disclosure(tx)
            return []
        if not s.open or tx.round != s.round:
            raise TxError(f"{tx.kind} for round {tx.round}, but round {s.round} open={s.open}")
        if tx.kind == "abort":
            if s.phase == "blame":
                raise TxError("abort of a blame phase: its verdict is computed from the ledger, with a deadline for "
                              "the members that did not disclose")
            if s.phase == "validate" and len(s.inputs) == len(s.expected):
                return [self.validation_check(None)]
            if s.answered_height > s.height:
                raise TxError(f"abort of round {tx.round} in the block of an answer: its holder had no time to "
                              f"publish or disclose")
            if s.phase in ("unmask", "excise"):
                return self._unmask_abort_checks(tx.round)
            return [DeadlineCheck(tx.round, s.phase, *self.abort_wait())]
        if tx.kind == "sa" and s.phase in ("unmask", "excise"):
            if (refused := self.reveal_refusal(tx)) is not None:
                raise refused
            return []
        if tx.kind in ("complaint", "answer", "disclose"):
            if (refusal := self.complaint_refusal(tx)) is not None:
                raise refusal
            return [WindowCheck(tx.round, tx.kind)] if tx.kind != "disclose" else []
        if tx.kind in ("fail", "result") and s.phase in ("unmask", "excise"):
            self._check_unmasked(tx)
        if tx.kind == "fail":
            return [self._validate_failure(tx)]
        _, closing_kind, _ = p.phase_info(s.phase)
        if tx.kind in ("close", "result", "accept", "verdict"):
            if tx.kind != closing_kind or (tx.kind == "close" and tx.fields[0] != s.phase):
                raise TxError(f"{tx.kind} cannot end phase {s.phase}")
            return self._validate_closing(tx)
        if tx.kind == "stats" and (dealer := self._unanswered_complaint(tx.author)) is not None:
            raise TxError(f"stats from member {tx.author}, whose complaint about dealer {dealer} is unanswered")
        if not self.tx_valid_now(tx):
            why = "a second input" if tx.author in s.inputs else "not expected"
            raise TxError(f"{tx.kind} from member {tx.author} for round {tx.round}: {why} in phase {s.phase}")
        if tx.kind == "sa":
            self._check_sa_message(tx, s.round, s.participants, s.phase, s.u1)
        if tx.kind == "stats":
            self._check_statistics(tx)
        if tx.kind == "blame":
            self._check_disclosure(tx)
        if tx.kind == "reveal" and seed_commitment(p.chain_id, s.round, tx.author, tx.fields[0]) != \
                s.seed_commitments[tx.author]:  # type: ignore[arg-type]
            raise TxError(f"reveal from member {tx.author} does not open its committed seed commitment")
        if tx.kind == "reveal":
            self._check_channel_keys(tx)
        return []

    def _check_unmasked(self, tx: Tx) -> None:
        """A `result` or `fail` never ends an unmask phase whose committed reveals (earlier in its block included)
        prove a dealer faulty (`unmask_decision`). That they recover every secret is each replica's check: it
        unmasks from exactly those reveals (the check's `reveals`), whichever of them it saw delivered (G9)."""
        if dealers := self.proven_dealers():
            raise TxError(f"{tx.kind} of round {tx.round}, whose committed reveals prove members {list(dealers)} "
                          f"dealt badly: abort")

    def committed_reveals(self) -> tuple[bytes, ...]:
        """The open round's committed reveals in author order: what a check of its unmasking unmasks from."""
        return tuple(self.state.reveals[a] for a in sorted(self.state.reveals))

    def committed_excise_reveals(self) -> tuple[bytes, ...]:
        """The open round's committed excise reveals in author order: what a check of its excision unmasks from,
        with `committed_reveals`."""
        return tuple(self.state.excise_reveals[a] for a in sorted(self.state.excise_reveals))

    def _unmask_abort_checks(self, round_id: int) -> list[Check]:
        """An `abort` of the unmask (excise) phase: at once, convicting them, once the committed reveals prove dealers
        faulty (`unmask_decision`); otherwise past the deadline, and only if this replica's own unmasking (excision)
        from the same committed reveals has neither a result nor a failure."""
        s = self.state
        if self.proven_dealers():
            return []
        return [DeadlineCheck(round_id, s.phase),
                UnmaskAbortCheck(s.round, s.model_hash, s.survivor_entries(), self.committed_reveals(), s.excised,
                                 self.committed_excise_reveals())]

    def _check_channel_keys(self, tx: Tx) -> None:
        """A `reveal`'s channel keys (one per member) must each be one its dealer can seal to: a holder that
        published a low-order key would get no sealed bundle, complain, and have an honest dealer named."""
        channels = tx.fields[1]
        for dealer in range(self.params.n):
            if dealer != tx.author and not vm.channel_key_usable(channels[32 * dealer : 32 * dealer + 32]):  # type: ignore[index]
                raise TxError(f"reveal from member {tx.author}: its channel key for member {dealer} is of low order")

    def _validate_ahead(self, tx: Tx) -> list[Check]:
        """The next round's key phases, while this round is open (module doc)."""
        s = self.state
        if tx.kind == "close":
            if tx.fields[0] != s.ahead_phase:
                raise TxError(f"close {tx.fields[0]!r} for round {tx.round}, whose phase ahead is {s.ahead_phase}")
            if not self.ahead_complete():
                raise TxError(f"phase {s.ahead_phase} of round {tx.round} closes ahead only with every member "
                              f"present")
            return []
        if not self.tx_valid_ahead(tx):
            why = "a second input" if tx.author in s.ahead_inputs else "not expected"
            raise TxError(f"sa from member {tx.author} for round {tx.round}: {why} in phase {s.ahead_phase} ahead")
        self._check_sa_message(tx, tx.round, tuple(range(self.params.n)), s.ahead_phase, s.ahead_u1)
        return []

    def _validate_failure(self, tx: Tx) -> FailureCheck:
        """A `fail` [weight, b*, bases] ends a secure round's unmask phase instead of a `result` when unmasking S
        fails the weight check or (validated) the linear identity (each replica confirms with its own unmasking);
        the bound check stays an unnamed abort (docs/validation.md). Without validation there is no sketch: only
        the weight can fail, so a `fail` is [1, -1, bases] with no sketch base scalars (red team B13)."""
        s, p = self.state, self.params
        weight, coordinate, bases = tx.fields
        if not (p.secure and s.phase == "unmask"):
            raise TxError(f"fail outside a secure round's unmask phase ({s.phase})")
        if not p.validate and (weight, coordinate) != (1, -1):
            raise TxError(f"fail of a round without validation names another failure than the weight's: "
                          f"{tx.fields[:2]}")
        if coordinate >= p.sketch_width or (weight, coordinate) == (0, -1):  # type: ignore[operator]
            raise TxError(f"fail names no failure or a coordinate outside the sketch: {tx.fields[:2]}")
        try:
            scalars = blame.decode_pairs(bases, s.expected)  # type: ignore[arg-type]
        except MalformedMessage as exc:
            raise TxError(f"fail: base scalars: {exc}") from None
        if coordinate == -1 and any(b.sketch for b in scalars.values()):
            raise TxError("fail holds sketch base scalars although no sketch coordinate failed")
        return FailureCheck(s.round, s.model_hash, s.survivor_entries(), weight == 1,
                            None if coordinate == -1 else coordinate, bases,  # type: ignore[arg-type]
                            self.committed_reveals())

    def _check_disclosure(self, tx: Tx) -> None:
        """A `blame` [pairs, shares]: the pair scalars with exactly the other members of S it shares a mask with (from
        a member of S: not its disputed partners),
        the shares of z_l[b*] for exactly S (from a holder, when a sketch coordinate failed), in range
        (`smpc.blame.check_disclosure`)."""
        s = self.state
        self._checked_disclosure(tx, s.summed, s.holders, s.failure[1] >= 0, s.disputes)

    def _check_late_disclosure(self, tx: Tx) -> None:
        """A suspended member's `blame` for the round it owes one, checked as it would have been then."""
        s = self.state
        record = s.pending[s.suspended[tx.author]]
        if tx.round != s.suspended[tx.author]:
            raise TxError(f"blame from suspended member {tx.author} for round {tx.round}: it owes round "
                          f"{s.suspended[tx.author]}'s")
        self._checked_disclosure(tx, record.summed, record.holders, record.with_sketch, record.disputed)

    @staticmethod
    def _checked_disclosure(tx: Tx, summed: tuple[int, ...], holders: tuple[int, ...], with_sketch: bool,
                            disputed: tuple[tuple[int, int], ...]) -> blame.Disclosure:
        try:
            disclosure = disclosure_of(tx.author, tx.fields[0], tx.fields[1], summed, disputed)  # type: ignore[arg-type]
            blame.check_disclosure(tx.author, disclosure, frozenset(summed), frozenset(holders), with_sketch, disputed)
        except MalformedMessage as exc:
            raise TxError(f"blame from member {tx.author}: {exc}") from None
        return disclosure

    def _check_statistics(self, tx: Tx) -> None:
        """Statistic shares must be one GF(p) element per statistic of the round's candidates."""
        try:
            field_vector_from_bytes(tx.fields[0], self._statistics_count())  # type: ignore[arg-type]
        except ValueError as exc:
            raise TxError(f"stats from member {tx.author}: {exc}") from None

    def _validate_closing(self, tx: Tx) -> list[Check]:
        s = self.state
        members = tuple(sorted(s.inputs)) if s.phase not in ("unmask", "excise") else s.summed_members()
        if len(members) < self.min_inputs(s.phase):
            raise TxError(f"phase {s.phase} has {len(members)} inputs, needs {self.min_inputs(s.phase)}: abort")
        checks: list[Check] = []
        if tx.kind == "accept":
            accepted, liars, next_bound = tuple(tx.fields[0]), tuple(tx.fields[1]), tx.fields[2]  # type: ignore[arg-type]
            if not set(accepted) <= set(s.expected) or len(accepted) < self.min_members:
                raise TxError(f"accepted set {accepted} is not a large enough subset of {s.expected}")
            if set(liars) - set(members) or len(members) - len(liars) < self.min_inputs(s.phase):
                raise TxError(f"liars {liars} are not publishers the statistics can be decided without")
            if (next_bound == 0) != (s.clip_bound_micro == 0) or next_bound > self.params.clip_bound_micro:
                raise TxError(f"next round's bound {next_bound} outside (0, {self.params.clip_bound_micro}]"
                              if s.clip_bound_micro else f"next round's bound {next_bound} without a per-round bound")
            checks.append(self.validation_check(accepted, liars, next_bound))  # type: ignore[arg-type]
        if tx.kind == "verdict":
            convicted: tuple[int, ...] = tx.fields[0]  # type: ignore[assignment]
            disputes: tuple[tuple[int, int], ...] = tx.fields[1]  # type: ignore[assignment]
            judged = self.blame_judgement()
            if (convicted, disputes) != (judged.convicted, judged.disputes):
                raise TxError(f"verdict {tx.fields} is not the ledger's: convicted {judged.convicted}, disputes "
                              f"{judged.disputes}")
        if tx.kind == "result":
            if tuple(tx.fields[0]) != members:  # type: ignore[arg-type]
                raise TxError("result must include exactly the round's committed inputs")
            included = tuple((a, *s.inputs[a]) for a in members) if s.phase == "collect" else s.survivor_entries()
            reveals = self.committed_reveals() if s.phase in ("unmask", "excise") else None
            checks.append(AggregateCheck(tx.round, s.model_hash, included, tx.fields[1], reveals,  # type: ignore[arg-type]
                                         s.excised, self.committed_excise_reveals()))
        if s.phase not in ("unmask", "excise") and not set(members) >= set(self.awaited(s.expected)):
            checks.append(DeadlineCheck(tx.round, s.phase))
        return checks

    def _check_sa_message(self, tx: Tx, round_id: int, participants: tuple[int, ...], phase: str,
                          u1: tuple[int, ...]) -> None:
        config = self.params.round_config(round_id, participants)
        key = (tx.fields[0], round_id, participants)
        try:
            message = self._sa_verified.get(key)  # type: ignore[arg-type]
            if message is None:
                message = sam.decode(tx.fields[0], config.limits)  # type: ignore[arg-type]
                verify_message(message, config, lambda i, data, sig: self.verify(i - 1, data, sig))
                self._sa_verified.put(key, message)  # type: ignore[arg-type]
            if type(message) is not SA_MESSAGE_OF_PHASE[phase] or message.sender != tx.author + 1:
                raise TxError(f"sa tx carries the wrong message for phase {phase}")
            if isinstance(message, sam.ShareKeys):
                check_bundle_recipients(message, frozenset(i + 1 for i in u1))
        except ProtocolViolation as exc:
            raise TxError(f"invalid secure-aggregation message from member {tx.author}: {exc}") from None

