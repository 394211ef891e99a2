"""Any dropout pattern and any convicted set L of U3: excising L gives exactly the sum over U3 minus L iff t + 1
members remain and t + 1 holders reveal, and no owner outside L ever has shares of both its secrets revealed
(`smpc.secagg`, "Excising convicted survivors"; docs/validation.md, the section of that name)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc import field
from smpc.messages import UnmaskShares, decode
from smpc.prg import SeededRandomBytes
from smpc.secagg import RoundConfig
from smpc.simulation import DropSchedule, excise_round, run_round

LENGTH = 8


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, DropSchedule, frozenset[int], frozenset[int], int]:
    n = draw(st.integers(min_value=5, max_value=10))
    degree = draw(st.integers(min_value=1, max_value=(n - 1) // 2))
    ids = list(range(1, n + 1))
    drops = DropSchedule(before_unmask=frozenset(draw(st.lists(st.sampled_from(ids), max_size=2))),
                         left_out=frozenset(draw(st.lists(st.sampled_from(ids), max_size=2))))
    excised = frozenset(draw(st.lists(st.sampled_from(ids), min_size=1, max_size=n)))
    withholding = frozenset(draw(st.lists(st.sampled_from(ids), max_size=n)))
    return n, degree, drops, excised, withholding, draw(st.integers(min_value=0, max_value=2**20))


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_excision_is_exact_iff_enough_remain_and_never_reveals_both_secrets_of_anyone_else(
        scenario: tuple[int, int, DropSchedule, frozenset[int], frozenset[int], int]) -> None:
    n, degree, drops, excised, withholding, seed = scenario
    rand = SeededRandomBytes.from_int(seed)
    updates = {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in range(1, n + 1)}
    config = RoundConfig(b"c", 1, tuple(range(1, n + 1)), degree, LENGTH)
    outcome = run_round(config, updates, drops, seed)
    if not outcome.results:
        return  # unmasking aborted: nothing to excise (test_smpc_secagg_dropouts)
    survivors = outcome.committed[2]
    excised = excised & survivors
    if not excised:
        return
    done = excise_round(outcome, config, excised, withholding)
    kept = survivors - excised
    revealers = set(outcome.results) - excised - withholding
    where = f"seed={seed} n={n} t={degree} U3={sorted(survivors)} L={sorted(excised)} revealers={sorted(revealers)}"
    if len(kept) >= degree + 1 and len(revealers) >= degree + 1:
        expected = field.ring_sum([updates[i] for i in kept], LENGTH)
        assert set(done.results) == set(outcome.results) - excised and not done.aborted, where
        for result in done.results.values():
            assert result.survivors == kept and np.array_equal(result.total, expected), where
    else:
        assert not done.results and set(done.aborted) == set(outcome.results) - excised, where
    revealed: dict[int, set[str]] = {}
    unmask = [m for m in (decode(d, config.limits) for d in outcome.wire) if isinstance(m, UnmaskShares)]
    for message in unmask + list(done.reveals.values()):
        for owner, _ in message.self_seed_shares:
            revealed.setdefault(owner, set()).add("seed")
        for owner, _ in message.mask_key_shares:
            revealed.setdefault(owner, set()).add("key")
    both = {owner for owner, kinds in revealed.items() if len(kinds) == 2}
    assert both <= excised, f"{where}: both secrets of {sorted(both - excised)} revealed"
