"""Red team 2 (issue 14, late unmasking): `SecAggParticipant.recoverable` is meant to let a node go late on unmasking
only when `try_finish(deadline_passed=True)` then completes, so that honest nodes going late on different reveals
(gossip reaches them in different orders) do not disagree, some unmasking and some aborting (commit a6ac926).

The adversary: member 7 of N = 7 (t = 2), with its real key, deals its self-seed shares off one polynomial (holder
6's share is shifted) and commits, per share, exactly to what it sent, so that every share opens its commitment and
no holder can tell; then it withholds its own reveal, so that every honest node must go late. Node 1 goes late on
the reveals of 1, 2, 3 (on the true polynomial), node 5 on those of 5, 6, 1 (one shifted): both see
`recoverable()`, node 1 unmasks the exact sum and node 5 aborts naming 7. With two colluders at N = 7 choosing whose
shares to shift, each honest node's outcome is the order its reveals arrived in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from smpc import field, shamir
from smpc.errors import RoundAborted
from smpc.secagg import SecAggParticipant
from tests.unit.test_smpc_secagg_protocol import Harness, make_updates, plain_sum

N, DEGREE, DEALER, SHIFTED = 7, 2, 7, 6


def _shifting_share_secret(secret: bytes, degree: int, ids: Sequence[int], rand: field.RandomBytes) -> dict:
    """The dealer's sharing: honest, but holder `SHIFTED`'s share is off the polynomial by one."""
    shares = shamir.share_vector(shamir.secret_to_field(secret), degree, ids, rand)
    shares[SHIFTED] = field.add(shares[SHIFTED], np.ones_like(shares[SHIFTED]))
    return shares


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
    harness = Harness(n=N, degree=DEGREE)
    harness.adverts = {i: machine.start() for i, machine in harness.machines.items()}
    for advert in harness.adverts.values():
        harness.deliver(advert)
    members = frozenset(harness.machines)
    honest_share_secret = shamir.share_secret
    for i, machine in harness.machines.items():
        monkeypatch.setattr(shamir, "share_secret", _shifting_share_secret if i == DEALER else honest_share_secret)
        bundle = machine.on_keys_committed(members)
        assert bundle is not None
        harness.deliver(bundle)
    monkeypatch.setattr(shamir, "share_secret", honest_share_secret)
    for machine in harness.machines.values():
        machine.on_shares_committed(members)
    updates = make_updates(N, seed=21)
    inputs = {i: machine.mask(updates[i]) for i, machine in harness.machines.items()}
    for message in inputs.values():
        harness.deliver(message)
    digests = {i: message.digest() for i, message in inputs.items()}
    reveals = {i: machine.on_inputs_committed(digests) for i, machine in harness.machines.items()}
    # The dealer withholds its reveal: nobody has every survivor's, so every honest node goes late.
    first, second = harness.machines[1], harness.machines[5]
    for sender in (2, 3):
        first.receive(reveals[sender])  # type: ignore[arg-type]
    for sender in (SHIFTED, 1):
        second.receive(reveals[sender])  # type: ignore[arg-type]
    expected = plain_sum(updates, members)
    first_outcome, second_outcome = _outcome(first), _outcome(second)
    assert isinstance(first_outcome, np.ndarray) and np.array_equal(first_outcome, expected)
    assert isinstance(second_outcome, np.ndarray), f"node 5: {second_outcome}, node 1 unmasked"
    assert np.array_equal(second_outcome, expected)
