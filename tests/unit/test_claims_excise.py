"""Claim (red team B5, issue 14 finding 6; docs/validation.md "Not done yet", "Differences of sums across a retried
round"): a round whose blame verdict convicts members L finishes over S \\ L instead of aborting, so that no retry
from the same model reveals the sum over S \\ L next to the sum over S already revealed (their difference is the
convicted member's update, or an honest member's when S' differs from S by one).

The attack this closes: an in-process secure round at N = 7 without validation (`tests.unit.test_secure_round.
Cluster`, the weight liar of `tests.unit.test_claims_weight_liar_unvalidated`): member 3 masks a weight other than it
commits, unmasking S fails the weight check at every honest node, and the blame phase convicts it. The verdict used
to ABORT the round, which was then retried from the same model over S minus the liar: that sum and the sum over S
differ by the liar's masked input (with full-batch training, exactly its update), and by an honest member's input
when the retry's S' lost an honest member instead.

The mechanism (docs/validation.md "Excising convicted survivors", without validation): after a convicting verdict an
`excise` phase in which every member of U1 but the convicted reveals its shares of the convicted members' mask keys
(`smpc.secagg.SecAggParticipant.excise_reveal`, admitted like the unmask reveals), and a `result` over S \\ L
(`smpc.secagg.SecAggParticipant.excise`: Bonawitz's dropout recovery with L dropped after the fact). Planted: the
verdict aborting again (`Transitions._start_excise` returning None) fails both tests.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from node import contract as rc
from node.secure_round import LinearIdentityFailed
from tests.unit.test_claims_weight_liar_unvalidated import LIAR, SEED, N, lying_round
from tests.unit.test_secure_round import Cluster, L


def fail_and_judge(c: Cluster, round_id: int) -> tuple[int, ...]:
    """Unmasking S fails the weight check at every honest node: commit the `fail`, the disclosures and the ledger's
    `verdict`; returns the verdict's convicted."""
    contract, honest = c.contracts[0], sorted(c.alive - {LIAR})
    for i in honest:
        with pytest.raises(LinearIdentityFailed, match="weight"):
            c.rounds[i].try_sum(deadline_passed=False)
    (found,) = {c.rounds[i].failure_fields() for i in honest}
    assert found is not None
    c.commit(c.tx("fail", [1, -1, found[2]], round_id))
    c.commit()
    judged = contract.blame_judgement()
    c.commit(c.tx("verdict", [list(judged.convicted), rc.encode_disputes(judged.disputes)], round_id))
    return judged.convicted


def convicted_liar(rounds: int) -> tuple[Cluster, dict[int, np.ndarray], tuple[int, ...]]:
    """A cluster whose round 1 the liar lied in, judged: the verdict convicted it. Returns the cluster, the updates
    and S."""
    c = Cluster(N, SEED, rounds=rounds)
    rng = np.random.default_rng(SEED)
    updates = {i: rng.normal(0, 0.3, L) for i in range(N)}
    summed = lying_round(c, 1, updates)
    assert fail_and_judge(c, 1) == (LIAR,)
    return c, updates, summed


def released_sum(c: Cluster, updates: dict[int, np.ndarray], members: tuple[int, ...]) -> np.ndarray:
    """What the sum over `members` must be, up to quantization."""
    return np.sum([c.weighting.vector(updates[i], 50) for i in members], axis=0)


def test_what_the_released_sums_differ_by_is_the_convicted_members_update_and_no_retry_follows() -> None:
    """Before the excise phase the verdict aborted, and the retry from the same model released the sum over
    S \\ {liar} next to the sum over S released at unmasking: their difference is the liar's update, or an honest
    member's when S' differs from S by an honest one. Now the round itself finishes over S \\ L: the two sums it
    releases differ by the convicted liar's weighted update alone (its own input, which the claim allows: both its
    secrets are out), and the next round opens from the new model, so no sum over another subset of the same
    updates follows."""
    c, updates, summed = convicted_liar(2)
    first = c.rounds[0].result
    assert first is not None and first.survivors == frozenset(m + 1 for m in summed)
    c.commit()
    second = c.rounds[0].try_excised_sum()
    assert second is not None
    kept = tuple(m for m in summed if m != LIAR)
    new_model = hashlib.sha256(b"excised").digest()
    c.commit(c.tx("result", [list(kept), new_model], 1))
    assert c.contracts[0].state.outcomes[-1].committed and c.contracts[0].state.model_hash == new_model
    scale = c.quant.scale
    ring = np.where(first.total >= 1 << 31, first.total.astype(np.int64) - (1 << 32), first.total.astype(np.int64))
    difference = ring / scale - second
    liar_vector = c.weighting.vector(updates[LIAR], 50)
    liar_vector[-1] = 1.5
    assert np.allclose(difference[:-1], liar_vector[:-1], atol=N / scale), "the two sums differ by the liar's update"
    c.commit(c.tx("open", [new_model, list(range(N))], 2))
    assert c.contracts[0].state.round == 2 and c.contracts[0].state.open, "the next round is a new model's, no retry"


def test_a_convicting_verdict_finishes_the_round_over_s_without_the_convicted() -> None:
    c, updates, summed = convicted_liar(1)
    s = c.contracts[0].state
    assert s.open and s.phase == "excise", (
        f"the verdict ended round 1 ({s.outcomes[-1]}): its sum over S is out, and the retry over S \\ {{{LIAR}}} "
        f"from the same model reveals the liar's update by difference")
    # Every member of U1 but the liar reveals its shares of the liar's mask key; the `result` over S \ L commits
    # with exactly that sum, and the round is not retried.
    kept = tuple(m for m in summed if m != LIAR)
    assert s.expected == tuple(m for m in s.u1 if m != LIAR)
    c.commit()
    expected = released_sum(c, updates, kept)
    for i in sorted(c.alive - {LIAR}):
        total = c.rounds[i].try_excised_sum()  # type: ignore[attr-defined]
        assert total is not None and np.allclose(total, expected, atol=N / c.quant.scale), i
    c.commit(c.tx("result", [list(kept), hashlib.sha256(b"excised").digest()], 1))
    outcome = s.outcomes[-1]
    assert outcome.committed and outcome.round == 1 and outcome.included == kept
    assert outcome.convicted == (LIAR,) and c.contracts[0].finished


def test_an_excised_sum_off_the_committed_weights_of_s_without_l_has_no_result() -> None:
    """The replica's checks of the sum over S \\ L: its weight coordinate must equal the committed weights of S \\ L
    (here one kept member's committed weight is taken as one more at a node: that node has no result, so it votes
    for neither that `result` nor anything but an `abort`)."""
    c, _, _ = convicted_liar(1)
    c.commit()
    node = c.rounds[0]
    node._summed_weights[1] += 1
    with pytest.raises(LinearIdentityFailed, match="S \\\\ L fails the weight check"):
        node.try_excised_sum()
    assert c.rounds[2].try_excised_sum() is not None
