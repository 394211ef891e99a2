"""The blame half of one node's secure round: our disclosure, and the verdict we check or propose.

Owns, as a mixin of `node.secure_round.SecureRound`: once a `fail` closed the unmask phase (`BlameStarted`),
the scalars our pairwise masks with the other members of S add to the failed checks and our shares of z_l[b*]
(`smpc.blame.disclose`); and the base scalars a `fail` carries (`smpc.blame.base_scalars`, from our own unmasking
state: the masked inputs, the reconstructed self seeds and dropped members' pair keys), so that the contract
computes the verdict from the ledger alone; and, once a verdict convicted members L of S (`ExciseStarted`), our excise
reveal, with validation our share of the sketches' sum over S \\ L, and the sum over S \\ L, checked
(docs/validation.md, "Excising convicted survivors"). Member
indices on the ledger, participant ids (index + 1) in `smpc`. Pure; may call `smpc.blame`, `smpc.prg` and the
records of `node.contract_events` and `node.secure_outputs`, and the sketch state of `node.secure_sketch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from node import contract_events as rc
from node.secure_outputs import SHELL_ERRORS, LinearIdentityFailed, Output
from node.secure_sketch import SketchValidation
from smpc import blame, field
from smpc import messages as sam
from smpc.errors import RoundAborted, SmpcError
from smpc.prg import MaskGenerator
from smpc.quantize import dequantize_sum
from smpc.secagg import Phase as SecAggPhase
from smpc.secagg import SecAggParticipant, SecAggResult

DisclosureHook = Callable[[int, blame.Disclosure, blame.SketchRow | None], blame.Disclosure]
"""(our participant id, our honest disclosure, row b* or None) -> what we disclose (`node.hooks.FaultHooks`)."""


def _honest(_member: int, disclosure: blame.Disclosure, _row: blame.SketchRow | None) -> blame.Disclosure:
    return disclosure


class BlameSide(SketchValidation):
    """The blame steps of `node.secure_round.SecureRound` (its state lives there)."""

    machine: SecAggParticipant
    failure: blame.Failure | None
    result: SecAggResult | None
    round: int
    _disputed: tuple[tuple[int, int], ...]
    _summed_weights: dict[int, int]
    _excised: frozenset[int]
    """L (participant ids) once the ledger opened this round's excise phase; empty before."""
    _excise_reveals: dict[int, sam.UnmaskShares]
    """The committed excise reveals, by sender (`on_committed`)."""
    _unmask_reveals: dict[int, sam.UnmaskShares]
    """The committed unmask-phase reveals, by sender: what excision unmasks from with the excise reveals."""
    _excised_total: npt.NDArray[np.float64] | None
    _excise_result: SecAggResult | None
    """The ring sum over S \\ L once excision decided (the same for every deciding set of reveals), before its checks."""
    _excise_failure: str
    """Why the sum over S \\ L failed its checks (weight, linear identity), raised again on every later call."""
    _decode_reveals: Callable[[Sequence[bytes]], dict[int, sam.UnmaskShares]]
    _check_bound: Callable[[npt.NDArray[np.float64], int | None], None]

    def set_disputes(self, disputes: tuple[tuple[int, int], ...]) -> None:
        """The ledger's disputed pairs when the round opened (member indices): no pairwise mask between them
        (`smpc.secagg.SecAggParticipant.exclude_pairs`), nor a disclosure about one."""
        self._disputed = tuple((i + 1, j + 1) for i, j in disputes)
        self.machine.exclude_pairs(self._disputed)

    def _row(self, coordinate: int | None) -> blame.SketchRow | None:
        if coordinate is None:
            return None  # only the weight failed (always so without validation): no sketch row
        assert self._sketch is not None
        return blame.SketchRow.of(self._sketch, coordinate)

    def on_blame_started(self, event: rc.BlameStarted, disclosed: DisclosureHook = _honest) -> list[Output]:
        """Our `blame`: pair scalars with the other members of S (if we are in S), and, as a holder, our shares of
        z_l[b*] for every l in S that dealt us one (`smpc.blame.MISSING_SHARE` for the others: a dealer that
        withheld our shares cannot silence our pairs). Without validation there are no holders: a member of S
        discloses its pair scalars alone (only the weight can have failed). Nothing if we left the round early: we
        are then absent from the verdict (suspended, if we are in S). `disclosed`: the fault hook our disclosure passes
        through before it is signed (`node.hooks.FaultHooks.blame_disclosure`; honest by default)."""
        summed = set(event.survivors)
        if self.validation is None and (self.me not in summed or event.coordinate is not None):
            return []
        if self.validation is not None and (self._sketch is None or self.me not in event.holders):
            return []
        pair_seeds = self.machine.pair_seeds() if self.me in summed else {}
        if not set(blame.paired_with(self.me + 1, {m + 1 for m in summed}, self._disputed)) <= set(pair_seeds):
            return []
        held = {} if event.coordinate is None else \
            {owner + 1: self._share_of(owner) for owner in summed if owner == self.me or owner in self._dealt}
        row = self._row(event.coordinate)
        disclosure = disclosed(self.me + 1, blame.disclose(pair_seeds, {m + 1 for m in summed}, row,
                                                           MaskGenerator(self.params.vector_length), held), row)
        return [self._tx("blame", [blame.encode_pairs(disclosure.pairs), blame.encode_shares(disclosure.shares)])]

    def failure_fields(self) -> tuple[bool, int | None, bytes] | None:
        """What a `fail` names from our unmasking (None: it did not fail): the weight flag, b*, and the base scalars
        of every member of S (`smpc.blame.base_scalars`), from which the contract computes the verdict."""
        if self.failure is None or self.result is None:
            return None
        survivors = self.result.survivors
        row = self._row(self.failure.coordinate)
        case = blame.BlameCase({m: self.machine.masked_vector(m) for m in survivors}, self.result.self_seeds,
                               self.result.dropped_pair_seeds)
        generator = MaskGenerator(self.params.vector_length)
        bases = {m - 1: blame.base_scalars(m, case, row, generator) for m in sorted(survivors)}
        return self.failure.weight, self.failure.coordinate, blame.encode_pairs(bases)

    def on_excise_started(self, event: rc.ExciseStarted) -> list[Output]:
        """The verdict convicted L = `event.excised` of S: our shares of their mask keys (`excise_reveal`), nothing if
        we are convicted, hold none, or never unmasked S (we left the round); and, with validation, as a holder, our
        share of the sum of the sketches of S \\ L (`_share_excised_sketch_sum`)."""
        self._excised = frozenset(m + 1 for m in event.excised)
        out = self._share_excised_sketch_sum(event.survivors, tuple(sorted(event.excised))) if self.validation is not None else []
        if self.me in event.excised or self.machine.phase not in (SecAggPhase.UNMASK, SecAggPhase.DONE) \
                or not set(event.excised) <= set(self._summed_weights):
            return out
        reveal = self.machine.excise_reveal(self._excised)
        return out if reveal is None else [self._tx("sa", [sam.encode(reveal)]), *out]

    def on_excise_reveal(self, message: sam.UnmaskShares) -> None:
        self._excise_reveals[message.sender] = message

    def try_excised_sum(self, deadline_passed: bool = False, reveals: Sequence[bytes] | None = None,
                        excise_reveals: Sequence[bytes] = ()) -> npt.NDArray[np.float64] | None:
        """The dequantized sum over S \\ L once the committed excise reveals recover L's mask keys, checked: the
        weight coordinate equals the committed weights of S \\ L, with validation the linear identity over S \\ L
        (the holders' shares of the sketches' sum over S \\ L, `_excised_identity_deviation`), and the clip bound for
        |S \\ L| vectors (a failure raises LinearIdentityFailed, again on every later call: no result, an `abort`).
        `reveals` and `excise_reveals`: a check's (the ledger's as of its `result`); None: those this node saw
        committed, and None is returned while they do not decide yet (unless `deadline_passed`), or, with validation,
        while the sketch-sum shares over S \\ L are not all in (before `deadline_passed`; any t_v + 1 + f after).
        Raises RoundAborted when the given reveals do not decide, or a convicted dealer's shares contradict its
        advert; MissingMessages for a masked input we lack."""
        if self._excised_total is not None:
            return self._excised_total
        if self._excise_failure:
            raise LinearIdentityFailed(self._excise_failure)
        if not self._excised:
            return None
        if self._excise_result is None:
            self._excise_result = self._excise(deadline_passed, reveals, excise_reveals)
        result = self._excise_result
        if result is None:
            return None
        kept = {m - 1 for m in result.survivors}
        weights = {m: w for m, w in self._summed_weights.items() if m in kept}
        if int(result.total[-1]) != sum(weights.values()) % field.RING_MODULUS:
            self._excise_failure = (f"the sum over S \\ L fails the weight check: {int(result.total[-1])} against "
                                    f"the committed {sum(weights.values())}")
            raise LinearIdentityFailed(self._excise_failure)
        if self.validation is not None:
            excised = tuple(sorted(m - 1 for m in self._excised))
            deviation = self._excised_identity_deviation(excised, deadline_passed, result.total, len(kept))
            if deviation is None:
                return None  # wait for more holders' shares of the sketches' sum over S \ L
            failure = blame.locate_failure(True, *deviation)
            if failure is not None:
                self._excise_failure = f"the sum over S \\ L fails the linear identity: {failure}"
                raise LinearIdentityFailed(self._excise_failure)
        total = dequantize_sum(result.total, self._quant)
        self._check_bound(total, len(kept))
        total.flags.writeable = False
        self._excised_total = total
        return total

    def _excise(self, deadline_passed: bool, reveals: Sequence[bytes] | None,
                excise_reveals: Sequence[bytes]) -> SecAggResult | None:
        """`SecAggParticipant.excise` from the given reveals or the committed ones (None: not decided yet)."""
        given = reveals is not None
        unmask = self._decode_reveals(reveals) if reveals is not None else dict(self._unmask_reveals)
        excise = self._decode_reveals(excise_reveals) if given else dict(self._excise_reveals)
        try:
            return self.machine.excise(self._excised, unmask, excise)
        except SmpcError as exc:
            if isinstance(exc, SHELL_ERRORS):
                raise
            if isinstance(exc, RoundAborted) and exc.culprit is None and not (given or deadline_passed):
                return None  # too few excise reveals committed yet
            raise RoundAborted(f"round {self.round} cannot be excised: {exc}") from exc
