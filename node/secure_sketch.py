"""The validation half of one node's secure round: sketches, their shares and the statistics over them.

Owns, as a mixin of `node.secure_round.SecureRound`: revealing the sketch seed once U3 is fixed, sketching
our masked update and dealing its shares with PRZS contributions, checking the shares dealt to us,
publishing our statistic shares over V, sharing the sum of the accepted sketches, and the linear identity
that ties that sum to the unmasked sum; in an excise phase, the same for the sum over S \\ L. A peer's bad message becomes a violation, never an exception.
Pure; may call `smpc.validation`, `smpc.validation_messages`, `smpc.przs`, `smpc.sketch` and the records of
`node.contract_events` and `node.secure_outputs`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from node import contract_events as rc
from node import contract_state
from node.robust_validation import ValidationSetup
from node.secure_outputs import LinearIdentityFailed, Output, SendShares, SendSketchSum, SubmitTx
from smpc import przs
from smpc import validation_messages as vm
from smpc.errors import BadPublicKey, Equivocation, InconsistentShares, NotEnoughShares, ProtocolViolation
from smpc.field import FieldArray, RandomBytes, RingArray
from smpc.quantize import QuantParams
from smpc.secagg import SecAggResult
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchTooLong,
    identity_deviation,
    local_statistics,
    reconstruct_sketch_sum,
    share_sketch,
    sketch_seed,
    sketch_update,
    statistic_pairs,
    sum_shares,
)


class SketchValidation:
    """The sketch and statistics steps of `node.secure_round.SecureRound` (its state lives there)."""

    params: contract_state.ContractParams
    round: int
    me: int
    validation: ValidationSetup | None
    config_members: frozenset[int]
    violations: list[ProtocolViolation]
    notices: list[str]
    result: SecAggResult | None
    sketch_sum_checked: bool
    _tx: Callable[[str, list[object]], SubmitTx]
    _sign: Callable[[bytes], bytes]
    _verify: Callable[[int, bytes, bytes], bool]
    _rand: RandomBytes
    _quant: QuantParams
    _vlimits: vm.ValidationLimits | None
    _masked_quantized: npt.NDArray[np.uint32] | None
    _seed_reveal: bytes
    _inputs_commitment: bytes
    _holders: tuple[int, ...]
    _candidates: tuple[int, ...]
    _accepted: tuple[int, ...]
    _sketch: CountSketch | None
    _dealt: dict[int, vm.SketchShares]
    _contributions: dict[int, dict[przs.Subset, bytes]]
    _own_share: FieldArray | None
    _own_contributions: dict[przs.Subset, bytes]
    _bad_dealers: set[int]
    _stats_over: tuple[int, ...]
    _sum_shares: dict[int, FieldArray]
    _excised_sum_shares: dict[int, tuple[tuple[int, ...], FieldArray]]
    """Holders' shares of the sum of the sketches of S \\ L, by participant id, each with the L it names."""
    _sealed: dict[int, bytes]
    _dealt_digests: dict[int, bytes]
    _complained: set[int]
    _channel_secrets: dict[int, bytes]

    def _reveal_seed(self, event: rc.PhaseClosed) -> list[Output]:
        """U3 is fixed, and with it every input: now, and only now, reveal our share of the sketch seed."""
        self._inputs_commitment = hashlib.sha256(b"".join(d for _, d in event.digests)).digest()
        if self.me not in event.members or not self._seed_reveal:
            return []
        self._channel_secrets = {m: self._rand(32) for m in range(self.params.n)}
        channel_keys = b"".join(vm.channel_public_key(self._channel_secrets[m]) for m in range(self.params.n))
        return [self._tx("reveal", [self._seed_reveal, channel_keys])]

    def _share_sketch(self, event: rc.PhaseClosed) -> list[Output]:
        """R, the members of U3 whose reveals the ledger committed, is fixed, and with it the sketch seed:
        sketch our masked update and deal its shares to R, with our PRZS contributions (`smpc.przs`) to each
        holder and, on the ledger, the hash of our commitments."""
        assert self.validation is not None and self._inputs_commitment, "the seed phase closed before the inputs"
        self._holders = event.members
        seed = sketch_seed(self.params.chain_id, self.round, self._inputs_commitment, dict(event.payloads))
        # The weight coordinate is left out: the statistics describe the weighted update alone, and the
        # weight is checked exactly against the committed ones (`_weight_matches`).
        self._sketch = CountSketch(seed, self.params.vector_length - 1, self.validation.sketch.width)
        if self.me not in event.members or self._masked_quantized is None:
            return []
        try:
            z = sketch_update(self._masked_quantized[:-1], self._sketch, self.validation.sketch, self._quant,
                              self._rand, refuse_clipped=True)
        except SketchTooLong as exc:
            # Dealt clipped, our sketch would contradict our masked input and the blame phase would convict us:
            # we abstain, as a dealer that does not deal (outside V, not accepted; named absent if the sketch
            # phase aborts for too few dealers, at N = 3f + 1; red team B11).
            self.notices.append(f"not dealing our sketch: {exc} (our update is left out of this round)")
            return []
        degree, participants = self.validation.degree, sorted(self.config_members)
        sketch_shares = share_sketch(z, degree, [c + 1 for c in event.members], self._rand)
        self._own_contributions = {a: self._rand(przs.KEY_BYTES) for a in przs.dealt_subsets(participants, degree,
                                                                                               self.me)}
        commitments = b"".join(przs.commitment(self.params.chain_id, self.round, a, self.me, c)
                               for a, c in self._own_contributions.items())
        channels = dict(event.channel_keys)
        out: list[Output] = []
        for holder in event.members:
            if holder == self.me:
                self._own_share = sketch_shares[self.me + 1]
                self._sealed[holder] = b""
                continue
            contributions = b"".join(self._own_contributions[a]
                                     for a in przs.shared_subsets(participants, degree, self.me, holder))
            payload = vm.sign_shares(self.params.chain_id, self._sign, self.round, self.me, holder,
                                     sketch_shares[holder + 1], contributions, commitments)
            self._sealed[holder] = self._seal(holder, channels[holder][32 * self.me : 32 * self.me + 32], payload)
            out.append(SendShares(holder, payload))
        sealed = b"".join(hashlib.sha256(self._sealed[h]).digest() for h in event.members)
        return out + [self._tx("dealt", [vm.commitments_digest(commitments), sealed])] + \
            self._maybe_publish_statistics()

    def _seal(self, holder: int, channel_key: bytes, payload: bytes) -> bytes:
        """The sketch shares for `holder`, sealed to the channel key it published for us (`reveal`): what our
        `dealt` commits to (by hash) and what we put on the ledger if `holder` complains that it lacks them. A
        holder's unusable key is its own violation: it gets nothing to complain about."""
        try:
            return vm.seal(payload, channel_key, self._rand(32), self.params.chain_id, self.round, self.me, holder)
        except BadPublicKey:
            self.violations.append(BadPublicKey("its channel key is of low order", holder + 1))
            return b""

    def on_complaint(self, event: rc.ComplaintCommitted | rc.AnswerCommitted) -> list[Output]:
        """A complaint against us is answered with the sealed bundle our `dealt` committed for its holder. An
        answer to our complaint is judged exactly as the replicas would judge our disclosure
        (`vm.answer_fault`): good, its shares are ours, as if they had come directly; bad, we disclose our
        channel secret for that dealer, which proves it on the ledger and exposes only that channel."""
        if isinstance(event, rc.ComplaintCommitted):
            sealed = self._sealed.get(event.holder) if event.dealer == self.me else None
            return [] if sealed is None else [self._tx("answer", [event.holder, sealed])]
        secret = self._channel_secrets.get(event.dealer)
        if event.holder != self.me or self._vlimits is None or event.dealer not in self._dealt_digests or not secret:
            return []
        fault = vm.answer_fault(event.ciphertext, secret, self._vlimits, self.params.chain_id, self._verify,
                                event.dealer, self.me, self._dealt_digests[event.dealer])
        if fault is not None:
            self.violations.append(ProtocolViolation(f"its answer holds no valid shares: {fault}", event.dealer + 1))
            return [self._tx("disclose", [event.dealer, secret])]
        payload = vm.unseal(event.ciphertext, secret, self.params.chain_id, self.round, event.dealer, self.me)
        self._dealt.pop(event.dealer, None)
        self._bad_dealers.discard(event.dealer)
        # Statistics we published while this complaint was unanswered (early over U3, or on the dealer's shares
        # arriving after we complained) were refused by the contract, which a primary drops: publish again.
        self._stats_over = ()
        return self.on_sketch_shares(event.dealer, payload)

    def on_sketch_shares(self, owner: int, payload: bytes) -> list[Output]:
        """Shares of `owner`'s sketch for us (`owner`: the transport's authenticated sender), checked on arrival
        whatever the phase: decoded to this round's exact sizes, signed by `owner`, its PRZS contributions
        matching its commitments. A bad message becomes a violation; this never raises. Once we hold every
        candidate's shares, we publish our statistics."""
        if self.validation is None or self._vlimits is None:
            return []
        try:
            message = vm.decode_shares(payload, self._vlimits)
            vm.verify(message, owner, self.params.chain_id, self._verify)
            if message.holder != self.me:
                raise ProtocolViolation(f"sketch shares for member {message.holder}, sent to us", owner)
            contributions = vm.check_contributions(message, self._vlimits, self.params.chain_id)
        except ProtocolViolation as violation:
            self.violations.append(_of_sender(violation, owner))
            return []
        known = self._dealt.get(owner)
        if known is not None:
            if known.signature != message.signature:
                self.violations.append(Equivocation("two different sketch-share messages", owner + 1))
            return []
        committed = self._dealt_digests.get(owner)
        if committed is not None and message.commitments_digest() != committed:
            # V is fixed and this dealer's message contradicts its `dealt`: publishing with it would give a
            # statistic share inconsistent with the other holders', and no abort could then name the dealer
            # our complaint stands against (red team g8 f7). We keep waiting for its committed answer.
            self.violations.append(Equivocation("PRZS commitments differ from those on the ledger", owner + 1))
            return []
        self._dealt[owner], self._contributions[owner] = message, contributions
        return self._maybe_publish_statistics()

    def _on_dealers_fixed(self, event: rc.PhaseClosed) -> list[Output]:
        """V, the members whose sketches were dealt, is fixed with each dealer's commitment hash: statistics are
        over V. A dealer whose ledger hash is not that of the commitments it signed to us equivocated: our
        keys could differ from other holders', so we publish nothing rather than an inconsistent share, and
        complain, as about every dealer of V whose shares we lack (`_complain`)."""
        self._candidates = event.members
        self._dealt_digests = dict(event.payloads)
        for dealer, digest in event.payloads:
            message = self._dealt.get(dealer)
            if dealer != self.me and message is not None and message.commitments_digest() != digest:
                self._bad_dealers.add(dealer)
                self.violations.append(Equivocation("PRZS commitments differ from those on the ledger", dealer + 1))
        return self._complain() + self._maybe_publish_statistics()

    def _complain(self) -> list[Output]:
        """V is fixed: a complaint on the ledger against every dealer of V whose shares we lack or refused, so
        that it must answer with the ciphertext its `dealt` committed for us, or be named when the validate
        phase aborts (`Membership._missing_in_validation`); without the complaint, our missing statistics
        would name us. Once per dealer."""
        if self.me not in self._candidates:
            return []
        lacking = [d for d in self._candidates if d != self.me and d not in self._complained
                   and (d not in self._dealt or d in self._bad_dealers)]
        self._complained.update(lacking)
        return [self._tx("complaint", [d]) for d in lacking]

    def _maybe_publish_statistics(self) -> list[Output]:
        """Our shares of every statistic over V, re-randomized by our PRZS zero share over V.

        Before the ledger fixes V we publish over U3 as soon as we hold every U3 member's shares: V is
        U3 whenever every dealer's `dealt` arrives in time, and then the primary can close the sketch
        phase and accept in one block (`Proposer._hold_for_statistics`). If V turns out smaller, those
        statistics fit no block (`Contract.tx_valid_now` checks their length) and we publish again over V.
        """
        assert self.validation is not None
        candidates = self._candidates or self._holders
        if (not candidates or candidates == self._stats_over or self.me not in candidates or self._own_share is None
                or not set(candidates) - {self.me} <= set(self._dealt) or self._bad_dealers & set(candidates)):
            return []
        self._stats_over = candidates
        shares = {owner + 1: self._share_of(owner) for owner in candidates}
        zero = przs.zero_share(self._subset_keys(candidates), self.me, self.validation.degree,
                               len(statistic_pairs(candidates)))
        return [self._tx("stats", [local_statistics(shares, zero).astype("<u8").tobytes()])]

    def _share_of(self, owner: int) -> FieldArray:
        if owner == self.me:
            assert self._own_share is not None
            return self._own_share
        return self._dealt[owner].share

    def _subset_keys(self, dealers: tuple[int, ...]) -> dict[przs.Subset, bytes]:
        """r_A for every t-subset A of the participants not containing us, from the contributions of the
        dealers outside A (the same set at every holder: V, fixed by the ledger)."""
        assert self.validation is not None
        keys = {}
        for subset in przs.dealt_subsets(sorted(self.config_members), self.validation.degree, self.me):
            contributions = {d: self._own_contributions[subset] if d == self.me else self._contributions[d][subset]
                             for d in dealers if d not in subset}
            keys[subset] = przs.subset_key(self.params.chain_id, self.round, subset, contributions)
        return keys

    def _share_sketch_sum(self, accepted: tuple[int, ...]) -> list[Output]:
        """S is fixed: our share of the sum of S's sketches, so every node can check the unmasked sum."""
        self._accepted = accepted
        # A holder that did not deal (outside V: `SketchTooLong`, or its `dealt` missed the sketch deadline) holds
        # shares of every sketch of S all the same, and every holder of R is awaited.
        if self.me not in self._holders or (self.me in accepted and self._own_share is None) \
                or not set(accepted) - {self.me} <= set(self._dealt):
            return []
        share = sum_shares({owner: self._share_of(owner) for owner in accepted}, accepted)
        self._sum_shares[self.me + 1] = share
        return [SendSketchSum(vm.sign_sum(self.params.chain_id, self._sign, self.round, self.me, share))]

    def _share_excised_sketch_sum(self, survivors: tuple[int, ...], excised: tuple[int, ...]) -> list[Output]:
        """A verdict convicted L = `excised` of S = `survivors` (the excise phase): our share of the sum of the
        sketches of S \\ L, in a sketch-sum message naming L, so that every node can check the linear identity of the
        sum over S \\ L (`_excised_identity_deviation`). Nothing if we are convicted, hold no share of some dealer
        of S \\ L, or are not a holder. It reveals nothing beyond that sum (docs/validation.md, "Excising
        convicted survivors")."""
        kept = tuple(m for m in survivors if m not in excised)
        if self.me in excised or self.me not in self._holders or (self.me in kept and self._own_share is None) \
                or not set(kept) - {self.me} <= set(self._dealt):
            return []
        share = sum_shares({owner: self._share_of(owner) for owner in kept}, kept)
        self._excised_sum_shares[self.me + 1] = (excised, share)
        return [SendSketchSum(vm.sign_sum(self.params.chain_id, self._sign, self.round, self.me, share, excised))]

    def on_sketch_sum(self, holder: int, payload: bytes) -> None:
        """A holder's share of the accepted sketches' sum (`holder`: the authenticated sender), checked on
        arrival like `on_sketch_shares`; a bad message becomes a violation, this never raises. A share of the sum
        over S \\ L (an excised sum, naming L) is kept apart with its L, and only used for that L: never the sum
        over S, nor over another set. One of each kind per holder, the first."""
        if self.validation is None or self._vlimits is None:
            return
        try:
            message = vm.decode_sum(payload, self._vlimits)
            vm.verify(message, holder, self.params.chain_id, self._verify)
        except ProtocolViolation as violation:
            self.violations.append(_of_sender(violation, holder))
            return
        if message.excised:
            self._excised_sum_shares.setdefault(holder + 1, (message.excised, message.share))
        else:
            self._sum_shares.setdefault(holder + 1, message.share)

    def _identity_deviation(self, deadline_passed: bool) -> tuple[npt.NDArray[np.float64],
                                                                  npt.NDArray[np.float64]] | None:
        """The accepted sketches' sum minus the sketch of the unmasked sum, and the rounding allowed per coordinate
        (`smpc.validation.identity_deviation`); None: wait for more shares of the sum.

        The holders' shares of the sketch sum are decided like the statistics: only by a polynomial agreeing
        with t_v + 1 + f of them, so up to m - t_v - 1 - f wrong shares among m are corrected and f liars
        never decide it. Before the unmask grace period all holders are awaited; after it, any t_v + 1 + f.
        Raises LinearIdentityFailed when the sum cannot be reconstructed (nobody is named then).
        """
        assert self.result is not None
        shares = {x: share for x, share in self._sum_shares.items() if x - 1 in self._holders}
        return self._deviation(shares, self._holders, deadline_passed, self.result.total, len(self._accepted), "")

    def _excised_identity_deviation(self, excised: tuple[int, ...], deadline_passed: bool, total: RingArray,
                                    count: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """As `_identity_deviation`, for the sum over S \\ L (`total`, of `count` members) in an excise phase: from
        the shares of the sum of the sketches of S \\ L that name exactly L = `excised`, sent by the holders of R
        but L. The same rules: every such holder awaited before the grace period, any t_v + 1 + f after, decided
        only by a polynomial agreeing with t_v + 1 + f of them."""
        holders = tuple(h for h in self._holders if h not in excised)
        shares = {x: share for x, (named, share) in self._excised_sum_shares.items()
                  if x - 1 in holders and named == excised}
        return self._deviation(shares, holders, deadline_passed, total, count, " over S \\ L")

    def _deviation(self, shares: dict[int, FieldArray], holders: tuple[int, ...], deadline_passed: bool,
                   total: RingArray, count: int, which: str) -> tuple[npt.NDArray[np.float64],
                                                                   npt.NDArray[np.float64]] | None:
        assert self.validation is not None and self._sketch is not None
        needed = len(holders) if not deadline_passed else self.validation.degree + 1 + self.params.max_faulty
        if len(shares) < needed:
            return None
        try:
            sketch_sum, _ = reconstruct_sketch_sum(shares, self.validation.degree, self.params.max_faulty)
        except (NotEnoughShares, InconsistentShares) as exc:
            raise LinearIdentityFailed(f"the accepted sketches' sum{which} cannot be reconstructed: {exc}") from None
        return identity_deviation(sketch_sum, total[:-1], self._sketch, self.validation.sketch, self._quant, count)


def _of_sender(violation: ProtocolViolation, sender: int) -> ProtocolViolation:
    """The violation, attributed to member `sender`, who sent the bytes over an authenticated stream (as the
    secagg core's, its `sender` is the participant id, member index + 1)."""
    return type(violation)(violation.reason, sender + 1)
