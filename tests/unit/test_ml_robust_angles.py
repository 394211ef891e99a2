"""ml.robust's direction statistics, persistence tier and per-round bound at their boundaries: `angle_statistics`
against an independent reference on the vectors themselves, every threshold of `persistent_outliers` on its
exact value, the f places and ties of the tier, `Decision.at_bound`, `next_clip_bound`'s growth and floor, and
`rule_changes`' fields and errors.

These came out of mutation testing (scripts/mutation.py): each test kills mutants the behavioural tests let
through."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ml.robust import (
    AT_BOUND,
    CLIP_FLOOR,
    CLIP_GROWTH,
    AngleHistory,
    Decision,
    RobustRule,
    angle_statistics,
    decide,
    next_clip_bound,
    persistent_outliers,
    rule_changes,
)
from tests.unit.test_ml_robust_persistence import _stats

NO_HISTORY = AngleHistory()


def _reference(updates: np.ndarray, f: int) -> tuple[list[float], list[float]]:
    """angle_statistics from the vectors: cosines from dot products, numpy sorting and means."""
    n = len(updates)
    lengths = np.linalg.norm(updates, axis=1)
    cos = (updates @ updates.T) / np.outer(lengths, lengths)
    rows = [np.sort([1.0 - np.clip(cos[i, j], -1.0, 1.0) for j in range(n) if j != i]) for i in range(n)]
    skip = max(0, min(f - 1, n - 2))
    count = max(1, n - 2 * f)
    far = np.array([row[skip:skip + count].sum() / count for row in rows])
    near = np.array([row[:max(1, skip)].mean() for row in rows])
    return list(far / np.median(far)), list(near / far)


@pytest.mark.parametrize(("n", "f"), [(3, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 2), (7, 3), (8, 3), (5, 4), (4, 4), (3, 5)])
@pytest.mark.parametrize("seed", range(2))
def test_angle_statistics_match_the_cosines_of_the_vectors(n: int, f: int, seed: int) -> None:
    updates = np.random.default_rng(seed).normal(size=(n, 12))
    angles, cliques = angle_statistics(*_stats(updates), f)
    expected_angles, expected_cliques = _reference(updates, f)
    assert angles == pytest.approx(expected_angles, rel=1e-9)
    assert cliques == pytest.approx(expected_cliques, rel=1e-9)


def test_angle_statistics_of_hand_built_directions() -> None:
    """Three directions in the plane, at 0, 180 and 45 degrees, f = 1 (no skip, one term): each update's far
    and near terms are its nearest angular distance, 1 - cos 45 for the first and third, 1 + cos 45 for the
    second; a zero update has angular distance 1 to all (no direction)."""
    r = np.sqrt(0.5)
    angles, cliques = angle_statistics(*_stats(np.array([[1.0, 0.0], [-1.0, 0.0], [r, r]])), 1)
    assert angles == pytest.approx([1.0, (1 + r) / (1 - r), 1.0], rel=1e-12)
    assert cliques == [1.0] * 3
    angles, cliques = angle_statistics(*_stats(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])), 1)
    assert angles == [1.0] * 3 and cliques == [1.0] * 3


def test_angle_statistics_when_every_update_points_the_same_way() -> None:
    """No angular spread at all: every ratio is 1.0 (no division by zero)."""
    same = np.outer([1.0, 2.0, 3.0, 0.5], [1.0, 1.0, 0.0])
    assert angle_statistics(*_stats(same), 1) == ([1.0] * 4, [1.0] * 4)
    two_pairs = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    angles, cliques = angle_statistics(*_stats(two_pairs), 2)
    # skip 1, count 1: each update's second nearest is at angular distance 1, its nearest at 0
    assert angles == [1.0] * 4 and cliques == [0.0] * 4


def _flags(angles: list[float], cliques: list[float], past: list[AngleHistory], ratio: float = 2.0,
           clique: float = 0.5, rounds: int = 1) -> list[bool]:
    return persistent_outliers(angles, cliques, past, ratio, clique, rounds)[0].tolist()


def test_the_angular_threshold_is_exclusive_and_needs_this_round_over_1() -> None:
    """Means over rounds: member 2's mean angular ratio is (7 + 1) / 2 = 4 against a median of 1 (the others'
    (1 + 1) / 2). Flagged iff 4 > ratio * 1 and this round's 1.0 ... which is not over 1, so never; at 1.5 this
    round (mean 4.25) it is, unless the ratio reaches it."""
    past = [AngleHistory(1.0, 1.0, 1), AngleHistory(1.0, 1.0, 1), AngleHistory(7.0, 1.0, 1)]
    assert _flags([1.0, 1.0, 1.0], [1.0] * 3, past, ratio=1.0) == [False] * 3
    assert _flags([1.0, 1.0, 1.5], [1.0] * 3, past, ratio=4.25) == [False] * 3
    assert _flags([1.0, 1.0, 1.5], [1.0] * 3, past, ratio=4.0) == [False, False, True]
    _, scores = persistent_outliers([1.0, 1.0, 1.5], [1.0] * 3, past, 4.0, 0.5, 1)
    assert scores == [1.0, 1.0, 4.25]


def test_the_clique_threshold_is_exclusive_and_needs_this_round_under_the_median() -> None:
    """Member 0's mean clique ratio is (0.5 + 0.5) / 2 = 0.5 against a median of 1 (the others'): flagged iff
    0.5 < clique_ratio * 1 and this round's ratio is below this round's median (not at it)."""
    past = [AngleHistory(1.0, 0.5, 1), AngleHistory(1.0, 1.0, 1), AngleHistory(1.0, 1.0, 1)]
    assert _flags([1.0] * 3, [0.5, 1.0, 1.0], past, clique=0.5) == [False] * 3
    assert _flags([1.0] * 3, [0.5, 1.0, 1.0], past, clique=0.51) == [True, False, False]
    _, scores = persistent_outliers([1.0] * 3, [0.5, 1.0, 1.0], past, 2.0, 0.51, 1)
    assert scores == [2.0, 1.0, 1.0]
    assert _flags([1.0] * 3, [0.5, 0.5, 1.0], [past[0], past[0], past[1]], clique=1.0) == [False] * 3
    assert _flags([1.0] * 3, [0.25, 0.5, 1.0], [past[0], past[0], past[1]], clique=1.0) == [True, False, False]
    assert _flags([1.0] * 3, [0.3, 0.5, 0.5], [NO_HISTORY] * 3, clique=0.5) == [False] * 3  # 0.3 > 0.5 * 0.5
    assert _flags([1.0] * 3, [0.2, 0.5, 0.5], [NO_HISTORY] * 3, clique=0.5) == [True, False, False]


def test_a_member_is_judged_from_its_min_rounds_th_round_on() -> None:
    """Seen in rounds + 1 rounds, this one included: flagged from exactly ``min_rounds`` on."""
    past = [AngleHistory(1.0, 1.0, 1), AngleHistory(1.0, 1.0, 1), AngleHistory(7.0, 1.0, 1)]
    angles = [1.0, 1.0, 1.5]
    assert _flags(angles, [1.0] * 3, past, rounds=2) == [False, False, True]
    assert _flags(angles, [1.0] * 3, past, rounds=3) == [False] * 3
    assert _flags([1.0, 1.0, 4.0], [1.0] * 3, [NO_HISTORY] * 3, rounds=1) == [False, False, True]


def test_means_are_over_each_members_own_rounds() -> None:
    """Seen in 2, 1 and 4 rounds: mean angular ratios 1.5, 1 and 2 (median 1.5), mean clique ratios 1.5, 1 and 1
    (median 1); each score is the larger of its angular mean over 1.5 and 1 over its clique mean."""
    past = [AngleHistory(2.0, 2.0, 1), NO_HISTORY, AngleHistory(6.0, 3.0, 3)]
    flags, scores = persistent_outliers([1.0, 1.0, 2.0], [1.0, 1.0, 1.0], past, 1.3, 0.5, 1)
    assert flags.tolist() == [False, False, True]
    assert scores == [1.0, 1.0, 2.0 / 1.5]
    flags, scores = persistent_outliers([], [], [], 1.3, 0.5, 1)
    assert flags.dtype == bool and flags.shape == (0,) and scores == []


def test_scores_with_a_zero_median_or_a_zero_clique() -> None:
    """A zero median angle scores 1.0 on angle; a zero mean clique ratio scores infinity."""
    flags, scores = persistent_outliers([0.0, 0.0, 0.0], [0.0, 1.0, 1.0], [NO_HISTORY] * 3, 1.0, 1.0, 1)
    assert flags.tolist() == [True, False, False]
    assert scores == [np.inf, 1.0, 1.0]


def test_the_documented_limits_of_the_tier_are_valid() -> None:
    for ratio, clique, rounds in ((1.0, 0.6, 2), (1.2, 0.0, 2), (1.2, 1.0, 2), (1.2, 0.6, 1)):
        persistent_outliers([1.0], [1.0], [NO_HISTORY], ratio, clique, rounds)
    for ratio, clique, rounds in ((0.99, 0.6, 2), (1.2, -0.01, 2), (1.2, 1.01, 2), (1.2, 0.6, 0)):
        with pytest.raises(ValueError, match=r"^persistent_outliers needs persistence_ratio >= 1, clique_ratio in "
                                             r"\[0, 1\] and min_rounds >= 1: "):
            persistent_outliers([1.0], [1.0], [NO_HISTORY], ratio, clique, rounds)


CLIQUE = [AngleHistory(3.0, 3.0, 3)] * 4 + [AngleHistory(3.0, 0.0, 3)] * 3


def _clique_round(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Seven updates, the last three identical: a clique with ratio 0 this round."""
    points = np.random.default_rng(seed).normal(size=(7, 40))
    points[4:] = points[4]
    return _stats(points)


@pytest.mark.parametrize(("f", "rejected"), [(0, {}), (1, {4}), (2, {4, 5}), (3, {4, 5, 6}), (4, {4, 5, 6})])
def test_the_tier_rejects_within_f_places_ties_to_the_lower_index(f: int, rejected: set[int]) -> None:
    rule = RobustRule(f=f, persistence_ratio=1.15, norm_ratio=0.0, distance_ratio=1000.0)
    decision = decide(rule, *_clique_round(), angle_history=CLIQUE)
    assert decision.rejected == dict.fromkeys(rejected, "persistence")
    assert decision.accepted == tuple(i for i in range(7) if i not in rejected)


def test_the_tier_gets_the_places_the_proofs_and_the_distance_rule_left_and_labels_once() -> None:
    """A proof (a weight out of range is before; the clip bound is a proof that leaves one place fewer) and a
    distance-rule rejection each take one of f = 3 places; the tier's label never replaces theirs, and the
    reported statistics are those of the updates that reached the suspicion tiers."""
    sq_norms, sq_dists = _clique_round()
    far = np.random.default_rng(9).normal(size=40) * 1e3
    points = np.random.default_rng(7).normal(size=(8, 40))
    points[4:7] = points[4]
    points[7] = far
    sq_norms, sq_dists = _stats(points)
    rule = RobustRule(f=3, persistence_ratio=1.15, norm_ratio=0.0)
    past = [*CLIQUE, AngleHistory(3.0, 3.0, 3)]
    decision = decide(rule, sq_norms, sq_dists, angle_history=past)
    assert decision.rejected == {7: "bounded_distance", 4: "persistence", 5: "persistence"}
    assert sorted(decision.angles) == list(range(8))
    bound = float(np.sqrt(sq_norms[:7].max())) * 1.01
    decision = decide(rule, sq_norms, sq_dists, angle_history=past, clip_bound=bound)
    assert decision.rejected == {7: "clip_bound", 4: "persistence", 5: "persistence"}
    assert sorted(decision.angles) == list(range(7))
    expected = angle_statistics(sq_norms[:7], sq_dists[:7, :7], 2)
    assert [decision.angles[i] for i in range(7)] == list(zip(*expected, strict=True))
    weights = np.array([1.0] * 7 + [2.0])
    decision = decide(rule, sq_norms, sq_dists, weights, angle_history=past)
    assert decision.rejected == {7: "weight_out_of_range", 4: "persistence", 5: "persistence", 6: "persistence"}


def test_without_the_tier_or_with_nothing_left_no_statistics_are_reported() -> None:
    sq_norms, sq_dists = _clique_round()
    rule = RobustRule(f=2, persistence_ratio=1.15, bound_sq=1e-9)
    decision = decide(rule, sq_norms, sq_dists, angle_history=CLIQUE)
    assert decision.accepted == () and decision.angles == {}
    assert decision.rejected == dict.fromkeys(range(7), "norm_bound")
    assert decide(dataclasses.replace(rule, bound_sq=0.0, persistence_ratio=0.0), sq_norms, sq_dists,
                  angle_history=CLIQUE).rejected == {}


def test_at_bound_counts_the_accepted_updates_at_or_over_the_share_of_b() -> None:
    """Per-sample squared norms 1, AT_BOUND, just below it, 1.2 (within the slack) and 2 (rejected): B = 1."""
    sq_norms = np.array([1.0, AT_BOUND, AT_BOUND * (1 - 1e-12), 1.2, 2.0])
    sq_dists = sq_norms[:, None] + sq_norms[None, :] - 2 * np.diag(sq_norms)  # orthogonal updates
    rule = RobustRule(f=2, clip_factor=1.0, norm_ratio=0.0, distance_ratio=1000.0)
    decision = decide(rule, sq_norms, sq_dists, clip_bound=1.0)
    assert decision.rejected == {4: "clip_bound"}
    assert decision.at_bound == 3
    assert decision.median_sq_norm == pytest.approx((AT_BOUND + 1.0) / 2)
    assert decide(rule, sq_norms, sq_dists, clip_bound=2.0).at_bound == 0
    assert decide(rule, sq_norms, sq_dists).at_bound == 0
    assert decide(rule, sq_norms / 4, sq_dists / 4, np.full(5, 0.5), clip_bound=1.0).at_bound == 3


BOUNDED = RobustRule(f=2, clip_factor=2.0, norm_ratio=0.0)


@pytest.mark.parametrize(("accepted", "at_bound", "expected"), [
    (4, 2, 2.0 * 3.0), (4, 3, 5.0 * CLIP_GROWTH), (5, 3, 5.0 * CLIP_GROWTH), (5, 2, 2.0 * 3.0), (1, 1, 5.0 * CLIP_GROWTH),
])
def test_b_grows_only_when_more_than_half_the_accepted_reached_it(accepted: int, at_bound: int, expected: float) -> None:
    decision = Decision(tuple(range(accepted)), {}, 9.0, at_bound)
    assert next_clip_bound(BOUNDED, 5.0, 100.0, decision) == expected


def test_b_stays_within_the_floor_and_the_cap() -> None:
    tiny = Decision((0, 1, 2), {}, 1e-12)
    assert next_clip_bound(BOUNDED, 5.0, 100.0, tiny) == 100.0 * CLIP_FLOOR
    assert next_clip_bound(BOUNDED, 5.0, 10.0, Decision((0, 1, 2), {}, 2.0**-12)) == 2.0**-5
    assert next_clip_bound(BOUNDED, 5.0, 100.0, Decision((0, 1, 2), {}, 50.0**2)) == 100.0
    assert next_clip_bound(BOUNDED, 5.0, 100.0, Decision((0, 1, 2), {}, 49.0**2)) == 98.0
    assert next_clip_bound(BOUNDED, 90.0, 100.0, Decision((0, 1, 2), {}, 1.0, 2)) == 100.0
    assert next_clip_bound(dataclasses.replace(BOUNDED, clip_factor=1e-9), 5.0, 100.0, Decision((0,), {}, 1.0)) \
        == 100.0 * CLIP_FLOOR
    assert next_clip_bound(BOUNDED, 5.0, 100.0, Decision((0, 1, 2), {}, -1.0)) == 5.0


def test_rule_changes_converts_each_field_to_its_type() -> None:
    changes = rule_changes("clip_factor=1,norm_ratio=0,spread_power=4,persistence_rounds=3,,clique_ratio=0.5")
    assert changes == {"clip_factor": 1.0, "norm_ratio": 0.0, "spread_power": 4, "persistence_rounds": 3,
                       "clique_ratio": 0.5}
    assert [type(changes[k]) for k in changes] == [float, float, int, int, float]
    assert rule_changes("") == {}
    assert rule_changes("slack=0.25") == {"slack": 0.25}


@pytest.mark.parametrize(("text", "message"), [
    ("f=2", (r"^'f' is not one of bound_sq, clip_factor, clip_slack, clique_ratio, distance_ratio, factor, "
             r"min_cosine, min_ratio, norm_factor, norm_ratio, persistence_ratio, persistence_rounds, slack, "
             r"spread_power$")),
    ("kind=1", r"^'kind' is not one of bound_sq, "),
    ("clip_factor", r"^'clip_factor' is not one of|^clip_factor='' is not a number$"),
    ("spread_power=2.5", r"^spread_power='2.5' is not a number$"),
    ("clip_factor=x", r"^clip_factor='x' is not a number$"),
    ("clip_factor=-1", r"^clip_factor='-1' is not a finite number >= 0$"),
    ("clip_factor=inf", r"^clip_factor='inf' is not a finite number >= 0$"),
    ("clip_factor=nan", r"^clip_factor='nan' is not a finite number >= 0$"),
    ("spread_power=-1", r"^spread_power='-1' is not a finite number >= 0$"),
])
def test_rule_changes_refuses_with_a_one_line_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        rule_changes(text)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ == message.endswith("is not a number$")


def _orthogonal(sq_norms: list[float]) -> tuple[np.ndarray, np.ndarray]:
    norms = np.array(sq_norms)
    return norms, norms[:, None] + norms[None, :] - 2 * np.diag(norms)


def test_decide_takes_weights_in_0_1_and_the_clip_slack_inclusively() -> None:
    lax = RobustRule(f=2, norm_ratio=0.0, distance_ratio=1000.0, clip_slack=0.25)
    sq_norms, sq_dists = _orthogonal([1.0] * 6)
    weights = np.array([1.0, 0.0, 1.0 + 1e-12, -0.5, 1e-3, 0.5])
    decision = decide(lax, sq_norms, sq_dists, weights)
    assert decision.rejected == dict.fromkeys((1, 2, 3), "weight_out_of_range")
    sq_norms, sq_dists = _orthogonal([1.0, 1.0, 1.0, 1.0, 1.25, 1.25 * (1 + 1e-12)])
    assert decide(lax, sq_norms, sq_dists, clip_bound=1.0).rejected == {5: "clip_bound"}
    assert decide(dataclasses.replace(lax, clip_slack=0.0), sq_norms, sq_dists, clip_bound=1.0).rejected == \
        {4: "clip_bound", 5: "clip_bound"}


def test_each_proof_leaves_one_place_fewer_for_suspicion() -> None:
    """Five honest updates, one pointing the other way (a suspicion) and one three times as long (a proof, under
    B = 1.5): with f = 1 the proof takes the only place, with f = 2 both are rejected."""
    rng = np.random.default_rng(3)
    honest = np.array([1.0, 0.0, 0.0]) + rng.normal(size=(5, 3)) * 0.05
    points = np.vstack([honest, [[-1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    sq_norms, sq_dists = _stats(points)
    rule = RobustRule(f=1, norm_ratio=0.0)
    assert decide(rule, sq_norms, sq_dists, clip_bound=1.5).rejected == {6: "clip_bound"}
    assert decide(dataclasses.replace(rule, f=2), sq_norms, sq_dists, clip_bound=1.5).rejected == \
        {6: "clip_bound", 5: "bounded_distance"}
    assert decide(dataclasses.replace(rule, f=2, norm_ratio=2.0), sq_norms, sq_dists).rejected == \
        {6: "norm_ratio", 5: "bounded_distance"}


def test_earlier_rejections_stay_with_their_updates_after_a_proof() -> None:
    """A proof (index 0, too long) removes an update before the suspicion tier; of the two flipped updates the
    one rejected in more earlier rounds (6) goes, though the other (7) is farther."""
    rng = np.random.default_rng(4)
    honest = np.array([1.0, 0.0, 0.0]) + rng.normal(size=(5, 3)) * 0.05
    points = np.vstack([[[3.0, 0.0, 0.0]], honest, [[-0.9, 0.0, 0.0], [-1.0, 0.1, 0.0]]])
    sq_norms, sq_dists = _stats(points)
    rule = RobustRule(f=2, norm_ratio=0.0)
    assert decide(rule, sq_norms, sq_dists, clip_bound=1.5).rejected == {0: "clip_bound", 7: "bounded_distance"}
    history = [0, 0, 0, 0, 0, 0, 5, 0]
    assert decide(rule, sq_norms, sq_dists, history=history, clip_bound=1.5).rejected == \
        {0: "clip_bound", 6: "bounded_distance"}
    assert decide(rule, sq_norms, sq_dists, history=[9, *history[1:]], clip_bound=1.5).rejected == \
        {0: "clip_bound", 6: "bounded_distance"}


@pytest.mark.parametrize(("f", "rejected"), [(1, {6}), (2, {4, 6})])
def test_the_tier_rejects_the_highest_scores_first(f: int, rejected: set[int]) -> None:
    """Of the three members of the clique, the one with the lowest mean clique ratio (6) scores highest and goes
    first; the two others tie, and the lower index goes next."""
    past = [*CLIQUE[:4], AngleHistory(3.0, 0.6, 3), AngleHistory(3.0, 0.6, 3), AngleHistory(3.0, 0.3, 3)]
    rule = RobustRule(f=f, persistence_ratio=1.15, norm_ratio=0.0, distance_ratio=1000.0)
    assert decide(rule, *_clique_round(), angle_history=past).rejected == dict.fromkeys(rejected, "persistence")


def test_decide_runs_each_tier_at_its_lowest_valid_parameter_and_with_the_rules_spread_power() -> None:
    """norm_ratio 1 and persistence_ratio 1 are valid and switch their tiers on (0 switches them off); the adaptive
    norm bound and the distance rule get the rule's spread_power, not their default."""
    sq_norms, sq_dists = _orthogonal([1.0, 1.0, 1.0, 1.0, 4.0])
    strict = RobustRule(f=2, norm_ratio=1.0, spread_power=0, distance_ratio=1000.0)
    assert decide(strict, sq_norms, sq_dists).rejected == {4: "norm_ratio"}
    assert decide(dataclasses.replace(strict, persistence_ratio=1.0), sq_norms, sq_dists).angles.keys() == {0, 1, 2, 3}
    wide, wide_dists = _orthogonal([1 / 1.69, 1 / 1.69, 1.0, 1.69, 6.25])  # norm spread 1.3
    rule = RobustRule(f=2, norm_ratio=2.0, spread_power=4, distance_ratio=1000.0)
    assert decide(rule, wide, wide_dists).rejected == {}
    assert decide(dataclasses.replace(rule, spread_power=3), wide, wide_dists).rejected == {4: "norm_ratio"}
    line = np.array([0.0, 1.0, 2.0, 3.0, 6.0])[:, None]
    flagging = RobustRule(f=1, norm_ratio=0.0, distance_ratio=1.0, spread_power=0)
    assert decide(flagging, *_stats(line)).rejected == {4: "bounded_distance"}
    assert decide(dataclasses.replace(flagging, spread_power=3), *_stats(line)).rejected == {}


def test_a_lone_survivor_gets_neutral_statistics() -> None:
    """One update left: no others to compare with, so both of its ratios are 1.0, and the tier rejects nothing."""
    history = [AngleHistory(9.0, 0.0, 3)]
    decision = decide(RobustRule(f=1, persistence_ratio=1.15), np.array([1.0]), np.zeros((1, 1)), angle_history=history)
    assert decision.angles == {0: (1.0, 1.0)} and decision.accepted == (0,)
