"""Claim (red team B5, the validated half; docs/validation.md "Excising convicted survivors"): in a VALIDATED round, a
blame verdict convicting members L of S finishes the round over S \\ L instead of aborting, checked by the linear
identity over S \\ L, so that no retry from the same model reveals the sum over S \\ L next to the sum over S.

The attack this closes: an in-process validated round at N = 7 (`tests.unit.test_validator_faults.FaultyCluster`):
member 3 masks its update plus 2^20 per coordinate while sketching the update itself (`lie-identity`), or masks a
weight other than it commits (`lie-weight`). Unmasking S fails the linear identity (the weight check) at every honest
node and the blame phase convicts it. The verdict used to ABORT the validated round, which was then retried from the
same model: the two released sums differ by the convicted member's masked input, or by an honest member's when the
retry's accepted set lost an honest one instead.

The mechanism: the excise phase as without validation (U1 but the convicted reveal L's mask keys), and every holder
of R \\ L sends its share of the sum of the sketches of S \\ L in a sketch-sum message naming L
(`smpc.validation_messages.sign_sum` with `excised`), from which every node reconstructs that sum and checks the
linear identity against the sketch of the excised sum (`SecureRound.try_excised_sum`). Planted: the verdict
aborting again (`_start_excise` returning None for validated rounds) fails all six tests here; the shares over S
taken for those over S \\ L (`_excised_identity_deviation` reading `_sum_shares`) fail all six too (the identity
fails over S \\ L); no check of the named set, no identity over S \\ L, or t_v + 1 + f shares accepted before the
deadline each fail the test named for it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from node import contract as rc
from node.secure_round import LinearIdentityFailed
from smpc import validation_messages as vm
from tests.unit.test_secure_round import CHAIN
from tests.unit.test_validator_faults import (
    LIAR,
    FaultyCluster,
    N,
    accept_decided,
    fail_fields,
    lie_about_weight,
    run,
    unmask_fails,
)


def convict(c: FaultyCluster) -> tuple[int, ...]:
    """Unmasking S fails at every honest node: commit the `fail`, the holders' disclosures and the ledger's verdict;
    returns S."""
    contract = c.contracts[0]
    accept_decided(c)
    summed = contract.state.expected
    assert LIAR in summed and contract.state.phase == "unmask"
    unmask_fails(c)
    c.commit(c.tx("fail", fail_fields(c)))
    c.commit()
    judged = contract.blame_judgement()
    assert (judged.convicted, judged.disputes) == ((LIAR,), ())
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)]))
    return summed


@pytest.mark.parametrize("mode", ["lie-identity", "lie-weight", "weight-in-input"])
def test_a_validated_convicting_verdict_finishes_the_round_over_s_without_the_convicted(mode: str) -> None:
    c, updates = run(None if mode == "weight-in-input" else mode)
    if mode == "weight-in-input":
        lie_about_weight(c)  # LIAR's `input` commits 1.5 times the weight it masked
    summed = convict(c)
    contract = c.contracts[0]
    s = contract.state
    assert s.open and s.phase == "excise" and s.excised == (LIAR,), (
        f"the verdict ended validated round 1 ({s.outcomes[-1]}): its sum over S is out, and the retry over "
        f"S \\ {{{LIAR}}} from the same model reveals the liar's update by difference")
    c.commit()  # the excise reveals
    kept = tuple(m for m in summed if m != LIAR)
    expected = np.sum([c.weighting.vector(updates[i], 50) for i in kept], axis=0)
    for i in sorted(c.alive - {LIAR}):
        total = c.rounds[i].try_excised_sum()
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
    new_model = hashlib.sha256(b"excised").digest()
    c.commit(c.tx("result", [list(kept), new_model]))
    outcome = s.outcomes[-1]
    assert outcome.committed and outcome.round == 1 and outcome.included == kept and outcome.convicted == (LIAR,)
    assert s.model_hash == new_model and s.convicted == (LIAR,)
    assert contract.finished or not s.open, "round 1 is over, committed: no retry from the same model"


def excising(mode: str = "lie-weight") -> tuple[FaultyCluster, dict[int, np.ndarray], np.ndarray]:
    """Round 1 with LIAR convicted and its excise reveals committed; returns the cluster, the updates and the exact
    sum over S \\ L."""
    c, updates = run(mode)
    summed = convict(c)
    c.commit()
    kept = tuple(m for m in summed if m != LIAR)
    return c, updates, np.sum([c.weighting.vector(updates[i], 50) for i in kept], axis=0)


def test_shares_of_the_sketches_sum_over_s_or_another_set_are_never_taken_for_the_sum_over_s_without_l() -> None:
    """A node holding every holder's share of the sum over S (the unmask phase's) but none over S \\ L has no sum over
    S \\ L even past the deadline: it waits (planted: `_excised_identity_deviation` reading the shares over S
    fails this, the identity then failing). Shares naming another set, signed by their holders, are not used either
    (planted: no check of the named set fails this). The shares naming L then give the exact sum."""
    c, _, expected = excising()
    node = c.rounds[0]
    genuine = dict(node._excised_sum_shares)
    assert sorted(genuine) == [h + 1 for h in node._holders if h != LIAR]
    assert sorted(node._sum_shares) == [h + 1 for h in node._holders]
    node._excised_sum_shares.clear()
    assert node.try_excised_sum(deadline_passed=True) is None
    other = c.rounds[1]
    other._excised_sum_shares.clear()
    for x, (named, share) in genuine.items():
        assert named == (LIAR,)
        other.on_sketch_sum(x - 1, vm.sign_sum(CHAIN, c.sign(x - 1), 1, x - 1, share, (LIAR, 5)))
    assert other.violations == [] and len(other._excised_sum_shares) == len(genuine)
    assert other.try_excised_sum(deadline_passed=True) is None
    for x, (_, share) in genuine.items():
        node.on_sketch_sum(x - 1, vm.sign_sum(CHAIN, c.sign(x - 1), 1, x - 1, share, (LIAR,)))
    total = node.try_excised_sum()
    assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale)


def test_a_sum_over_s_without_l_off_the_sketches_sum_fails_the_linear_identity_and_has_no_result() -> None:
    """At a node whose holders' shares over S \\ L reconstruct another sketch sum (here that over S, L's sketch
    included), the excised sum fails the linear identity: no result, raised again on every later call, so that node
    votes for no `result` and, past the deadline, for the `abort` (planted: no identity check over S \\ L fails
    this). The other nodes' sums are exact."""
    c, _, expected = excising("lie-identity")
    node = c.rounds[0]
    node._excised_sum_shares = {x: ((LIAR,), share) for x, share in node._sum_shares.items() if x != LIAR + 1}
    for _ in range(2):
        with pytest.raises(LinearIdentityFailed, match="S \\\\ L fails the linear identity"):
            node.try_excised_sum()
    total = c.rounds[1].try_excised_sum()
    assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale)


def test_every_holder_of_r_without_l_is_awaited_before_the_deadline_and_t_v_plus_1_plus_f_after() -> None:
    """As for the unmask phase's identity: one holder's share over S \\ L missing, a node waits until the grace
    period has passed, then decides from the t_v + 1 + f = 5 it has (planted: any count accepted before the
    deadline fails the first assertion)."""
    c, _, expected = excising()
    node = c.rounds[2]
    node._excised_sum_shares.pop(5 + 1)
    assert node.try_excised_sum(deadline_passed=False) is None
    total = node.try_excised_sum(deadline_passed=True)
    assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale)
