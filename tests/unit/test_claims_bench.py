"""Claim (docs/threat-model.md, Known limits; docs/validation.md G7; `Membership.bench_rounds`): a member is absent
until a transaction it signed, other than an `eval` or the proposer's own duties, is committed (its `ready`), and
a member that comes back and fails again sits on a bench that doubles with each absence, so it aborts O(log R) of
R validated rounds instead of every other one.

The adversary: member 0 of a validated consortium at N = 4 (f = 1) holds its real key and is the primary (PBFT
replaces a primary only when it stops making progress, and it does not: it proposes every block on time). It takes
part in each round it is expected in up to the validate phase and withholds its statistics, so that round aborts
at the deadline, naming it. Control: the same member behaving the same way but not primary (its `ready` is
its only way back), which the bench holds to rounds 1, 2, 4, 8, ... The contract is driven block by block with
signed transactions (`tests.unit.test_contract_secure_phases.Driver`); each close or abort that omits a member is
taken as past its deadline on every replica's clock (the checks it returns).
"""

from __future__ import annotations

import dataclasses

from node import contract as rc
from tests.unit.test_contract import block, tx, validated_contract
from tests.unit.test_contract_secure_phases import ALL, Driver

ROUNDS = 16
FLAPPER = 0


class Consortium(Driver):
    """Rounds of a validated contract; `proposer` signs and proposes every duty transaction."""

    def __init__(self, proposer: int) -> None:
        c = validated_contract()
        c.params = dataclasses.replace(c.params, rounds=ROUNDS)
        super().__init__(c)
        self.proposer = proposer

    def commit(self, *txs: bytes) -> list[rc.Event]:
        return self.c.apply_block(block(self.s.height + 1, self.proposer, *txs))

    def duty(self, kind: str, round_id: int, *fields: object) -> bytes:
        return tx(kind, self.proposer, round_id, *fields)

    def ready_if_valid(self, member: int) -> None:
        """The flapper says `ready` as soon as the contract lets it (what the mempool asks)."""
        ready = tx("ready", member, self.c.ready_round)
        if self.c.tx_valid_now(self.c.parse(ready)):
            self.commit(ready)

    def round(self, round_id: int) -> bool:
        """Run `round_id`; the flapper withholds its statistics if expected. Returns whether it was expected."""
        self.commit(self.duty("open", round_id, self.s.model_hash, list(ALL)))
        expected = FLAPPER in self.s.expected
        while self.s.phase != "validate":
            self.close_phase(round_id)
        publishers = tuple(m for m in self.s.expected if m != FLAPPER)
        self.commit(*self.inputs("validate", publishers))
        if FLAPPER in self.s.expected:
            self.commit(self.duty("abort", round_id, "too few members in phase validate"))
            assert self.s.outcomes[-1].missing == (FLAPPER,), f"round {round_id}: the abort names the withholder"
        else:
            self.commit(self.duty("accept", round_id, list(publishers), [], 0))
            self.commit(self.duty("result", round_id, list(publishers), bytes([round_id]) * 32))
        return expected

    def close_phase(self, round_id: int) -> None:
        """Every expected member without an input in the open phase sends it; the phase closes."""
        missing = tuple(m for m in self.s.expected if m not in self.s.inputs)
        self.commit(*self.inputs(self.s.phase, missing), self.duty("close", round_id, self.s.phase))


def expecting(run: Consortium) -> list[int]:
    """The rounds of `run` that expected the flapper (each of them aborted)."""
    rounds = []
    for round_id in range(1, ROUNDS + 1):
        run.ready_if_valid(FLAPPER)
        if run.round(round_id):
            rounds.append(round_id)
    return rounds


def test_a_withholder_that_is_not_primary_is_benched_longer_each_time() -> None:
    assert expecting(Consortium(proposer=1)) == [1, 2, 4, 8, 16]


def test_a_withholder_that_is_primary_is_benched_longer_each_time() -> None:
    assert expecting(Consortium(proposer=FLAPPER)) == [1, 2, 4, 8, 16]
