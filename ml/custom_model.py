"""A consortium's own model: a Python file whose sha256 genesis pins, so every site runs the same code.

Genesis names it as `model = {"kind": "module", "module": "FILE.py:FUNC", "module_sha256": "<hex>", ...}`;
`FUNC(n_features, n_classes)` returns a `torch.nn.Module` mapping a float32 batch of features to class
logits. The file is resolved next to the genesis file. Loading it runs its code, which is why the hash is
checked first: a site whose copy differs by one byte refuses to start, naming both hashes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from torch import nn

Factory = Callable[[int, int], nn.Module]


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ValueError(f"model module {path}: {exc.strerror}") from None


def split_reference(reference: str) -> tuple[Path, str]:
    path, sep, func = reference.rpartition(":")
    if not sep or not path.endswith(".py") or not func.isidentifier():
        raise ValueError(f"model module {reference!r} must be FILE.py:FUNC")
    return Path(path), func


@functools.lru_cache(maxsize=8)
def load_factory(reference: str, expected_sha256: str) -> Factory:
    """FUNC of FILE.py, after checking the file's hash against genesis (cached per reference and hash)."""
    path, func = split_reference(reference)
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ValueError(f"model module {path} has sha256 {actual} but genesis pins {expected_sha256}: this site "
                         f"must run the consortium's exact file")
    spec = importlib.util.spec_from_file_location(f"fednode_model_{actual[:16]}", path)
    assert spec is not None and spec.loader is not None, "a .py path always has a loader"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, func, None)
    if callable(factory):
        return factory
    raise ValueError(f"model module {path} has no function {func}")
