"""Any dropout pattern: the round completes iff t + 1 survive (and reveal), with exactly their sum."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc import field
from smpc.messages import UnmaskShares, decode
from smpc.prg import SeededRandomBytes
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, run_round

LENGTH = 8


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, DropSchedule, int]:
    n = draw(st.integers(min_value=5, max_value=10))
    degree = draw(st.integers(min_value=1, max_value=(n - 1) // 2))
    phase_of = draw(st.lists(st.integers(min_value=0, max_value=7), min_size=n, max_size=n))
    by_phase = [frozenset(i + 1 for i, p in enumerate(phase_of) if p == k) for k in range(5)]
    return n, degree, DropSchedule(*by_phase), draw(st.integers(min_value=0, max_value=2**20))


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_completion_iff_threshold_and_exact_sum(scenario: tuple[int, int, DropSchedule, int]) -> None:
    n, degree, drops, seed = scenario
    rand = SeededRandomBytes.from_int(seed)
    updates = {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in range(1, n + 1)}
    config = RoundConfig(b"c", 1, tuple(range(1, n + 1)), degree, LENGTH)
    outcome = run_round(config, updates, drops, seed)
    gone = drops.before_advertise | drops.before_share | drops.before_mask | drops.before_unmask
    survivors = frozenset(range(1, n + 1)) - (gone - drops.before_unmask) - drops.left_out
    revealers = frozenset(range(1, n + 1)) - gone
    expect_success = len(survivors) >= degree + 1 and len(revealers) >= degree + 1
    assert not outcome.violations, f"seed={seed}"
    assert_never_both(outcome.wire, config, outcome.committed)
    if expect_success:
        assert set(outcome.results) == set(revealers), f"seed={seed} {outcome.aborted}"
        expected = field.ring_sum([updates[i] for i in survivors], LENGTH)
        for result in outcome.results.values():
            assert result.survivors == survivors
            assert np.array_equal(result.total, expected), f"seed={seed}"
    else:
        assert not outcome.results, f"seed={seed}"
        assert set(outcome.aborted) == first_failure_witnesses(n, degree, drops), f"seed={seed}"


def assert_never_both(wire: list[bytes], config: RoundConfig, committed: list[frozenset[int]]) -> None:
    """Every reveal on the wire names survivors' seeds and dropped nodes' keys, never both."""
    for data in wire:
        message = decode(data, config.limits)
        if isinstance(message, UnmaskShares):
            seed_owners = {owner for owner, _ in message.self_seed_shares}
            key_owners = {owner for owner, _ in message.mask_key_shares}
            assert seed_owners == committed[2] and key_owners == committed[1] - committed[2]


def first_failure_witnesses(n: int, degree: int, drops: DropSchedule) -> set[int]:
    """The nodes alive when the first committed set (or the set of revealers) is below t + 1."""
    alive = set(range(1, n + 1)) - drops.before_advertise
    committed = set(alive)
    for dropping, left_out in (
        (drops.before_share, set()),
        (drops.before_mask, set()),
        (drops.before_unmask, drops.left_out),
    ):
        committed -= left_out
        alive -= dropping
        if len(committed) < degree + 1:
            return alive
        committed = set(alive)
    return alive
