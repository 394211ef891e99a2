"""One node's side of one secure round: the bridge between the round contract and the secagg core.

Pure, like the cores it joins: it takes contract events (what the ledger committed), peer messages and
this node's local update, and returns `Output`s for the daemon to carry out: transactions to submit
(they reach the ledger through the primary; the unmask reveal is one), sketch shares and sums to send, and the
masked input to send to every peer directly (it is model-sized). The daemon owns all I/O and time.

The update a node contributes is `weighted_vector(update, n_samples)`: its clipped update times its
sample weight, followed by the weight itself, so that the sum of the vectors yields both the weighted
sum of updates and the total weight, and the new model `global + sum[:-1] / sum[-1]` is FedAvg. Each
member also commits the quantized weight it masked in its `input` transaction: the weights are public,
range-checked by validation, and the unmasked weight coordinate must equal their sum (`_weight_matches`),
so no member can shrink the denominator with a negative weight. Plain rounds use the same vectors,
summed in floating point, so a secure round differs from a plain one only by quantization.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from node import contract as rc
from node.robust_validation import (
    OUT_OF_RANGE_DISTANCE,
    ValidationOutcome,
    ValidationSetup,
    decide_accepted,
    validation_config_error,
)
from node.secure_blame import BlameSide
from node.secure_outputs import (
    SHELL_ERRORS,
    LinearIdentityFailed,
    Output,
    SendMasked,
    SendShares,
    SendSketchSum,
    SubmitTx,
)
from node.weighting import Weighting, apply_sum, quant_params
from smpc import field, przs
from smpc import messages as sam
from smpc import validation_messages as vm
from smpc.blame import Failure, locate_failure
from smpc.errors import ProtocolViolation, RoundAborted, SmpcError
from smpc.field import FieldArray, RandomBytes
from smpc.quantize import QuantParams, dequantize_sum, quantize
from smpc.secagg import Phase as SecAggPhase
from smpc.secagg import SecAggParticipant, SecAggResult
from smpc.sketch import CountSketch
from smpc.validation import seed_commitment

__all__ = [
    "OUT_OF_RANGE_DISTANCE", "SHELL_ERRORS", "LinearIdentityFailed", "Output", "SecureRound", "SendMasked",
    "SendShares", "SendSketchSum", "SubmitTx", "ValidationOutcome", "ValidationSetup", "Weighting", "apply_sum",
    "decide_accepted", "quant_params", "validation_config_error",
]


class SecureRound(BlameSide):
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
        self._excised_sum_shares: dict[int, tuple[tuple[int, ...], FieldArray]] = {}
        self.sketch_sum_checked = False
        self._candidates: tuple[int, ...] = ()
        self._dealt: dict[int, vm.SketchShares] = {}
        """Verified sketch shares for us, by dealer: at most one per participant, kept from their arrival."""
        self._contributions: dict[int, dict[przs.Subset, bytes]] = {}
        self._own_share: FieldArray | None = None
        self._own_contributions: dict[przs.Subset, bytes] = {}
        self._bad_dealers: set[int] = set()
        self._sealed: dict[int, bytes] = {}
        """The ciphertext of the sketch shares we dealt each holder, whose hashes our `dealt` committed."""
        self._dealt_digests: dict[int, bytes] = {}
        self._complained: set[int] = set()
        self._channel_secrets: dict[int, bytes] = {}
        """Our channel secret for each dealer's sealed shares (their public keys went out in our `reveal`)."""
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
        self.notices: list[str] = []
        """What we decided about our own part that the operator should see (the shell logs and clears it)."""
        self._advert: sam.AdvertiseKeys | None = None
        self._quantized: npt.NDArray[np.uint32] | None = None
        self.result: SecAggResult | None = None
        self._released: npt.NDArray[np.float64] | None = None
        """The dequantized sum once it passed every check (read-only): the aggregate a proposing primary, a
        replica checking a `result` and the unmask-phase precomputation all ask for, dequantized and
        bound-checked (8 MB, a norm) once rather than per call."""
        self.phase = "keys"
        self._committed_reveals: set[int] = set()
        """The holders whose reveal the ledger committed: the only reveals we unmask from (`try_sum`)."""
        self._disputed: tuple[tuple[int, int], ...] = ()
        self.failure: Failure | None = None
        """What unmasking failed (`_checks_pass`): what this node's `fail` names or checks."""
        self._unmask_reveals: dict[int, sam.UnmaskShares] = {}
        self._excised: frozenset[int] = frozenset()
        self._excise_reveals: dict[int, sam.UnmaskShares] = {}
        self._excised_total: npt.NDArray[np.float64] | None = None
        self._excise_result: SecAggResult | None = None
        self._excise_failure = ""

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
        """A peer's message from gossip or a direct stream; violations become evidence. A reveal counts only once
        committed (`on_committed`): one held first from a peer would stand, as an equivocation, in place of the
        committed one its sender signed too, and nodes would unmask from different shares."""
        if not isinstance(message, sam.UnmaskShares):
            self._receive(message)

    def _receive(self, message: sam.Message) -> None:
        try:
            self.machine.receive(message)
        except ProtocolViolation as violation:
            self.violations.append(violation)

    @property
    def enough_reveals(self) -> bool:
        """Whether the committed reveals let unmasking after the grace period succeed
        (`SecAggParticipant.recoverable`): every honest node goes late on the same reveals, the ledger's, so they
        all unmask or none does (red team rt2-1)."""
        return self.machine.recoverable(frozenset(self._committed_reveals))

    def on_committed(self, event: rc.SecAggCommitted) -> None:
        message = self.decode(event.message)
        if isinstance(message, sam.UnmaskShares) and self._excised:
            self.on_excise_reveal(message)  # the excise phase's: never the machine's unmask reveals
            return
        if isinstance(message, sam.UnmaskShares):
            self._committed_reveals.add(message.sender)
            self._unmask_reveals[message.sender] = message
        if (isinstance(message, sam.AdvertiseKeys) and message.sender == self.me + 1 and self._advert is not None
                and message.signed_body() != self._advert.signed_body()):
            # Keys this node advertised (ahead, `RoundDriver.prepare_next_round`) before it restarted: their
            # secrets died with that process, so no peer could decrypt our shares nor we theirs, and the
            # round would abort at unmasking. Stay out of it; it goes on without us from the shares phase.
            self._left_at = "keys"
            return
        self._receive(message)

    def on_phase_closed(self, event: rc.PhaseClosed) -> list[Output]:
        """Advance the machine with the set the ledger fixed. MissingMessages propagates (fetch, retry).

        If the key phases could not be advanced here (we lacked committed key messages), this node is out
        of the round: every later phase raises RoundAborted rather than drive the core from a state it
        never reached (its assertions would stop the node).
        """
        if self._left_at:
            raise RoundAborted(f"this node left round {self.round} when its {self._left_at} phase closed")
        if self.phase == "keys" and event.phase != "keys":
            self._left_at = "keys"  # started after the key phases closed without us: nothing to drive the core from
            raise RoundAborted(f"round {self.round}: phase {event.phase} closed before our keys phase did")
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
                out.append(self._tx("sa", [sam.encode(reveal)]))
            if self.validation is not None:
                out += self._share_sketch_sum(event.members)
        self.phase = self.params.phase_info(event.phase)[2]
        self.violations += self.machine.drain_violations()
        return out


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

    def _weight_matches(self) -> bool:
        """Whether the unmasked weight coordinate is the sum of the summed members' committed weights: otherwise a
        member masked a weight other than the one it signed, which only the sum shows (the blame phase then names
        it, with or without validation)."""
        self._check_committed_weights()
        assert self.result is not None
        return int(self.result.total[-1]) == sum(self._summed_weights.values()) % field.RING_MODULUS

    def _checks_pass(self, deadline_passed: bool) -> bool:
        """The weight check and, with validation, the linear identity; False: wait for more sketch-sum shares.
        A failure raises LinearIdentityFailed; it is also kept as `failure`, the same at every honest node, for the
        blame phase (`smpc.blame.locate_failure`; without validation only the weight can fail, red team B13), and
        raised again on every later call."""
        if self.failure is None and not self.sketch_sum_checked:
            deviation = self._identity_deviation(deadline_passed) if self.validation is not None else (None, None)
            if deviation is None:
                return False
            self.failure = locate_failure(self._weight_matches(), *deviation)
            self.sketch_sum_checked = self.failure is None  # without validation: the weight check passed
        if self.failure is not None:
            failed = [name for name, bad in (("the weight check", self.failure.weight),
                                             ("the linear identity", self.failure.coordinate is not None)) if bad]
            raise LinearIdentityFailed(f"the unmasked sum fails {' and '.join(failed)}: {self.failure}")
        return True

    def try_sum(self, deadline_passed: bool, reveals: Sequence[bytes] | None = None) -> npt.NDArray[np.float64] | None:
        """The dequantized sum of the survivors' vectors once it can be computed (cached once it passed the checks).

        `reveals`: unmask from exactly these committed reveals (a check's, `rc.AggregateCheck.reveals`: the ledger
        as of the `result`, its block's reveals included, which this node may not have seen committed yet); the
        contract admitted the result only on reveals that recover every secret and convict no dealer, and any such
        set gives the same secrets (`smpc.secagg.decide_unmask`), so the cached sum holds for every one. Reveals
        that do not decide unmasking raise RoundAborted without aborting this node's round: a primary's block, not
        the ledger, named them. None: the reveals this node saw committed. Raises MissingMessages (a committed
        masked input we lack: fetch it) or RoundAborted.
        """
        if self.result is None:
            given = None if reveals is None else self._decode_reveals(reveals)
            if given is not None and self.machine.phase is SecAggPhase.UNMASK and \
                    not self.machine.recoverable(reveals=given):
                raise RoundAborted(f"round {self.round}: the reveals committed before the result do not recover "
                                   f"every secret, or prove a dealer faulty")
            try:
                self.result = self.machine.try_finish(deadline_passed or given is not None,
                                                      frozenset(self._committed_reveals), given)
            except SmpcError as exc:
                if isinstance(exc, SHELL_ERRORS):
                    raise
                raise RoundAborted(f"round {self.round} cannot be unmasked: {exc}") from exc
            self.violations += self.machine.drain_violations()
        if self._released is not None:
            return self._released
        if self.result is None or not self._checks_pass(deadline_passed):
            return None
        total = dequantize_sum(self.result.total, self._quant)
        self._check_bound(total)
        total.flags.writeable = False
        self._released = total
        return total

    def _decode_reveals(self, reveals: Sequence[bytes]) -> dict[int, sam.UnmaskShares]:
        """Committed reveals (each an UnmaskShares the contract verified), by sender."""
        decoded = [self.decode(raw) for raw in reveals]
        assert all(isinstance(m, sam.UnmaskShares) for m in decoded), "a committed reveal is an UnmaskShares"
        return {m.sender: m for m in decoded}  # type: ignore[misc]

    def _check_bound(self, total: npt.NDArray[np.float64], count: int | None = None) -> None:
        """Every summed vector was clipped to the quantizer's bound C' before masking, and stochastic rounding
        moves each coordinate by less than 1 / scale, so the sum of |S| vectors has L2 norm at most
        |S| (C' + sqrt(L) / scale) (`count` vectors: |S \\ L| for an excised sum). A larger sum holds an unclipped
        vector: it is never released (applied). Raises LinearIdentityFailed."""
        count = len(self._summed_weights) if count is None else count
        bound = count * (self._quant.clip_l2 + math.sqrt(total.size) / self._quant.scale)
        norm = float(np.linalg.norm(total))
        if not norm <= bound:
            raise LinearIdentityFailed(f"the unmasked sum has L2 norm {norm:.4g}, beyond the clip bound {bound:.4g} "
                                       f"of {count} clipped vectors")

