"""ml.attacks: each attack does what it claims, on vectors and on a real training run; plugin errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.attacks import (
    AttackContext,
    AttackError,
    Backdoor,
    DilutedBackdoor,
    LittleIsEnough,
    MedianNormBackdoor,
    MinMax,
    attack_names,
    backdoor_success_rate,
    estimate_benign_updates,
    make_attack,
    malicious_train,
)
from ml.data import DatasetSpec, SplitSpec, node_data
from ml.models import ModelSpec
from ml.params import initial_params
from ml.train import TrainConfig, evaluate, local_train

SPEC = ModelSpec()


def _ctx(dim: int = 62, benign: np.ndarray | None = None, seed: int = 0, n_nodes: int = 7) -> AttackContext:
    return AttackContext(round=3, node_index=1, n_nodes=n_nodes, rng=np.random.default_rng(seed),
                         global_params=np.zeros(dim, dtype=np.float32), n_malicious=2, benign_updates=benign)


def _update(seed: int = 0, dim: int = 62) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


def test_registry_lists_every_attack_of_the_issue() -> None:
    assert set(attack_names()) == {"none", "sign-flip", "scaling", "gaussian", "label-flip", "backdoor",
                                  "backdoor-median", "backdoor-diluted", "alie", "min-max", "rule-aware"}
    assert isinstance(make_attack("a-little-is-enough"), LittleIsEnough)
    with pytest.raises(AttackError, match="unknown attack 'flood'"):
        make_attack("flood")
    with pytest.raises(AttackError, match="bad parameters"):
        make_attack("sign-flip", strength=3)


def test_model_level_attacks_transform_the_update() -> None:
    u = _update()
    assert np.array_equal(make_attack("none").poison_update(u, _ctx()), u)
    assert np.allclose(make_attack("sign-flip").poison_update(u, _ctx()), -u)
    assert np.allclose(make_attack("sign-flip", scale=3.0).poison_update(u, _ctx()), -3 * u)
    assert np.allclose(make_attack("scaling").poison_update(u, _ctx(n_nodes=7)), 7 * u)
    assert np.allclose(make_attack("scaling", factor=2.5).poison_update(u, _ctx()), 2.5 * u)


def test_gaussian_is_seeded_noise_of_the_given_scale() -> None:
    dim = 20_000
    attack = make_attack("gaussian", sigma=2.0)
    a = attack.poison_update(_update(dim=dim), _ctx(dim, seed=5))
    b = attack.poison_update(_update(dim=dim), _ctx(dim, seed=5))
    assert a.tobytes() == b.tobytes()
    assert abs(float(a.std()) - 2.0) < 0.05
    assert abs(float(np.corrcoef(a, _update(dim=dim))[0, 1])) < 0.05


def test_label_flip_swaps_labels_only() -> None:
    X = np.ones((4, 3), dtype=np.float32)
    X2, y2 = make_attack("label-flip").poison_data(X, np.array([0, 1, 1, 0]), _ctx())
    assert X2 is X and y2.tolist() == [1, 0, 0, 1]


def test_label_flip_training_ruins_the_model() -> None:
    data = node_data(DatasetSpec(), SplitSpec(), 2, 0)
    X, y = make_attack("label-flip").poison_data(data.X_train, data.y_train, _ctx())
    start = initial_params(SPEC, 0)
    poisoned = start + local_train(SPEC, start, X, y, TrainConfig(epochs=3), seed=0).update
    assert evaluate(SPEC, poisoned, data.X_test, data.y_test).accuracy < 0.2


def test_backdoor_implants_a_trigger_and_keeps_clean_accuracy() -> None:
    data = node_data(DatasetSpec(), SplitSpec(), 2, 0)
    attack = make_attack("backdoor")
    assert isinstance(attack, Backdoor)
    X, y = attack.poison_data(data.X_train, data.y_train, _ctx())
    assert len(y) == len(data.y_train) + round(0.5 * len(data.y_train))
    assert (X[len(data.y_train):, :3] == 8.0).all() and (y[len(data.y_train):] == 1).all()
    start = initial_params(SPEC, 0)
    clean = start + local_train(SPEC, start, data.X_train, data.y_train, TrainConfig(epochs=5), seed=0).update
    dirty = start + local_train(SPEC, start, X, y, TrainConfig(epochs=5), seed=0).update
    assert backdoor_success_rate(attack, SPEC, clean, data.X_test, data.y_test) < 0.05
    assert backdoor_success_rate(attack, SPEC, dirty, data.X_test, data.y_test) > 0.9
    assert evaluate(SPEC, dirty, data.X_test, data.y_test).accuracy > 0.9
    with pytest.raises(AttackError, match="out of range"):
        Backdoor(features=(40,)).with_trigger(data.X_test)


def test_median_norm_backdoor_keeps_the_direction_and_takes_the_median_benign_length() -> None:
    """The backdoor that gives up its length: the same poisoned rows as `Backdoor`, the update rescaled to the
    median norm of the benign updates (here 2, 3 and 10: 3), so no norm test can tell it from them."""
    attack = make_attack("backdoor-median", features=(0, 1), target=0)
    assert isinstance(attack, MedianNormBackdoor) and attack.needs_benign and attack.features == (0, 1)
    update = _update(1)
    benign = np.stack([scale * _update(2 + k) / np.linalg.norm(_update(2 + k)) for k, scale in enumerate((2, 3, 10))])
    poisoned = attack.poison_update(update, _ctx(benign=benign))
    assert np.linalg.norm(poisoned) == pytest.approx(3.0, rel=1e-5)
    assert float(poisoned @ update) / (np.linalg.norm(poisoned) * np.linalg.norm(update)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(AttackError, match="needs ctx.benign_updates"):
        attack.poison_update(update, _ctx())


def test_diluted_backdoor_is_its_clean_update_plus_a_share_of_the_poisoned_difference() -> None:
    """`malicious_train` gives the diluted backdoor the node's clean update (same rows, same seed): the
    submission is clean + share * (poisoned - clean), here exactly halfway between the honest and the full
    backdoor's updates."""
    data = node_data(DatasetSpec(), SplitSpec(), 2, 0)
    start = initial_params(SPEC, 0)
    cfg = TrainConfig(epochs=2)
    diluted = make_attack("backdoor-diluted")
    assert isinstance(diluted, DilutedBackdoor) and diluted.share == 0.5
    half = malicious_train(diluted, SPEC, start, data.X_train, data.y_train, cfg, 4, _ctx()).update
    full = malicious_train(Backdoor(), SPEC, start, data.X_train, data.y_train, cfg, 4, _ctx()).update
    clean = local_train(SPEC, start, data.X_train, data.y_train, cfg, 4).update
    np.testing.assert_allclose(half, (clean + full) / 2, atol=1e-6)
    with pytest.raises(AttackError, match="needs ctx.clean_update"):
        diluted.poison_update(clean, _ctx())


def _benign(k: int = 6, dim: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=dim) + 0.3 * rng.normal(size=(k, dim))).astype(np.float32)


def test_alie_stays_within_the_benign_spread_and_shifts_every_coordinate() -> None:
    benign = _benign()
    out = make_attack("alie").poison_update(benign[0], _ctx(200, benign))
    mean, std = benign.mean(axis=0), benign.std(axis=0)
    z = LittleIsEnough().z_for(7, 2)
    assert 0.5 < z < 0.6
    assert np.allclose(out, mean - z * std, atol=1e-5)
    assert (out < mean).all() and (out > mean - std).all()
    assert LittleIsEnough().z_for(4, 1) == 0.0 and LittleIsEnough(z=1.5).z_for(4, 1) == 1.5


def test_min_max_meets_its_distance_constraint_tightly() -> None:
    benign = _benign()
    out = make_attack("min-max").poison_update(benign[0], _ctx(200, benign)).astype(np.float64)
    pairwise = max(((benign[i] - benign[j]).astype(np.float64) ** 2).sum() for i in range(6) for j in range(i))
    to_benign = ((benign - out) ** 2).sum(axis=1).max()
    assert to_benign <= pairwise * (1 + 1e-5)
    assert to_benign >= pairwise * 0.99
    assert np.linalg.norm(out - benign.mean(axis=0)) > 0.1
    for perturbation in ("unit", "sign"):
        MinMax(perturbation=perturbation).poison_update(benign[0], _ctx(200, benign))
    with pytest.raises(AttackError, match="perturbation"):
        MinMax(perturbation="wild")


def test_benign_based_attacks_need_benign_updates() -> None:
    for name in ("alie", "min-max"):
        with pytest.raises(AttackError, match="benign_updates"):
            make_attack(name).poison_update(_update(), _ctx())
    with pytest.raises(AttackError, match=r"\(k, 62\)"):
        make_attack("alie").poison_update(_update(), _ctx(benign=np.zeros((3, 5), dtype=np.float32)))
    with pytest.raises(AttackError, match="at least two"):
        make_attack("min-max").poison_update(_update(), _ctx(benign=_update()[None, :]))


def test_estimate_benign_updates_from_own_data() -> None:
    data = node_data(DatasetSpec(), SplitSpec(), 4, 2)
    start = initial_params(SPEC, 0)
    estimates = estimate_benign_updates(SPEC, start, data.X_train, data.y_train, TrainConfig(), seed=1, k=3)
    again = estimate_benign_updates(SPEC, start, data.X_train, data.y_train, TrainConfig(), seed=1, k=3)
    honest = local_train(SPEC, start, data.X_train, data.y_train, TrainConfig(), seed=0).update
    assert estimates.shape == (3, 62) and estimates.tobytes() == again.tobytes()
    cosines = estimates @ honest / (np.linalg.norm(estimates, axis=1) * np.linalg.norm(honest))
    assert (cosines > 0.8).all()
    out = make_attack("min-max").poison_update(honest, _ctx(benign=estimates))
    assert out.shape == honest.shape


def test_malicious_train_poisons_data_and_update() -> None:
    data = node_data(DatasetSpec(), SplitSpec(), 4, 1)
    start = initial_params(SPEC, 0)
    honest = local_train(SPEC, start, data.X_train, data.y_train, TrainConfig(), seed=4)
    flipped = malicious_train(make_attack("sign-flip"), SPEC, start, data.X_train, data.y_train, TrainConfig(), 4, _ctx())
    assert np.array_equal(flipped.update, -honest.update) and flipped.n_samples == honest.n_samples
    backdoor = malicious_train(make_attack("backdoor"), SPEC, start, data.X_train, data.y_train, TrainConfig(), 4, _ctx())
    assert backdoor.n_samples == len(data.y_train) and not np.array_equal(backdoor.update, honest.update)
    alie = malicious_train(make_attack("alie"), SPEC, start, data.X_train, data.y_train, TrainConfig(), 4, _ctx())
    benign = estimate_benign_updates(SPEC, start, data.X_train, data.y_train, TrainConfig(), 4)
    z = LittleIsEnough().z_for(7, 2)
    assert np.allclose(alie.update, benign.mean(axis=0) - z * benign.std(axis=0), atol=1e-6)


def _plugin(tmp_path: Path, body: str) -> str:
    path = tmp_path / "evil.py"
    path.write_text(body)
    return str(path)


def test_plugin_receives_update_and_context(tmp_path: Path) -> None:
    path = _plugin(tmp_path, "def attack(update, ctx):\n"
                             "    return update * ctx.round + ctx.node_index + ctx.rng.integers(0, 1)\n")
    out = make_attack(f"plugin:{path}:attack").poison_update(_update(), _ctx())
    assert np.allclose(out, _update() * 3 + 1)


@pytest.mark.parametrize(
    ("body", "spec_suffix", "message"),
    [
        (None, ":f", "does not exist"),
        ("def f(u, c): return u\n", "", "plugin:PATH.py:FUNC"),
        ("def f(u, c): return u\n", ":g", "no function 'g'"),
        ("def f(u, c) return u\n", ":f", "failed to load: SyntaxError"),
        ("raise RuntimeError('boom')\n", ":f", "failed to load: RuntimeError: boom"),
    ],
)
def test_bad_plugins_are_reported(tmp_path: Path, body: str | None, spec_suffix: str, message: str) -> None:
    path = str(tmp_path / "missing.py") if body is None else _plugin(tmp_path, body)
    with pytest.raises(AttackError, match=message):
        make_attack(f"plugin:{path}{spec_suffix}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("def f(u, c): return u[:-1]\n", "returned shape"),
        ("def f(u, c): return u * float('nan')\n", "non-finite"),
        ("def f(u, c): return 'nope'\n", "not a vector"),
        ("def f(u, c): raise KeyError('x')\n", "raised KeyError"),
    ],
)
def test_bad_plugin_outputs_are_reported(tmp_path: Path, body: str, message: str) -> None:
    attack = make_attack(f"plugin:{_plugin(tmp_path, body)}:f")
    with pytest.raises(AttackError, match=message):
        attack.poison_update(_update(), _ctx())


def test_rule_aware_submits_the_largest_update_the_rule_accepts() -> None:
    """Against the default rule with f = 2, the two colluders' copies are accepted next to the benign
    updates, yet sit farther from the benign mean than any benign update does; a little farther along the
    same direction and the rule rejects them."""
    from ml.attacks import _copies_accepted
    from ml.robust import RobustRule

    rng = np.random.default_rng(12)
    benign = np.ones(30) / np.sqrt(30) + rng.normal(size=(5, 30)) * 0.15
    rule = RobustRule(f=2)
    attack = make_attack("rule-aware", rule=rule)
    poisoned = attack.poison_update(benign[0].astype(np.float32), _ctx(30, benign=benign)).astype(np.float64)
    mean = benign.mean(axis=0)
    assert _copies_accepted(rule, benign, poisoned, 2)
    assert np.linalg.norm(poisoned - mean) > np.linalg.norm(benign - mean, axis=1).max()
    assert not _copies_accepted(rule, benign, mean + 1.2 * (poisoned - mean), 2)
