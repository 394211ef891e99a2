"""The blame half of one node's secure round: our disclosure, and the verdict we check or propose.

Owns, as a mixin of `node.secure_round.SecureRound`: once a `fail` closed the unmask phase (`BlameStarted`),
the scalars our pairwise masks with the other members of S add to the failed checks and our shares of z_l[b*]
(`smpc.blame.disclose`); and the base scalars a `fail` carries (`smpc.blame.base_scalars`, from our own unmasking
state: the masked inputs, the reconstructed self seeds and dropped members' pair keys), so that the contract
computes the verdict from the ledger alone. Member
indices on the ledger, participant ids (index + 1) in `smpc`. Pure; may call `smpc.blame`, `smpc.prg` and the
records of `node.contract_events` and `node.secure_outputs`, and the sketch state of `node.secure_sketch`.
"""

from __future__ import annotations

from node import contract_events as rc
from node.secure_outputs import Output
from node.secure_sketch import SketchValidation
from smpc import blame
from smpc.prg import MaskGenerator
from smpc.secagg import SecAggParticipant, SecAggResult


class BlameSide(SketchValidation):
    """The blame steps of `node.secure_round.SecureRound` (its state lives there)."""

    machine: SecAggParticipant
    failure: blame.Failure | None
    result: SecAggResult | None
    _disputed: tuple[tuple[int, int], ...]

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

    def on_blame_started(self, event: rc.BlameStarted) -> list[Output]:
        """Our `blame`: pair scalars with the other members of S (if we are in S), and, as a holder, our shares of
        z_l[b*] for every l in S that dealt us one (`smpc.blame.MISSING_SHARE` for the others: a dealer that
        withheld our shares cannot silence our pairs). Without validation there are no holders: a member of S
        discloses its pair scalars alone (only the weight can have failed). Nothing if we left the round early: we
        are then absent from the verdict (suspended, if we are in S)."""
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
        disclosure = blame.disclose(pair_seeds, {m + 1 for m in summed}, self._row(event.coordinate),
                                    MaskGenerator(self.params.vector_length), held)
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
