"""Red team 2 (issue 14, late unmasking): `SecAggParticipant.recoverable` is meant to let a node go late on unmasking
only when `try_finish(deadline_passed=True)` then completes, so that honest nodes going late on different reveals
(gossip reaches them in different orders) do not disagree, some unmasking and some aborting (commit a6ac926).

The adversary: member 7 of N = 7 (t = 2), with its real key, deals its self-seed shares off one polynomial (holder
6's share is shifted) and commits, per share, exactly to what it sent, so that every share opens its commitment and
no holder can tell; then it withholds its own reveal, so that every honest node must go late. Node 1 goes late on
the reveals of 1, 2, 3 (on the true polynomial), node 5 on those of 5, 6, 1 (one shifted): both see
`recoverable()`, node 1 unmasks the exact sum and node 5 aborts naming 7. With two colluders at N = 7 choosing whose
shares to shift, each honest node's outcome is the order its reveals arrived in.

Second (the bench, G7): a member whose committed shares contradict its advert aborts the unmask phase at every
honest node, with every reveal in and no timing at all; the unmask-phase abort names nobody on the ledger, so such a
member takes no strike, no bench and no conviction, and aborts every round it is in.
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
from tests.unit.test_contract_secure_phases import ALL
from tests.unit.test_smpc_secagg_protocol import Harness, make_updates, plain_sum

N, DEGREE, SHIFTED = 7, 2, 6
BAD_DEALER = 3
"""The contract index of the bad dealer at N = 4 (participant id 4)."""


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


def _outcome(machine: SecAggParticipant) -> str | np.ndarray:
    assert machine.recoverable(), "the node goes late only once recoverable() holds"
    try:
        result = machine.try_finish(deadline_passed=True)
    except RoundAborted as aborted:
        return f"aborted, culprit {aborted.culprit}"
    assert result is not None
    return result.total


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "FINDING rt2-1: recoverable() counts shares that open their per-share commitments, but a dealer that committed "
    "to shares off one polynomial makes a (t + 1)-subset of them reconstruct a secret that contradicts its advert: "
    "the node that went late on that subset aborts naming the dealer while a node that went late on other honest "
    "reveals unmasks; honest nodes disagree (the stall a6ac926 meant to end)"))
def test_two_honest_nodes_going_late_on_different_reveals_reach_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness, reveals, updates = _to_reveals(monkeypatch, N, DEGREE, (SHIFTED,))
    # The dealer withholds its reveal: nobody has every survivor's, so every honest node goes late.
    first, second = harness.machines[1], harness.machines[5]
    for sender in (2, 3):
        first.receive(reveals[sender])
    for sender in (SHIFTED, 1):
        second.receive(reveals[sender])
    expected = plain_sum(updates, frozenset(harness.machines))
    first_outcome, second_outcome = _outcome(first), _outcome(second)
    assert isinstance(first_outcome, np.ndarray) and np.array_equal(first_outcome, expected)
    assert isinstance(second_outcome, np.ndarray), f"node 5: {second_outcome}, node 1 unmasked"
    assert np.array_equal(second_outcome, expected)


def test_a_bad_dealer_aborts_the_unmask_phase_at_every_honest_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """At N = 4, t = 1, the dealer shifts the shares of two holders: with every reveal in (no late path, no timing)
    no majority polynomial exists, and each honest node aborts naming the dealer, only locally
    (`RoundAborted.culprit`, which nothing in node/ reads)."""
    harness, reveals, _ = _to_reveals(monkeypatch, 4, 1, (2, 3))
    for reveal in reveals.values():
        harness.deliver(reveal)
    for i in (1, 2, 3):
        with pytest.raises(RoundAborted) as aborted:
            harness.machines[i].try_finish()
        assert aborted.value.culprit == 4, i


class _BadDealerConsortium(Consortium):
    """Validated rounds at N = 4 in which member `BAD_DEALER` takes part in every phase, so the unmask phase of
    every round it is in can finish nowhere (`test_a_bad_dealer_aborts_the_unmask_phase_at_every_honest_node`) and
    aborts past its deadline (each replica's `UnmaskAbortCheck` holds: it has neither result nor failure)."""

    def round(self, round_id: int) -> bool:
        self.commit(self.duty("open", round_id, self.s.model_hash, list(ALL)))
        expected = BAD_DEALER in self.s.expected
        while self.s.phase != "validate":
            self.commit(*self.inputs(self.s.phase, self.s.expected), self.duty("close", round_id, self.s.phase))
        publishers = self.s.expected
        self.commit(*self.inputs("validate", publishers), self.duty("accept", round_id, list(publishers), [], 0))
        assert self.s.phase == "unmask"
        if expected:
            self.commit(self.duty("abort", round_id, "unmasking failed: a dealer's shares fit no secret"))
        else:
            self.commit(self.duty("result", round_id, list(self.s.expected), bytes([round_id]) * 32))
        return expected



@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "FINDING rt2-2: a member whose committed Shamir shares contradict its advert aborts the unmask phase of every "
    "round it is in; the unmask abort names nobody on the ledger (missing = (), no strike, no bench, no conviction), "
    "so the bench's O(log R) bound does not hold for it: it is expected in, and aborts, all R rounds"))
def test_a_member_that_deals_badly_every_round_is_benched_like_a_withholder() -> None:
    run = _BadDealerConsortium(proposer=0)
    expecting = [r for r in range(1, ROUNDS + 1) if run.round(r)]
    assert all(not o.committed and o.missing == () for o in run.s.outcomes), "every round aborted, nobody named"
    assert len(expecting) <= 5, f"expected the bad dealer in rounds {expecting}"
