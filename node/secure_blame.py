"""The blame half of one node's validated secure round: our disclosure, and the verdict we check or propose.

Owns, as a mixin of `node.secure_round.SecureRound`: once a `fail` closed the unmask phase (`BlameStarted`),
the scalars our pairwise masks with the other members of S add to the failed checks and our shares of z_l[b*]
(`smpc.blame.disclose`); and, for a `VerdictCheck`, `smpc.blame.verdict` on the committed disclosures with our
own unmasking state (the masked inputs, the reconstructed self seeds and dropped members' pair keys). Member
indices on the ledger, participant ids (index + 1) in `smpc`. Pure; may call `smpc.blame`, `smpc.prg` and the
records of `node.contract_events` and `node.secure_outputs`, and the sketch state of `node.secure_sketch`.
"""

from __future__ import annotations

from node import contract_events as rc
from node.secure_outputs import Output
from node.secure_sketch import SketchValidation
from smpc import blame
from smpc.errors import InconsistentShares, NotEnoughShares
from smpc.prg import MaskGenerator
from smpc.secagg import SecAggParticipant

Judgement = tuple[tuple[int, ...], tuple[tuple[int, int], ...]]
"""A verdict on the ledger: (convicted, disputes), member indices."""


class BlameSide(SketchValidation):
    """The blame steps of `node.secure_round.SecureRound` (its state lives there)."""

    machine: SecAggParticipant
    failure: blame.Failure | None
    _summed_weights: dict[int, int]
    _disputed: tuple[tuple[int, int], ...]

    def set_disputes(self, disputes: tuple[tuple[int, int], ...]) -> None:
        """The ledger's disputed pairs when the round opened (member indices): no pairwise mask between them
        (`smpc.secagg.SecAggParticipant.exclude_pairs`), nor a disclosure about one."""
        self._disputed = tuple((i + 1, j + 1) for i, j in disputes)
        self.machine.exclude_pairs(self._disputed)

    def _row(self, coordinate: int | None) -> blame.SketchRow | None:
        assert self._sketch is not None
        return None if coordinate is None else blame.SketchRow.of(self._sketch, coordinate)

    def on_blame_started(self, event: rc.BlameStarted) -> list[Output]:
        """Our `blame`: pair scalars with the other members of S (if we are in S), and, as a holder, our shares of
        every z_l[b*]. Nothing if we lack what the round needs (we left it early, or miss a survivor's shares):
        we are then absent from the verdict."""
        if self.validation is None or self._sketch is None or self.me not in event.holders:
            return []
        summed = set(event.survivors)
        pair_seeds = self.machine.pair_seeds() if self.me in summed else {}
        if not set(blame.paired_with(self.me + 1, {m + 1 for m in summed}, self._disputed)) <= set(pair_seeds):
            return []
        held = {} if event.coordinate is None else \
            {owner + 1: self._share_of(owner) for owner in summed if owner == self.me or owner in self._dealt}
        if event.coordinate is not None and len(held) != len(summed):
            return []
        disclosure = blame.disclose(pair_seeds, {m + 1 for m in summed}, self._row(event.coordinate),
                                    MaskGenerator(self.params.vector_length), held)
        return [self._tx("blame", [blame.encode_pairs(disclosure.pairs), blame.encode_shares(disclosure.shares)])]

    def blame_verdict(self, check: rc.VerdictCheck) -> Judgement | None:
        """`smpc.blame.verdict` on the check's disclosures; None if we cannot judge (we did not unmask S, or found
        another failure than the `fail` named)."""
        failure = blame.Failure(check.weight, check.coordinate)
        survivors = frozenset(m + 1 for m in check.survivors)
        if (self.validation is None or self.result is None or self.failure != failure
                or survivors != self.result.survivors):
            return None
        disclosures = {author + 1: self._disclosure(author + 1, pairs, shares, survivors)
                       for author, pairs, shares in check.disclosures}
        row = self._row(check.coordinate)
        case = blame.BlameCase(failure, survivors, {m: self.machine.masked_vector(m) for m in survivors},
                               self.result.self_seeds, self.result.dropped_pair_seeds,
                               {m + 1: w for m, w in self._summed_weights.items()},
                               self.validation.sketch.scale / self._quant.scale)
        judged = blame.verdict(case, disclosures, self._sketch_entries(check, disclosures, survivors), row,
                               MaskGenerator(self.params.vector_length))
        return tuple(m - 1 for m in judged.convicted), tuple((i - 1, j - 1) for i, j in judged.disputes)

    def _sketch_entries(self, check: rc.VerdictCheck, disclosures: dict[int, blame.Disclosure],
                        survivors: frozenset[int]) -> dict[int, int] | None:
        """z_l[b*] from the holders' shares; None (judge the weights and pairs only) when only the weight failed
        or too few holders agree: an honest member is never convicted for want of shares."""
        assert self.validation is not None
        if check.coordinate is None:
            return None
        try:
            return blame.decode_sketch_entries(disclosures, {m + 1: m + 1 for m in check.holders}, survivors,
                                               self.validation.degree, check.max_faulty)
        except (NotEnoughShares, InconsistentShares):
            return None

    def _disclosure(self, author: int, pairs: bytes, shares: bytes, survivors: frozenset[int]) -> blame.Disclosure:
        """A committed `blame` (the contract checked its sizes), `author` and the survivors in participant ids."""
        return blame.Disclosure(blame.decode_pairs(pairs, blame.paired_with(author, survivors, self._disputed)),
                                blame.decode_shares(shares, survivors if shares else []))
