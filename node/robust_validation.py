"""Validation settings from genesis and the robust decision over a round's committed statistics.

Owns `ValidationSetup`, the genesis check `validation_config_error`, and `decide_accepted`: the statistics
reconstructed from the holders' published shares, judged by the robust rule. Deterministic in committed
data, so the primary and every replica reach the same accepted set. May call `ml.robust`,
`smpc.validation`, `smpc.przs`, `smpc.field` and the records of `node.contract_events`; no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ml.robust import RobustRule, decide, next_clip_bound
from node import contract_events as rc
from node.contract_tx import MAX_ANSWER_BYTES, clip_bound_micro, clip_bound_value
from smpc import field, przs
from smpc import validation_messages as vm
from smpc.quantize import QuantParams
from smpc.validation import SketchParams, ValidationStatistics, reconstruct_statistics, statistic_pairs


@dataclass(frozen=True, slots=True)
class ValidationSetup:
    """Genesis validation settings: sharing degree t_v, count-sketch width, sketch scale, robust rule."""

    degree: int
    sketch: SketchParams
    rule: RobustRule
    clip_l2: float = 10.0
    """C, the clip of every weighted update (genesis `secure_aggregation.clip_l2`): the per-round bound B's cap."""


def validation_config_error(n: int, f: int, degree: int, width: int = 1000) -> str | None:
    """Why genesis must refuse validation with sharing degree t_v among N members of whom f may be Byzantine,
    in one line, or None. Below f, f colluding holders rebuild every member's sketch (with the default
    logistic regression, d = 31 < k, the sketch is the update); the statistics need 2t_v + 1 + f publishers
    to be decided at all (`smpc.shamir.reconstruct`); PRZS keys one secret per t_v-subset (`smpc.przs`); a
    dealer's sealed sketch shares of width k must fit in one `answer` transaction (complaints)."""
    if degree < max(1, f):
        return (f"validation.degree t_v = {degree} is below max(1, f = {f}): {degree + 1} colluding members could "
                "rebuild every member's sketch (and with a sketch as wide as the model, its update)")
    if 2 * degree + 1 + f > n:
        return f"validation.degree t_v = {degree} needs 2t_v + 1 + f = {2 * degree + 1 + f} publishers, more than N = {n}"
    if math.comb(n, degree) > przs.MAX_SUBSETS:
        return f"validation.degree t_v = {degree} at N = {n} means C(N, t_v) = {math.comb(n, degree)} zero-sharing keys"
    answer = vm.ValidationLimits(1, width, degree, frozenset(range(n))).max_bytes + vm.SEAL_OVERHEAD
    if answer > MAX_ANSWER_BYTES:
        return (f"validation at N = {n}, t_v = {degree}, sketch_width = {width}: one holder's sealed sketch shares "
                f"({answer} bytes) exceed an answer transaction ({MAX_ANSWER_BYTES} bytes)")
    return None


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    accepted: tuple[int, ...]
    rejected: dict[int, str]
    statistics: ValidationStatistics
    next_clip_bound_micro: int = 0
    """The next round's bound B in millionths (`ml.robust.next_clip_bound` of this decision); 0: no bound."""

    @property
    def liars(self) -> tuple[int, ...]:
        """The publishers (member indices) whose statistic shares are off the decided polynomial, which agrees
        with 2t_v + 1 + f_eff shares and is the true one (docs/validation.md, G3): each lied, or one of its
        dealers dealt it sketch shares off a polynomial, which nothing proves (red team r9 a1). Recorded as
        evidence in the `accept`, not excluded."""
        return tuple(holder - 1 for holder in self.statistics.inconsistent_publishers)

    def accept_fields(self) -> list[object]:
        """The `accept` transaction's fields for this outcome: [accepted, inconsistent publishers, next B]."""
        return [list(self.accepted), list(self.liars), self.next_clip_bound_micro]

    def agrees(self, check: rc.ValidationCheck) -> bool:
        """Whether an `accept` is ours: the same accepted set, exactly the inconsistent publishers (the ledger's
        evidence must not name an honest publisher, nor leave one out), and the same next bound B."""
        return check.accepted == self.accepted and check.liars == self.liars \
            and check.next_clip_bound_micro == self.next_clip_bound_micro


def decide_accepted(check: rc.ValidationCheck, setup: ValidationSetup, quant: QuantParams) -> ValidationOutcome:
    """Reconstruct the statistics from the holders' published shares and apply the robust rule, with the
    candidates' committed weights (in units of `quant.scale`) and their earlier rejections.

    Deterministic in its inputs (all from committed blocks: `Contract.validation_check`), so the primary
    that proposes an accepted set and every replica that checks it reach the same set; that includes f_eff
    (`check.max_faulty`), how many publishers may lie. The rule's f is genesis f less the members the ledger
    convicted (`check.proven_faulty`: Byzantine by proof, so fewer remain to suspect); not less the members
    f_eff counts as absent, which rests on their being faulty (docs/validation.md, G7), an assumption the
    rule's suspicion does not take (a suspicion among few members aborts the round instead). Raises
    NotEnoughShares or InconsistentShares (the round must abort) and ValueError for a malformed
    publication (excluded from the ledger by the contract (`_check_statistics`) before it gets here).
    """
    published, candidates = dict(check.published), check.candidates
    weights, history = dict(check.weights), dict(check.history)
    assert set(weights) == set(candidates) == set(history), "validation check without every candidate's weight"
    count = len(statistic_pairs(candidates))
    vectors = {holder + 1: field.vector_from_bytes(data, count) for holder, data in published.items()}
    stats = reconstruct_statistics(vectors, [c + 1 for c in candidates], setup.degree, setup.sketch, check.max_faulty)
    position = {c + 1: k for k, c in enumerate(candidates)}
    norms = np.array([stats.norms_sq[c + 1] for c in candidates])
    dists = np.zeros((len(candidates), len(candidates)))
    for (i, j), value in stats.distances_sq.items():
        dists[position[i], position[j]] = dists[position[j], position[i]] = value
    rejected: dict[int, str] = {}
    for i, j in stats.out_of_range:
        if i == j:
            rejected[i - 1] = "statistic_out_of_range"
        else:
            dists[position[i], position[j]] = dists[position[j], position[i]] = OUT_OF_RANGE_DISTANCE
    keep = [k for k, c in enumerate(candidates) if c not in rejected]
    bound = clip_bound_value(check.clip_bound_micro)
    rule = dataclasses.replace(setup.rule, f=max(0, setup.rule.f - check.proven_faulty))
    decision = decide(rule, norms[keep], dists[np.ix_(keep, keep)],
                      np.array([weights[candidates[k]] / quant.scale for k in keep]),
                      [history[candidates[k]] for k in keep], bound)
    accepted = tuple(candidates[keep[k]] for k in decision.accepted)
    rejected.update({candidates[keep[k]]: reason for k, reason in decision.rejected.items()})
    next_bound = 0 if bound is None else clip_bound_micro(next_clip_bound(setup.rule, bound, setup.clip_l2, decision))
    return ValidationOutcome(accepted, rejected, stats, next_bound)


OUT_OF_RANGE_DISTANCE = 1e30
"""A distance that left the proven range (one of its two sketches is not small integers): treat as far."""
