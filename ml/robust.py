"""Robust aggregation rules that look only at revealed statistics, never at updates.

Under secure aggregation no node sees an update; the validation protocol reveals only each
update's squared norm and the pairwise squared distances (computed on secret shares of sketches).
These rules turn those scalars into an accepted set. Every honest node runs them on the same
revealed numbers, so they must give the same answer everywhere: sums use ``math.fsum`` (exactly
rounded, independent of CPU and summation order) and every ranking breaks ties by the lower index.

Pure numpy and the standard library: no torch, so protocol cores may reuse the logic.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

RULE_KINDS = ("none", "multi_krum", "median_distance", "centroid", "median_mad", "norm_direction", "bounded_distance")


def _check_sq_dists(sq_dists: np.ndarray) -> np.ndarray:
    d = np.asarray(sq_dists, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance matrix must be square, got shape {d.shape}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError("squared distances must be finite and non-negative")
    if not np.array_equal(d, d.T) or (np.diag(d) != 0).any():
        raise ValueError("squared distance matrix must be symmetric with a zero diagonal")
    return d


def norm_bound(sq_norms: np.ndarray, bound_sq: float, slack: float) -> np.ndarray:
    """Accept update i iff ``sq_norms[i] <= bound_sq * (1 + slack)``; returns a boolean mask.

    Honest updates are clipped to L2 <= C before they are masked, so ``bound_sq = C**2``. The norms
    are measured on a random linear sketch, which preserves squared norms only approximately, and
    on quantized values, so ``slack`` is the relative error tolerated before calling an update
    oversized (for a count sketch of k buckets a few times sqrt(2/k)).
    """
    norms = np.asarray(sq_norms, dtype=np.float64)
    if norms.ndim != 1 or not np.isfinite(norms).all():
        raise ValueError("squared norms must be a finite 1-D array")
    if not (bound_sq > 0 and slack >= 0):
        raise ValueError(f"bound_sq must be positive and slack non-negative: {bound_sq}, {slack}")
    return norms <= bound_sq * (1.0 + slack)


def krum_scores(sq_dists: np.ndarray, f: int) -> list[float]:
    """Krum score of each update: the sum of its ``n - f - 2`` smallest squared distances to the
    others (Blanchard et al., NeurIPS 2017)."""
    d = _check_sq_dists(sq_dists)
    n = d.shape[0]
    closest = n - f - 2
    if f < 0 or closest < 1:
        raise ValueError(f"Krum needs n >= f + 3 (n = {n}, f = {f}); its guarantee needs n >= 2f + 3")
    return [math.fsum(sorted(np.delete(d[i], i).tolist())[:closest]) for i in range(n)]


def multi_krum(sq_dists: np.ndarray, f: int, m: int) -> np.ndarray:
    """Indices (ascending) of the ``m`` updates with the lowest Krum scores; ties go to the lower
    index. With f Byzantine among n >= 2f + 3, each selected update is close to honest ones."""
    scores = krum_scores(sq_dists, f)
    if not 1 <= m <= len(scores):
        raise ValueError(f"multi_krum must select between 1 and {len(scores)} updates, not {m}")
    ranked = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return np.array(sorted(ranked[:m]), dtype=np.int64)


def median_distances(sq_dists: np.ndarray) -> list[float]:
    """Each update's median squared distance to the others (0.0 when it is alone)."""
    d = _check_sq_dists(sq_dists)
    return [_median(np.delete(d[i], i).tolist()) for i in range(d.shape[0])]


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def median_distance(sq_dists: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Accept update i iff its median squared distance to the others is at most ``factor`` times
    the median of those medians; returns a boolean mask.

    In the spirit of FLAME's clustering, but on revealed distances only: with an honest majority an
    honest update's median distance is an honest-to-honest distance, while an update far from the
    honest cluster has a large median distance whatever the few colluders do. Since ``factor >= 1``,
    at least half of the updates (those at or below the median score) are always accepted.
    """
    if not factor >= 1.0:
        raise ValueError(f"median_distance factor must be >= 1, got {factor}")
    scores = median_distances(sq_dists)
    threshold = factor * _median(scores)
    return np.array([score <= threshold for score in scores], dtype=bool)


def _middle(values: list[float]) -> float:
    """The median on a ratio scale: the middle value, or the geometric mean of the two middle values.

    Only ``sorted``, one product and one ``math.sqrt`` (IEEE correctly rounded), so every node gets
    the same bits; a log-scale median would depend on the platform's ``log``.
    """
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else math.sqrt(ordered[mid - 1] * ordered[mid])


def median_mad(sq_dists: np.ndarray, min_ratio: float = 3.0, spread_power: int = 3) -> np.ndarray:
    """Accept update i iff its median squared distance m_i to the others is at most
    ``M * max(min_ratio, S ** spread_power)``; returns a boolean mask.

    M is the median of the m_i and S the median of the ratios max(m_i / M, M / m_i), both on a ratio
    scale (``_middle``). In logarithms this is the robust z-test log m_i > log M + k * MAD(log m)
    with k = ``spread_power`` (k = 3 is about 2 standard deviations, since a normal MAD is 0.674 sigma),
    plus a floor: an update is never called an outlier for being less than ``min_ratio`` times the
    typical distance away. The test adapts to each round's spread: honest local steps are
    heavy-tailed (one hospital now and then takes a step several times longer than the others) and
    label-skewed hospitals sit farther apart, so a fixed factor on the median either rejects them or
    lets attackers in; a scale measured on the same round widens the threshold when all honest
    updates disagree and keeps it at ``min_ratio`` when they agree. The integer power is a chain of
    products, so the threshold is the same in every IEEE implementation. When M is zero (most
    updates identical), exactly the updates whose median distance is zero are accepted.
    """
    if not (min_ratio >= 1.0 and spread_power >= 0):
        raise ValueError(f"median_mad needs min_ratio >= 1 and spread_power >= 0: {min_ratio}, {spread_power}")
    scores = median_distances(sq_dists)
    if not scores:
        return np.ones(0, dtype=bool)
    typical = _middle(scores)
    if typical == 0.0:
        return np.array([score == 0.0 for score in scores], dtype=bool)
    spread = _middle([max(s / typical, typical / s) if s > 0 else math.inf for s in scores])
    widened = 1.0
    for _ in range(spread_power):
        widened *= spread
    threshold = typical * max(min_ratio, widened)
    return np.array([score <= threshold for score in scores], dtype=bool)


def _at_most_f_rejected(keep: np.ndarray, scores: list[float], f: int, history: list[int] | None = None
                        ) -> np.ndarray:
    """Reject at most f of the updates a rule flagged: those rejected in the most earlier rounds
    (``history``, the ledger's count), then the highest-scoring (ties: the higher index stays).

    At most f members are Byzantine, so rejecting more can only remove honest updates; under label-skewed
    data the median rule otherwise rejected several honest hospitals at once, often enough to leave fewer
    updates than a round needs, so the same round aborted again and again (scripts/evaluate_attacks.py).
    The history matters when an honest hospital's occasional long step is flagged together with f
    attackers: ranked by score alone it took one of the f places and let an attacker in, and one accepted
    backdoor round was enough to plant the trigger. Attackers are flagged round after round, honest
    outliers now and then, so the count of earlier rejections tells them apart.
    """
    flagged = [i for i in range(len(keep)) if not keep[i]]
    if len(flagged) <= f:
        return keep
    past = history if history is not None else [0] * len(keep)
    worst = sorted(flagged, key=lambda i: (-past[i], -scores[i], i))[:f]
    capped = np.ones(len(keep), dtype=bool)
    capped[worst] = False
    return capped


def centroid_sq_dists(sq_dists: np.ndarray, members: list[int]) -> list[float]:
    """Squared distance of each member to the mean of the members, from pairwise distances only:
    |u_i - mean|^2 = (1/k) sum_j d_ij - (1/(2k^2)) sum_{j,l} d_jl (k members, sums over members)."""
    d = _check_sq_dists(sq_dists)[np.ix_(members, members)]
    k = len(members)
    if k == 0:
        return []
    spread = math.fsum(d.ravel().tolist()) / (2.0 * k * k)
    return [max(0.0, math.fsum(d[a].tolist()) / k - spread) for a in range(k)]


def centroid_outliers(sq_dists: np.ndarray, f: int, factor: float = 2.0) -> np.ndarray:
    """Accepted mask after trimming up to ``f`` updates, one at a time: while the update farthest
    from the mean of the remaining ones is more than ``factor`` times the median such distance
    away, drop it (ties: the lower index goes first) and recompute the mean.

    Unlike a pairwise rule this catches a minority that points the opposite way (sign flipping):
    the mean is dominated by the honest majority, so flipped updates sit far from it, while honest
    updates spread around it. Each step only needs the revealed pairwise distances.
    """
    if not factor >= 1.0 or f < 0:
        raise ValueError(f"centroid rule needs factor >= 1 and f >= 0, got {factor}, {f}")
    n = _check_sq_dists(sq_dists).shape[0]
    members = list(range(n))
    while n - len(members) < f and len(members) > 2:
        distances = centroid_sq_dists(sq_dists, members)
        worst = max(range(len(members)), key=lambda a: (distances[a], -members[a]))
        if distances[worst] <= factor * _median(distances):
            break
        del members[worst]
    return np.isin(np.arange(n), members)


def direction_scores(sq_norms: np.ndarray, sq_dists: np.ndarray) -> list[float]:
    """Each update's cosine with the sum of the other updates' directions, from revealed scalars only.

    Inner products follow from norms and distances, <u_i, u_j> = (|u_i|^2 + |u_j|^2 - |u_i - u_j|^2) / 2, so
    the cosines c_ij are known, and the cosine of u_i with sum_{j != i} u_j / |u_j| is
    sum_{j != i} c_ij / sqrt(sum_{a, b != i} c_ab). Averaging the others' directions first matters: late in
    training honest updates are mostly local noise (pairwise cosines 0.2-0.8), but their mean direction is
    clear, and a flipped update points against it. A zero update has no direction (cosine 0 with all).
    """
    norms = [float(v) for v in np.asarray(sq_norms, dtype=np.float64).tolist()]
    d = _check_sq_dists(sq_dists)
    n = len(norms)
    cos = [[1.0 if i == j else _cosine(norms[i], norms[j], float(d[i, j])) for j in range(n)] for i in range(n)]
    scores = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        spread = math.fsum(cos[a][b] for a in others for b in others)
        toward = math.fsum(cos[i][j] for j in others)
        scores.append(toward / math.sqrt(spread) if spread > 0 and norms[i] > 0 else 0.0)
    return scores


def _cosine(norm_i: float, norm_j: float, dist: float) -> float:
    if norm_i <= 0 or norm_j <= 0:
        return 0.0
    return max(-1.0, min(1.0, (norm_i + norm_j - dist) / (2.0 * math.sqrt(norm_i * norm_j))))


def _angle_rows(sq_norms: np.ndarray, sq_dists: np.ndarray) -> list[list[float]]:
    """For each update, its angular distances 1 - cos(u_i, u_j) to the others, ascending (`_cosine`)."""
    norms = [float(v) for v in np.asarray(sq_norms, dtype=np.float64).tolist()]
    d = _check_sq_dists(sq_dists)
    n = len(norms)
    return [sorted(1.0 - _cosine(norms[i], norms[j], float(d[i, j])) for j in range(n) if j != i) for i in range(n)]


def angle_statistics(sq_norms: np.ndarray, sq_dists: np.ndarray, f: int) -> tuple[list[float], list[float]]:
    """Two direction statistics per update, from revealed scalars only (`_cosine`):

    - the angular ratio: its mean angular distance to its others of ranks f to n - f - 1 (the f - 1 nearest
      skipped, as in `neighbour_scores`, so colluders do not vouch for each other), over the median of those;
      above 1, it points farther from the others than the round's typical update;
    - the clique ratio: its mean angular distance to its f - 1 nearest (at least one) over the same mean of
      ranks f to n - f - 1; well below 1, it has a few others much closer than the rest, as colluders pursuing
      one backdoor do (1.0 when every update points the same way).

    Length is left out on purpose: under a per-round bound B every update, a backdoor's too, has about the same
    length, and what is left of a bounded backdoor is its direction (the trigger's component, which no honest
    hospital's data produce), shared by the colluders."""
    rows = _angle_rows(sq_norms, sq_dists)
    n = len(rows)
    skip = max(0, min(f - 1, n - 2))
    count = max(1, n - 2 * f)
    far = [math.fsum(row[skip:skip + count]) / count for row in rows]
    near = [math.fsum(row[:max(1, skip)]) / max(1, skip) for row in rows]
    typical = _median(far)
    angles = [v / typical if typical > 0 else 1.0 for v in far]
    cliques = [c / v if v > 0 else 1.0 for c, v in zip(near, far, strict=True)]
    return angles, cliques


@dataclass(frozen=True, slots=True)
class AngleHistory:
    """One member's direction statistics in earlier rounds (`angle_statistics`), as the ledger would fold them:
    the sums of its angular and clique ratios (one IEEE addition per round, in round order, so every replica
    gets the same bits) and how many rounds."""

    angle: float = 0.0
    clique: float = 0.0
    rounds: int = 0

    def after(self, angle: float, clique: float) -> AngleHistory:
        """The history once this round's statistics are committed."""
        return AngleHistory(self.angle + angle, self.clique + clique, self.rounds + 1)


def persistent_outliers(angles: list[float], cliques: list[float], past: list[AngleHistory], persistence_ratio: float,
                        clique_ratio: float, min_rounds: int) -> tuple[np.ndarray, list[float]]:
    """Flag update i iff its member has been seen in at least ``min_rounds`` rounds (this one included) and
    either its mean angular ratio over them exceeds ``persistence_ratio`` times the median of those means and
    this round's ratio exceeds 1, or its mean clique ratio is below ``clique_ratio`` times the median of those
    means and this round's is below this round's median; returns the flags and a score (how far past the
    median mean, the larger of the two) for ranking.

    Colluders pursuing one bounded backdoor point a little away from the honest updates in every round until
    the trigger is learnt (angular ratio 1.1-1.6 on digits), and closer to each other than to anyone else in
    every round, which is all that shows late in training, when honest updates are almost orthogonal and every
    angular distance is near 1 (clique ratio 0.2-0.5 against 0.7-1 for honest pairs). Honest updates of a
    homogeneous federation take turns at being unusual, so their means converge to the median; the colluders'
    do not. History only raises scrutiny: the update must also be off-centre this round, so a member that was
    unusual before and is typical now is never rejected for its past. Honest hospitals whose data really
    differ are persistent outliers too, and pairs of hospitals with similar data persistent cliques; that is
    this tier's price (docs/validation.md)."""
    if not (persistence_ratio >= 1.0 and 0.0 <= clique_ratio <= 1.0 and min_rounds >= 1):
        raise ValueError(f"persistent_outliers needs persistence_ratio >= 1, clique_ratio in [0, 1] and "
                         f"min_rounds >= 1: {persistence_ratio}, {clique_ratio}, {min_rounds}")
    mean_angles = [(h.angle + a) / (h.rounds + 1) for a, h in zip(angles, past, strict=True)]
    mean_cliques = [(h.clique + c) / (h.rounds + 1) for c, h in zip(cliques, past, strict=True)]
    typical_angle, typical_clique, clique_now = _median(mean_angles), _median(mean_cliques), _median(cliques)
    flags, scores = [], []
    for a, c, h, mean_a, mean_c in zip(angles, cliques, past, mean_angles, mean_cliques, strict=True):
        far = mean_a > persistence_ratio * typical_angle and a > 1.0
        close = mean_c < clique_ratio * typical_clique and c < clique_now
        flags.append(h.rounds + 1 >= min_rounds and (far or close))
        scores.append(max(mean_a / typical_angle if typical_angle > 0 else 1.0,
                          typical_clique / mean_c if mean_c > 0 else math.inf))
    return np.array(flags, dtype=bool), scores


def norm_direction(sq_norms: np.ndarray, sq_dists: np.ndarray, norm_factor: float = 1.5,
                   min_cosine: float = 0.0) -> tuple[np.ndarray, list[float]]:
    """Flag update i iff its norm exceeds ``norm_factor`` times the median norm, or its cosine with the
    others' mean direction (`direction_scores`) is below ``min_cosine``; returns the keep mask and a
    score (how far past either threshold, > 1 when flagged) for ranking.

    Two questions a poisoned update cannot both dodge: to move the model further than an honest hospital
    it needs a longer step (scaling, model replacement, a boosted backdoor, which trains on extra
    triggered rows and took 2-3 times the median step on breast cancer), and to move it elsewhere it needs
    another direction (sign flipping, label flipping, noise). Comparing with the median norm, not a fixed
    bound, follows the steps shrinking as training converges.
    """
    if not (norm_factor >= 1.0 and -1.0 <= min_cosine < 1.0):
        raise ValueError(f"norm_direction needs norm_factor >= 1 and min_cosine in [-1, 1): {norm_factor}, {min_cosine}")
    norms = [float(v) for v in np.asarray(sq_norms, dtype=np.float64).tolist()]
    if not norms:
        return np.ones(0, dtype=bool), []
    directions = direction_scores(sq_norms, sq_dists)
    typical = _median(norms)
    ratios = [math.sqrt(v / typical) if typical > 0 else (0.0 if v == 0 else math.inf) for v in norms]
    scores = [max(r / norm_factor, (1.0 - c) / (1.0 - min_cosine)) for r, c in zip(ratios, directions, strict=True)]
    keep = np.array([r <= norm_factor and c >= min_cosine for r, c in zip(ratios, directions, strict=True)], dtype=bool)
    return keep, scores


def _adaptive_threshold(ratios: list[float], floor: float, spread_power: int) -> float:
    """``max(floor, S ** spread_power)`` with S the median of max(r, 1/r) over the ratios r (ratios to their
    median, on a ratio scale): a robust z-test in logarithms, as in `median_mad`, with products only."""
    spread = _middle([max(r, 1.0 / r) if r > 0 else math.inf for r in ratios]) if ratios else 1.0
    widened = 1.0
    for _ in range(spread_power):
        widened *= spread
    return max(floor, widened)


def norm_ratios(sq_norms: list[float]) -> list[float]:
    """Each update's L2 norm over the median L2 norm (sqrt of the squared-norm ratio; a zero median
    makes every non-zero update infinitely long)."""
    typical = _median(sq_norms)
    return [math.sqrt(v / typical) if typical > 0 else (1.0 if v == 0 else math.inf) for v in sq_norms]


def neighbour_scores(sq_dists: np.ndarray, f: int) -> list[float]:
    """Each update's mean squared distance to its nearest others, skipping the f - 1 nearest: ranks f to
    n - f - 1 (n - 2f terms, at least one).

    Skipping is what makes colluders pay: a malicious update has at most f - 1 colluders among the others,
    and colluders that share a goal (a backdoor) sit close to each other, so without the skip their mutual
    distances would lower their scores; after it, every term of a malicious update's score is a distance to
    an honest one. An honest update's terms are honest-to-honest distances whatever the f others do (at
    most f of its neighbours are malicious, and the n - f - 1 nearest are then at most as far as its honest
    ones)."""
    d = _check_sq_dists(sq_dists)
    n = d.shape[0]
    skip = max(0, min(f - 1, n - 2))
    count = max(1, n - 2 * f)
    return [math.fsum(sorted(np.delete(d[i], i).tolist())[skip:skip + count]) / count for i in range(n)]


def adaptive_norm_bound(sq_norms: np.ndarray, norm_ratio: float = 2.0, spread_power: int = 3) -> np.ndarray:
    """Mask of the updates longer than ``max(norm_ratio, S ** spread_power)`` times the median norm, with S
    the round's median spread of norm ratios (`_adaptive_threshold`).

    A proof, not a suspicion: the median and S lie between honest order statistics whatever f colluders
    submit, so the bound is a statement about this round's honest steps, and an update beyond it is
    rejected outright, not counted against f. It is what bounds every attack that passes the rule: FLAME
    clips to the median norm, which a sum of masked vectors cannot do after the fact, so the consortium
    rejects what it cannot clip. The spread term widens the bound in rounds whose honest steps are
    heavy-tailed (breast cancer's logistic regression: one hospital now and then takes a step ten times
    the median), so that honest hospitals are not the ones it rejects.
    """
    if not (norm_ratio >= 1.0 and spread_power >= 0):
        raise ValueError(f"adaptive_norm_bound needs norm_ratio >= 1 and spread_power >= 0: {norm_ratio}, {spread_power}")
    ratios = norm_ratios([float(v) for v in np.asarray(sq_norms, dtype=np.float64).tolist()])
    limit = _adaptive_threshold(ratios, norm_ratio, spread_power)
    return np.array([r > limit for r in ratios], dtype=bool)


def neighbour_outliers(sq_dists: np.ndarray, f: int, distance_ratio: float = 1.5,
                       spread_power: int = 3) -> tuple[np.ndarray, list[float]]:
    """Flag update i iff its `neighbour_scores` is more than ``max(distance_ratio, S ** spread_power)`` times
    the median score (S the scores' spread); returns the flags and each score over that threshold.

    Far from every honest cluster: sign flip, label flip, noise. Honest hospitals with unusual data are
    flagged now and then too, so the caller rejects at most f of these (`_at_most_f_rejected`).
    """
    if not (distance_ratio >= 1.0 and spread_power >= 0 and f >= 0):
        raise ValueError(f"neighbour_outliers needs distance_ratio >= 1, spread_power >= 0, f >= 0: "
                         f"{distance_ratio}, {spread_power}, {f}")
    scores = neighbour_scores(sq_dists, f)
    typical = _median(scores)
    ratios = [s / typical if typical > 0 else (1.0 if s == 0 else math.inf) for s in scores]
    limit = _adaptive_threshold(ratios, distance_ratio, spread_power)
    return np.array([r > limit for r in ratios], dtype=bool), [r / limit for r in ratios]


def per_sample(sq_norms: np.ndarray, sq_dists: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of the updates u_i from those of the weighted vectors w_i u_i that were sketched.

    |u_i|^2 = |w_i u_i|^2 / w_i^2 and <u_i, u_j> = <w_i u_i, w_j u_j> / (w_i w_j), so every hospital is
    judged by its own step whatever its size: on raw weighted vectors a large hospital looks like an
    outlier and a small one hides a large step. Weights must be positive (checked before, see `decide`).
    """
    norms = np.asarray(sq_norms, dtype=np.float64)
    d = _check_sq_dists(sq_dists)
    w = np.asarray(weights, dtype=np.float64)
    assert w.shape == norms.shape and (w > 0).all(), "per_sample needs one positive weight per update"
    inner = (norms[:, None] + norms[None, :] - d) / 2.0 / np.outer(w, w)
    unit = norms / (w * w)
    dist = np.maximum(unit[:, None] + unit[None, :] - 2.0 * inner, 0.0)
    dist = (dist + dist.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    return unit, dist


@dataclass(frozen=True, slots=True)
class RobustRule:
    """The consortium's rule, as stored in genesis: a norm bound, then a distance rule.

    ``kind`` is the distance rule: ``none``, ``multi_krum`` (keep the n' - f best Krum scores among
    the n' updates that passed the norm bound), ``median_distance`` (with ``factor``),
    ``median_mad`` (with ``min_ratio`` and ``spread_power``), ``bounded_distance`` (with ``norm_ratio``,
    ``distance_ratio`` and ``spread_power``; `adaptive_norm_bound` then `neighbour_outliers`), ``centroid`` (trim up to f updates far
    from the mean, with ``factor``) or ``norm_direction`` (with ``norm_factor`` and ``min_cosine``).
    The median rules and ``norm_direction`` reject at most f of the updates they flag, those with the
    most earlier rejections first. ``bound_sq <= 0`` disables the norm bound. When fewer than f + 3
    updates pass the norm bound, Multi-Krum cannot rank them and all of them are kept.

    The field defaults give ``bounded_distance`` (norm_ratio 2, distance_ratio 1.5, spread_power 3): an update longer
    than max(2, S^3) times the round's median norm is rejected outright (a proof, not a suspicion), then of
    those whose `neighbour_scores` is over max(1.5, S'^3) times the median, at most f minus the number of
    outright rejections are (a suspicion; earlier rejections only rank the flagged). It keeps digits' fixed-length
    backdoor out but rejects 8-22% of honest updates on breast cancer and ACTG 175, whose honest steps are
    heavy-tailed (docs/attacks.md). Multi-Krum rejects exactly f updates every round even when all are honest.

    ``clip_factor`` > 0 adds a per-round bound B, fixed before masking: B of round r + 1 is ``clip_factor``
    times the median per-sample norm round r accepted (`next_clip_bound`; C in the first round), every
    member clips its update to B (`node.weighting.Weighting.vector`), and `decide` rejects outright an update
    longer than B (``clip_slack`` on squared norms allowed for the sketch). ``norm_ratio`` 0 then drops the
    adaptive norm tier. The consortium default (`GENESIS_RULE`: clip_factor 1, norm_ratio 0, distance_ratio 2.5);
    the daemon carries B on the ledger in each `accept`.

    ``persistence_ratio`` > 0 adds a last suspicion tier on each member's history of direction statistics
    (`persistent_outliers`, fed by ``decide``'s ``angle_history``): with B it keeps digits' bounded backdoor
    out, but it rejects honest hospitals of heterogeneous federations and a diluted backdoor passes it
    (docs/validation.md). Not the default; the daemon carries no such history, so genesis refuses it.
    """

    kind: str = "bounded_distance"
    f: int = 1
    bound_sq: float = 0.0
    slack: float = 0.1
    factor: float = 2.0
    min_ratio: float = 3.0
    spread_power: int = 3
    norm_factor: float = 1.5
    min_cosine: float = 0.0
    norm_ratio: float = 2.0
    distance_ratio: float = 1.5
    clip_factor: float = 0.0
    """B of the next round over the median per-sample norm this round accepted (`next_clip_bound`); 0: no
    per-round bound, members clip to C alone."""
    clip_slack: float = 0.25
    """Relative error of a sketched squared norm tolerated before an update is called longer than B."""
    persistence_ratio: float = 0.0
    """> 0: the persistence tier (`persistent_outliers`): an update off-centre in direction this round whose
    member's mean angular ratio over its rounds exceeds this times the median of those means, or whose mean
    clique ratio is below ``clique_ratio`` times theirs, is rejected on suspicion within the f places left;
    0: no such tier. Needs each member's `AngleHistory` (``decide``'s ``angle_history``), which the daemon does
    not carry."""
    clique_ratio: float = 0.6
    """The persistence tier's bound on a member's mean clique ratio, as a fraction of the median member's."""
    persistence_rounds: int = 2
    """Rounds a member must have been seen (this one included) before the persistence tier may reject it."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The accepted indices (ascending), for each rejected index the rule that rejected it, and the median
    per-sample squared norm of the accepted updates (0.0 if none), from which the next round's bound follows."""

    accepted: tuple[int, ...]
    rejected: dict[int, str]
    median_sq_norm: float = 0.0
    at_bound: int = 0
    """How many accepted updates reached the round's bound B (per-sample squared norm at least `AT_BOUND` B^2):
    clipped to it, by their members, so the median says nothing about how long their steps wanted to be."""
    angles: dict[int, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """With the persistence tier: each index that reached the suspicion tiers and its angular and clique ratios
    this round (`angle_statistics`), which the caller folds into the member's `AngleHistory` once the round is
    committed."""


AT_BOUND = 0.8
"""An accepted update whose per-sample squared norm on the sketch is at least this share of B^2 counts as clipped
to B (an update clipped to B has a sketched squared norm of B^2 within a few percent at k = 1000)."""
CLIP_GROWTH = 1.25
"""B's growth per round while most accepted updates are clipped to it: three times longer honest steps are
followed in five rounds."""
CLIP_FLOOR = 1e-3
"""B never falls below this share of C: far below any honest step, and above the ledger's unit (millionths)."""


def next_clip_bound(rule: RobustRule, previous: float, cap: float, decision: Decision | None) -> float:
    """The per-sample L2 bound B of the next round, from this round's B (``previous``): ``CLIP_GROWTH`` times B
    when more than half the accepted updates were clipped to it (their median only says B; the honest steps
    may need more), else ``clip_factor`` times the median norm this round accepted; within [``CLIP_FLOOR`` C, C]
    (``cap`` = C). ``previous`` again after an aborted round (``decision`` None) or when nothing non-zero was
    accepted. f colluders move the median at most f ranks and are fewer than half of those accepted, so they
    can neither hold B below the honest steps (once most honest updates are clipped, B grows) nor make it grow.
    Only sorting, products and ``math.sqrt``: every replica gets the same bits from the same statistics."""
    if rule.clip_factor <= 0 or decision is None or decision.median_sq_norm <= 0:
        return previous
    if 2 * decision.at_bound > len(decision.accepted):
        wanted = previous * CLIP_GROWTH
    else:
        wanted = rule.clip_factor * math.sqrt(decision.median_sq_norm)
    return min(cap, max(cap * CLIP_FLOOR, wanted))


def decide(rule: RobustRule, sq_norms: np.ndarray, sq_dists: np.ndarray, weights: np.ndarray | None = None,
           history: list[int] | None = None, clip_bound: float | None = None,
           angle_history: list[AngleHistory] | None = None) -> Decision:
    """Apply ``rule`` to the revealed statistics of n weighted vectors: a weight outside (0, 1] is
    rejected, the norm bound comes next, then the distance rule on the survivors, judged per sample
    (`per_sample`) when ``weights`` are given; ``history`` (earlier rejections per update) ranks the
    flagged updates of the capped rules. ``clip_bound`` is the round's per-sample bound B, to which every
    honest member clipped its update before masking: a per-sample norm above it (``clip_slack`` allowed for
    the sketch) is a proof, rejected outright (`clip_bound`) and not capped by f (each such rejection leaves
    one place fewer for the suspicion tier). ``angle_history`` (each update's member's `AngleHistory`) feeds the
    persistence tier (``persistence_ratio`` > 0), which runs after the distance rule on the places it left."""
    if rule.kind not in RULE_KINDS:
        raise ValueError(f"unknown robust rule {rule.kind!r}; expected one of {', '.join(RULE_KINDS)}")
    d = _check_sq_dists(sq_dists)
    n = d.shape[0]
    norms = np.asarray(sq_norms, dtype=np.float64)
    passed = np.ones(n, dtype=bool)
    rejected: dict[int, str] = {}
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        assert w.shape == (n,), "one weight per update"
        passed = (w > 0) & (w <= 1.0)
        rejected = {int(i): "weight_out_of_range" for i in np.flatnonzero(~passed)}
    if rule.bound_sq > 0:
        bounded = norm_bound(norms, rule.bound_sq, rule.slack)
        rejected.update({int(i): "norm_bound" for i in np.flatnonzero(passed & ~bounded)})
        passed &= bounded
    survivors = np.flatnonzero(passed)
    norms, d = norms[survivors], d[np.ix_(survivors, survivors)]
    if weights is not None:
        norms, d = per_sample(norms, d, np.asarray(weights, dtype=np.float64)[survivors])
    left = _Survivors(rule, survivors, norms, d, [history[i] for i in survivors] if history is not None else None)
    if clip_bound is not None:
        left = left.prove(norms <= clip_bound * clip_bound * (1.0 + rule.clip_slack), "clip_bound", rejected)
    if rule.kind == "bounded_distance" and rule.norm_ratio > 0:
        left = left.prove(~adaptive_norm_bound(left.norms, rule.norm_ratio, rule.spread_power), "norm_ratio", rejected)
    keep = _distance_rule(left.rule, left.norms, left.d, left.past)
    rejected.update({int(left.indices[j]): rule.kind for j in np.flatnonzero(~keep)})
    angles: dict[int, tuple[float, float]] = {}
    if rule.persistence_ratio > 0 and len(left.indices) > 0:
        ratios, cliques = angle_statistics(left.norms, left.d, left.rule.f)
        angles = {int(i): pair for i, pair in zip(left.indices.tolist(), zip(ratios, cliques, strict=True), strict=True)}
        if angle_history is not None:
            past = [angle_history[i] for i in left.indices.tolist()]
            keep = _persistence_tier(left, keep, persistent_outliers(
                ratios, cliques, past, rule.persistence_ratio, rule.clique_ratio, rule.persistence_rounds))
            rejected.update({int(left.indices[j]): "persistence" for j in np.flatnonzero(~keep)
                             if int(left.indices[j]) not in rejected})
    accepted = tuple(int(i) for i in left.indices[keep])
    at_bound = 0 if clip_bound is None else int(np.count_nonzero(left.norms[keep] >= AT_BOUND * clip_bound * clip_bound))
    return Decision(accepted, rejected, _median(left.norms[keep].tolist()), at_bound, angles)


def _persistence_tier(left: _Survivors, keep: np.ndarray, outliers: tuple[np.ndarray, list[float]]) -> np.ndarray:
    """``keep`` less the persistent outliers (`persistent_outliers`: flags and scores) among the kept, the highest
    scores first (ties: the lower index goes), within the f places the proofs and the distance rule left."""
    flagged, scores = outliers
    places = left.rule.f - int((~keep).sum())
    worst = sorted((j for j in range(len(keep)) if keep[j] and flagged[j]), key=lambda j: (-scores[j], j))
    capped = keep.copy()
    capped[worst[:max(0, places)]] = False
    return capped


@dataclass(frozen=True, slots=True)
class _Survivors:
    """The updates still in the running, with their per-sample statistics and history, and the rule with
    the f places left for suspicion."""

    rule: RobustRule
    indices: np.ndarray
    norms: np.ndarray
    d: np.ndarray
    past: list[int] | None

    def prove(self, passed: np.ndarray, reason: str, rejected: dict[int, str]) -> _Survivors:
        """Reject outright (``reason``) the updates outside ``passed``: a proof, not a suspicion, so it is not
        capped by f; each one proven Byzantine leaves one place fewer for the suspicion that follows."""
        rejected.update({int(self.indices[j]): reason for j in np.flatnonzero(~passed)})
        past = [p for p, kept in zip(self.past, passed.tolist(), strict=True) if kept] if self.past is not None else None
        return _Survivors(dataclasses.replace(self.rule, f=max(0, self.rule.f - int((~passed).sum()))),
                          self.indices[passed], self.norms[passed], self.d[np.ix_(passed, passed)], past)


def _distance_rule(rule: RobustRule, norms: np.ndarray, d: np.ndarray, history: list[int] | None) -> np.ndarray:
    n = d.shape[0]
    keep = np.ones(n, dtype=bool)
    if rule.kind == "median_distance":
        keep = _at_most_f_rejected(median_distance(d, rule.factor), median_distances(d), rule.f, history)
    elif rule.kind == "median_mad":
        keep = _at_most_f_rejected(median_mad(d, rule.min_ratio, rule.spread_power), median_distances(d), rule.f,
                                   history)
    elif rule.kind == "norm_direction":
        flagged, scores = norm_direction(norms, d, rule.norm_factor, rule.min_cosine)
        keep = _at_most_f_rejected(flagged, scores, rule.f, history)
    elif rule.kind == "bounded_distance":
        flagged, scores = neighbour_outliers(d, rule.f, rule.distance_ratio, rule.spread_power)
        keep = _at_most_f_rejected(~flagged, scores, rule.f, history)
    elif rule.kind == "centroid":
        keep = centroid_outliers(d, rule.f, rule.factor)
    elif rule.kind == "multi_krum" and n - rule.f - 2 >= 1:
        keep = np.zeros(n, dtype=bool)
        keep[multi_krum(d, rule.f, n - rule.f)] = True
    return keep


GENESIS_RULE: dict[str, str | float | int] = {"kind": "bounded_distance", "clip_factor": 1.0, "norm_ratio": 0.0,
                                               "distance_ratio": 2.5, "spread_power": 3}
"""The rule a new genesis writes (`fednode genesis`, `fednode testnet`, `fednode cluster`; `--rule` changes fields
of it): the per-round bound B, enforced as a proof, then a loose distance tier. `RobustRule`'s own field defaults
are each tier's defaults, not the consortium's. Against `bounded_distance` with the adaptive norm tier (norm_ratio
2, distance_ratio 1.5, no B), it rejects far fewer honest updates of hospitals whose data differ, and lets in a
backdoor that stays inside the honest lengths (docs/attacks.md has both)."""


def consortium_rule(f: int, changes: dict[str, float | int] | None = None) -> RobustRule:
    """The rule of a consortium tolerating ``f`` whose genesis is the default with ``changes`` applied."""
    return RobustRule(**{**GENESIS_RULE, **(changes or {}), "f": f})  # type: ignore[arg-type]


def rule_changes(text: str) -> dict[str, float | int]:
    """Fields of the rule to change, from ``clip_factor=1,norm_ratio=0`` (numeric fields only, ``f`` aside: genesis
    fixes it); ValueError with a one-line reason for an unknown field or a value that is not a number."""
    numeric = {f.name: f.type for f in dataclasses.fields(RobustRule) if f.type in ("float", "int") and f.name != "f"}
    changes: dict[str, float | int] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in numeric:
            raise ValueError(f"{name!r} is not one of {', '.join(sorted(numeric))}")
        try:
            number = int(value) if numeric[name] == "int" else float(value)
        except ValueError:
            raise ValueError(f"{name}={value!r} is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{name}={value!r} is not a finite number >= 0")
        changes[name] = number
    return changes
