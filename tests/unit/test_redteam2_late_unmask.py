"""Red team 2 (issue 14, late unmasking): `SecAggParticipant.recoverable` is meant to let a node go late on unmasking
only when `try_finish(deadline_passed=True)` then completes, so that honest nodes going late on different reveals
(gossip reaches them in different orders) do not disagree, some unmasking and some aborting (commit a6ac926).

The adversary: member 7 of N = 7 (t = 2), with its real key, deals its self-seed shares off one polynomial (holder
6's share is shifted) and commits, per share, exactly to what it sent, so that every share opens its commitment and
no holder can tell; then it withholds its own reveal, so that every honest node must go late. On gossip, node 1 went
late on the reveals of 1, 2, 3 (on the true polynomial), node 5 on those of 5, 6, 1 (one shifted): node 1 unmasked
the exact sum and node 5 aborted naming 7. The fix: the reveals are unmask-phase transactions, and every node goes
late on the committed reveals only, whatever gossip brought it, so the ledger's order decides for all alike.

Second (the bench, G7): a member whose committed shares contradict its advert aborted the unmask phase at every
honest node, and the abort named nobody on the ledger. Now the committed reveals prove it, and the abort convicts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from smpc import field, shamir
from smpc.errors import RoundAborted
from smpc.messages import UnmaskShares
from smpc.secagg import SecAggParticipant
from tests.unit.test_claims_bench import ROUNDS, Consortium
from tests.unit.test_contract import tx
from tests.unit.test_contract_reveals import DEALER, dealt
from tests.unit.test_contract_secure_phases import ALL
from tests.unit.test_smpc_secagg_protocol import Harness, make_updates, plain_sum

N, DEGREE, SHIFTED = 7, 2, 6
BAD_DEALER = DEALER
"""The contract index of the bad dealer at N = 4 (participant id 4)."""
SHIFTED_HOLDERS = (2, 3)


_Sharing = Callable[[bytes, int, Sequence[int], field.RandomBytes], dict[int, field.FieldArray]]


def _shifting(holders: tuple[int, ...]) -> _Sharing:
    """The bad dealer's sharing: honest, but the shares of `holders` are off the polynomial by one."""
    def share(secret: bytes, degree: int, ids: Sequence[int], rand: field.RandomBytes) -> dict[int, field.FieldArray]:
        shares = shamir.share_vector(shamir.secret_to_field(secret), degree, ids, rand)
        for holder in holders:
            shares[holder] = field.add(shares[holder], np.ones_like(shares[holder]))
        return shares
    return share


def _to_reveals(monkeypatch: pytest.MonkeyPatch, n: int, degree: int, shifted: tuple[int, ...]
                ) -> tuple[Harness, dict[int, UnmaskShares], dict[int, np.ndarray]]:
    """A round of `n` machines up to the reveals, in which member `n` dealt its secrets' shares to `shifted` off the
    polynomial and committed, per share, exactly to what it sent (so every share opens its commitment). Returns
    the machines (no reveal delivered), each member's reveal and the updates."""
    harness = Harness(n=n, degree=degree)
    harness.to_masked_input_phase(monkeypatch, n, _shifting(shifted))
    updates = make_updates(n, seed=21)
    inputs = {i: machine.mask(updates[i]) for i, machine in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: message.digest() for i, message in inputs.items()}
    reveals = {}
    for i, machine in harness.machines.items():
        reveal = machine.on_inputs_committed(digests)
        assert reveal is not None
        reveals[i] = reveal
    return harness, reveals, updates


def _outcome(machine: SecAggParticipant, committed: frozenset[int]) -> str | np.ndarray:
    """What the node reaches going late on the `committed` reveals (the shell's `enough_reveals` and `try_sum`)."""
    try:
        result = machine.try_finish(deadline_passed=True, committed=committed)
    except RoundAborted as aborted:
        return f"aborted, culprit {aborted.culprit}"
    assert result is not None
    return result.total


@pytest.mark.parametrize("committed", [(1, 2, 3), (SHIFTED, 1, 5), (1, 2, 3, 4, 5, SHIFTED)])
def test_two_honest_nodes_going_late_on_different_reveals_reach_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch, committed: tuple[int, ...],
) -> None:
    """Gossip gives node 1 the reveals of 2 and 3, node 5 those of 6 and 1 (the dealer withholds its own); the
    ledger commits `committed`, which both are fed. Both reach what the committed reveals decide: the exact sum
    without 6's shifted share, the dealer named with it."""
    harness, reveals, updates = _to_reveals(monkeypatch, N, DEGREE, (SHIFTED,))
    first, second = harness.machines[1], harness.machines[5]
    for sender in (2, 3):
        first.receive(reveals[sender])
    for sender in (SHIFTED, 1):
        second.receive(reveals[sender])
    for machine in (first, second):
        for sender in set(committed) - {machine.me}:
            machine.receive(reveals[sender])
    proven = SHIFTED in committed
    for machine in (first, second):
        assert machine.recoverable(frozenset(committed)) is not proven, machine.me
    first_outcome, second_outcome = (_outcome(m, frozenset(committed)) for m in (first, second))
    if proven:
        assert first_outcome == second_outcome == f"aborted, culprit {N}"
    else:
        expected = plain_sum(updates, frozenset(harness.machines))
        assert isinstance(first_outcome, np.ndarray) and np.array_equal(first_outcome, expected)
        assert isinstance(second_outcome, np.ndarray) and np.array_equal(second_outcome, expected)


def test_a_bad_dealer_aborts_the_unmask_phase_at_every_honest_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """At N = 4, t = 1, the dealer shifts the shares of two holders: with every reveal in (no late path, no timing)
    each honest node aborts naming the dealer (`RoundAborted.culprit`); on the ledger the same reveals convict it
    (`test_a_member_that_deals_badly_every_round_is_benched_like_a_withholder`)."""
    harness, reveals, _ = _to_reveals(monkeypatch, 4, 1, (2, 3))
    for reveal in reveals.values():
        harness.deliver(reveal)
    for i in (1, 2, 3):
        with pytest.raises(RoundAborted) as aborted:
            harness.machines[i].try_finish()
        assert aborted.value.culprit == 4, i


class _BadDealerConsortium(Consortium):
    """Validated rounds at N = 4 in which member `BAD_DEALER` takes part in every phase it may, dealing the shares of
    holders 2 and 3 off its polynomial (`tests.unit.test_contract_reveals.dealt`); every member of U1 reveals on the
    ledger, and the primary ends the unmask phase as `Proposer._unmask_step` does."""

    def inputs(self, phase: str, members: tuple[int, ...], round_id: int | None = None) -> list[bytes]:
        r = self.s.round
        if phase == "keys":
            return [tx("sa", a, r, dealt(r, ALL, (), SHIFTED_HOLDERS)[0][a]) for a in members]
        if phase == "shares":
            return [tx("sa", a, r, dealt(r, self.s.u1, (), SHIFTED_HOLDERS)[1][a]) for a in members]
        return super().inputs(phase, members, round_id)

    def round(self, round_id: int) -> bool:
        self.commit(self.duty("open", round_id, self.s.model_hash, list(ALL)))
        expected = BAD_DEALER in self.s.expected
        while self.s.phase != "validate":
            self.close_phase(round_id)
        publishers = self.s.expected
        self.commit(*self.inputs("validate", publishers), self.duty("accept", round_id, list(publishers), [], 0))
        assert self.s.phase == "unmask"
        reveals = dealt(round_id, self.s.u1, self.s.expected, SHIFTED_HOLDERS)[2]
        self.commit(*(tx("sa", a, round_id, reveals[a]) for a in self.s.u1))
        if self.c.proven_dealers():
            self.commit(self.duty("abort", round_id, "committed reveals prove a dealer faulty"))
        else:
            self.commit(self.duty("result", round_id, list(self.s.expected), bytes([round_id]) * 32))
        return expected


def test_a_member_that_deals_badly_every_round_is_benched_like_a_withholder() -> None:
    """It is convicted by the first round it deals badly in, on the proof its committed shares give, and no
    later round expects it."""
    run = _BadDealerConsortium(proposer=0)
    expecting = [r for r in range(1, ROUNDS + 1) if run.round(r)]
    first, *later = run.s.outcomes
    assert (first.committed, first.convicted, first.missing) == (False, (BAD_DEALER,), ())
    assert all(o.committed for o in later), "every later round commits without it"
    assert expecting == [1] and run.s.convicted == (BAD_DEALER,)
