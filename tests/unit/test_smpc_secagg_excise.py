"""Excising convicted survivors after unmasking (`smpc.secagg`, module doc "Excising convicted survivors"): the sum
over U3 minus the convicted, from their mask keys' shares, and never both secrets of anyone else."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smpc import field
from smpc.errors import RoundAborted
from smpc.messages import UnmaskShares, decode
from smpc.prg import SeededRandomBytes
from smpc.secagg import RevealRefused, RoundConfig, SecretKind, allowed_excise_reveal
from smpc.simulation import DropSchedule, RoundOutcome, excise_round, run_round

N, T, LENGTH, SEED = 7, 2, 16, 5
CONFIG = RoundConfig(b"excise", 3, tuple(range(1, N + 1)), T, LENGTH)


def unmasked(drops: DropSchedule | None = None) -> tuple[RoundOutcome, dict[int, np.ndarray]]:
    rand = SeededRandomBytes.from_int(SEED)
    updates = {i: np.frombuffer(rand(4 * LENGTH), dtype="<u4").astype(np.uint32) for i in CONFIG.participants}
    outcome = run_round(CONFIG, updates, drops or DropSchedule(), SEED)
    assert outcome.results and not outcome.aborted
    return outcome, updates


@pytest.mark.parametrize("excised", [frozenset({3}), frozenset({2, 6})])
def test_the_sum_over_u3_without_the_excised_is_exact_with_a_dropped_member_too(excised: frozenset[int]) -> None:
    outcome, updates = unmasked(DropSchedule(left_out=frozenset({5})))
    survivors = outcome.committed[2]
    assert 5 not in survivors and excised <= survivors
    done = excise_round(outcome, CONFIG, excised)
    assert not done.aborted and set(done.results) == set(outcome.results) - excised
    expected = field.ring_sum([updates[i] for i in survivors - excised], LENGTH)
    for result in done.results.values():
        assert result.survivors == survivors - excised and result.dropped == frozenset({5}) | excised
        assert np.array_equal(result.total, expected)
    assert all({o for o, _ in m.mask_key_shares} == excised and not m.self_seed_shares for m in done.reveals.values())


def test_an_excise_reveal_opens_the_convicted_only_and_the_guard_still_refuses_anyone_elses_both() -> None:
    outcome, _ = unmasked()
    machine = outcome.machines[1]
    reveal = machine.excise_reveal(frozenset({4}))
    assert reveal is not None and [o for o, _ in reveal.mask_key_shares] == [4]
    assert machine.excise_reveal(frozenset({4})) is reveal, "the same reveal again"
    with pytest.raises(RevealRefused, match=r"\[2\]"):
        machine.guard.check({2: SecretKind.MASK_KEY})  # a survivor not convicted: its self seed went out
    assert machine.guard.revealed()[4] is SecretKind.SELF_SEED, "what went out first stays recorded"


def test_allowed_excise_reveal_refuses_the_excised_sender_self_seeds_and_others_mask_keys() -> None:
    share = (bytes(40),)
    keys = frozenset(CONFIG.participants)
    good = UnmaskShares(3, 1, (), ((4, share[0]),))
    assert allowed_excise_reveal(1, good, keys, {4})
    assert not allowed_excise_reveal(4, dataclasses.replace(good, sender=4), keys, {4}), "from the convicted"
    assert not allowed_excise_reveal(1, dataclasses.replace(good, self_seed_shares=((2, share[0]),)), keys, {4})
    assert not allowed_excise_reveal(1, dataclasses.replace(good, mask_key_shares=((2, share[0]),)), keys, {4})
    assert not allowed_excise_reveal(9, dataclasses.replace(good, sender=9), keys, {4}), "outside U1"


def test_too_few_excise_reveals_or_too_few_left_abort_without_a_sum() -> None:
    outcome, _ = unmasked()
    done = excise_round(outcome, CONFIG, frozenset({3}), withholding=frozenset({1, 2, 4, 5}))
    assert not done.results and len(done.reveals) == T
    assert all("cannot recover the mask-key of 3" in str(a) for a in done.aborted.values())
    outcome, _ = unmasked()
    done = excise_round(outcome, CONFIG, frozenset({1, 2, 3, 4, 5}))
    assert not done.results and all("need t + 1" in str(a) for a in done.aborted.values())


def test_a_reveal_off_its_commitment_is_not_used() -> None:
    """An excise reveal whose share does not open its owner's commitment counts for nothing (the contract refuses
    it on admission; the machine checks again): with only t good ones, no sum."""
    outcome, _ = unmasked()
    done = excise_round(outcome, CONFIG, frozenset({3}), withholding=frozenset({1, 2, 4}))
    assert set(done.reveals) == {5, 6, 7} and len(done.results) == N - 1, "t + 1 reveals are enough"
    forged = {i: dataclasses.replace(m, mask_key_shares=((3, bytes(40)),)) if i == 5 else m
              for i, m in done.reveals.items()}
    unmask = {m.sender: m for m in (decode(d, CONFIG.limits) for d in outcome.wire) if isinstance(m, UnmaskShares)}
    with pytest.raises(RoundAborted, match="cannot recover"):
        outcome.machines[6].excise(frozenset({3}), unmask, forged)
