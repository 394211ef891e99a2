"""Model architectures for tabular data, described by a frozen spec that fits in a genesis file.

A spec plus a seed fixes the initial parameters exactly (see ``ml.params.initial_params``), so every
node builds the same starting model without exchanging it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import skip_init

MODEL_KINDS = ("logreg", "mlp", "module")
MAX_PARAMS = 50_000_000


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """``logreg``: one linear layer (multinomial logistic regression). ``mlp``: linear, ReLU, linear
    with ``hidden`` units. ``hidden`` is ignored for ``logreg``. ``module``: the consortium's own model,
    ``module`` = "FILE.py:FUNC" whose file hash is ``module_sha256`` (see ``ml.custom_model``)."""

    kind: str = "logreg"
    n_features: int = 30
    n_classes: int = 2
    hidden: int = 32
    module: str | None = None
    module_sha256: str | None = None


def check_spec(spec: ModelSpec) -> None:
    """Raise ValueError for a spec no node should build (unknown kind, sizes out of range)."""
    if spec.kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    if spec.n_features < 1 or spec.n_classes < 2 or spec.hidden < 1:
        raise ValueError(f"model sizes out of range: {spec}")
    if n_params(spec) > MAX_PARAMS:
        raise ValueError(f"model has {n_params(spec)} parameters, more than {MAX_PARAMS}")


def layer_shapes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each linear layer, in parameter order (built-in kinds only)."""
    assert spec.kind != "module", "a module model's layers are its own"
    if spec.kind == "logreg":
        return [(spec.n_features, spec.n_classes)]
    return [(spec.n_features, spec.hidden), (spec.hidden, spec.n_classes)]


def n_params(spec: ModelSpec) -> int:
    """Number of scalar parameters (weights and biases) of the model."""
    if spec.kind == "module":
        return _module_size(spec)
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in layer_shapes(spec))


def benchmark_spec(target_params: int = 1_000_000, n_features: int = 30, n_classes: int = 2) -> ModelSpec:
    """An ``mlp`` spec whose parameter count is the closest to ``target_params`` from below; used
    by benchmarks that need a model of a given size (1,000,000 parameters by default)."""
    per_hidden_unit = n_features + 1 + n_classes
    hidden = max(1, (target_params - n_classes) // per_hidden_unit)
    return ModelSpec(kind="mlp", n_features=n_features, n_classes=n_classes, hidden=hidden)


def build_model(spec: ModelSpec, seed: int) -> nn.Module:
    """The torch module for ``spec``, initialised with ``initial_params(spec, seed)``."""
    from ml.params import initial_params

    check_spec(spec)
    if spec.kind == "module":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _architecture(spec)
    return model_at(spec, initial_params(spec, seed))


def model_at(spec: ModelSpec, vec: np.ndarray) -> nn.Module:
    """The torch module for ``spec`` holding the parameters ``vec`` (``to_vector`` order).

    Every round trains from the committed global model: building it from ``initial_params`` first
    would draw (and then overwrite) a fresh random vector of the model's size each time."""
    from ml.params import load_vector

    check_spec(spec)
    with torch.random.fork_rng(devices=[]):
        model = _architecture(spec)
    load_vector(model, vec)
    return model


@functools.lru_cache(maxsize=8)
def _module_size(spec: ModelSpec) -> int:
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in _architecture(spec).parameters())


def _architecture(spec: ModelSpec) -> nn.Module:
    """The layers, uninitialised: ``skip_init`` keeps torch's global RNG untouched, since the
    parameters are loaded from ``initial_params`` right after. A module model is built by its factory."""
    if spec.kind == "module":
        from ml.custom_model import load_factory

        if spec.module is None or spec.module_sha256 is None:
            raise ValueError("model kind 'module' needs 'module' and 'module_sha256'")
        model = load_factory(spec.module, spec.module_sha256)(spec.n_features, spec.n_classes)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model module {spec.module} did not return a torch.nn.Module")
        return model.to(torch.float32)
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(layer_shapes(spec)):
        if index > 0:
            layers.append(nn.ReLU())
        layers.append(skip_init(nn.Linear, fan_in, fan_out, dtype=torch.float32))
    return nn.Sequential(*layers)
