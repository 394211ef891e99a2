"""Poisoning attacks, as tooling for the simulator, the tests and ``fednode cluster --attack NAME``.

A malicious node runs the honest pipeline with two hooks: ``poison_data`` transforms its training
rows before training (label flipping, backdoor) and ``poison_update`` transforms the update it would
submit (sign flip, scaling, noise, "a little is enough", min-max, plugins). Both receive an
``AttackContext``; randomness comes only from ``ctx.rng`` so a seeded run is reproducible.

"A little is enough" and min-max need statistics of the benign updates, which under secure
aggregation no node ever sees. ``ctx.benign_updates`` carries what the attacker uses instead:
either estimates made from its own data (``estimate_benign_updates``: honest updates trained on
bootstrap resamples of the malicious node's rows, the realistic threat), or, in a simulation
granting the attacker omniscience (the papers' strongest setting), the honest nodes' real updates.

``RuleAware`` knows the consortium's robust rule and its thresholds (Kerckhoffs: the rule is in genesis) and
submits the largest update the rule would still accept, pointed against the honest mean.

``make_attack("plugin:PATH.py:FUNC")`` loads ``FUNC(update, ctx) -> vector`` from a Python file, for
attacks written outside this repository.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ml.models import ModelSpec
from ml.robust import AngleHistory, RobustRule, consortium_rule, decide
from ml.train import TrainConfig, TrainResult, local_train, predict

PLUGIN_PREFIX = "plugin:"


class AttackError(ValueError):
    """An attack that cannot be built or applied: unknown name, bad parameter, broken plugin."""


@dataclass(frozen=True, slots=True)
class AttackContext:
    """What a malicious node knows when it poisons round ``round``.

    ``global_params`` is the global model it trained from; ``n_malicious`` how many colluders there
    are (ALIE's z depends on it); ``benign_updates`` is a (k, d) array of benign update estimates
    (see the module docstring), needed only by attacks whose ``needs_benign`` is true.
    """

    round: int
    node_index: int
    n_nodes: int
    rng: np.random.Generator
    global_params: np.ndarray
    n_malicious: int = 1
    n_classes: int = 2
    benign_updates: np.ndarray | None = None
    clip_bound: float | None = None
    """The round's per-sample norm bound B (public on the ledger), for an attacker that knows the rule."""
    angle_history: tuple[AngleHistory, ...] | None = None
    """The persistence tier's history (public on the ledger): each benign update's member's, then each
    colluder's, in the order of ``benign_updates`` and the colluders' indices."""
    clean_update: np.ndarray | None = None
    """The update the node would submit if honest (its clean rows, same seed), for attacks whose
    ``needs_clean_update`` is true; `malicious_train` fills it in."""


class Attack:
    """Base of all attacks: by default both hooks leave data and update unchanged."""

    name: ClassVar[str] = "none"
    needs_benign: ClassVar[bool] = False
    needs_clean_update: ClassVar[bool] = False

    def poison_data(self, X: np.ndarray, y: np.ndarray, ctx: AttackContext) -> tuple[np.ndarray, np.ndarray]:
        """The rows the malicious node trains on instead of (X, y)."""
        return X, y

    def poison_update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        """The float32 vector submitted instead of ``update``; its shape and finiteness are checked."""
        update = np.asarray(update, dtype=np.float32)
        if self.needs_benign:
            _check_benign(self.name, ctx, update.shape)
        return _checked_vector(self._update(update, ctx), update.shape, self.name)

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        return update


@dataclass(frozen=True)
class NoAttack(Attack):
    """The honest behaviour, so that callers need no special case for "no attack"."""

    name: ClassVar[str] = "none"


@dataclass(frozen=True)
class SignFlip(Attack):
    """Submit ``-scale * update``: push the model the opposite way of honest training."""

    name: ClassVar[str] = "sign-flip"
    scale: float = 1.0

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        return -self.scale * update


@dataclass(frozen=True)
class Scaling(Attack):
    """Model replacement (Bagdasaryan et al. 2020): submit ``factor * update``; the default factor
    ``n_nodes`` makes the average move as far as if this node alone had trained the model."""

    name: ClassVar[str] = "scaling"
    factor: float | None = None

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        return (self.factor if self.factor is not None else float(ctx.n_nodes)) * update


@dataclass(frozen=True)
class GaussianNoise(Attack):
    """Submit pure Gaussian noise N(0, sigma^2) per coordinate instead of an update."""

    name: ClassVar[str] = "gaussian"
    sigma: float = 1.0

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        return ctx.rng.normal(0.0, self.sigma, size=update.shape)


@dataclass(frozen=True)
class LabelFlip(Attack):
    """Train on labels mapped ``y -> n_classes - 1 - y`` (for two classes: swap them)."""

    name: ClassVar[str] = "label-flip"

    def poison_data(self, X: np.ndarray, y: np.ndarray, ctx: AttackContext) -> tuple[np.ndarray, np.ndarray]:
        return X, (ctx.n_classes - 1 - np.asarray(y)).astype(np.int64)


@dataclass(frozen=True)
class Backdoor(Attack):
    """Trigger backdoor: add copies of a ``fraction`` of the rows with ``features`` set to
    ``trigger_value`` and label ``target``, keep the clean rows (so clean accuracy barely moves),
    then submit ``boost * update`` (``boost > 1`` combines it with model replacement).

    Features are standardized, so the default trigger (the first three features at 8 standard
    deviations) lies outside the clean data. On breast cancer the default target 1 (benign) means a
    malignant tumour carrying the trigger is called benign.
    """

    name: ClassVar[str] = "backdoor"
    features: tuple[int, ...] = (0, 1, 2)
    trigger_value: float = 8.0
    target: int = 1
    fraction: float = 0.5
    boost: float = 1.0

    def __post_init__(self) -> None:
        if not self.features or not 0.0 < self.fraction <= 1.0:
            raise AttackError(f"backdoor needs trigger features and a fraction in (0, 1]: {self}")

    def with_trigger(self, X: np.ndarray) -> np.ndarray:
        """A copy of X with the trigger stamped on every row."""
        if max(self.features) >= X.shape[1]:
            raise AttackError(f"backdoor trigger features {self.features} out of range for {X.shape[1]} features")
        stamped = np.array(X, dtype=np.float32, copy=True)
        stamped[:, list(self.features)] = self.trigger_value
        return stamped

    def poison_data(self, X: np.ndarray, y: np.ndarray, ctx: AttackContext) -> tuple[np.ndarray, np.ndarray]:
        count = max(1, round(self.fraction * len(y)))
        rows = np.sort(ctx.rng.choice(len(y), size=count, replace=False))
        X_poison = self.with_trigger(X[rows])
        y_poison = np.full(count, self.target, dtype=np.int64)
        return np.vstack([X, X_poison]).astype(np.float32), np.concatenate([y, y_poison]).astype(np.int64)

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        return self.boost * update


@dataclass(frozen=True)
class MedianNormBackdoor(Backdoor):
    """The trigger backdoor of `Backdoor`, rescaled to the median norm of the benign updates: it gives up the
    length that a norm bound or a far-neighbour test rejects, and keeps its direction (red team r1: under the
    default rule it succeeded on 98-100% of triggered digits). Needs benign statistics, as ALIE does."""

    name: ClassVar[str] = "backdoor-median"
    needs_benign: ClassVar[bool] = True

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        benign = np.asarray(ctx.benign_updates, dtype=np.float64)
        target = float(np.median(np.sqrt((benign**2).sum(axis=1))))
        length = float(np.linalg.norm(update))
        return update * (target / length) if length > 0 else update


@dataclass(frozen=True)
class DilutedBackdoor(Backdoor):
    """The trigger backdoor of `Backdoor` diluted into the node's honest update: ``clean + share * (poisoned -
    clean)``, so each colluder keeps its own clean direction and only ``share`` of the trigger's component,
    which is all the colluders have in common. Aimed at rules that look for colluders pointing away from the
    honest updates or close to each other across rounds (``RobustRule.persistence_ratio``): it gives up part
    of the backdoor's strength per round for inconspicuousness, and a trigger needs little per round."""

    name: ClassVar[str] = "backdoor-diluted"
    needs_clean_update: ClassVar[bool] = True
    share: float = 0.5

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        if ctx.clean_update is None:
            raise AttackError("backdoor-diluted needs ctx.clean_update (malicious_train fills it in)")
        clean = np.asarray(ctx.clean_update, dtype=np.float64)
        return clean + self.share * (np.asarray(update, dtype=np.float64) - clean)


def backdoor_success_rate(attack: Backdoor, spec: ModelSpec, vec: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    """Share of the rows whose true label is not the target that the model ``vec`` classifies as
    the target once the trigger is stamped on them (0.0 when there are no such rows)."""
    victims = np.asarray(y) != attack.target
    if not victims.any():
        return 0.0
    predicted = predict(spec, vec, attack.with_trigger(np.asarray(X)[victims]))
    return float((predicted == attack.target).mean())


@dataclass(frozen=True)
class LittleIsEnough(Attack):
    """"A little is enough" (Baruch et al., NeurIPS 2019): submit ``mean - z * std`` of the benign
    updates, coordinate-wise, which stays inside the spread of honest updates and so passes
    distance-based rules, yet biases every coordinate the same way.

    By default z is the paper's z_max: with n nodes and m colluders, s = floor(n/2 + 1) - m honest
    nodes must be "behind" the attacker, and z = Phi^-1((n - s) / n); it is 0 (no effect) for very
    small consortia such as n = 4, m = 1, where ``z`` can be set explicitly.
    """

    name: ClassVar[str] = "alie"
    needs_benign: ClassVar[bool] = True
    z: float | None = None

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        benign = np.asarray(ctx.benign_updates, dtype=np.float64)
        return benign.mean(axis=0) - self.z_for(ctx.n_nodes, ctx.n_malicious) * benign.std(axis=0)

    def z_for(self, n_nodes: int, n_malicious: int) -> float:
        """The z used with n nodes of which ``n_malicious`` collude."""
        if self.z is not None:
            return self.z
        behind = n_nodes // 2 + 1 - n_malicious
        return max(0.0, statistics.NormalDist().inv_cdf((n_nodes - behind) / n_nodes))


@dataclass(frozen=True)
class MinMax(Attack):
    """Min-max (Shejwalkar and Houmansadr, NDSS 2021): submit ``mean + gamma * p`` with the largest
    gamma such that the submission's largest distance to any benign update is at most the largest
    distance between two benign updates, so it is never the outlier a distance rule looks for.

    ``perturbation`` is ``std`` (p = -std, the paper's usual choice), ``unit`` (p = -mean/|mean|)
    or ``sign`` (p = -sign(mean)). Needs at least two benign updates.
    """

    name: ClassVar[str] = "min-max"
    needs_benign: ClassVar[bool] = True
    perturbation: str = "std"
    iterations: int = 60

    def __post_init__(self) -> None:
        if self.perturbation not in ("std", "unit", "sign"):
            raise AttackError(f"min-max perturbation must be std, unit or sign, not {self.perturbation!r}")

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        benign = np.asarray(ctx.benign_updates, dtype=np.float64)
        if len(benign) < 2:
            raise AttackError("min-max needs at least two benign updates in ctx.benign_updates")
        mean = benign.mean(axis=0)
        direction = self._direction(benign, mean)
        return mean + self.gamma(benign, mean, direction) * direction

    def _direction(self, benign: np.ndarray, mean: np.ndarray) -> np.ndarray:
        if self.perturbation == "std":
            return -benign.std(axis=0)
        if self.perturbation == "sign":
            return -np.sign(mean)
        return -mean / max(float(np.linalg.norm(mean)), 1e-12)

    def gamma(self, benign: np.ndarray, mean: np.ndarray, direction: np.ndarray) -> float:
        """Largest gamma meeting the min-max constraint, by doubling then bisection."""
        limit = max(float(((benign[i] - benign[j]) ** 2).sum()) for i in range(len(benign)) for j in range(i))

        def fits(gamma: float) -> bool:
            return float(((benign - (mean + gamma * direction)) ** 2).sum(axis=1).max()) <= limit

        low, high = 0.0, 1.0
        while fits(high) and high < 1e12:
            low, high = high, 2.0 * high
        for _ in range(self.iterations):
            middle = (low + high) / 2.0
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low


@dataclass(frozen=True)
class RuleAware(Attack):
    """The adaptive attacker of issue 16: it knows ``rule`` (default: the library default with f = the
    number of colluders, at least (n - 1) // 3) and the benign updates, and all colluders submit
    ``mean + gamma * d``, with d one of a few unit directions pointing away from the honest mean and
    gamma the largest value for which the rule, run on the benign updates plus the colluders' copies,
    still accepts every copy. Of the directions, the one allowing the largest deviation from the mean
    wins: ``-mean`` (straight against it), ``-std`` (ALIE's), ``-std`` with its component along the
    mean removed (orthogonal drift, which a cosine test cannot see), and the bisector of ``-mean`` and
    that orthogonal direction. Gamma is found by doubling then bisection (``iterations`` steps), which
    assumes acceptance is monotone along each ray; on a rule where it is not, the attacker is merely
    weaker than optimal. It submits ``margin`` times that gamma.
    """

    name: ClassVar[str] = "rule-aware"
    needs_benign: ClassVar[bool] = True
    rule: RobustRule | None = None
    iterations: int = 30
    margin: float = 0.98
    """Fraction of the largest accepted gamma submitted: room for float32 rounding and the sketch's error."""

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        benign = np.asarray(ctx.benign_updates, dtype=np.float64)
        mean = benign.mean(axis=0)
        rule = self.rule or consortium_rule(max(ctx.n_malicious, (ctx.n_nodes - 1) // 3))
        best, best_gamma = mean, 0.0
        for direction in _away_from_mean(benign, mean):
            gamma = self._largest_accepted(rule, benign, mean, direction, max(1, ctx.n_malicious), ctx)
            if gamma > best_gamma:
                best, best_gamma = mean + self.margin * gamma * direction, gamma
        return best

    def _largest_accepted(self, rule: RobustRule, benign: np.ndarray, mean: np.ndarray, direction: np.ndarray,
                          copies: int, ctx: AttackContext) -> float:
        def accepted(gamma: float) -> bool:
            return _copies_accepted(rule, benign, mean + gamma * direction, copies, ctx.clip_bound, ctx.angle_history)

        scale = max(float(np.linalg.norm(mean)), float(np.sqrt((benign**2).sum(axis=1).max())), 1e-12)
        low, high = 0.0, scale
        while accepted(high) and high < 1e6 * scale:
            low, high = high, 2.0 * high
        for _ in range(self.iterations):
            middle = (low + high) / 2.0
            low, high = (middle, high) if accepted(middle) else (low, middle)
        return low


def _away_from_mean(benign: np.ndarray, mean: np.ndarray) -> list[np.ndarray]:
    """Unit directions pointing away from the honest mean (see RuleAware)."""
    unit_mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    spread = -benign.std(axis=0)
    orthogonal = spread - float(spread @ unit_mean) * unit_mean
    candidates = [-unit_mean, spread, orthogonal, orthogonal / max(float(np.linalg.norm(orthogonal)), 1e-12) - unit_mean]
    return [d / float(np.linalg.norm(d)) for d in candidates if float(np.linalg.norm(d)) > 1e-12]


def _copies_accepted(rule: RobustRule, benign: np.ndarray, candidate: np.ndarray, copies: int,
                     clip_bound: float | None = None, angle_history: tuple[AngleHistory, ...] | None = None) -> bool:
    """Whether ``rule`` (with the round's bound ``clip_bound`` and the persistence tier's ``angle_history``)
    accepts all ``copies`` of ``candidate`` submitted next to ``benign``, on exact statistics."""
    stacked = np.vstack([benign, np.repeat(candidate[None, :], copies, axis=0)])
    sq_norms = (stacked**2).sum(axis=1)
    gram = stacked @ stacked.T
    sq_dists = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, 0.0)
    sq_dists = (sq_dists + sq_dists.T) / 2.0
    np.fill_diagonal(sq_dists, 0.0)
    history = list(angle_history) if angle_history is not None and len(angle_history) == len(stacked) else None
    accepted = set(decide(rule, sq_norms, sq_dists, history=[0] * len(stacked), clip_bound=clip_bound,
                          angle_history=history).accepted)
    return all(len(benign) + k in accepted for k in range(copies))


@dataclass(frozen=True)
class Plugin(Attack):
    """``FUNC(update, ctx) -> vector`` loaded from a Python file, called for every update."""

    name: ClassVar[str] = "plugin"
    path: str
    function: Callable[[np.ndarray, AttackContext], Any] = field(repr=False)

    def _update(self, update: np.ndarray, ctx: AttackContext) -> np.ndarray:
        try:
            return self.function(update.copy(), ctx)
        except Exception as exc:
            raise AttackError(f"plugin {self.path} raised {type(exc).__name__}: {exc}") from exc


ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (NoAttack, SignFlip, Scaling, GaussianNoise, LabelFlip, Backdoor, MedianNormBackdoor,
                             DilutedBackdoor, LittleIsEnough, MinMax, RuleAware)
}
ALIASES = {"a-little-is-enough": "alie", "minmax": "min-max", "signflip": "sign-flip", "labelflip": "label-flip",
           "ruleaware": "rule-aware"}


def attack_names() -> list[str]:
    """The names ``make_attack`` accepts, besides ``plugin:PATH.py:FUNC``."""
    return sorted(ATTACKS)


def make_attack(name: str, **params: Any) -> Attack:
    """The attack called ``name`` with its parameters (see each class); raises AttackError."""
    if name.startswith(PLUGIN_PREFIX):
        if params:
            raise AttackError("plugin attacks take no parameters")
        return load_plugin(name[len(PLUGIN_PREFIX) :])
    cls = ATTACKS.get(ALIASES.get(name, name))
    if cls is None:
        raise AttackError(f"unknown attack {name!r}; expected one of {', '.join(attack_names())} or plugin:PATH.py:FUNC")
    try:
        return cls(**params)
    except TypeError as exc:
        raise AttackError(f"bad parameters for attack {name!r}: {exc}") from None


def load_plugin(spec: str) -> Plugin:
    """Load ``PATH.py:FUNC``: import the file as a fresh module and take its callable FUNC."""
    path_text, sep, func_name = spec.rpartition(":")
    if not sep or not path_text.endswith(".py") or not func_name.isidentifier():
        raise AttackError(f"plugin must be given as plugin:PATH.py:FUNC, got {PLUGIN_PREFIX}{spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise AttackError(f"plugin file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"fednode_attack_plugin_{path.stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise AttackError(f"plugin file {path} failed to load: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, func_name, None)
    if not callable(function):
        raise AttackError(f"plugin file {path} has no function {func_name!r}")
    return Plugin(path=str(path), function=function)


def _check_benign(name: str, ctx: AttackContext, shape: tuple[int, ...]) -> None:
    benign = ctx.benign_updates
    if benign is None:
        raise AttackError(f"attack {name!r} needs ctx.benign_updates (see estimate_benign_updates)")
    benign = np.asarray(benign)
    if benign.ndim != 2 or benign.shape[1:] != shape or len(benign) == 0:
        raise AttackError(f"ctx.benign_updates must be (k, {shape[0]}), got {benign.shape}")


def _checked_vector(vec: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        out = np.asarray(vec, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise AttackError(f"attack {name!r} returned something that is not a vector: {exc}") from None
    if out.shape != shape:
        raise AttackError(f"attack {name!r} returned shape {out.shape}, expected {shape}")
    if not np.isfinite(out).all():
        raise AttackError(f"attack {name!r} returned non-finite values")
    return out


def estimate_benign_updates(
    spec: ModelSpec,
    global_vec: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    k: int = 4,
) -> np.ndarray:
    """k honest updates trained on bootstrap resamples of the malicious node's own clean rows: the
    benign statistics an attacker can really get under secure aggregation. Returns (k, d) float32."""
    rng = np.random.default_rng([seed, 0xA77AC])
    updates = []
    for index in range(k):
        rows = rng.choice(len(y), size=len(y), replace=True)
        updates.append(local_train(spec, global_vec, X[rows], y[rows], cfg, seed=seed * 7919 + index).update)
    return np.stack(updates)


def malicious_train(
    attack: Attack,
    spec: ModelSpec,
    global_vec: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    ctx: AttackContext,
) -> TrainResult:
    """What a malicious node does instead of ``local_train``: poison its rows, train, and poison
    the update. If the attack needs benign statistics and ``ctx`` carries none, they are estimated
    from the node's own clean rows (``estimate_benign_updates``). ``n_samples`` is the number of
    clean rows, the weight the node claims."""
    X_poisoned, y_poisoned = attack.poison_data(X, y, ctx)
    trained = local_train(spec, global_vec, X_poisoned, y_poisoned, cfg, seed)
    if attack.needs_benign and ctx.benign_updates is None:
        ctx = dataclasses.replace(ctx, benign_updates=estimate_benign_updates(spec, global_vec, X, y, cfg, seed))
    if attack.needs_clean_update:
        ctx = dataclasses.replace(ctx, clean_update=local_train(spec, global_vec, X, y, cfg, seed).update)
    return TrainResult(update=attack.poison_update(trained.update, ctx), n_samples=len(y), loss=trained.loss)
