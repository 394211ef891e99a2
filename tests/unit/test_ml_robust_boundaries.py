"""ml.robust at its boundaries: each validation error says what is wrong, thresholds are inclusive as
documented, float32 statistics are judged in float64, degenerate statistics (zero norms, cancelling
directions, inconsistent distances) give defined answers, and `decide` passes every rule parameter on.

These came out of mutation testing (scripts/mutation.py): each test kills mutants that the behavioural
tests in test_ml_robust.py let through."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
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
    norm_ratios,
    per_sample,
)
from tests.unit.test_ml_robust import _sq_dists, _stats

D4 = _sq_dists(np.arange(4.0)[:, None])
STAR = np.ones((5, 5)) - np.eye(5)
STAR[0, 1:] = STAR[1:, 0] = 0.0  # not Euclidean, but statistics come from peers: member 0 at 0 from all


@pytest.mark.parametrize(("call", "message"), [
    (lambda: median_distances(np.ones(3)), "distance matrix must be square, got shape"),
    (lambda: median_distances(np.zeros((2, 3))), "distance matrix must be square, got shape"),
    (lambda: median_distances(np.array([[0.0, -1.0], [-1.0, 0.0]])), "squared distances must be finite and non-negative$"),
    (lambda: median_distances(np.array([[0.0, np.nan], [np.nan, 0.0]])), "squared distances must be finite and non-negative$"),
    (lambda: median_distances(np.array([[0.0, 1.0], [2.0, 0.0]])), "squared distance matrix must be symmetric with a zero diagonal$"),
    (lambda: median_distances(np.ones((2, 2))), "squared distance matrix must be symmetric with a zero diagonal$"),
    (lambda: norm_bound(np.array([np.inf]), 1.0, 0.1), "squared norms must be a finite 1-D array$"),
    (lambda: norm_bound(np.ones((2, 2)), 1.0, 0.1), "squared norms must be a finite 1-D array$"),
    (lambda: norm_bound(np.ones(2), 0.0, 0.1), "bound_sq must be positive and slack non-negative"),
    (lambda: norm_bound(np.ones(2), 1.0, -0.1), "bound_sq must be positive and slack non-negative"),
    (lambda: krum_scores(D4, f=2), r"Krum needs n >= f \+ 3 \(n = 4, f = 2\)"),
    (lambda: krum_scores(D4, f=-1), r"Krum needs n >= f \+ 3 \(n = 4, f = -1\)"),
    (lambda: multi_krum(D4, f=1, m=0), "multi_krum must select between 1 and 4 updates, not 0"),
    (lambda: multi_krum(D4, f=1, m=5), "multi_krum must select between 1 and 4 updates, not 5"),
    (lambda: median_distance(D4, 0.99), "median_distance factor must be >= 1, got 0.99"),
    (lambda: median_mad(D4, min_ratio=0.5), "median_mad needs min_ratio >= 1 and spread_power >= 0"),
    (lambda: median_mad(D4, spread_power=-1), "median_mad needs min_ratio >= 1 and spread_power >= 0"),
    (lambda: centroid_outliers(D4, 1, 0.5), "centroid rule needs factor >= 1 and f >= 0, got 0.5, 1"),
    (lambda: centroid_outliers(D4, -1, 2.0), "centroid rule needs factor >= 1 and f >= 0, got 2.0, -1"),
    (lambda: norm_direction(np.ones(4), D4, norm_factor=0.9), "norm_direction needs norm_factor >= 1"),
    (lambda: norm_direction(np.ones(4), D4, min_cosine=1.0), r"norm_direction needs norm_factor >= 1 and min_cosine in \[-1, 1\)"),
    (lambda: norm_direction(np.ones(4), D4, min_cosine=-1.5), r"norm_direction needs norm_factor >= 1 and min_cosine in \[-1, 1\)"),
    (lambda: decide(RobustRule(kind="trimmed"), np.ones(4), D4),
     "unknown robust rule 'trimmed'; expected one of none, multi_krum, median_distance, centroid"),
])
def test_invalid_parameters_and_statistics_are_refused_with_their_reason(call: Callable[[], object],
                                                                          message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        call()


def test_the_documented_limits_themselves_are_valid() -> None:
    assert norm_bound(np.ones(1), 1.0, 0.0).tolist() == [True]
    assert centroid_outliers(D4, 0, 1.0).all() and centroid_outliers(D4, 1, 1.5).tolist() == [False, True, True, True]
    assert norm_direction(np.ones(4), D4 * 0, norm_factor=1.0, min_cosine=-1.0)[0].all()


def test_thresholds_are_inclusive() -> None:
    assert norm_bound(np.array([1.1, 1.1000000000000003]), 1.0, 0.1).tolist() == [True, False]
    points = np.array([[0.0], [0.0], [0.0], [0.0], [5.0]])  # distances to the mean: 1, 1, 1, 1 and exactly 16
    assert centroid_outliers(_sq_dists(points), 1, 16.0).all()
    assert centroid_outliers(_sq_dists(points), 1, 15.9).tolist() == [True] * 4 + [False]
    sq_norms = np.array([1.0, 1.0, 1.0, 1.0, 2.25])  # collinear, the last exactly 1.5 times as long
    keep, _ = norm_direction(sq_norms, (np.sqrt(sq_norms)[:, None] - np.sqrt(sq_norms)[None, :]) ** 2)
    assert keep.all()


def test_float32_statistics_are_judged_in_float64() -> None:
    """float32(1.1) is above 1.1 once exact; compared in float32 it would pass the bound."""
    assert norm_bound(np.array([1.1], dtype=np.float32), 1.0, 0.1).tolist() == [False]
    rng = np.random.default_rng(8)
    points = rng.normal(size=(5, 6))
    weights = np.array([0.3, 0.7, 0.1, 1.0, 0.55])
    sq_norms, sq_dists = _stats(points)
    exact = per_sample(sq_norms.astype(np.float32).astype(np.float64), sq_dists.astype(np.float32).astype(np.float64),
                       weights.astype(np.float32).astype(np.float64))
    single = per_sample(sq_norms.astype(np.float32), sq_dists.astype(np.float32), weights.astype(np.float32))
    assert all(np.array_equal(a, b) for a, b in zip(exact, single, strict=True))


def test_defaults_are_the_documented_ones() -> None:
    """median_distance factor 2, median_mad min_ratio 3 and power 3, centroid factor 2, norm factor 1.5."""
    star = np.ones((6, 6)) - np.eye(6)
    star[-1, :-1] = star[:-1, -1] = 2.5  # median distances 1 (five times) and 2.5
    assert median_distance(star).tolist() == median_distance(star, 2.0).tolist() != median_distance(star, 3.0).tolist()
    rng = np.random.default_rng(9)  # a round where min_ratio 4 and power 4 both change the outcome
    spread = _sq_dists(rng.normal(size=(7, 3)) * np.exp(rng.normal(size=(7, 1))))
    assert median_mad(spread).tolist() == median_mad(spread, 3.0, 3).tolist()
    assert median_mad(spread).tolist() != median_mad(spread, 4.0, 3).tolist()
    assert median_mad(spread).tolist() != median_mad(spread, 3.0, 4).tolist()
    line = _sq_dists(np.array([[-1.0], [1.0], [-1.0], [1.0], [0.0], [1.85]]))  # the last 2.4 median distances out
    assert centroid_outliers(line, 1).tolist() == centroid_outliers(line, 1, 2.0).tolist() == [True] * 5 + [False]
    assert centroid_outliers(line, 1, 3.0).all()
    sq_norms = np.array([1.0, 1.0, 1.0, 1.0, 4.0])  # a step twice as long: flagged at 1.5, not at 2.5
    collinear = (np.sqrt(sq_norms)[:, None] - np.sqrt(sq_norms)[None, :]) ** 2
    assert norm_direction(sq_norms, collinear)[0].tolist() == [True] * 4 + [False]


def test_centroid_ties_drop_the_lower_index_and_a_single_member_is_at_distance_zero() -> None:
    points = np.array([[-5.0], [5.0], [-0.1], [0.1], [0.0]])
    assert centroid_outliers(_sq_dists(points), 1).tolist() == [False, True, True, True, True]
    assert centroid_sq_dists(_sq_dists(points), [3]) == [0.0]
    assert centroid_sq_dists(_sq_dists(points), []) == []


def test_median_mad_with_a_member_at_distance_zero_from_all() -> None:
    """Member 0 reports distance 0 to everyone (others are 1 apart): its ratio to the typical distance is
    infinite, not a division by zero, and it is accepted (below the threshold)."""
    assert median_mad(STAR).tolist() == [True] * 5


def _reference_direction(points: np.ndarray, i: int) -> float:
    others = [p / np.linalg.norm(p) for j, p in enumerate(points) if j != i]
    mean_direction = np.sum(others, axis=0)
    norm = np.linalg.norm(points[i]) * np.linalg.norm(mean_direction)
    return float(points[i] @ mean_direction / norm) if norm > 0 else 0.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 6), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-3, 0.3, 1.0, 50.0]))
def test_direction_scores_match_the_cosine_with_the_others_mean_direction(n: int, seed: int, scale: float) -> None:
    points = np.random.default_rng(seed).normal(size=(n, 3)) * scale
    expected = [_reference_direction(points, i) for i in range(n)]
    assert direction_scores(*_stats(points)) == pytest.approx(expected, abs=1e-9), f"seed={seed}"


def test_direction_scores_of_degenerate_statistics() -> None:
    e1 = np.array([1.0, 0.0])
    cancelling = np.array([e1 * 2, -e1 * 2, [0.0, 3.0]])  # for member 2 the others' directions cancel
    assert direction_scores(*_stats(cancelling)) == pytest.approx([-0.5**0.5, -0.5**0.5, 0.0])
    with_zero = np.array([e1, e1 * 0.5, [0.0, 0.0]])  # a zero update has cosine 0 with every other update
    assert direction_scores(*_stats(with_zero))[2] == 0.0
    assert direction_scores(*_stats(np.array([e1, [0.0, 1.0], [0.0, 0.0]])))[0] == 0.0
    assert direction_scores(np.array([1.0, 0.25]), np.array([[0.0, 0.25], [0.25, 0.0]])) == pytest.approx([1.0, 1.0])
    inconsistent = np.array([[0.0, 9.0], [9.0, 0.0]])  # farther apart than their norms allow: cosine clamped
    assert direction_scores(np.array([1.0, 1.0]), inconsistent) == [-1.0, -1.0]
    too_close = np.array([[0.0, 0.0], [0.0, 0.0]])  # norms 1 and 4 at distance 0: cosine clamped to 1
    assert direction_scores(np.array([1.0, 4.0]), too_close) == [1.0, 1.0]


def test_norm_direction_when_the_median_norm_is_zero_and_with_a_cosine_floor() -> None:
    keep, scores = norm_direction(np.array([0.0, 0.0, 0.0, 1.0]), np.array(
        [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]), min_cosine=-1.0)
    assert keep.tolist() == [True, True, True, False]
    assert scores[:3] == [0.5, 0.5, 0.5] and scores[3] == np.inf
    points = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.6, 0.8]])
    keep, scores = norm_direction(*_stats(points), norm_factor=2.0, min_cosine=0.9)
    directions = direction_scores(*_stats(points))
    assert keep.tolist() == [c >= 0.9 for c in directions] == [True, True, True, False]
    ratios = np.sqrt((points**2).sum(axis=1) / 1.005)  # the median of the squared norms 1, 1.01, 1.01, 1
    assert scores == pytest.approx([max(r / 2.0, (1.0 - c) / 0.1) for r, c in zip(ratios, directions, strict=True)])


def test_decide_with_nothing_left_for_the_distance_rule() -> None:
    sq_norms, sq_dists = _stats(np.full((4, 3), 2.0))
    for kind in ("norm_direction", "median_distance", "median_mad", "centroid", "multi_krum", "none"):
        decision = decide(RobustRule(kind=kind, bound_sq=1.0), sq_norms, sq_dists)
        assert decision.accepted == () and decision.rejected == dict.fromkeys(range(4), "norm_bound"), kind


def test_decide_labels_each_rejection_once_and_keeps_earlier_rejections() -> None:
    rng = np.random.default_rng(9)
    points = 0.1 + rng.normal(size=(6, 8)) * 0.02  # squared norms about 0.08; the last about 8
    points[5] *= 10.0
    weights = np.array([0.5, 0.0, 0.5, 0.5, 0.5, 0.5])
    decision = decide(RobustRule(kind="none", bound_sq=0.5), *_stats(points), weights=weights)
    assert decision.rejected == {1: "weight_out_of_range", 5: "norm_bound"}
    assert decision.accepted == (0, 2, 3, 4)
    in_bound = decide(RobustRule(kind="none", bound_sq=0.5), *_stats(points[:5]), weights=weights[:5])
    assert in_bound.rejected == {1: "weight_out_of_range"} and in_bound.accepted == (0, 2, 3, 4)
    small_bound = decide(RobustRule(kind="none", bound_sq=0.6), *_stats(points))
    assert small_bound.rejected == {5: "norm_bound"}


def test_decide_passes_every_parameter_of_the_rule_to_the_distance_rule() -> None:
    rng = np.random.default_rng(10)
    honest = 1.0 + rng.normal(size=(6, 10)) * 0.05
    points = np.vstack([honest, 3.0 * honest[0], 5.0 * honest[1]])
    stats = _stats(points)
    d = stats[1]
    history = [0, 0, 0, 0, 0, 0, 4, 0]
    assert sorted(decide(RobustRule(kind="median_distance", f=1), *stats).rejected) == [7]
    assert sorted(decide(RobustRule(kind="median_distance", f=1), *stats, history=history).rejected) == [6]
    assert sorted(decide(RobustRule(kind="median_mad", f=1), *stats, history=history).rejected) == [6]
    assert decide(RobustRule(kind="median_distance", f=2, factor=1e6), *stats).rejected == {}
    assert sorted(decide(RobustRule(kind="median_mad", f=2, min_ratio=1e6, spread_power=0), *stats).rejected) == []
    tight = np.flatnonzero(~median_mad(d, 1.0, 0)).tolist()
    assert len(tight) > 2 and sorted(decide(RobustRule(kind="median_mad", f=7, min_ratio=1.0, spread_power=0),
                                            *stats).rejected) == tight
    assert decide(RobustRule(kind="centroid", f=1, factor=2.0), *stats).rejected == {7: "centroid"}
    assert decide(RobustRule(kind="centroid", f=2, factor=2.0), *stats).rejected == {6: "centroid", 7: "centroid"}
    assert decide(RobustRule(kind="centroid", f=2, factor=1e6), *stats).rejected == {}
    tilted = np.vstack([honest, honest[0] + 0.8 * rng.normal(size=10)])
    cosines = direction_scores(*_stats(tilted))
    floor = (max(cosines[:6]) + cosines[6]) / 2 if cosines[6] < min(cosines[:6]) else None
    assert floor is not None, cosines
    assert decide(RobustRule(kind="norm_direction", f=1, min_cosine=floor), *_stats(tilted)).rejected == {6: "norm_direction"}
    assert decide(RobustRule(kind="norm_direction", f=1, min_cosine=-1.0), *_stats(tilted)).rejected == {}


@pytest.mark.parametrize(("n", "f"), [(3, 1), (4, 2), (4, 1), (5, 1)])
def test_decide_multi_krum_keeps_all_below_f_plus_3_and_exactly_n_minus_f_from_there(n: int, f: int) -> None:
    points = np.vstack([np.zeros((n - 1, 2)) + np.arange(n - 1)[:, None] * 0.01, [[9.0, 9.0]]])
    decision = decide(RobustRule(kind="multi_krum", f=f), *_stats(points))
    if n < f + 3:
        assert decision.accepted == tuple(range(n)) and decision.rejected == {}
    else:
        assert decision.accepted == tuple(multi_krum(_sq_dists(points), f, n - f).tolist())
        assert len(decision.accepted) == n - f and n - 1 in decision.rejected


def test_adaptive_norm_bound_is_exclusive_and_handles_zero_norms() -> None:
    """Squared norms 1, 1, 1, 4: L2 ratios 1, 1, 1, 2 to the median and a spread of 1, so the bound is
    ``norm_ratio`` itself and exclusive; a zero median makes every non-zero update infinitely long; zero norms
    below a non-zero median spread infinitely, which accepts everyone."""
    norms = np.array([1.0, 1.0, 1.0, 4.0])
    assert adaptive_norm_bound(norms, 2.0, 3).tolist() == [False] * 4
    assert adaptive_norm_bound(norms, 1.99, 3).tolist() == [False, False, False, True]
    assert adaptive_norm_bound(norms, 1.0, 0).tolist() == [False, False, False, True]
    assert adaptive_norm_bound(np.array([1.0, 1.0, 1.0, 4.0, 16.0]), 1.0, 1).tolist() == [False] * 3 + [True] * 2
    assert adaptive_norm_bound(np.array([0.0, 0.0, 0.0, 1.0]), 1.0, 3).tolist() == [False] * 3 + [True]
    assert adaptive_norm_bound(np.array([0.0, 0.0, 1.0, 1.0]), 1.0, 1).tolist() == [False] * 4
    assert adaptive_norm_bound(np.array([], dtype=float), 1.0, 1).tolist() == []
    assert norm_ratios([0.0, 0.0, 0.0, 9.0]) == [1.0, 1.0, 1.0, np.inf]
    assert norm_ratios([1.0, 4.0, 9.0]) == [0.5, 1.0, 1.5]
    assert norm_ratios([0.25, 0.5, 1.0]) == [np.sqrt(0.5), 1.0, np.sqrt(2.0)]
    spread = np.array([1.0, 1.0, 4.0, 36.0, 36.0])  # ratios 0.5, 0.5, 1, 3, 3: spread 2
    assert adaptive_norm_bound(spread, 1.0, 2).tolist() == [False] * 5
    assert adaptive_norm_bound(spread, 1.0, 1).tolist() == [False] * 3 + [True] * 2
    assert adaptive_norm_bound(np.array([1.0, 1.0, 4.0, 16.0, 16.0]), 1.0, 1).tolist() == [False] * 5
    assert adaptive_norm_bound(np.array([1.0, 1.0, 1.0, 1.0, 6.25])).tolist() == [False] * 4 + [True]
    wide = np.array([1 / 1.69, 1 / 1.69, 1.0, 1.69, 6.25])  # spread 1.3: 2.197 at the default power 3
    assert adaptive_norm_bound(wide).tolist() == [False] * 4 + [True]
    assert adaptive_norm_bound(wide, 2.0, 4).tolist() == [False] * 5
    for ratio, power in ((0.99, 3), (2.0, -1)):
        with pytest.raises(ValueError, match=rf"^adaptive_norm_bound needs norm_ratio >= 1 and spread_power >= 0: "
                                             rf"{ratio}, {power}$"):
            adaptive_norm_bound(norms, ratio, power)
    adaptive_norm_bound(norms, 1.0, 0)


def test_neighbour_outliers_thresholds_scores_and_zero_median() -> None:
    """Points 0, 1, 2, 3, 13 on a line, f = 1 (no skip, the 3 nearest): scores 14/3, 2, 2, 14/3 and 365/3 over a
    median of 14/3, so with no spread term the bound is ``distance_ratio``, exclusive, and each score is its ratio
    over that bound; most updates identical (a zero median) flags the others with an infinite score."""
    d = _sq_dists(np.array([0.0, 1.0, 2.0, 3.0, 13.0])[:, None])
    expected = [sum(sorted(np.delete(d[i], i))[:3]) / 3 for i in range(5)]
    assert neighbour_scores(d, 1) == pytest.approx(expected, rel=1e-12)
    typical = sorted(expected)[2]
    ratios = [s / typical for s in expected]
    flags, scores = neighbour_outliers(d, 1, ratios[4], 0)
    assert flags.tolist() == [False] * 5
    assert scores == pytest.approx([r / ratios[4] for r in ratios], rel=1e-12)
    assert neighbour_outliers(d, 1, ratios[4] * 0.999, 0)[0].tolist() == [False] * 4 + [True]
    assert neighbour_outliers(d, 1, 1.0, 0)[0].tolist() == [r > 1.0 for r in ratios]
    assert neighbour_outliers(d / 100, 1, ratios[4] * 0.999, 0)[0].tolist() == [False] * 4 + [True]
    for f in range(7):
        skip, count = max(0, min(f - 1, 3)), max(1, 5 - 2 * f)
        assert neighbour_scores(d, f) == [sum(sorted(np.delete(d[i], i))[skip:skip + count]) / count for i in range(5)]
    simplex = 2.0 * (np.ones((5, 5)) - np.eye(5))
    assert neighbour_outliers(simplex, 1)[1] == [1 / 1.5] * 5
    points = _sq_dists(np.random.default_rng(0).normal(size=(7, 3)))
    assert neighbour_outliers(points, 2)[1] == neighbour_outliers(points, 2, 1.5, 3)[1] \
        != neighbour_outliers(points, 2, 1.5, 4)[1]
    same = _sq_dists(np.array([0.0, 0.0, 0.0, 0.0, 5.0])[:, None])
    flags, scores = neighbour_outliers(same, 1, 1.5, 3)
    assert flags.tolist() == [False] * 4 + [True]
    assert scores == [1 / 1.5] * 4 + [np.inf]
    for ratio, power, f in ((0.99, 3, 1), (1.5, -1, 1), (1.5, 3, -1)):
        with pytest.raises(ValueError, match=rf"^neighbour_outliers needs distance_ratio >= 1, spread_power >= 0, "
                                             rf"f >= 0: {ratio}, {power}, {f}$"):
            neighbour_outliers(d, f, ratio, power)
    neighbour_outliers(d, 0, 1.0, 0)
