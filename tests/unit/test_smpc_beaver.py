"""Beaver-style statistics: f lying holders corrected at N = 3f + 1, the preprocessing's liars convicted, privacy."""

import itertools

import numpy as np
import pytest

from smpc import beaver, field, przs, shamir
from smpc.errors import InconsistentShares, NotEnoughShares
from smpc.prg import SeededRandomBytes
from smpc.validation import ValidationStatistics, reconstruct_statistics, statistic_pairs
from tests.beaver_helpers import Consortium, forged

WIDTH = 48
SIZES = [(7, 2), (10, 3)]


def honest_statistics(c: Consortium) -> ValidationStatistics:
    return reconstruct_statistics(c.today(), c.ids, c.degree, c.params, c.f)


@pytest.mark.parametrize(("n", "f"), SIZES)
def test_the_statistics_equal_todays_bit_for_bit(n: int, f: int) -> None:
    c = Consortium(n, f, WIDTH, seed=n)
    stats = beaver.reconstruct_statistics(c.statistic_shares(), c.ids, c.degree, c.params, c.f)
    today = honest_statistics(c)
    assert stats == today
    unit = c.params.scale**2
    assert all(stats.norms_sq[i] * unit == float(np.dot(s, s)) for i, s in c.sketches.items())


@pytest.mark.parametrize(("n", "f"), SIZES)
def test_f_holders_forging_statistics_abort_todays_path_and_are_corrected_here(n: int, f: int) -> None:
    """forge-stats (+2^40 on every statistic share) by f holders: today's degree-2f opening cannot decide at
    N = 3f + 1; the degree-f opening corrects them and lists them."""
    c = Consortium(n, f, WIDTH, seed=10 + n)
    liars = c.ids[-f:]
    today = {x: forged(v) if x in liars else v for x, v in c.today().items()}
    with pytest.raises(InconsistentShares):
        reconstruct_statistics(today, c.ids, c.degree, c.params, c.f)
    shares = {x: forged(v) if x in liars else v for x, v in c.statistic_shares().items()}
    stats = beaver.reconstruct_statistics(shares, c.ids, c.degree, c.params, c.f)
    assert stats.norms_sq == honest_statistics(c).norms_sq
    assert stats.distances_sq == honest_statistics(c).distances_sq
    assert stats.inconsistent_publishers == tuple(liars) and stats.checked


@pytest.mark.parametrize(("n", "f"), SIZES)
def test_f_adversarial_holders_lying_about_d_per_receiver_and_about_statistics_are_corrected(n: int, f: int) -> None:
    """Liars send every receiver its own random D (direct streams), then publish random statistic shares; every
    honest receiver decodes the true D, and the statistics are the true ones."""
    c = Consortium(n, f, WIDTH, seed=20 + n)
    rand = SeededRandomBytes.from_int(99)
    liars = set(c.ids[:f])
    today = {x: field.random_elements(rand, v.size) if x in liars else v for x, v in c.today().items()}
    with pytest.raises(InconsistentShares):
        reconstruct_statistics(today, c.ids, c.degree, c.params, c.f)
    honest_d = c.differences()
    truth = c.decoded(honest_d)
    for receiver in set(c.ids) - liars:
        seen = {x: (field.random_elements(rand, v.size).reshape(v.shape) if x in liars else v)
                for x, v in honest_d.items()}
        decoded = c.decoded(seen)
        assert not decoded.undecodable, receiver
        assert all(np.array_equal(decoded.values[o], truth.values[o]) for o in c.ids)
        assert all(set(off) == liars for off in decoded.off_polynomial.values())
    shares = {x: field.random_elements(rand, v.size) if x in liars else v for x, v in c.statistic_shares().items()}
    stats = beaver.reconstruct_statistics(shares, c.ids, c.degree, c.params, c.f)
    assert (stats.norms_sq, stats.distances_sq) == (honest_statistics(c).norms_sq, honest_statistics(c).distances_sq)
    assert set(stats.inconsistent_publishers) == liars


@pytest.mark.parametrize(("n", "f"), SIZES)
def test_f_silent_holders_and_no_liar_still_decode(n: int, f: int) -> None:
    c = Consortium(n, f, WIDTH, seed=30 + n)
    present = set(c.ids[f:])
    d = c.decoded({x: v for x, v in c.differences().items() if x in present})
    shares = {x: v for x, v in c.statistic_shares(d.values).items() if x in present}
    stats = beaver.reconstruct_statistics(shares, c.ids, c.degree, c.params, c.f)
    assert (stats.norms_sq, stats.distances_sq, stats.inconsistent_publishers) == (
        honest_statistics(c).norms_sq, honest_statistics(c).distances_sq, ())
    with pytest.raises(NotEnoughShares):
        beaver.reconstruct_statistics({x: shares[x] for x in sorted(shares)[1:]}, c.ids, c.degree, c.params, c.f)


def test_the_opening_is_t_r_minus_rho() -> None:
    """E = T(r) - rho, with r and rho the secrets of the holders' degree-t PRSS shares."""
    c = Consortium(7, 2, WIDTH, seed=40)
    r_rows = shamir.reconstruct({h + 1: c.randomness[h].r.reshape(-1) for h in c.members}, c.degree, c.f).secret
    rho = shamir.reconstruct({h + 1: c.randomness[h].rho for h in c.members}, c.degree, c.f).secret
    t_r = beaver.preprocessing_share(beaver.Randomness(r_rows.reshape(7, WIDTH), np.zeros_like(rho),
                                                       np.zeros_like(rho)), c.layout)
    assert np.array_equal(c.opened(), field.sub(t_r, rho))


@pytest.mark.parametrize(("n", "f"), SIZES)
def test_liars_in_the_preprocessing_abort_its_opening_and_the_audit_convicts_exactly_them(n: int, f: int) -> None:
    """One liar changes one entry, the others every entry; the liars reveal nothing (silent dealers) and one
    reveals junk, before and after the genuine reveals (a junk reveal accepted late would replace a genuine one): the
    honest holders' reveals suffice, and only the liars are convicted."""
    c = Consortium(n, f, WIDTH, seed=50 + n)
    liars = c.members[1 : 1 + f]
    published = c.preprocessing()
    for rank, liar in enumerate(liars):
        bump = np.zeros(c.layout.statistic_count, dtype=np.uint64)
        bump[rank % bump.size if rank == 0 else slice(None)] = 1
        published[liar + 1] = field.add(published[liar + 1], bump)
    with pytest.raises(InconsistentShares):
        beaver.open_preprocessing(published, c.layout, c.degree, c.f)
    junk = [(d, a, bytes(32)) for d, by in c.contributions.items() for a in by]
    reveals = [*junk, *c.reveals(silent=frozenset(liars)), *junk]
    verdict = beaver.audit(c.attempt, c.members, c.degree, c.layout, c.commitments, reveals, published)
    assert verdict == beaver.AuditResult(tuple(liars), ())


def test_a_silent_holder_at_preprocessing_is_named_silent_and_not_convicted() -> None:
    c = Consortium(7, 2, WIDTH, seed=60)
    published = c.preprocessing()
    del published[4]
    with pytest.raises(NotEnoughShares):
        beaver.open_preprocessing(published, c.layout, c.degree, c.f)
    verdict = beaver.audit(c.attempt, c.members, c.degree, c.layout, c.commitments, c.reveals(), published)
    assert verdict == beaver.AuditResult((), (3,))


def test_an_audit_without_a_valid_reveal_of_some_contribution_cannot_conclude() -> None:
    c = Consortium(7, 2, WIDTH, seed=61)
    dealer, subset = 0, next(iter(c.contributions[0]))
    reveals = [r for r in c.reveals() if r[:2] != (dealer, subset)]
    with pytest.raises(beaver.AuditIncomplete) as raised:
        beaver.audit(c.attempt, c.members, c.degree, c.layout, c.commitments, reveals, c.preprocessing())
    assert raised.value.missing == ((dealer, subset),)


def test_keys_are_bound_to_the_attempt_and_separate_from_the_statistics_zero_sharing() -> None:
    contribution = b"\x05" * 32
    a, b = beaver.Attempt(b"chain", 7, 0), beaver.Attempt(b"chain", 7, 1)
    assert beaver.contribution_commitment(a, (0, 1), 2, contribution) != beaver.contribution_commitment(
        b, (0, 1), 2, contribution)
    assert beaver.contribution_commitment(a, (0, 1), 2, contribution) != przs.commitment(
        b"chain", 7, (0, 1), 2, contribution)
    keys = {beaver.holder_keys(attempt, list(range(4)), 1, 0, {d: {(s,): contribution for s in range(4) if s != d}
                                                              for d in range(4)}).prss[(1,)] for attempt in (a, b)}
    assert len(keys) == 2


def _poly_coefficients(points: list[tuple[int, int]]) -> list[int]:
    """Coefficients (low to high) of the polynomial through `points`, by Lagrange over Python integers."""
    total = [0] * len(points)
    for k, (x_k, y_k) in enumerate(points):
        basis, scale = [1], y_k
        for m, (x_m, _) in enumerate(points):
            if m != k:
                basis = [(hi - x_m * lo) % field.P for hi, lo in zip([0, *basis], [*basis, 0], strict=True)]
                scale = scale * field.inv(x_k - x_m) % field.P
        total = [(t + scale * b) % field.P for t, b in zip(total, basis, strict=True)]
    return total


@pytest.mark.parametrize(("coalition", "owner"), [((0, 1), 5), ((3, 6), 1), ((2, 4), 2)])
def test_a_coalition_view_is_explained_by_any_other_sketch_of_an_honest_owner(coalition: tuple[int, int],
                                                                              owner: int) -> None:
    """Coalition C (two members) at N = 7, t = 2 knows every key but r_C. For any other sketch s' of an honest owner,
    a value of PRG(r_C) (and of C's PRZS coefficients) and a dealing of s' that agree with C's shares make every
    public publication (all e_h, all D_h, hence E and D) and all of C's shares exactly what they were; the statistic
    shares then differ only by (T(s') - T(s)) F_C(x): they reveal the statistics and nothing else."""
    c = Consortium(7, 2, WIDTH, seed=70 + owner)
    assert owner - 1 not in coalition, "the owner is honest"
    knows = {a: any(m not in a for m in coalition) for a in przs.subsets(c.members, c.degree)}
    assert [a for a, known in knows.items() if not known] == [coalition]
    streams = beaver.prss_streams(beaver_all_keys(c, b"r"), c.layout)
    zeros = beaver.zero_coefficients(beaver_all_keys(c, b"z"), c.layout, c.degree)
    before = world(c, streams, zeros, c.held)
    other = np.random.default_rng(owner).integers(-1000, 1000, WIDTH)
    shift = field.sub(field.from_signed(other), field.from_signed(c.sketches[owner]))
    row = c.layout.owners.index(owner)
    weight = {h: przs.vanishing_weight(coalition, h + 1) for h in c.members}
    held = {h: {**c.held[h], owner: field.add(c.held[h][owner], field.mul(shift, np.uint64(weight[h])))}
            for h in c.members}
    r_stream = streams[coalition].copy()
    r_stream[row * WIDTH : (row + 1) * WIDTH] = field.add(r_stream[row * WIDTH : (row + 1) * WIDTH], shift)
    r_old = secrets_of_r(c, streams)
    r_new = secrets_of_r(c, {**streams, coalition: r_stream})
    t_shift = field.sub(statistics_of(c, r_new), statistics_of(c, r_old))
    r_stream[len(c.members) * WIDTH :] = field.add(r_stream[len(c.members) * WIDTH :], t_shift)
    new_streams = {**streams, coalition: r_stream}
    partial = world(c, new_streams, zeros, held)
    gap = {h: field.sub(partial.preprocessing[h + 1], before.preprocessing[h + 1]) for h in c.members}
    outside = [h for h in c.members if h not in coalition][: c.degree]
    q = [_poly_coefficients([(0, 0)] + [(h + 1, int(gap[h][j]) * field.inv(weight[h]) % field.P) for h in outside])
         for j in range(c.layout.statistic_count)]
    new_zero = field.sub(zeros[coalition], np.array(q, dtype=np.uint64).T[1:])
    after = world(c, new_streams, {**zeros, coalition: new_zero}, held)
    assert all(np.array_equal(after.preprocessing[x], before.preprocessing[x]) for x in c.ids)
    assert all(np.array_equal(after.differences[x], before.differences[x]) for x in c.ids)
    for h in coalition:
        assert all(np.array_equal(held[h][o], c.held[h][o]) for o in c.ids)
        assert np.array_equal(after.randomness[h].r, before.randomness[h].r)
        assert np.array_equal(after.randomness[h].rho, before.randomness[h].rho)
        assert np.array_equal(after.randomness[h].zero, before.randomness[h].zero)
    sketches = {**c.sketches, owner: other}
    truth = [sum(int(v) ** 2 for v in sketches[i] - sketches[j]) if i != j else sum(int(v) ** 2 for v in sketches[i])
             for i, j in statistic_pairs(c.ids)]
    assert field.to_signed(shamir.reconstruct(after.statistics, c.degree).secret).tolist() == truth
    stat_shift = field.sub(field.from_signed(np.array(truth)), shamir.reconstruct(before.statistics, c.degree).secret)
    for h in c.members:
        expected = field.add(before.statistics[h + 1], field.mul(stat_shift, np.uint64(weight[h])))
        assert np.array_equal(after.statistics[h + 1], expected)


class World:
    """Every holder's randomness and publications under given streams, PRZS coefficients and sketch shares."""

    def __init__(self, c: Consortium, streams: dict, zeros: dict, held: dict) -> None:
        self.randomness = {h: beaver.randomness(streams, zeros, h, c.layout) for h in c.members}
        self.preprocessing = {h + 1: beaver.preprocessing_share(self.randomness[h], c.layout) for h in c.members}
        opened = beaver.open_preprocessing(self.preprocessing, c.layout, c.degree, c.f)
        self.differences = {h + 1: beaver.difference_share(held[h], self.randomness[h], c.layout) for h in c.members}
        decoded = beaver.decode_differences(self.differences, c.layout, c.degree, c.f).values
        self.statistics = {h + 1: beaver.statistic_share(decoded, self.randomness[h], opened, c.layout)
                           for h in c.members}


def world(c: Consortium, streams: dict, zeros: dict, held: dict) -> World:
    return World(c, streams, zeros, held)


def beaver_all_keys(c: Consortium, kind: bytes) -> dict:
    return {a: przs.subset_key(c.attempt.chain_id, c.attempt.round_id, a,
                               {d: by[a] for d, by in c.contributions.items() if d not in a}, c.attempt.domain(kind))
            for a in przs.subsets(c.members, c.degree)}


def secrets_of_r(c: Consortium, streams: dict) -> np.ndarray:
    """r = sum_A PRG(r_A) over every subset (F_A(0) = 1), as (owners, width)."""
    total = field.sum_mod(np.stack(list(streams.values())), axis=0)
    return total[: len(c.members) * WIDTH].reshape(len(c.members), WIDTH)


def statistics_of(c: Consortium, rows: np.ndarray) -> np.ndarray:
    zero = np.zeros(c.layout.statistic_count, dtype=np.uint64)
    return beaver.preprocessing_share(beaver.Randomness(rows, zero, zero), c.layout)


def test_receivers_missing_different_points_never_decode_different_differences() -> None:
    """A Byzantine owner (holder 1) with an accomplice (holder 2) deals honest holders 3, 4, 5 points of its
    polynomial p and 4, 5, 6, 7 points of p' = p + c (x - 4)(x - 5), and holder 1 publishes on p. A receiver
    missing 6 and 7 sees p on 4 of 5 points, one missing 1 and 3 sees p' on 4 of 5: a majority decoder would
    hand them different D. Requiring t + 1 + f agreeing points of the same published values, any two decoded
    polynomials share 2 (t + 1 + f) - N >= t + 1 points, so every receiver decodes the same D or none."""
    c = Consortium(7, 2, WIDTH, seed=80)
    rand = SeededRandomBytes.from_int(81)
    published = {x: v.copy() for x, v in c.differences().items()}
    bend = field.random_elements(rand, WIDTH)
    for x in (6, 7):
        published[x][0] = field.add(published[x][0], field.mul(bend, np.uint64((x - 4) * (x - 5))))
    published[2][0] = field.random_elements(rand, WIDTH)
    decodings = set()
    for missing in itertools.chain.from_iterable(itertools.combinations(c.ids, k) for k in range(c.f + 1)):
        decoded = c.decoded({x: v for x, v in published.items() if x not in missing})
        if 1 in decoded.values:
            decodings.add(decoded.values[1].tobytes())
        else:
            assert decoded.undecodable == (1,)
    assert len(decodings) <= 1


def test_the_digest_of_d_binds_attempt_holder_and_every_element() -> None:
    c = Consortium(4, 1, WIDTH, seed=90)
    d = c.differences()[1]
    changed = d.copy()
    changed[3, 5] = field.add(changed[3, 5], np.uint64(1))
    digests = {beaver.difference_digest(c.attempt, 0, d), beaver.difference_digest(c.attempt, 1, d),
               beaver.difference_digest(beaver.Attempt(b"chain", 7, 1), 0, d),
               beaver.difference_digest(beaver.Attempt(b"chain", 8, 0), 0, d),
               beaver.difference_digest(c.attempt, 0, changed)}
    assert len(digests) == 5


def test_an_equivocating_owner_splits_receivers_of_uncommitted_d() -> None:
    """N = 4, t = f = 1: owner 1 (also holder 1) deals holders 2, 3 points of its D polynomial p and holder 4 a point
    of p' = p + c (x - 3), which agrees with p at holder 3. Sending receiver 2 its D_1 on p and receiver 4 its D_1 on
    p', it makes each see t + 1 + f = 3 agreeing points of a different polynomial: D_h needs one value for everyone
    (`difference_digest` on the ledger), not only direct streams."""
    c = Consortium(4, 1, WIDTH, seed=95)
    bend = field.random_elements(SeededRandomBytes.from_int(96), WIDTH)
    published = {x: v.copy() for x, v in c.differences().items()}
    honest = c.decoded(published).values[1]
    published[4][0] = field.add(published[4][0], bend)
    to_receiver_4 = published[1].copy()
    to_receiver_4[0] = field.sub(to_receiver_4[0], field.add(bend, bend))
    receiver_2 = c.decoded(published).values[1]
    receiver_4 = c.decoded({**published, 1: to_receiver_4}).values[1]
    assert np.array_equal(receiver_2, honest)
    assert np.array_equal(receiver_4, field.sub(honest, field.mul(bend, np.uint64(3))))


def test_an_owner_dealing_off_its_polynomial_is_undecodable_and_the_others_statistics_are_exact() -> None:
    """Owner 3 shifts the sketch shares of f + 1 honest holders: its D fits no polynomial through t + 1 + f points
    (an honest owner's could not miss more than f), and the statistic shares over the other owners decode exactly."""
    c = Consortium(7, 2, WIDTH, seed=100)
    rand = SeededRandomBytes.from_int(101)
    for h in (0, 4, 5):
        c.held[h] = {**c.held[h], 3: field.add(c.held[h][3], field.random_elements(rand, WIDTH))}
    decoded = c.decoded()
    assert decoded.undecodable == (3,) and sorted(decoded.values) == [1, 2, 4, 5, 6, 7]
    stats = beaver.reconstruct_statistics(c.statistic_shares(decoded.values), sorted(decoded.values), c.degree,
                                          c.params, c.f)
    unit = c.params.scale**2
    for i, j in statistic_pairs(sorted(decoded.values)):
        diff = c.sketches[i] - (c.sketches[j] if i != j else 0)
        value = stats.norms_sq[i] if i == j else stats.distances_sq[(i, j)]
        assert value * unit == float(np.dot(diff, diff))
    assert not stats.inconsistent_publishers
