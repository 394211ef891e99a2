"""The blame verdict after a failed weight check or linear identity: the member whose masked input contradicts
its sketch or committed weight is convicted on its own disclosures; a lie about a pair mask is a dispute;
honest members are never named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from node.weighting import Weighting, quant_params
from smpc import field
from smpc.blame import (
    MISSING_SHARE,
    BlameCase,
    Disclosure,
    Failure,
    Ledger,
    PairScalars,
    SketchRow,
    Verdict,
    base_scalars,
    check_disclosure,
    decode_pairs,
    decode_shares,
    decode_sketch_entries,
    disclose,
    encode_pairs,
    encode_shares,
    judge_late,
    locate_failure,
    own_check_passes,
    paired_with,
    sums_cannot_wrap,
    verdict,
)
from smpc.errors import MalformedMessage
from smpc.masking import mask_input, unmask_sum
from smpc.prg import MaskGenerator, SeededRandomBytes
from smpc.quantize import QuantParams, quantize
from smpc.sketch import CountSketch
from smpc.validation import (
    SketchParams,
    identity_deviation,
    reconstruct_sketch_sum,
    share_sketch,
    sketch_update,
    sum_shares,
)

DIM, WIDTH, DEGREE, F = 3000, 64, 1, 2
LIE = 1 << 20


class BlameRound:
    """Members 1..n mask their quantized vectors (update, then weight) pairwise; `dropped` left U3 after masking
    (their pair keys public); `liar` masks something other than what it sketched or committed (`lie`)."""

    def __init__(self, seed: int, n: int = 7, dropped: frozenset[int] = frozenset(), liar: int | None = None,
                 lie: str = "identity", disputed: tuple[tuple[int, int], ...] = ()) -> None:
        self.disputed = disputed
        self.rand = SeededRandomBytes.from_int(seed)
        gen = np.random.default_rng(seed)
        self.ids = list(range(1, n + 1))
        self.survivors = frozenset(self.ids) - dropped
        self.quant = QuantParams.for_participants(clip_l2=1.0, max_participants=n)
        self.params = SketchParams.for_clip(1.0, WIDTH)
        self.generator = MaskGenerator(DIM + 1)
        self.pair_seeds = {(i, j): self.rand(32) for i in self.ids for j in self.ids if i < j}
        self.self_seeds = {i: self.rand(32) for i in self.ids}
        self.weights = {i: int(gen.integers(1, int(self.quant.scale))) for i in self.ids}
        updates = {i: gen.standard_normal(DIM) * (0.3 / np.sqrt(DIM)) * (1 + i % 3) for i in self.ids}
        quantized = {i: np.append(quantize(updates[i], self.quant, self.rand), np.uint32(self.weights[i]))
                     for i in self.ids}
        self.sketch = CountSketch(self.rand(32), DIM, WIDTH)
        sketches = {i: sketch_update(quantized[i][:-1], self.sketch, self.params, self.quant, self.rand)
                    for i in self.ids}
        if liar is not None:
            quantized[liar] = self._lied(quantized[liar], lie)
        self.masked = {i: mask_input(quantized[i], self.self_seeds[i], self.seeds_of(i), i, self.generator)
                       for i in self.ids}
        dealt = {i: share_sketch(sketches[i], DEGREE, self.ids, self.rand) for i in self.ids}
        self.held = {h: {i: dealt[i][h] for i in self.ids} for h in self.ids}

    @staticmethod
    def _lied(vector: np.ndarray, lie: str) -> np.ndarray:
        lied = vector.copy()
        if lie == "identity":
            lied[:-1] += np.uint32(LIE)
        elif lie == "wrap":
            lied[:-1] += np.uint32(1 << 31)
        else:
            lied[-1] += np.uint32(5)
        return lied

    def seeds_of(self, member: int, within: frozenset[int] | None = None) -> dict[int, bytes]:
        """`member`'s pair keys with the members of `within` (default all) it shares a mask with."""
        others = frozenset(self.ids) if within is None else within
        return {j: self.pair_seeds[min(member, j), max(member, j)]
                for j in paired_with(member, others | {member}, self.disputed)}

    def dropped_pair_seeds(self) -> dict[tuple[int, int], bytes]:
        return {(d, j): seed for d in frozenset(self.ids) - self.survivors for j, seed in self.seeds_of(d).items()
                if j in self.survivors}

    def failure(self) -> Failure | None:
        survivors = self.survivors
        total = unmask_sum({i: self.masked[i] for i in survivors}, {i: self.self_seeds[i] for i in survivors},
                           self.dropped_pair_seeds(), self.generator)
        weight_ok = int(total[-1]) == sum(self.weights[i] for i in survivors) % field.RING_MODULUS
        sums = {h: sum_shares(self.held[h], survivors) for h in self.ids}
        sketch_sum, _ = reconstruct_sketch_sum(sums, DEGREE, F)
        deviation, tolerance = identity_deviation(sketch_sum, total[:-1], self.sketch, self.params, self.quant,
                                                  len(survivors))
        return locate_failure(weight_ok, deviation, tolerance)

    def case(self) -> BlameCase:
        return BlameCase({i: self.masked[i] for i in self.survivors}, {i: self.self_seeds[i] for i in self.survivors},
                         self.dropped_pair_seeds())

    def row(self, failure: Failure) -> SketchRow | None:
        return None if failure.coordinate is None else SketchRow.of(self.sketch, failure.coordinate)

    def disclosures(self, failure: Failure) -> dict[int, Disclosure]:
        """Every holder's honest disclosure (survivors also disclose their pair scalars)."""
        row = self.row(failure)
        return {m: disclose(self.seeds_of(m, self.survivors) if m in self.survivors else {}, self.survivors, row,
                            self.generator, self.held[m]) for m in self.ids}

    def judge(self, failure: Failure, disclosures: dict[int, Disclosure]) -> Verdict:
        row = self.row(failure)
        for member, disclosure in disclosures.items():
            check_disclosure(member, disclosure, self.survivors, frozenset(self.ids), row is not None, self.disputed)
        entries = None if row is None else decode_sketch_entries(
            {m: d.shares for m, d in disclosures.items()}, {m: m for m in self.ids}, self.survivors, DEGREE, F)
        return verdict(self.ledger(failure, entries), {m: d.pairs for m, d in disclosures.items()
                                                       if m in self.survivors})

    def ledger(self, failure: Failure, entries: dict[int, int] | None) -> Ledger:
        """What the `fail` and the committed weights and shares put on the ledger."""
        case, row = self.case(), self.row(failure)
        bases = {m: base_scalars(m, case, row, self.generator) for m in sorted(self.survivors)}
        return Ledger(bases, {i: self.weights[i] for i in self.survivors}, entries,
                      self.params.scale / self.quant.scale)

    def entries(self, failure: Failure) -> dict[int, int] | None:
        disclosures = self.disclosures(failure)
        return None if failure.coordinate is None else decode_sketch_entries(
            {m: d.shares for m, d in disclosures.items()}, {m: m for m in self.ids}, self.survivors, DEGREE, F)


def lie_about_pair(r: BlameRound, failure: Failure, disclosures: dict[int, Disclosure], liar: int,
                   partner: int, field_name: str) -> None:
    """The liar shifts its scalar with `partner` so that its own check passes: by exactly what its lie added
    (the whole coordinate's lie for the sketch, 5 for the weight)."""
    row = r.row(failure)
    assert row is not None or field_name == "weight"
    shift = 5 if field_name == "weight" else (LIE * (row.plus.size - row.minus.size)) % field.RING_MODULUS
    sign = 1 if partner > liar else -1
    scalars = disclosures[liar].pairs[partner]
    lied = dataclasses.replace(scalars, **{field_name: (getattr(scalars, field_name) + sign * shift)
                                          % field.RING_MODULUS})
    disclosures[liar] = Disclosure({**disclosures[liar].pairs, partner: lied}, disclosures[liar].shares)


def test_a_member_masking_what_it_did_not_sketch_is_convicted_and_the_retry_without_it_holds() -> None:
    r = BlameRound(seed=1, liar=3)
    failure = r.failure()
    assert failure is not None and failure.coordinate is not None and not failure.weight
    result = r.judge(failure, r.disclosures(failure))
    assert (result.convicted, result.disputes, result.absent) == ((3,), (), ())
    retry = BlameRound(seed=1, dropped=frozenset({3}))
    assert retry.failure() is None


def test_a_member_masking_another_weight_than_it_committed_is_convicted() -> None:
    r = BlameRound(seed=2, liar=5, lie="weight")
    failure = r.failure()
    assert failure == Failure(weight=True, coordinate=None)
    result = r.judge(failure, r.disclosures(failure))
    assert (result.convicted, result.disputes, result.absent) == ((5,), (), ())


@pytest.mark.parametrize(("lie", "field_name"), [("identity", "sketch"), ("weight", "weight")])
def test_a_lie_about_a_pair_mask_to_pass_its_own_check_is_a_dispute_with_that_partner(lie: str,
                                                                                      field_name: str) -> None:
    r = BlameRound(seed=3, liar=4, lie=lie)
    failure = r.failure()
    assert failure is not None
    disclosures = r.disclosures(failure)
    lie_about_pair(r, failure, disclosures, liar=4, partner=6, field_name=field_name)
    result = r.judge(failure, disclosures)
    assert (result.convicted, result.disputes, result.absent) == ((), ((4, 6),), ())


def test_a_member_that_does_not_disclose_is_absent_and_its_late_disclosure_is_judged_on_the_ledger() -> None:
    """Red team B1: silence only defers the judgement (the contract suspends the silent member meanwhile)."""
    r = BlameRound(seed=4, liar=2)
    failure = r.failure()
    assert failure is not None
    disclosures = r.disclosures(failure)
    late = disclosures.pop(2)
    result = r.judge(failure, disclosures)
    assert (result.convicted, result.disputes, result.absent) == ((), (), (2,))
    cleared = {m: d.pairs for m, d in disclosures.items() if m in r.survivors}
    assert judge_late(2, r.ledger(failure, r.entries(failure)), late.pairs, cleared) == Verdict((2,), (), ())


def test_a_lie_parked_in_the_pair_with_a_silent_accomplice_is_a_dispute_once_the_accomplice_discloses() -> None:
    """Red team B1 part B: liar 3 moves its lie into its pair with 5, which stays silent; 5's late (true)
    disclosure disagrees with 3's."""
    r = BlameRound(seed=12, liar=3)
    failure = r.failure()
    assert failure is not None
    disclosures = r.disclosures(failure)
    lie_about_pair(r, failure, disclosures, liar=3, partner=5, field_name="sketch")
    late = disclosures.pop(5)
    assert r.judge(failure, disclosures) == Verdict((), (), (5,))
    cleared = {m: d.pairs for m, d in disclosures.items() if m in r.survivors}
    assert judge_late(5, r.ledger(failure, r.entries(failure)), late.pairs, cleared) == Verdict((), ((3, 5),), ())


def test_dropped_members_pairs_are_recomputed_not_disclosed() -> None:
    r = BlameRound(seed=5, dropped=frozenset({1, 6}), liar=7)
    failure = r.failure()
    assert failure is not None
    disclosures = r.disclosures(failure)
    assert set(disclosures[7].pairs) == {2, 3, 4, 5} and not disclosures[1].pairs
    result = r.judge(failure, disclosures)
    assert (result.convicted, result.disputes, result.absent) == ((7,), (), ())


@pytest.mark.parametrize("seed", range(60))
def test_honest_members_are_never_convicted_nor_in_a_dispute_with_each_other(seed: int) -> None:
    """Over seeds: random dropouts, at most one liar of a random kind with up to two earlier disputes, a random
    pair lie, and honest members checked at every failing coordinate and (with no liar) at an arbitrary one."""
    gen = np.random.default_rng(1000 + seed)
    n = int(gen.integers(4, 9))
    dropped = frozenset(int(d) for d in gen.choice(np.arange(1, n + 1), size=int(gen.integers(0, 2)), replace=False))
    candidates = sorted(frozenset(range(1, n + 1)) - dropped)
    liar = int(gen.choice(candidates)) if gen.random() < 0.7 else None
    lie = "identity" if gen.random() < 0.5 else "weight"
    others = [m for m in range(1, n + 1) if m != liar]
    disputed = () if liar is None else tuple(sorted((min(liar, int(j)), max(liar, int(j)))
                                                    for j in gen.choice(others, size=int(gen.integers(0, 3)),
                                                                        replace=False)))
    r = BlameRound(seed=seed, n=n, dropped=dropped, liar=liar, lie=lie, disputed=disputed)
    failure = r.failure() if liar is not None else Failure(False, int(gen.integers(0, WIDTH)))
    assert failure is not None, f"seed {seed}: a lie went unnoticed"
    disclosures = r.disclosures(failure)
    partners = paired_with(liar, candidates, disputed) if liar is not None else []
    if partners and gen.random() < 0.5:
        partner = int(gen.choice(partners))
        lie_about_pair(r, failure, disclosures, liar, partner, "sketch" if lie == "identity" else "weight")
    result = r.judge(failure, disclosures)
    honest = frozenset(r.ids) - {liar}
    assert not honest & set(result.convicted), f"seed {seed}: honest member convicted {result}"
    assert all(liar in pair for pair in result.disputes), f"seed {seed}: honest members disputed {result}"
    assert liar is None or result.names_anyone, f"seed {seed}: the liar went unnamed {result}"


def test_a_disputed_pair_has_no_mask_so_the_same_lie_is_refused_and_another_partner_disputes() -> None:
    """Round after round, a liar that passes its own check by lying to a partner: each dispute removes that pair's
    mask, so the next lie needs another partner (the contract convicts at f + 1 distinct ones)."""
    disputed: tuple[tuple[int, int], ...] = ()
    for round_seed, partner in enumerate((6, 2, 7)):
        r = BlameRound(seed=40 + round_seed, liar=4, disputed=disputed)
        failure = r.failure()
        assert failure is not None and failure.coordinate is not None
        disclosures = r.disclosures(failure)
        for earlier in {j for pair in disputed for j in pair} - {4}:
            assert earlier not in disclosures[4].pairs and 4 not in disclosures[earlier].pairs
            with pytest.raises(MalformedMessage):
                pairs = {**disclosures[4].pairs, earlier: PairScalars(0, 0)}
                check_disclosure(4, Disclosure(pairs, disclosures[4].shares), r.survivors, frozenset(r.ids), True,
                                 disputed)
        lie_about_pair(r, failure, disclosures, liar=4, partner=partner, field_name="sketch")
        result = r.judge(failure, disclosures)
        assert (result.convicted, result.disputes) == ((), ((min(4, partner), max(4, partner)),))
        disputed = tuple(sorted({*disputed, *result.disputes}))
    assert disputed == ((2, 4), (4, 6), (4, 7))


def test_locate_failure_takes_the_largest_deviation_smallest_index_on_ties() -> None:
    tolerance = np.full(5, 2.0)
    assert locate_failure(True, np.array([0.0, 3.0, -5.0, 5.0, 1.0]), tolerance) == Failure(False, 2)
    assert locate_failure(True, np.array([0.0, 2.0, -2.0, 1.0, 0.0]), tolerance) is None
    assert locate_failure(False, np.array([0.0, 2.0, -2.0, 1.0, 0.0]), tolerance) == Failure(True, None)
    assert locate_failure(False, None, None) == Failure(True, None)


def test_disclosures_round_trip_and_malformed_ones_are_refused() -> None:
    pairs = {2: PairScalars(7, 2**32 - 1), 5: PairScalars(0, 3)}
    assert decode_pairs(encode_pairs(pairs), [5, 2]) == pairs
    shares = {1: field.P - 1, 2: 0, 5: 9}
    assert decode_shares(encode_shares(shares), [1, 2, 5]) == shares
    with pytest.raises(MalformedMessage):
        decode_pairs(encode_pairs(pairs), [2, 5, 6])
    with pytest.raises(MalformedMessage):
        decode_shares(encode_shares(shares)[:-1], [1, 2, 5])
    survivors, holders = frozenset({1, 2, 5}), frozenset({1, 2, 3, 5})
    check_disclosure(1, Disclosure(pairs, shares), survivors, holders, with_sketch=True)
    check_disclosure(3, Disclosure({}, shares), survivors, holders, with_sketch=True)
    bad = [
        (1, Disclosure({2: pairs[2]}, shares), True),
        (3, Disclosure(pairs, shares), True),
        (1, Disclosure(pairs, {1: 1, 2: 2}), True),
        (1, Disclosure(pairs, {**shares, 1: field.P}), True),
        (1, Disclosure({**pairs, 5: PairScalars(2**32, 0)}, shares), True),
        (1, Disclosure(pairs, {}), False),
    ]
    for member, disclosure, with_sketch in bad:
        with pytest.raises(MalformedMessage):
            check_disclosure(member, disclosure, survivors, holders, with_sketch)


def test_a_holder_missing_the_liars_share_still_discloses_its_pairs_so_the_pair_lie_is_a_dispute() -> None:
    """Red team B4: liar 3 withheld holder 4's sketch shares and hides its lie in its pair with 4. Holder 4
    discloses its pairs and `MISSING_SHARE` for 3; 3's entry decodes from the others."""
    r = BlameRound(seed=21, liar=3)
    failure = r.failure()
    assert failure is not None and failure.coordinate is not None
    disclosures = r.disclosures(failure)
    disclosures[4] = Disclosure(disclosures[4].pairs, {**disclosures[4].shares, 3: MISSING_SHARE})
    lie_about_pair(r, failure, disclosures, liar=3, partner=4, field_name="sketch")
    assert r.judge(failure, disclosures) == Verdict((), ((3, 4),), ())


def test_undecodable_entries_leave_everyone_undecided_until_the_missing_shares_come() -> None:
    """Red team B3: liar 3 and accomplice 5 disclose junk shares and honest 6 and 7 are slow: 3 honest shares and
    2 junk ones do not decode at t_v + 1 + f = 4 agreeing, so nobody is cleared on the sketch (no fail-open).
    Once 6's shares land, the entries decode and the liar is convicted."""
    r = BlameRound(seed=22, liar=3)
    failure = r.failure()
    assert failure is not None and failure.coordinate is not None
    disclosures = r.disclosures(failure)
    for junk in (3, 5):
        disclosures[junk] = Disclosure(disclosures[junk].pairs, {o: (7919 * junk * o) % field.P for o in r.ids})
    late = {m: disclosures.pop(m) for m in (6, 7)}
    assert r.judge(failure, disclosures) == Verdict((), (), (6, 7), (1, 2, 3, 4, 5))
    disclosures[6] = late[6]
    entries = decode_sketch_entries({m: d.shares for m, d in disclosures.items()}, {m: m for m in r.ids},
                                    r.survivors, DEGREE, F)
    assert set(entries) == r.survivors
    ledger = r.ledger(failure, entries)
    assert judge_late(3, ledger, disclosures[3].pairs, {}) == Verdict((3,), (), ())
    assert all(judge_late(m, ledger, disclosures[m].pairs, {}) == Verdict((), (), ()) for m in (1, 2, 4, 5, 6))


@pytest.mark.parametrize("seed", range(200, 216))
def test_a_liar_wrapping_coordinates_by_2_to_the_31_is_convicted(seed: int) -> None:
    """Red team B9: the liar adds 2^31 to every coordinate it masks, without knowing the sketch. Its own check
    moves by 2^31 at buckets with an odd number of coordinates only; the identity, on bucket sums mod 2^32 read
    signed (the same arithmetic), fails exactly there, so b* is such a bucket and the liar fails its check."""
    r = BlameRound(seed=seed, liar=3, lie="wrap")
    failure = r.failure()
    assert failure is not None and failure.coordinate is not None
    assert r.judge(failure, r.disclosures(failure)) == Verdict((3,), (), ())


def test_the_wrap_condition_needs_quantization_sized_for_it_which_validated_rounds_get() -> None:
    """|S| (M + 1) / alpha < 2^31 fails with quantization sized for N clipped updates alone (the slack lets a
    sketch entry reach twice the clip), and holds once `node.weighting.quant_params` sizes it for the sketch."""
    weighting = Weighting(clip_l2=10.0, sample_cap=1000)
    for n in (4, 7, 18, 64):
        sketch = SketchParams.for_clip(weighting.total_bound, 1000)
        assert not sums_cannot_wrap(n, sketch, quant_params(weighting, n))
        assert sums_cannot_wrap(n, sketch, quant_params(weighting, n, sketch))


def test_the_own_check_allows_one_rounding_and_no_more() -> None:
    """The own check's tolerance is the rounding of one sketch entry: a deviation of 1 passes, 1.5 convicts (a
    looser tolerance would clear a liar whose lie at b* is just over one rounding), the entry is read as a signed
    32-bit value (2^31 - 1 positive, 2^31 negative), and a member without a decoded entry is undecided, never
    cleared."""
    alpha = 0.5
    for sketch, entry, passes in [(200, 101, True), (201, 100, True), (201, 102, False), (201, 99, False),
                                  ((1 << 31) - 1, round(alpha * ((1 << 31) - 1)), True),
                                  (1 << 31, round(-alpha * (1 << 31)), True), (1 << 31, round(alpha * (1 << 31)), False)]:
        ledger = Ledger({1: PairScalars(7, sketch)}, {1: 7}, {1: entry}, alpha)
        assert own_check_passes(1, ledger, {}) is passes, (sketch, entry)
    assert own_check_passes(1, Ledger({1: PairScalars(7, 200)}, {1: 7}, {}, alpha), {}) is None
    assert own_check_passes(1, Ledger({1: PairScalars(8, 200)}, {1: 7}, {}, alpha), {}) is False
    undecided = Ledger({1: PairScalars(7, 200)}, {1: 7}, {}, alpha)
    assert judge_late(1, undecided, {}, {}) == Verdict((), (), (), (1,))


def test_an_entry_that_does_not_decode_leaves_the_later_ones_decoding() -> None:
    """Each survivor's z_l[b*] is decided on its own: survivor 1's shares missing at every holder but one does not
    stop survivors 2 and 3 from decoding (degree 1, f 1: three agreeing shares each)."""
    degree, f = 1, 1
    shares: dict[int, dict[int, int]] = {}
    for h in (1, 2, 3, 4):
        shares[h] = {1: MISSING_SHARE if h > 1 else 5, 2: (40 + 3 * h) % field.P, 3: (90 - 2 * h) % field.P}
    entries = decode_sketch_entries(shares, {h: h for h in shares}, (1, 2, 3), degree, f)
    assert entries == {2: 40, 3: 90}
