"""How a primary builds its proposal on the contract: `admissible` sorts candidate transactions into those a block
may carry and the invalid ones, `extend` applies its own as the next block; neither touches the committed state."""

from __future__ import annotations

import hashlib

import pytest

from node import contract as rc
from tests.unit.test_contract import M0, N, block, contract, tx, upd


def opened() -> rc.Contract:
    c = contract()
    c.apply_block(block(1, 0, tx("open", 0, 1, M0, [0, 1, 2, 3])))
    return c


def test_admissible_keeps_the_valid_candidates_in_order_and_gives_the_reason_for_each_other() -> None:
    c = opened()
    candidates = [c.parse(raw) for raw in (upd(0), upd(0), tx("abort", 1, 1, "slow"), upd(2))]
    valid, invalid = c.admissible(candidates)
    assert [t.raw for t in valid] == [upd(0), upd(2)]
    assert [(t.raw, str(e)) for t, e in invalid] == [
        (upd(0), "update from member 0 for round 1: a second input in phase collect"),
        (tx("abort", 1, 1, "slow"), "abort tx must be authored by the block proposer")]
    assert c.state.inputs == {}, "only a copy of the state was tried"


def test_extend_applies_transactions_as_the_proposers_next_block_on_a_shadow_only() -> None:
    c = opened()
    shadow = c.shadow()
    m1 = hashlib.sha256(b"m1").digest()
    shadow.extend([shadow.parse(upd(a)) for a in range(N)] + [shadow.parse(tx("result", 0, 1, [0, 1, 2, 3], m1))], 0)
    assert shadow.state.outcomes == [rc.RoundOutcome(1, True, (0, 1, 2, 3), m1, 2)]
    assert c.state.outcomes == [] and c.state.open
    with pytest.raises(rc.TxError, match="^abort tx must be authored by the block proposer$"):
        c.shadow().extend([c.parse(tx("abort", 0, 1, "slow"))], 1)
