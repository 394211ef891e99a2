"""Flat parameter vectors: the form in which models are hashed, masked, shared and averaged.

The vector is every parameter of the module in ``named_parameters()`` order, flattened row-major,
as float32. Its hash is the model's identity on the ledger, so the byte layout is fixed here:
little-endian float32.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ml.models import ModelSpec, check_spec, layer_shapes, n_params


def to_vector(model: nn.Module) -> np.ndarray:
    """All parameters of ``model`` as one new 1-D float32 array."""
    with torch.no_grad():
        flat = [p.detach().reshape(-1).to(torch.float32) for p in model.parameters()]
        return torch.cat(flat).numpy().copy()


def load_vector(model: nn.Module, vec: np.ndarray) -> None:
    """Overwrite the parameters of ``model`` with ``vec`` (the layout of ``to_vector``)."""
    expected = sum(p.numel() for p in model.parameters())
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.shape[0] != expected or vec.dtype.newbyteorder("=") != np.float32:
        raise ValueError(
            f"parameter vector must be 1-D float32 of length {expected}, "
            f"got shape {vec.shape} dtype {vec.dtype}"
        )
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            chunk = vec[offset : offset + p.numel()].reshape(p.shape)
            p.copy_(torch.from_numpy(chunk.astype(np.float32)))
            offset += p.numel()


def params_hash(vec: np.ndarray) -> bytes:
    """SHA-256 of the little-endian float32 bytes of a 1-D float32 vector (32 bytes)."""
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.dtype.newbyteorder("=") != np.float32:
        raise ValueError(f"params_hash needs a 1-D float32 vector, got {vec.dtype} {vec.shape}")
    return hashlib.sha256(vec.astype("<f4", copy=False).tobytes()).digest()


def initial_params(spec: ModelSpec, seed: int) -> np.ndarray:
    """Seeded initial parameters, drawn with numpy so they depend on nothing but (spec, seed).

    Each linear layer gets weight and bias uniform in +-1/sqrt(fan_in), the range torch's own
    ``nn.Linear`` default uses, in the order of ``to_vector`` (weight of shape (out, in), then bias).
    """
    check_spec(spec)
    if spec.kind == "module":
        return _module_initial_params(spec, seed)
    rng = np.random.default_rng([seed, 0x1417])
    pieces = []
    for fan_in, fan_out in layer_shapes(spec):
        bound = 1.0 / np.sqrt(fan_in)
        pieces.append(rng.uniform(-bound, bound, size=fan_in * fan_out + fan_out))
    vec = np.concatenate(pieces).astype(np.float32)
    assert vec.shape == (n_params(spec),)
    return vec


def _module_initial_params(spec: ModelSpec, seed: int) -> np.ndarray:
    """A module model's own initialisation under a seeded torch RNG (`build_model`): the same for every site
    running the same file and the same torch version."""
    from ml.models import build_model

    return to_vector(build_model(spec, seed))
