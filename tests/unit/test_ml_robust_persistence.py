"""ml.robust's persistence tier (``persistence_ratio``): colluders pursuing one bounded backdoor are rejected
from their members' folded direction statistics, a lone hospital with its own persistent direction is not, and
history only raises scrutiny. Attack first: with every update of the same length (clipped to B) and pointing
as far from the others as an honest one, the colluders pass the rule without the tier and are rejected with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.robust import AngleHistory, RobustRule, angle_statistics, decide, persistent_outliers

DIM = 500
PERSISTENT = RobustRule(f=2, persistence_ratio=1.15)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _stats(updates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What validation reveals: squared norms and pairwise squared distances."""
    diff = updates[:, None, :] - updates[None, :, :]
    return (updates**2).sum(axis=1), (diff**2).sum(axis=2)


def _round(rng: np.random.Generator, own: list[np.ndarray | None], share: float = 0.7) -> np.ndarray:
    """One late round: every update is a weak common step plus its own noise (pairwise cosines about 0.2), and a
    member with a persistent direction (``own[i]``) puts ``share`` of its noise budget along it; all have norm 1,
    as under a per-round bound B."""
    common = _unit(rng.normal(size=DIM))
    rows = []
    for direction in own:
        noise = _unit(rng.normal(size=DIM))
        if direction is not None:
            noise = np.sqrt(1 - share**2) * noise + share * direction
        rows.append(_unit(0.45 * common + 0.9 * noise))
    return np.stack(rows)


def _run(rule: RobustRule, own: list[np.ndarray | None], rounds: int, seed: int) -> list[tuple[int, ...]]:
    """Rejected indices per round, each round's statistics folded into the members' histories as the ledger would."""
    rng = np.random.default_rng(seed)
    history = [AngleHistory()] * len(own)
    rejected = []
    for _ in range(rounds):
        decision = decide(rule, *_stats(_round(rng, own)), angle_history=list(history))
        rejected.append(tuple(sorted(decision.rejected)))
        for i, (angle, clique) in decision.angles.items():
            history[i] = history[i].after(angle, clique)
    return rejected


@pytest.mark.parametrize("seed", range(3))
def test_colluders_sharing_a_backdoor_direction_are_rejected_from_the_second_round(seed: int) -> None:
    """Five honest members and two colluders whose noise shares one trigger direction: each colluder is as far
    from the others as an honest update (the tier's skip of the f - 1 nearest hides nothing here), so the rule
    without the tier accepts them in every round; with it, their persistent clique is rejected from round 2 on
    (round 1 has no history), and no honest member ever is."""
    trigger = _unit(np.random.default_rng(100 + seed).normal(size=DIM))
    own = [None] * 5 + [trigger, trigger]
    assert _run(dataclasses.replace(PERSISTENT, persistence_ratio=0.0), own, 6, seed) == [()] * 6
    assert _run(PERSISTENT, own, 6, seed) == [()] + [(5, 6)] * 5


@pytest.mark.parametrize("seed", range(3))
def test_a_hospital_with_its_own_persistent_direction_is_not_rejected(seed: int) -> None:
    """The honest counterpart: a hospital whose data differ puts as much of its step along a direction of its
    own, round after round, as each colluder puts along the trigger. Nobody shares it, so it is no clique, and it
    is no farther in angle than the colluders; it is accepted in every round."""
    own = [None] * 6 + [_unit(np.random.default_rng(200 + seed).normal(size=DIM))]
    assert _run(PERSISTENT, own, 6, seed) == [()] * 6


def test_an_update_typical_this_round_is_never_rejected_for_its_past() -> None:
    """History only raises scrutiny: a member whose mean angular ratio is 3 and mean clique ratio 0.1 over ten
    earlier rounds is not rejected in a round where it is neither farther than the median nor in a clique."""
    angles, cliques = [1.0, 0.9, 1.1, 1.0, 0.95, 1.05, 1.0], [0.9, 0.85, 0.95, 0.9, 0.8, 0.9, 0.92]
    past = [AngleHistory(10.0, 9.0, 10)] * 7
    past[0] = AngleHistory(30.0, 1.0, 10)
    flags, _ = persistent_outliers(angles, cliques, past, 1.15, 0.6, 2)
    assert not flags[0]
    angles[0] = 1.2
    assert persistent_outliers(angles, cliques, past, 1.15, 0.6, 2)[0][0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), totals=st.lists(st.floats(0.0, 30.0), min_size=7, max_size=7))
def test_the_tier_flags_only_updates_off_centre_this_round(seed: int, totals: list[float]) -> None:
    """Whatever the histories, a flagged update is farther than the round's median angle or in a clique this
    round (its clique ratio below the round's median)."""
    rng = np.random.default_rng(seed)
    angles, cliques = angle_statistics(*_stats(rng.normal(size=(7, 30))), 2)
    past = [AngleHistory(t, t / 3.0, 10) for t in totals]
    flags, _ = persistent_outliers(angles, cliques, past, 1.15, 0.6, 2)
    typical_clique = sorted(cliques)[3]
    assert all(angles[i] > 1.0 or cliques[i] < typical_clique for i in np.flatnonzero(flags)), f"seed={seed}"


def test_at_most_f_places_and_ties_go_to_the_lower_index() -> None:
    """Three identical updates with the same history, a persistent clique, and f = 2: two are rejected, the
    lower indices, and the same inputs give the same decision."""
    points = np.random.default_rng(7).normal(size=(7, 40))
    points[4:] = points[4]
    sq_norms, sq_dists = _stats(points)
    past = [AngleHistory(3.0, 3.0, 3)] * 4 + [AngleHistory(3.0, 0.0, 3)] * 3
    decision = decide(PERSISTENT, sq_norms, sq_dists, angle_history=past)
    assert decision.rejected == {4: "persistence", 5: "persistence"}
    assert decide(PERSISTENT, sq_norms, sq_dists, angle_history=past) == decision


@pytest.mark.parametrize("seed", range(3))
def test_permuting_updates_with_their_histories_permutes_the_decision(seed: int) -> None:
    """The colluders' third round, with the histories of their first two: every order of the members gives the
    same rejected members and the same statistics per member."""
    rng = np.random.default_rng(seed)
    trigger = _unit(rng.normal(size=DIM))
    own = [None] * 5 + [trigger, trigger]
    history = [AngleHistory()] * 7
    for _ in range(2):
        for i, pair in decide(PERSISTENT, *_stats(_round(rng, own))).angles.items():
            history[i] = history[i].after(*pair)
    sq_norms, sq_dists = _stats(_round(rng, own))
    decision = decide(PERSISTENT, sq_norms, sq_dists, angle_history=history)
    assert decision.rejected == {5: "persistence", 6: "persistence"}
    order = [int(v) for v in rng.permutation(7)]
    permuted = decide(PERSISTENT, sq_norms[order], sq_dists[np.ix_(order, order)],
                      angle_history=[history[i] for i in order])
    assert {order[j]: reason for j, reason in permuted.rejected.items()} == decision.rejected
    assert all(permuted.angles[j] == pytest.approx(decision.angles[order[j]]) for j in range(7))


def test_without_history_the_tier_only_reports_the_round_and_bad_parameters_are_refused() -> None:
    """``decide`` without ``angle_history`` (the daemon) rejects nothing on persistence but reports each update's
    statistics for the caller to fold; a rule without the tier reports none."""
    sq_norms, sq_dists = _stats(np.random.default_rng(8).normal(size=(7, 40)))
    decision = decide(PERSISTENT, sq_norms, sq_dists)
    assert decision.rejected == {} and sorted(decision.angles) == list(range(7))
    assert decide(RobustRule(f=2), sq_norms, sq_dists).angles == {}
    assert AngleHistory().after(1.5, 0.5).after(0.5, 1.0) == AngleHistory(2.0, 1.5, 2)
    for ratio, clique, rounds in ((0.9, 0.6, 2), (1.2, 1.5, 2), (1.2, 0.6, 0)):
        with pytest.raises(ValueError):
            persistent_outliers([1.0], [1.0], [AngleHistory()], ratio, clique, rounds)
