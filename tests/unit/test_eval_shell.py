"""The shell's side of `eval` transactions: the mempool keeps them until their round leaves the contract's
window or they are committed, and the primary proposes them (after the last round, in a block of their own)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import trio

from consensus.block import Block
from node import contract as rc
from node.mempool import Mempool
from node.proposer import Proposer, Signer
from node.status import Metrics
from node.timings import Timings
from tests.unit.test_shell_attacks import CHAIN, KEYS, M0, N, tx, verify

ROUNDS = 2


def _model(round_id: int) -> bytes:
    return hashlib.sha256(b"model %d" % round_id).digest()


def _run_rounds(contract: rc.Contract, rounds: int) -> None:
    height = contract.state.height
    for r in range(1, rounds + 1):
        updates = [tx("update", a, r, bytes([a]) * 32, 10) for a in range(N)]
        contract.apply_block(Block(CHAIN, height + 1, CHAIN, 0, 0, (tx("open", 0, r, contract.state.model_hash,
                                                                         [0, 1, 2, 3]),)))
        contract.apply_block(Block(CHAIN, height + 2, CHAIN, 0, 0, (*updates, tx("result", 0, r, [0, 1, 2, 3],
                                                                                 _model(r)))))
        height += 2


def _node(rounds_done: int) -> tuple[rc.Contract, Mempool, Proposer]:
    async def nowhere(*_: Any) -> None:
        return None

    contract = rc.Contract(rc.ContractParams(CHAIN, N, ROUNDS, M0, 3), verify)
    _run_rounds(contract, rounds_done)
    pool = Mempool(contract, 0, Metrics(), nowhere, nowhere)
    settings = SimpleNamespace(batch_window_s=0.0, phase_deadline_s=30.0, contract=contract.params)
    proposer = Proposer(contract, settings, pool, None, Timings(),  # type: ignore[arg-type]
                        Signer(CHAIN, N, 0, lambda b: KEYS[0].sign(b).signature), lambda: False, lambda: 0, 0)
    return contract, pool, proposer


def ev(author: int, round_id: int, correct: int = 3, total: int = 4) -> bytes:
    return tx("eval", author, round_id, _model(round_id), correct, total)


def test_after_the_last_round_the_primary_proposes_the_pending_evals_and_then_nothing() -> None:
    contract, pool, proposer = _node(ROUNDS)
    assert contract.finished
    for author in range(N):
        pool.accept(ev(author, ROUNDS))
    txs = trio.run(proposer.next_block_txs)
    assert txs is not None and sorted(contract.parse(raw).author for raw in txs) == [0, 1, 2, 3]
    contract.apply_block(Block(CHAIN, contract.state.height + 1, CHAIN, 0, 0, tuple(txs)))
    for raw in txs:
        pool.forget(hashlib.sha256(raw).digest())
    pool.accept(ev(1, ROUNDS))  # a replay of a committed eval
    assert not pool.txs and trio.run(proposer.next_block_txs) is None


def test_evals_ride_along_and_are_never_taken_for_a_phases_inputs() -> None:
    contract, pool, proposer = _node(1)
    contract.apply_block(Block(CHAIN, contract.state.height + 1, CHAIN, 0, 0,
                               (tx("open", 0, 2, _model(1), [0, 1, 2, 3]),)))
    for author in range(N):
        pool.accept(ev(author, 1))
    txs = trio.run(proposer.next_block_txs)
    assert txs is not None and [contract.parse(raw).kind for raw in txs] == ["eval"] * N
    assert contract.check_block(Block(CHAIN, contract.state.height + 1, CHAIN, 0, 0, tuple(txs))) == []
    assert contract.state.phase == "collect" and not contract.state.inputs


def test_a_member_cannot_park_evals_beyond_the_next_round_or_past_the_window() -> None:
    _, pool, _ = _node(1)
    for round_id in range(3, 200):
        pool.accept(ev(3, round_id))
    assert not pool.txs
    contract, pool, _ = _node(ROUNDS)
    contract.state.round += rc.EVAL_WINDOW  # later rounds passed: round 1 and 2 evals are late
    pool.accept(ev(2, 1))
    pool.accept(ev(2, ROUNDS))
    assert not pool.txs
