"""The aggregate cache: callers that wait for the same round's inputs at once compute the new model once."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import trio
import trio.testing

from node import contract as rc
from node.aggregation import Aggregator


class _Content:
    """Plain-mode content: update vectors handed out once `arrived` is set; models remembered by hash."""

    def __init__(self, global_vec: np.ndarray, updates: dict[bytes, np.ndarray]) -> None:
        self.models: dict[bytes, np.ndarray] = {b"global": global_vec}
        self.updates = updates
        self.arrived = trio.Event()
        self.remembered = 0

    async def model(self, model_hash: bytes) -> np.ndarray:
        return self.models[model_hash]

    async def update_vector(self, digest: bytes) -> np.ndarray:
        await self.arrived.wait()
        return self.updates[digest]

    def remember_model(self, vec: np.ndarray) -> bytes:
        self.remembered += 1
        digest = hashlib.sha256(vec.tobytes()).digest()
        self.models[digest] = vec
        return digest


def test_concurrent_callers_of_one_aggregate_apply_it_once() -> None:
    """The unmask-phase precomputation, the primary's proposal and a replica's block check can all be waiting for
    the same inputs; the first to get them computes the model, the others take its hash."""
    updates = {b"u0": np.array([1.0, 2.0, 1.0]), b"u1": np.array([3.0, -2.0, 1.0])}
    content = _Content(np.zeros(2, dtype=np.float32), updates)
    settings = SimpleNamespace(contract=SimpleNamespace(secure=False))
    aggregator = Aggregator(settings, None, content, None, None, None)  # type: ignore[arg-type]
    check = rc.AggregateCheck(1, b"global", ((0, b"u0", 1), (1, b"u1", 1)), b"")
    hashes: list[bytes | None] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lambda: _append(hashes, aggregator.aggregate(check, wait_s=0.0)))
            await trio.testing.wait_all_tasks_blocked()
            content.arrived.set()

    trio.run(main)
    assert content.remembered == 1
    assert len(set(hashes)) == 1 and hashes[0] in content.models
    assert content.models[hashes[0]].tolist() == [2.0, 0.0]


async def _append(out: list[bytes | None], pending) -> None:  # type: ignore[no-untyped-def]
    out.append(await pending)
