"""One node's side of one secure round: the bridge between the round contract and the secagg core.

Pure, like the cores it joins: it takes contract events (what the ledger committed), peer messages and
this node's local update, and returns `Output`s for the daemon to carry out: transactions to submit
(they reach the ledger through the primary), messages to gossip, and the masked input to send to every
peer directly (it is model-sized). The daemon owns all I/O and time.

The update a node contributes is `weighted_vector(update, n_samples)`: its clipped update times its
sample weight, followed by the weight itself, so that the sum of the vectors yields both the weighted
sum of updates and the total weight, and the new model `global + sum[:-1] / sum[-1]` is FedAvg. Each
member also commits the quantized weight it masked in its `input` transaction: the weights are public,
range-checked by validation, and the unmasked weight coordinate must equal their sum (`_check_weights`),
so no member can shrink the denominator with a negative weight. Plain rounds use the same vectors,
summed in floating point, so a secure round differs from a plain one only by quantization.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ml.robust import RobustRule, decide
from node import contract as rc
from smpc import field, przs
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.errors import (
    Equivocation,
    InconsistentShares,
    MissingMessages,
    NotEnoughShares,
    ProtocolViolation,
    RoundAborted,
    SmpcError,
)
from smpc.field import FieldArray, RandomBytes
from smpc.quantize import QuantParams, clip_l2, dequantize_sum, quantize
from smpc.secagg import RevealRefused, SecAggParticipant, SecAggResult
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    ValidationStatistics,
    linear_identity_holds,
    local_statistics,
    reconstruct_sketch_sum,
    reconstruct_statistics,
    seed_commitment,
    share_sketch,
    sketch_seed,
    sketch_update,
    statistic_pairs,
    sum_shares,
)


@dataclass(frozen=True, slots=True)
class SubmitTx:
    raw: bytes


@dataclass(frozen=True, slots=True)
class Gossip:
    """A secagg message every node should receive but the ledger need not hold (unmask reveals)."""

    message: bytes


@dataclass(frozen=True, slots=True)
class SendMasked:
    """This node's masked input, to be sent to every peer over direct streams; `digest` is what the ledger
    commits to (MaskedInput.digest, the hash of the signed body), the name peers fetch it by."""

    message: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class SendShares:
    """Shares of this node's sketch (and of zero) for one holder; sent point to point over Noise."""

    to: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SendSketchSum:
    """This holder's share of the sum of the accepted members' sketches, for every node (see `try_sum`)."""

    payload: bytes


Output = SubmitTx | Gossip | SendMasked | SendShares | SendSketchSum

SHELL_ERRORS = (MissingMessages, RoundAborted, RevealRefused)
"""All a SecureRound raises to the shell: fetch and retry, or this node is out of the round. Every other
failure becomes RoundAborted, and a peer's bad message a violation, so nothing a peer sends surfaces as an
exception the shell does not catch (one junk sketch-share message once ended every honest daemon)."""


class LinearIdentityFailed(RoundAborted):
    """The unmasked sum does not match the sum of the accepted sketches: an accepted member's sketch was
    not the sketch of the input it masked. Nobody can tell whose, so the round must abort."""


@dataclass(frozen=True, slots=True)
class ValidationSetup:
    """Genesis validation settings: sharing degree t_v, count-sketch width, sketch scale, robust rule."""

    degree: int
    sketch: SketchParams
    rule: RobustRule

    @property
    def max_faulty(self) -> int:
        """f: how many statistic publishers may lie (the rule's f, genesis `f`)."""
        return self.rule.f


def validation_config_error(n: int, f: int, degree: int) -> str | None:
    """Why genesis must refuse validation with sharing degree t_v among N members of whom f may be Byzantine,
    in one line, or None. Below f, f colluding holders rebuild every member's sketch (with the default
    logistic regression, d = 31 < k, the sketch is the update); the statistics need 2t_v + 1 + f publishers
    to be decided at all (`smpc.shamir.reconstruct`); PRZS keys one secret per t_v-subset (`smpc.przs`)."""
    if degree < max(1, f):
        return (f"validation.degree t_v = {degree} is below max(1, f = {f}): {degree + 1} colluding members could "
                "rebuild every member's sketch (and with a sketch as wide as the model, its update)")
    if 2 * degree + 1 + f > n:
        return f"validation.degree t_v = {degree} needs 2t_v + 1 + f = {2 * degree + 1 + f} publishers, more than N = {n}"
    if math.comb(n, degree) > przs.MAX_SUBSETS:
        return f"validation.degree t_v = {degree} at N = {n} means C(N, t_v) = {math.comb(n, degree)} zero-sharing keys"
    return None


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    accepted: tuple[int, ...]
    rejected: dict[int, str]
    statistics: ValidationStatistics


def decide_accepted(check: rc.ValidationCheck, setup: ValidationSetup, quant: QuantParams) -> ValidationOutcome:
    """Reconstruct the statistics from the holders' published shares and apply the robust rule, with the
    candidates' committed weights (in units of `quant.scale`) and their earlier rejections.

    Deterministic in its inputs (all from committed blocks: `Contract.validation_check`), so the primary
    that proposes an accepted set and every replica that checks it reach the same set. Raises
    NotEnoughShares or InconsistentShares (the round must abort) and ValueError for a malformed
    publication (excluded from the ledger by the contract (`_check_statistics`) before it gets here).
    """
    published, candidates = dict(check.published), check.candidates
    weights, history = dict(check.weights), dict(check.history)
    assert set(weights) == set(candidates) == set(history), "validation check without every candidate's weight"
    count = len(statistic_pairs(candidates))
    vectors = {holder + 1: field.vector_from_bytes(data, count) for holder, data in published.items()}
    stats = reconstruct_statistics(vectors, [c + 1 for c in candidates], setup.degree, setup.sketch, setup.max_faulty)
    position = {c + 1: k for k, c in enumerate(candidates)}
    norms = np.array([stats.norms_sq[c + 1] for c in candidates])
    dists = np.zeros((len(candidates), len(candidates)))
    for (i, j), value in stats.distances_sq.items():
        dists[position[i], position[j]] = dists[position[j], position[i]] = value
    rejected: dict[int, str] = {}
    for i, j in stats.out_of_range:
        if i == j:
            rejected[i - 1] = "statistic_out_of_range"
        else:
            dists[position[i], position[j]] = dists[position[j], position[i]] = OUT_OF_RANGE_DISTANCE
    keep = [k for k, c in enumerate(candidates) if c not in rejected]
    decision = decide(setup.rule, norms[keep], dists[np.ix_(keep, keep)],
                      np.array([weights[candidates[k]] / quant.scale for k in keep]),
                      [history[candidates[k]] for k in keep])
    accepted = tuple(candidates[keep[k]] for k in decision.accepted)
    rejected.update({candidates[keep[k]]: reason for k, reason in decision.rejected.items()})
    return ValidationOutcome(accepted, rejected, stats)


OUT_OF_RANGE_DISTANCE = 1e30
"""A distance that left the proven range (one of its two sketches is not small integers): treat as far."""


@dataclass(frozen=True, slots=True)
class Weighting:
    """How a local update becomes a summable vector: L2 clip bound and the sample count of weight 1."""

    clip_l2: float
    sample_cap: int

    def vector(self, update: npt.NDArray[np.floating], n_samples: int) -> npt.NDArray[np.float64]:
        """[w * clip(update), w] with w = min(n_samples, cap) / cap in (0, 1]."""
        weight = min(n_samples, self.sample_cap) / self.sample_cap
        return np.append(clip_l2(np.asarray(update, dtype=np.float64), self.clip_l2) * weight, weight)

    @property
    def total_bound(self) -> float:
        """L2 bound of `vector(...)`: the quantizer's clip bound, so it never clips again."""
        return math.sqrt(self.clip_l2**2 + 1.0)


def apply_sum(global_vec: npt.NDArray[np.float32], total: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """New global model from the sum of weighted vectors; float64 arithmetic, deterministic."""
    assert total.shape == (global_vec.size + 1,), (total.shape, global_vec.shape)
    weight = float(total[-1])
    if not weight > 0:
        raise ValueError("aggregate weight is not positive")
    return (global_vec.astype(np.float64) + total[:-1] / weight).astype(np.float32)


def quant_params(weighting: Weighting, n_members: int) -> QuantParams:
    return QuantParams.for_participants(weighting.total_bound, n_members)


class SecureRound:
    """Drives one SecAggParticipant from committed events; see the module docstring."""

    def __init__(self, params: rc.ContractParams, opened: rc.RoundOpened, me: int, sign: Callable[[bytes], bytes],
                 verify: Callable[[int, bytes, bytes], bool], rand: RandomBytes, quant: QuantParams,
                 validation: ValidationSetup | None = None) -> None:
        self.params, self.round, self.me = params, opened.round, me
        self.validation = validation
        self._holders: tuple[int, ...] = ()
        self._sketch: CountSketch | None = None
        self._accepted: tuple[int, ...] = ()
        self._sum_shares: dict[int, FieldArray] = {}
        self.sketch_sum_checked = False
        self._candidates: tuple[int, ...] = ()
        self._dealt: dict[int, vm.SketchShares] = {}
        """Verified sketch shares for us, by dealer: at most one per participant, kept from their arrival."""
        self._contributions: dict[int, dict[przs.Subset, bytes]] = {}
        self._own_share: FieldArray | None = None
        self._own_contributions: dict[przs.Subset, bytes] = {}
        self._bad_dealers: set[int] = set()
        self._stats_over: tuple[int, ...] = ()
        self._summed_weights: dict[int, int] = {}
        self._seed_reveal = b""
        self._inputs_commitment = b""
        self._left_at = ""
        self.config_members = frozenset(opened.participants)
        self._masked_quantized: npt.NDArray[np.uint32] | None = None
        self.config = params.round_config(opened.round, opened.participants)
        self._vlimits = vm.ValidationLimits(opened.round, validation.sketch.width, validation.degree,
                                            self.config_members) if validation is not None else None
        self._sign = sign
        self._verify = verify
        self._rand = rand
        self._quant = quant
        self.machine = SecAggParticipant(self.config, me + 1, sign, lambda i, d, s: verify(i - 1, d, s), rand)
        self.violations: list[ProtocolViolation] = []
        self._advert: sam.AdvertiseKeys | None = None
        self._quantized: npt.NDArray[np.uint32] | None = None
        self.result: SecAggResult | None = None
        self.phase = "keys"
        self.revealers: set[int] = set()

    def _tx(self, kind: str, fields: list[object]) -> SubmitTx:
        return SubmitTx(rc.make_tx(self.params.chain_id, kind, self.me, self.round, fields, self._sign))

    def start(self) -> list[Output]:
        self._advert = self.machine.start()
        return [self._tx("sa", [sam.encode(self._advert)])]

    def set_update(self, vector: npt.NDArray[np.float64]) -> list[Output]:
        """The local weighted vector is ready (training finished); mask it as soon as the phase allows."""
        return self.set_quantized(quantize(vector, self._quant, self._rand))

    def set_quantized(self, quantized: npt.NDArray[np.uint32]) -> list[Output]:
        """As `set_update`, for a caller that quantized elsewhere (the daemon does it in a worker thread
        with its own randomness, since this object is not thread-safe)."""
        self._quantized = quantized
        return self._maybe_mask()

    def _maybe_mask(self) -> list[Output]:
        if self._quantized is None or not self.machine.can_mask:
            return []
        masked = self.machine.mask(self._quantized)
        self._masked_quantized, self._quantized = self._quantized, None
        weight = int(field.ring_to_signed(self._masked_quantized[-1:])[0])
        self._seed_reveal = self._rand(32)
        committed = seed_commitment(self.params.chain_id, self.round, self.me, self._seed_reveal)
        return [SendMasked(sam.encode(masked), masked.digest()), self._tx("input", [masked.digest(), weight, committed])]

    def decode(self, data: bytes) -> sam.Message:
        """Parse a peer's secagg message with this round's bounds; raises MalformedMessage."""
        return sam.decode(data, self.config.limits)

    def on_message(self, message: sam.Message) -> None:
        """A peer's message (from the ledger, gossip or a direct stream); violations become evidence."""
        try:
            self.machine.receive(message)
        except ProtocolViolation as violation:
            self.violations.append(violation)
            return
        if isinstance(message, sam.UnmaskShares):
            self.revealers.add(message.sender)

    @property
    def enough_reveals(self) -> bool:
        """Whether reveals from t+1 holders arrived, so unmasking after the grace period can succeed."""
        return len(self.revealers) >= self.config.degree + 1

    def on_committed(self, event: rc.SecAggCommitted) -> None:
        message = self.decode(event.message)
        if (isinstance(message, sam.AdvertiseKeys) and message.sender == self.me + 1 and self._advert is not None
                and message.signed_body() != self._advert.signed_body()):
            # Keys this node advertised (ahead, `RoundDriver.prepare_next_round`) before it restarted: their
            # secrets died with that process, so no peer could decrypt our shares nor we theirs, and the
            # round would abort at unmasking. Stay out of it; it goes on without us from the shares phase.
            self._left_at = "keys"
            return
        self.on_message(message)

    def on_phase_closed(self, event: rc.PhaseClosed) -> list[Output]:
        """Advance the machine with the set the ledger fixed. MissingMessages propagates (fetch, retry).

        If the key phases could not be advanced here (we lacked committed key messages), this node is out
        of the round: every later phase raises RoundAborted rather than drive the core from a state it
        never reached (its assertions would stop the node).
        """
        if self._left_at:
            raise RoundAborted(f"this node left round {self.round} when its {self._left_at} phase closed")
        try:
            return self._on_phase_closed(event)
        except SmpcError as exc:
            if event.phase in ("keys", "shares"):
                self._left_at = event.phase
            if isinstance(exc, SHELL_ERRORS):
                raise
            raise RoundAborted(f"round {self.round} cannot continue: {exc}") from exc

    def _on_phase_closed(self, event: rc.PhaseClosed) -> list[Output]:
        members = frozenset(i + 1 for i in event.members)
        out: list[Output] = []
        if event.digests:
            self._summed_weights = dict(event.weights)
        if event.phase == "keys":
            bundle = self.machine.on_keys_committed(members)
            if bundle is not None:
                out.append(self._tx("sa", [sam.encode(bundle)]))
        elif event.phase == "shares":
            self.machine.on_shares_committed(members)
            out += self._maybe_mask()
        elif event.phase == "inputs" and self.validation is not None:
            out += self._reveal_seed(event)
        elif event.phase == "seed":
            out += self._share_sketch(event)
        elif event.phase == "sketch":
            out += self._on_dealers_fixed(event)
        else:
            self._check_committed_weights()
            reveal = self.machine.on_inputs_committed({a + 1: d for a, d in event.digests})
            if reveal is not None:
                self.revealers.add(reveal.sender)
                out.append(Gossip(sam.encode(reveal)))
            if self.validation is not None:
                out += self._share_sketch_sum(event.members)
        self.phase = self.params.phase_info(event.phase)[2]
        self.violations += self.machine.drain_violations()
        return out

    def _reveal_seed(self, event: rc.PhaseClosed) -> list[Output]:
        """U3 is fixed, and with it every input: now, and only now, reveal our share of the sketch seed."""
        self._inputs_commitment = hashlib.sha256(b"".join(d for _, d in event.digests)).digest()
        if self.me not in event.members or not self._seed_reveal:
            return []
        return [self._tx("reveal", [self._seed_reveal])]

    def _share_sketch(self, event: rc.PhaseClosed) -> list[Output]:
        """R, the members of U3 whose reveals the ledger committed, is fixed, and with it the sketch seed:
        sketch our masked update and deal its shares to R, with our PRZS contributions (`smpc.przs`) to each
        holder and, on the ledger, the hash of our commitments."""
        assert self.validation is not None and self._inputs_commitment, "the seed phase closed before the inputs"
        self._holders = event.members
        seed = sketch_seed(self.params.chain_id, self.round, self._inputs_commitment, dict(event.payloads))
        # The weight coordinate is left out: the statistics describe the weighted update alone, and the
        # weight is checked exactly against the committed ones (`_check_weights`).
        self._sketch = CountSketch(seed, self.params.vector_length - 1, self.validation.sketch.width)
        if self.me not in event.members or self._masked_quantized is None:
            return []
        z = sketch_update(self._masked_quantized[:-1], self._sketch, self.validation.sketch, self._quant, self._rand)
        degree, participants = self.validation.degree, sorted(self.config_members)
        sketch_shares = share_sketch(z, degree, [c + 1 for c in event.members], self._rand)
        self._own_contributions = {a: self._rand(przs.KEY_BYTES) for a in przs.dealt_subsets(participants, degree,
                                                                                               self.me)}
        commitments = b"".join(przs.commitment(self.params.chain_id, self.round, a, self.me, c)
                               for a, c in self._own_contributions.items())
        out: list[Output] = []
        for holder in event.members:
            if holder == self.me:
                self._own_share = sketch_shares[self.me + 1]
                continue
            contributions = b"".join(self._own_contributions[a]
                                     for a in przs.shared_subsets(participants, degree, self.me, holder))
            out.append(SendShares(holder, vm.sign_shares(self.params.chain_id, self._sign, self.round, self.me, holder,
                                                         sketch_shares[holder + 1], contributions, commitments)))
        return out + [self._tx("dealt", [vm.commitments_digest(commitments)])] + self._maybe_publish_statistics()

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
        self._dealt[owner], self._contributions[owner] = message, contributions
        return self._maybe_publish_statistics()

    def _on_dealers_fixed(self, event: rc.PhaseClosed) -> list[Output]:
        """V, the members whose sketches were dealt, is fixed with each dealer's commitment hash: statistics are
        over V. A dealer whose ledger hash is not that of the commitments it signed to us equivocated: our
        keys could differ from other holders', so we publish nothing rather than an inconsistent share."""
        self._candidates = event.members
        for dealer, digest in event.payloads:
            message = self._dealt.get(dealer)
            if dealer != self.me and message is not None and message.commitments_digest() != digest:
                self._bad_dealers.add(dealer)
                self.violations.append(Equivocation("PRZS commitments differ from those on the ledger", dealer + 1))
        return self._maybe_publish_statistics()

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
        if self.me not in self._holders or self._own_share is None or not set(accepted) - {self.me} <= set(self._dealt):
            return []
        share = sum_shares({owner: self._share_of(owner) for owner in accepted}, accepted)
        self._sum_shares[self.me + 1] = share
        return [SendSketchSum(vm.sign_sum(self.params.chain_id, self._sign, self.round, self.me, share))]

    def on_sketch_sum(self, holder: int, payload: bytes) -> None:
        """A holder's share of the accepted sketches' sum (`holder`: the authenticated sender), checked on
        arrival like `on_sketch_shares`; a bad message becomes a violation, this never raises."""
        if self.validation is None or self._vlimits is None:
            return
        try:
            message = vm.decode_sum(payload, self._vlimits)
            vm.verify(message, holder, self.params.chain_id, self._verify)
        except ProtocolViolation as violation:
            self.violations.append(_of_sender(violation, holder))
            return
        self._sum_shares.setdefault(holder + 1, message.share)

    def _check_linear_identity(self, deadline_passed: bool) -> bool:
        """Whether the unmasked sum matches the accepted sketches' sum; False: wait for more shares.

        The holders' shares of the sketch sum are decided like the statistics: only by a polynomial agreeing
        with t_v + 1 + f of them, so up to m - t_v - 1 - f wrong shares among m are corrected and f liars
        never decide it. Before the unmask grace period all holders are awaited; after it, any t_v + 1 + f.
        Raises LinearIdentityFailed.
        """
        assert self.validation is not None and self.result is not None and self._sketch is not None
        shares = {x: share for x, share in self._sum_shares.items() if x - 1 in self._holders}
        needed = len(self._holders) if not deadline_passed else self.validation.degree + 1 + self.params.max_faulty
        if len(shares) < needed:
            return False
        try:
            sketch_sum, _ = reconstruct_sketch_sum(shares, self.validation.degree, self.params.max_faulty)
        except (NotEnoughShares, InconsistentShares) as exc:
            raise LinearIdentityFailed(f"the accepted sketches' sum cannot be reconstructed: {exc}") from None
        if not linear_identity_holds(sketch_sum, self.result.total[:-1], self._sketch, self.validation.sketch,
                                     self._quant, len(self._accepted)):
            raise LinearIdentityFailed("the unmasked sum differs from the sum of the accepted sketches")
        self.sketch_sum_checked = True
        return True

    def _check_committed_weights(self) -> None:
        """Before we reveal anything: every summed member's committed weight must be in (0, 1]. A negative or
        oversized weight would let its member shrink the FedAvg denominator and amplify the sum (or veto the
        round). With validation such a member is rejected before (`decide_accepted`); without it, nobody can
        be left out, so the round aborts here, before unmasking, rather than after the sum is revealed.
        Raises LinearIdentityFailed."""
        weights = self._summed_weights
        bound = math.ceil(self._quant.scale)
        if not weights:
            raise LinearIdentityFailed("the ledger fixed no committed weights for the summed members")
        if not all(0 < w <= bound for w in weights.values()):
            raise LinearIdentityFailed(f"a summed member committed a weight outside (0, 1]: {sorted(weights.items())}")

    def _check_weights(self) -> None:
        """The unmasked weight coordinate must be the sum of the summed members' committed weights: otherwise
        a member masked a weight other than the one it signed, which only the sum can show; nobody can tell
        who, so the round aborts. Raises LinearIdentityFailed."""
        self._check_committed_weights()
        if int(self.result.total[-1]) != sum(self._summed_weights.values()) % field.RING_MODULUS:  # type: ignore[union-attr]
            raise LinearIdentityFailed("the unmasked weight coordinate differs from the committed weights' sum")

    def try_sum(self, deadline_passed: bool) -> npt.NDArray[np.float64] | None:
        """The dequantized sum of the survivors' vectors once it can be computed (cached).

        Raises MissingMessages (a committed masked input we lack: fetch it) or RoundAborted.
        """
        if self.result is None:
            try:
                self.result = self.machine.try_finish(deadline_passed)
            except SmpcError as exc:
                if isinstance(exc, SHELL_ERRORS):
                    raise
                raise RoundAborted(f"round {self.round} cannot be unmasked: {exc}") from exc
            self.violations += self.machine.drain_violations()
        if self.result is None:
            return None
        self._check_weights()
        if self.validation is not None and not self.sketch_sum_checked \
                and not self._check_linear_identity(deadline_passed):
            return None
        total = dequantize_sum(self.result.total, self._quant)
        self._check_bound(total)
        return total

    def _check_bound(self, total: npt.NDArray[np.float64]) -> None:
        """Every summed vector was clipped to the quantizer's bound C' before masking, and stochastic rounding
        moves each coordinate by less than 1 / scale, so the sum of |S| vectors has L2 norm at most
        |S| (C' + sqrt(L) / scale). A larger sum holds an unclipped vector: it is never released (applied).
        Raises LinearIdentityFailed."""
        count = len(self._summed_weights)
        bound = count * (self._quant.clip_l2 + math.sqrt(total.size) / self._quant.scale)
        norm = float(np.linalg.norm(total))
        if not norm <= bound:
            raise LinearIdentityFailed(f"the unmasked sum has L2 norm {norm:.4g}, beyond the clip bound {bound:.4g} "
                                       f"of {count} clipped vectors")


def _of_sender(violation: ProtocolViolation, sender: int) -> ProtocolViolation:
    """The violation, attributed to member `sender`, who sent the bytes over an authenticated stream (as the
    secagg core's, its `sender` is the participant id, member index + 1)."""
    return type(violation)(violation.reason, sender + 1)
