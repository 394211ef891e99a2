"""One participant fed every peer message in any order, with duplicates, garbage and forgeries,
advancing whenever the committed sets allow (as a daemon would): same sum as the in-order run,
and nothing but typed protocol errors along the way."""

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc.errors import MissingMessages, ProtocolViolation
from smpc.messages import MaskedInput, decode
from smpc.prg import SeededRandomBytes
from smpc.secagg import RoundConfig, SecAggParticipant
from smpc.simulation import DropSchedule, build_participants, run_round

LENGTH, N = 8, 5


def _advance(pending: list[Callable[[], object]]) -> None:
    while pending:
        try:
            pending[0]()
        except MissingMessages:
            return
        pending.pop(0)


def _flip(data: bytes, position: int) -> bytes:
    position %= len(data)
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**20), data=st.data())
def test_any_order_duplicates_garbage_and_forgeries_give_the_same_sum(seed: int, data: st.DataObject) -> None:
    config = RoundConfig(b"reorder", 3, tuple(range(1, N + 1)), 2, LENGTH)
    rand = SeededRandomBytes.from_int(seed)
    updates = {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in range(1, N + 1)}
    reference = run_round(config, updates, DropSchedule(), seed)
    keys, shares, inputs = reference.committed
    peer_wire = [item for item in reference.wire if decode(item, config.limits).sender != 1]
    digests = {
        m.sender: m.digest()
        for m in (decode(item, config.limits) for item in reference.wire)
        if isinstance(m, MaskedInput)
    }
    duplicates = data.draw(st.lists(st.sampled_from(peer_wire), max_size=5))
    forgeries = [
        _flip(item, data.draw(st.integers(min_value=0)))
        for item in data.draw(st.lists(st.sampled_from(peer_wire), max_size=5))
    ]
    garbage = data.draw(st.lists(st.binary(max_size=64), max_size=3))
    order = data.draw(st.permutations(peer_wire + duplicates + forgeries + garbage))
    honest = set(peer_wire)

    target: SecAggParticipant = build_participants(config, seed)[0][1]
    target.start()
    pending: list[Callable[[], object]] = [
        lambda: target.on_keys_committed(keys),
        lambda: target.on_shares_committed(shares),
        lambda: target.mask(updates[1]),
        lambda: target.on_inputs_committed({i: digests[i] for i in inputs}),
    ]
    for item in order:
        _advance(pending)
        if item in honest:  # a peer's genuine message is never a violation, in any order, however often
            target.receive(decode(item, config.limits))
        else:
            with pytest.raises(ProtocolViolation):
                target.receive(decode(item, config.limits))
    _advance(pending)
    assert not pending, f"seed={seed}: stuck before {len(pending)} transitions"
    result = target.try_finish()
    assert result is not None, f"seed={seed}"
    assert np.array_equal(result.total, reference.results[1].total), f"seed={seed}"
