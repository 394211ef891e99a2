"""ml.models, ml.params, ml.train: determinism to the byte, fedavg against a reference, accuracy."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.data import DatasetSpec, SplitSpec, centralized_data, node_data
from ml.models import ModelSpec, benchmark_spec, build_model, check_spec, n_params
from ml.params import initial_params, load_vector, params_hash, to_vector
from ml.train import TrainConfig, check_config, clip_update, evaluate, fedavg, local_train, predict

LOGREG = ModelSpec()
MLP = ModelSpec(kind="mlp", hidden=16)


@pytest.mark.parametrize("spec", [LOGREG, MLP, ModelSpec(kind="mlp", n_features=7, n_classes=3, hidden=5)])
def test_vector_round_trip_and_count(spec: ModelSpec) -> None:
    model = build_model(spec, seed=3)
    vec = to_vector(model)
    assert vec.dtype == np.float32 and vec.shape == (n_params(spec),)
    assert np.array_equal(vec, initial_params(spec, 3))
    other = initial_params(spec, 4)
    load_vector(model, other)
    assert np.array_equal(to_vector(model), other)
    assert sum(p.numel() for p in model.parameters()) == n_params(spec)


def test_load_vector_rejects_wrong_shape_or_dtype() -> None:
    model = build_model(LOGREG, seed=0)
    with pytest.raises(ValueError, match="length 62"):
        load_vector(model, np.zeros(61, dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        load_vector(model, np.zeros(62, dtype=np.float64))


def test_params_hash_is_sha256_of_little_endian_float32() -> None:
    vec = np.array([1.0, -2.5, 3.25], dtype=np.float32)
    assert params_hash(vec) == hashlib.sha256(vec.astype("<f4").tobytes()).digest()
    assert params_hash(vec.astype(">f4")) == params_hash(vec)
    assert params_hash(initial_params(LOGREG, 0)) != params_hash(initial_params(LOGREG, 1))
    with pytest.raises(ValueError):
        params_hash(vec.astype(np.float64))


def test_benchmark_spec_has_about_a_million_parameters() -> None:
    spec = benchmark_spec()
    assert 990_000 <= n_params(spec) <= 1_000_000
    check_spec(spec)


def test_bad_spec_and_config_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        check_spec(ModelSpec(kind="cnn"))
    with pytest.raises(ValueError, match="unknown optimizer"):
        check_config(TrainConfig(optimizer="lbfgs"))
    with pytest.raises(ValueError, match="lr"):
        check_config(TrainConfig(lr=0.0))


def _local(node: int = 0) -> tuple[np.ndarray, np.ndarray]:
    data = node_data(DatasetSpec(), SplitSpec(), 4, node)
    return data.X_train, data.y_train


@pytest.mark.parametrize("cfg", [TrainConfig(), TrainConfig(optimizer="adam", lr=0.01, weight_decay=1e-3)])
def test_local_train_same_seed_same_bytes(cfg: TrainConfig) -> None:
    X, y = _local()
    start = initial_params(MLP, 0)
    a = local_train(MLP, start, X, y, cfg, seed=7)
    b = local_train(MLP, start, X, y, cfg, seed=7)
    c = local_train(MLP, start, X, y, cfg, seed=8)
    assert a.update.dtype == np.float32 and a.update.tobytes() == b.update.tobytes()
    assert a.loss == b.loss and a.n_samples == len(y)
    assert a.update.tobytes() != c.update.tobytes()


_CROSS_PROCESS = """
import numpy as np
from ml.models import ModelSpec
from ml.params import initial_params, params_hash
from ml.train import TrainConfig, fedavg, local_train
spec = ModelSpec(kind="mlp", hidden=16)
g = initial_params(spec, 0)
rng = np.random.default_rng(5)
ups = []
for node in range(3):
    X = rng.normal(size=(50, 30)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=50) > 0).astype(np.int64)
    ups.append(local_train(spec, g, X, y, TrainConfig(), seed=node).update)
print(params_hash(fedavg(g, ups, [1.0, 2.0, 3.0])).hex())
"""


def test_training_and_fedavg_are_identical_across_processes() -> None:
    """Synthetic data keeps the child process light (torch only, no sklearn/pandas import)."""
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()) as here:
        exec(_CROSS_PROCESS, namespace)  # noqa: S102 -- the same constant source the child process runs
    there = subprocess.run([sys.executable, "-c", _CROSS_PROCESS], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert len(here.getvalue().strip()) == 64
    assert there.stdout.strip() == here.getvalue().strip()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    dim=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_fedavg_matches_weighted_mean(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = rng.normal(size=dim).astype(np.float32)
    ups = [rng.normal(size=dim).astype(np.float32) for _ in range(n)]
    weights = rng.uniform(0.5, 100.0, size=n).tolist()
    expected = g.astype(np.float64) + np.average(np.stack(ups).astype(np.float64), axis=0, weights=weights)
    got = fedavg(g, ups, weights)
    assert got.dtype == np.float32
    assert np.allclose(got, expected, rtol=1e-6, atol=1e-6), f"seed={seed}"
    assert fedavg(g, ups, weights).tobytes() == got.tobytes()


def test_clip_update_bounds_the_norm_and_keeps_the_direction() -> None:
    update = np.array([3.0, 4.0], dtype=np.float32)
    assert np.allclose(clip_update(update, 1.0), [0.6, 0.8])
    assert np.array_equal(clip_update(update, 10.0), update)
    assert np.array_equal(clip_update(update, 0.0), update)
    assert clip_update(update, 1.0).dtype == np.float32


def test_fedavg_rejects_bad_input() -> None:
    g = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError):
        fedavg(g, [], [])
    with pytest.raises(ValueError):
        fedavg(g, [np.zeros(3, dtype=np.float32)], [0.0])
    with pytest.raises(ValueError, match="shape"):
        fedavg(g, [np.zeros(4, dtype=np.float32)], [1.0])


def test_training_improves_and_is_deterministic() -> None:
    X, y = _local(1)
    start = initial_params(LOGREG, 0)
    before = evaluate(LOGREG, start, X, y)
    result = local_train(LOGREG, start, X, y, TrainConfig(), seed=0)
    assert local_train(LOGREG, start, X, y, TrainConfig(), seed=0).update.tobytes() == result.update.tobytes()
    after = evaluate(LOGREG, start + result.update, X, y)
    assert after.loss < before.loss and after.accuracy > 0.9
    assert float((predict(LOGREG, start + result.update, X) == y).mean()) == pytest.approx(after.accuracy)


def _federate(split: SplitSpec, rounds: int = 5, n_nodes: int = 4) -> float:
    g = initial_params(LOGREG, 0)
    locals_ = [node_data(DatasetSpec(), split, n_nodes, i) for i in range(n_nodes)]
    for round_id in range(rounds):
        results = [local_train(LOGREG, g, d.X_train, d.y_train, TrainConfig(), seed=round_id * 100 + i)
                   for i, d in enumerate(locals_)]
        g = fedavg(g, [r.update for r in results], [r.n_samples for r in results])
    return evaluate(LOGREG, g, locals_[0].X_test, locals_[0].y_test).accuracy


@pytest.mark.parametrize("split", [SplitSpec(), SplitSpec(kind="dirichlet", alpha=0.5)])
def test_four_nodes_five_rounds_reach_095(split: SplitSpec) -> None:
    assert _federate(split) >= 0.95


def test_centralized_reaches_095() -> None:
    pooled = centralized_data(DatasetSpec())
    result = local_train(LOGREG, initial_params(LOGREG, 0), pooled.X_train, pooled.y_train,
                         TrainConfig(epochs=10), seed=0)
    assert evaluate(LOGREG, initial_params(LOGREG, 0) + result.update, pooled.X_test, pooled.y_test).accuracy >= 0.95
