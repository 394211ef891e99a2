"""Red team 2 (issue 14, determinism of the bench): the strikes, kept counts and bench ends a replica holds are a
function of the committed blocks alone, whether it checked each block before applying it (on a copy of its state,
`Contract.check_block`) or not, and whether it resumed from a copy of its state mid-run (`ContractState.copy`).

The run: 24 validated rounds at N = 4 in which member 0 withholds its statistics whenever it is expected in the
first two rounds (two strikes, a bench) and then takes part, so that 16 committed rounds including it forgive a
strike; it comes back with `ready` as soon as the contract lets it. The proposer's contract applies the blocks
unchecked; a replica checks each one first; a restarted replica takes over a copy of the replica's state halfway.
All three must end in the same state. (Planted bugs it catches: `ContractState.copy` sharing `strikes` or `kept`.)
"""

from __future__ import annotations

import dataclasses

from node import contract as rc
from tests.unit.test_claims_bench import FLAPPER, Consortium
from tests.unit.test_contract import block, validated_contract
from tests.unit.test_contract_secure_phases import ALL

ROUNDS, WITHHOLDS_UNTIL = 24, 2


class _Recording(Consortium):
    """`Consortium` that keeps every block it commits."""

    def __init__(self, proposer: int) -> None:
        super().__init__(proposer)
        self.c.params = dataclasses.replace(self.c.params, rounds=ROUNDS)
        self.blocks: list[bytes] = []

    def commit(self, *txs: bytes) -> list[rc.Event]:
        raw = block(self.s.height + 1, self.proposer, *txs)
        self.blocks.append(raw)
        return self.c.apply_block(raw)

    def inputs(self, phase: str, members: tuple[int, ...], round_id: int | None = None) -> list[bytes]:
        """After its first rounds, the withholder publishes its statistics like the others."""
        if phase == "validate" and self.s.round > WITHHOLDS_UNTIL and FLAPPER in self.s.expected:
            members = tuple(sorted(set(members) | {FLAPPER}))
        return super().inputs(phase, members, round_id)

    def round(self, round_id: int) -> bool:
        if round_id <= WITHHOLDS_UNTIL:
            return super().round(round_id)
        self.commit(self.duty("open", round_id, self.s.model_hash, list(ALL)))
        while self.s.phase != "validate":
            self.commit(*self.inputs(self.s.phase, self.s.expected), self.duty("close", round_id, self.s.phase))
        publishers = self.s.expected
        self.commit(*self.inputs("validate", publishers), self.duty("accept", round_id, list(publishers), [], 0))
        self.commit(self.duty("result", round_id, list(publishers), bytes([round_id]) * 32))
        return FLAPPER in publishers


def _replica() -> rc.Contract:
    c = validated_contract()
    c.params = dataclasses.replace(c.params, rounds=ROUNDS)
    return c


def test_checking_blocks_and_resuming_from_a_copy_leave_the_bench_state_of_the_unchecked_run() -> None:
    run = _Recording(proposer=1)
    for round_id in range(1, ROUNDS + 1):
        run.ready_if_valid(FLAPPER)
        run.round(round_id)
    assert run.s.strikes == {FLAPPER: 1} and run.s.kept[FLAPPER] > 0, "two strikes, one forgiven, counting again"
    replica, restarted = _replica(), _replica()
    half = len(run.blocks) // 2
    for i, raw in enumerate(run.blocks):
        if i == half:
            restarted.state = replica.state.copy()
        replica.check_block(raw)
        replica.apply_block(raw)
        if i >= half:
            restarted.apply_block(raw)
    assert replica.state == run.s
    assert restarted.state == run.s
