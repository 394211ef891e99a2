"""ml.robust: rules on revealed statistics against brute-force references, ties, and attacks."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ml.robust import (
    RobustRule,
    adaptive_norm_bound,
    centroid_outliers,
    centroid_sq_dists,
    decide,
    direction_scores,
    krum_scores,
    median_distance,
    median_distances,
    median_mad,
    multi_krum,
    neighbour_outliers,
    neighbour_scores,
    norm_bound,
    norm_direction,
    per_sample,
)


def _sq_dists(points: np.ndarray) -> np.ndarray:
    diff = points[:, None, :] - points[None, :, :]
    return (diff**2).sum(axis=2)


def _brute_krum_score(d: np.ndarray, i: int, f: int) -> float:
    others = [j for j in range(len(d)) if j != i]
    return min(sum(d[i, j] for j in subset) for subset in itertools.combinations(others, len(d) - f - 2))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 8), f=st.integers(0, 3), m=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       integer=st.booleans())
def test_multi_krum_matches_brute_force(n: int, f: int, m: int, seed: int, integer: bool) -> None:
    assume(n - f - 2 >= 1 and m <= n)
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 3, size=(n, 2)) if integer else rng.normal(size=(n, 3))
    d = _sq_dists(points.astype(np.float64))
    brute = [_brute_krum_score(d, i, f) for i in range(n)]
    assert np.allclose(krum_scores(d, f), brute), f"seed={seed}"
    best_m = sorted(range(n), key=lambda i: (round(brute[i], 9), i))[:m]
    assert multi_krum(d, f, m).tolist() == sorted(best_m), f"seed={seed}"


def test_multi_krum_ties_go_to_lower_index() -> None:
    d = np.ones((5, 5)) - np.eye(5)
    assert multi_krum(d, f=1, m=3).tolist() == [0, 1, 2]


def test_multi_krum_drops_outliers() -> None:
    rng = np.random.default_rng(1)
    honest = rng.normal(size=(7, 10))
    attackers = -5 * honest[:2]
    d = _sq_dists(np.vstack([honest, attackers]))
    assert multi_krum(d, f=2, m=7).tolist() == list(range(7))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**32 - 1), factor=st.sampled_from([1.0, 2.0, 4.0]))
def test_median_distance_matches_reference(n: int, seed: int, factor: float) -> None:
    rng = np.random.default_rng(seed)
    d = _sq_dists(rng.normal(size=(n, 4)))
    medians = [statistics.median([d[i, j] for j in range(n) if j != i]) if n > 1 else 0.0 for i in range(n)]
    assert np.allclose(median_distances(d), medians)
    mask = median_distance(d, factor)
    assert mask.tolist() == [m <= factor * statistics.median(medians) for m in medians], f"seed={seed}"
    assert mask.sum() >= (n + 1) // 2


def test_median_distance_rejects_far_updates_only() -> None:
    rng = np.random.default_rng(2)
    honest = rng.normal(size=(8, 20))
    d = _sq_dists(np.vstack([honest, honest[:2] * 10]))
    assert median_distance(d, 4.0).tolist() == [True] * 8 + [False] * 2


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_centroid_distances_match_explicit_mean(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 5))
    members = sorted(rng.choice(n, size=rng.integers(1, n + 1), replace=False).tolist())
    mean = points[members].mean(axis=0)
    expected = ((points[members] - mean) ** 2).sum(axis=1)
    assert np.allclose(centroid_sq_dists(_sq_dists(points), members), expected, atol=1e-9), f"seed={seed}"


def _brute_centroid(points: np.ndarray, f: int, factor: float) -> list[bool]:
    members = list(range(len(points)))
    while len(points) - len(members) < f and len(members) > 2:
        mean = points[members].mean(axis=0)
        dist = [float(((points[i] - mean) ** 2).sum()) for i in members]
        worst = max(range(len(members)), key=lambda a: (round(dist[a], 9), -members[a]))
        if dist[worst] <= factor * statistics.median(dist) + 1e-9:
            break
        del members[worst]
    return [i in members for i in range(len(points))]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 9), f=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_centroid_outliers_match_brute_force(n: int, f: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 4))
    points[: min(f, n)] *= rng.choice([1.0, -3.0, 10.0])
    assert centroid_outliers(_sq_dists(points), f, 2.0).tolist() == _brute_centroid(points, f, 2.0), f"seed={seed}"


def test_centroid_rejects_sign_flippers_and_keeps_honest() -> None:
    rng = np.random.default_rng(4)
    honest = 1.0 + rng.normal(size=(5, 30))
    points = np.vstack([honest, -honest[:2]])
    assert centroid_outliers(_sq_dists(points), 2, 2.0).tolist() == [True] * 5 + [False] * 2
    assert centroid_outliers(_sq_dists(honest), 2, 2.0).all()


def test_norm_bound() -> None:
    assert norm_bound(np.array([0.5, 1.0, 1.09, 1.11]), 1.0, 0.1).tolist() == [True, True, True, False]
    with pytest.raises(ValueError):
        norm_bound(np.array([np.nan]), 1.0, 0.1)
    with pytest.raises(ValueError):
        norm_bound(np.array([1.0]), 0.0, 0.1)


@pytest.mark.parametrize(
    "bad",
    [np.ones((2, 3)), np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 1.0]]),
     np.array([[0.0, -1.0], [-1.0, 0.0]]), np.array([[0.0, np.inf], [np.inf, 0.0]])],
)
def test_malformed_distance_matrices_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        median_distances(bad)


def test_decide_combines_norm_bound_and_distance_rule() -> None:
    rng = np.random.default_rng(3)
    honest = 0.3 + rng.normal(size=(6, 10)) * 0.05
    points = np.vstack([honest, [np.full(10, 5.0)], -honest[:1]])
    sq_norms = (points**2).sum(axis=1)
    bound_sq = float(sq_norms[:6].max())
    for kind in ("multi_krum", "median_distance", "centroid", "median_mad"):
        decision = decide(RobustRule(kind=kind, f=2, bound_sq=bound_sq), sq_norms, _sq_dists(points))
        assert decision.rejected[6] == "norm_bound"
        assert decision.rejected[7] == kind
        assert set(decision.accepted) | set(decision.rejected) == set(range(8))
    decision = decide(RobustRule(kind="none"), sq_norms, _sq_dists(points))
    assert decision.accepted == tuple(range(8)) and decision.rejected == {}
    with pytest.raises(ValueError, match="unknown robust rule"):
        decide(RobustRule(kind="trimmed"), sq_norms, _sq_dists(points))


def test_median_rule_rejects_at_most_f_updates_the_farthest_first() -> None:
    from ml.robust import RobustRule, decide

    points = np.array([0.0, 0.1, 0.2, 0.15, 0.05, 5.0, 9.0])
    sq_dists = (points[:, None] - points[None, :]) ** 2
    wide = decide(RobustRule(kind="median_distance", f=2, factor=2.0), np.zeros(7), sq_dists)
    capped = decide(RobustRule(kind="median_distance", f=1, factor=2.0), np.zeros(7), sq_dists)
    assert sorted(wide.rejected) == [5, 6]
    assert list(capped.rejected) == [6]


def _reference_median_mad(d: np.ndarray, min_ratio: float, power: int) -> list[bool | None]:
    """The same test written in logarithms: log m_i <= log M + max(log min_ratio, power * MAD(log m)); None where
    m_i lies on the threshold (within 1e-9 in logarithms), which rounding decides either way (with four updates the
    largest is often exactly on it: its ratio to M is the median spread, squared)."""
    n = len(d)
    logs = [np.log(statistics.median([d[i, j] for j in range(n) if j != i])) for i in range(n)]
    center = statistics.median(logs)
    mad = statistics.median([abs(v - center) for v in logs])
    bound = center + max(np.log(min_ratio), power * mad)
    return [None if abs(v - bound) < 1e-9 else bool(v < bound) for v in logs]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 10), seed=st.integers(0, 2**32 - 1), min_ratio=st.sampled_from([1.0, 2.0, 4.5]),
       power=st.integers(0, 5), spread=st.floats(0.1, 3.0))
def test_median_mad_matches_log_scale_reference(n: int, seed: int, min_ratio: float, power: int, spread: float) -> None:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 4)) * np.exp(spread * rng.normal(size=(n, 1)))
    d = _sq_dists(points)
    decided = [(got, want) for got, want in zip(median_mad(d, min_ratio, power).tolist(),
                                                _reference_median_mad(d, min_ratio, power), strict=True)
               if want is not None]
    assert all(got == want for got, want in decided), f"seed={seed}: {decided}"


def test_median_mad_widens_with_the_rounds_spread() -> None:
    """The same far update is rejected in a tight round and kept in a spread one (its median distance
    is 5 in both, the typical one 1 and 1.75)."""
    tight = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0])
    loose = np.array([1.0, 0.2, 5.0, 1.0, 0.25, 4.0, 9.0])
    for medians, expected in ((tight, False), (loose, True)):
        # A "star" whose median distances are the given values: d_ij = (m_i + m_j) / 2 keeps their order.
        d = (medians[:, None] + medians[None, :]) / 2.0
        np.fill_diagonal(d, 0.0)
        assert median_mad(d).tolist()[-1] is expected
        assert median_mad(d).tolist()[:-1] == [True] * 6


def test_median_mad_identical_and_degenerate_rounds() -> None:
    same = np.zeros((5, 5))
    assert median_mad(same).all()
    one_off = _sq_dists(np.array([[0.0], [0.0], [0.0], [1.0]]))
    assert median_mad(one_off).tolist() == [True, True, True, False]
    assert median_mad(np.zeros((0, 0))).tolist() == []
    with pytest.raises(ValueError):
        median_mad(same, min_ratio=0.5)


def test_median_mad_rejects_at_most_f() -> None:
    rng = np.random.default_rng(5)
    honest = 0.5 + rng.normal(size=(7, 12)) * 0.1
    points = np.vstack([honest, 0.5 + 4.0 * rng.normal(size=(3, 12))])
    d = _sq_dists(points)
    assert sorted(decide(RobustRule(kind="median_mad", f=3), np.zeros(10), d).rejected) == [7, 8, 9]
    capped = decide(RobustRule(kind="median_mad", f=1), np.zeros(10), d)
    farthest = max(range(10), key=lambda i: (median_distances(d)[i], -i))
    assert list(capped.rejected) == [farthest]
    assert decide(RobustRule(kind="median_mad", f=3), np.zeros(7), _sq_dists(honest)).rejected == {}


def test_median_mad_breaks_ties_by_lower_index() -> None:
    """Two equally far outliers and f = 1: the lower index is rejected, on any permutation of the others."""
    points = np.array([[0.0], [0.1], [-0.1], [0.05], [-0.05], [5.0], [-5.0]])
    d = _sq_dists(points)
    assert list(decide(RobustRule(kind="median_mad", f=1), np.zeros(7), d).rejected) == [5]


ND2 = RobustRule(kind="norm_direction", f=2)


def _stats(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (points**2).sum(axis=1), _sq_dists(points)


def test_norm_direction_catches_flipped_and_long_steps() -> None:
    """Honest steps that are mostly noise around a common direction (pairwise cosines ~0.3): a flipped
    update and one four times as long are flagged, no honest one is."""
    rng = np.random.default_rng(11)
    common = np.ones(40) / np.sqrt(40)
    honest = common + rng.normal(size=(7, 40)) * 0.2
    flipped, long_step = -honest[0], 4.0 * honest[1]
    keep, scores = norm_direction(*_stats(np.vstack([honest, flipped, long_step])))
    assert keep.tolist() == [True] * 7 + [False, False]
    assert min(scores[7:]) > 1.0 >= max(scores[:7])
    assert min(direction_scores(*_stats(honest))) > 0.4 > -0.4 > direction_scores(*_stats(np.vstack([honest, flipped])))[7]
    decision = decide(ND2, *_stats(np.vstack([honest, flipped, long_step])))
    assert sorted(decision.rejected) == [7, 8]


def test_norm_direction_zero_updates_and_bad_parameters() -> None:
    keep, scores = norm_direction(np.zeros(4), np.zeros((4, 4)))
    assert keep.all() and scores == [1.0] * 4
    assert norm_direction(np.zeros(0), np.zeros((0, 0)))[0].tolist() == []
    with pytest.raises(ValueError):
        norm_direction(np.zeros(3), np.zeros((3, 3)), norm_factor=0.5)
    with pytest.raises(ValueError):
        norm_direction(np.zeros(3), np.zeros((3, 3)), min_cosine=1.0)


def test_history_decides_who_takes_the_f_places() -> None:
    """Three flagged, f = 2: the two rejected in earlier rounds go, although the third is farther."""
    rng = np.random.default_rng(3)
    honest = 1.0 + rng.normal(size=(6, 20)) * 0.05
    points = np.vstack([honest, 3.0 * honest[0], 3.0 * honest[1], 6.0 * honest[2]])
    by_score = decide(ND2, *_stats(points))
    flagged, scores = norm_direction(*_stats(points))
    assert np.flatnonzero(~flagged).tolist() == [6, 7, 8]
    assert scores[7] > scores[6], "the scaled copies of honest[0] and honest[1] differ in score, not a tie"
    assert by_score.rejected == {7: "norm_direction", 8: "norm_direction"}
    by_history = decide(ND2, *_stats(points), history=[0, 0, 0, 0, 0, 0, 3, 2, 0])
    assert sorted(by_history.rejected) == [6, 7]


def test_weights_are_checked_and_normalize_the_statistics() -> None:
    """The rule judges u_i, not w_i u_i: a small hospital's long step is caught, a large hospital's
    ordinary step is not; a weight outside (0, 1] is rejected whatever the statistics."""
    rng = np.random.default_rng(4)
    steps = 1.0 + rng.normal(size=(7, 20)) * 0.05
    steps[6] *= 4.0
    weights = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.5, 0.025])
    weighted = steps * weights[:, None]
    assert sorted(decide(ND2, *_stats(weighted)).rejected) == [5]
    assert decide(ND2, *_stats(weighted), weights=weights).rejected == {6: "norm_direction"}
    bad = weights.copy()
    bad[0], bad[1] = -0.1, 1.5
    assert decide(ND2, *_stats(weighted), weights=bad).rejected == {
        0: "weight_out_of_range", 1: "weight_out_of_range", 6: "norm_direction"}
    unit, dist = per_sample(*_stats(weighted), weights)
    assert unit == pytest.approx((steps**2).sum(axis=1))
    assert dist == pytest.approx(_sq_dists(steps), abs=1e-9)


def _collinear(scales: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Updates pointing the same way (all cosines 1) whose norms are the given multiples of one."""
    direction = np.linspace(1.0, 2.0, 8)
    return _stats(np.outer(scales, direction / np.linalg.norm(direction)))


@pytest.mark.parametrize(("scale", "kept"), [(1.3, True), (1.45, True), (1.55, False), (1.6, False)])
def test_norm_factor_is_a_ratio_of_norms_not_of_squared_norms(scale: float, kept: bool) -> None:
    """norm_factor 1.5 bounds the L2 norm by 1.5 times the median norm: a 1.3x step passes, a 1.6x one
    does not (on squared norms the bound would be 1.5 ** 0.5 = 1.22x and both would be flagged)."""
    keep, scores = norm_direction(*_collinear([1.0] * 6 + [scale]), norm_factor=1.5)
    assert keep.tolist() == [True] * 6 + [kept]
    assert scores[6] == pytest.approx(scale / 1.5)
    assert decide(RobustRule(kind="norm_direction", f=1), *_collinear([1.0] * 6 + [scale])).accepted == tuple(range(6 + kept))


@pytest.mark.parametrize("weight", [0.0, -0.0, -1e-300, 1.0 + 1e-12, float("inf"), float("nan")])
def test_a_weight_outside_zero_one_is_rejected_not_a_crash(weight: float) -> None:
    """A member's public weight comes from the ledger; weight 0 (or any value outside (0, 1]) is a
    typed rejection of that update, and the others are judged as usual."""
    steps = 1.0 + np.random.default_rng(6).normal(size=(5, 10)) * 0.05
    weights = np.array([weight, 0.5, 0.5, 0.5, 1.0])
    decision = decide(RobustRule(f=1), *_stats(steps * np.nan_to_num(weights, nan=0.0, posinf=1.0)[:, None]),
                      weights=weights)
    assert decision.rejected == {0: "weight_out_of_range"}
    assert decision.accepted == (1, 2, 3, 4)


def _honest_cloud(seed: int, n: int = 7, dim: int = 40) -> np.ndarray:
    """Honest steps as in a late round: a common direction plus as much noise (pairwise cosines ~0.5)."""
    rng = np.random.default_rng(seed)
    return np.ones(dim) / np.sqrt(dim) + rng.normal(size=(n, dim)) * (1.0 / np.sqrt(dim))


def test_bounded_distance_is_the_default_long_steps_are_a_proof_far_ones_a_suspicion() -> None:
    """A step 3 times the median norm is rejected by the norm bound, a flipped one by the distance rule,
    and no honest one is rejected."""
    assert RobustRule().kind == "bounded_distance"
    honest = _honest_cloud(5)
    points = np.vstack([honest, 3.0 * honest[0], -honest[1]])
    decision = decide(RobustRule(f=2), *_stats(points))
    assert decision.rejected == {7: "norm_ratio", 8: "bounded_distance"}


def test_norm_bound_rejections_are_not_capped_and_take_the_suspicion_places_first() -> None:
    """f = 1 and three overlong updates plus a flipped one: the three go whatever f (a proof is not a
    suspicion), and the flipped one stays, since the round drops at most f in all on suspicion; with one
    overlong update and f = 2, the flipped one goes too."""
    honest = _honest_cloud(6, n=9)
    points = np.vstack([honest, 4.0 * honest[0], 5.0 * honest[1], 6.0 * honest[2], -honest[3]])
    assert decide(RobustRule(f=1), *_stats(points)).rejected == {9: "norm_ratio", 10: "norm_ratio", 11: "norm_ratio"}
    points = np.vstack([honest, 4.0 * honest[0], -honest[3]])
    assert decide(RobustRule(f=2), *_stats(points)).rejected == {9: "norm_ratio", 10: "bounded_distance"}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 20), min_size=7, max_size=7))
def test_history_never_excludes_an_update_the_rule_passes(seed: int, history: list[int]) -> None:
    """Whatever the ledger's counts, every rejected update is one the rule flags (the set rejected with f
    places for everyone), and when no more than f are flagged the decision ignores history."""
    honest = _honest_cloud(seed)
    for points in (honest, np.vstack([honest[:6], -honest[6]])):
        norms, d = _stats(points)
        assert not adaptive_norm_bound(norms).any()
        flagged = set(np.flatnonzero(neighbour_outliers(d, 2)[0]).tolist())
        decision = decide(RobustRule(f=2), *_stats(points), history=history)
        assert set(decision.rejected) <= flagged
        if len(flagged) <= 2:
            assert decision == decide(RobustRule(f=2), *_stats(points))


def test_bounded_distance_ties_go_to_the_lower_index_and_permutations_agree() -> None:
    """Two identical outliers and f = 1: the lower index is rejected; permuting the members permutes the
    decision (exact tie-break, so every replica agrees whatever order it lists them in)."""
    honest = _honest_cloud(8, n=6)
    outlier = -2.0 * honest[0]
    points = np.vstack([honest, outlier, outlier])
    assert list(decide(RobustRule(f=1), *_stats(points)).rejected) == [6]
    order = np.random.default_rng(2).permutation(7)
    single = np.vstack([honest, outlier])[order]
    rejected = decide(RobustRule(f=1), *_stats(single)).rejected
    assert [int(order[i]) for i in rejected] == [6]


def test_neighbour_scores_match_brute_force() -> None:
    points = np.random.default_rng(9).normal(size=(7, 5))
    d = _sq_dists(points)
    expected = [statistics.fmean(sorted(d[i, j] for j in range(7) if j != i)[1:4]) for i in range(7)]
    assert neighbour_scores(d, 2) == pytest.approx(expected)
