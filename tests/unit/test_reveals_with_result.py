"""The unmask phase's reveals and its `result` in one block (issue 14, G9 without the extra block): every replica
unmasks from exactly the reveals the ledger commits before the result, that block's own included, whatever it saw
delivered, so it can vote for a block whose reveals reached it only inside that block, and refuses a result that
those reveals do not decide.

Real SecureRounds of a 4-node secure round (t = 2: three shares recover a secret) on real contracts
(`tests.unit.test_secure_round.Cluster`), and the real `BlockValidator` and `Aggregator` of one replica.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import trio

from consensus.block import Block
from node import contract as rc
from node.aggregation import Aggregator
from node.block_validation import BlockValidator
from node.weighting import apply_sum
from tests.unit.test_secure_round import CHAIN, Cluster, L

N, SEED, REPLICA = 4, 5, 2
GLOBAL = np.zeros(L, dtype=np.float32)
GLOBAL_HASH = b"\x00" * 32


def unmasking() -> tuple[Cluster, list[bytes]]:
    """Round 1 with every masked input committed, in its unmask phase; returns the reveals the nodes submitted
    (none committed, none delivered to any SecureRound), by author."""
    rng = np.random.default_rng(SEED)
    c = Cluster(N, SEED)
    c.mask_updates({i: rng.normal(0, 0.3, L) for i in range(N)})
    contract = c.contracts[0]
    c.commit_block([raw for raw in c.mempool if contract.tx_valid_now(contract.parse(raw))]
                   + [c.tx("close", ["inputs"])], 0)
    assert contract.state.phase == "unmask"
    reveals = sorted((raw for raw in c.mempool if contract.parse(raw).kind == "sa"),
                     key=lambda raw: contract.parse(raw).author)
    assert len(reveals) == N
    return c, reveals


def new_model_hash(c: Cluster, node: int, reveals: list[bytes]) -> bytes:
    """The new global model's hash as `node` unmasks it from `reveals` (a primary's own computation)."""
    total = c.rounds[node].try_sum(False, [c.contracts[0].parse(raw).fields[0] for raw in reveals])  # type: ignore[misc]
    assert total is not None
    return hashlib.sha256(apply_sum(GLOBAL, total).tobytes()).digest()


def result_block(c: Cluster, txs: list[bytes], new_hash: bytes) -> Block:
    result = c.tx("result", [list(range(N)), new_hash])
    return Block(CHAIN, c.height + 1, CHAIN, 0, 0, (*txs, result))


def replica_votes(c: Cluster, block: Block) -> bool:
    """REPLICA's verdict on `block` with its real validator and aggregator (global model all zeros)."""
    models: dict[bytes, np.ndarray] = {GLOBAL_HASH: GLOBAL}

    async def model(model_hash: bytes) -> np.ndarray:
        return models[model_hash]

    def remember_model(vec: np.ndarray) -> bytes:
        models[digest := hashlib.sha256(vec.tobytes()).digest()] = vec
        return digest

    content = SimpleNamespace(model=model, remember_model=remember_model, models=models, masked={})
    settings = SimpleNamespace(contract=c.params, phase_deadline_s=0.2, unmask_grace_s=0.0)
    timings = SimpleNamespace(phase_elapsed_s=lambda round_id, phase: 0.0, phase_s={"validation": 0.0})
    secure = SimpleNamespace(get=lambda round_id: c.rounds[REPLICA])
    aggregator = Aggregator(settings, c.quant, content, secure, timings, None)  # type: ignore[arg-type]
    validator = BlockValidator(c.contracts[REPLICA], settings, aggregator, timings, None,  # type: ignore[arg-type]
                               lambda: c.height)
    return trio.run(validator.block_ok, block)


def test_a_replica_that_got_no_reveal_delivered_votes_for_the_reveals_and_the_result_in_one_block() -> None:
    c, reveals = unmasking()
    assert not c.rounds[REPLICA].enough_reveals, "no reveal reached the replica's round"
    block = result_block(c, reveals, new_model_hash(c, 0, reveals))
    [check] = c.contracts[REPLICA].check_block(block)
    assert isinstance(check, rc.AggregateCheck)
    assert check.reveals == tuple(c.contracts[0].parse(raw).fields[0] for raw in reveals)
    assert replica_votes(c, block)
    c.commit_block(list(block.txs), 0)
    assert [c.contracts[i].state.outcomes[-1].committed for i in range(N)] == [True] * N


def test_the_block_needs_only_enough_reveals_whichever_holders_they_come_from() -> None:
    c, reveals = unmasking()
    assert replica_votes(c, result_block(c, reveals[1:], new_model_hash(c, 0, reveals)))


def test_a_result_with_too_few_reveals_in_the_block_is_refused_and_the_replica_stays_in_the_round() -> None:
    c, reveals = unmasking()
    new_hash = new_model_hash(c, 0, reveals)
    assert not replica_votes(c, result_block(c, reveals[:2], new_hash)), "two shares of a degree-2 secret"
    assert c.rounds[REPLICA].machine.phase.name == "UNMASK", "a primary's block does not abort our round"
    assert replica_votes(c, result_block(c, reveals[:3], new_hash))


def test_a_result_from_reveals_outside_the_block_and_ledger_is_refused_whatever_the_replica_saw() -> None:
    """The primary unmasked from every reveal but put two in the block; the replica has all four delivered (on the
    wire, or from a block that never committed): it still unmasks from the ledger's two only, and refuses."""
    c, reveals = unmasking()
    new_hash = new_model_hash(c, 0, reveals)
    sr = c.rounds[REPLICA]
    for raw in reveals:
        sr.on_message(sr.decode(c.contracts[0].parse(raw).fields[0]))  # type: ignore[arg-type]
    assert not replica_votes(c, result_block(c, reveals[2:], new_hash))
    assert not replica_votes(c, result_block(c, [], new_hash))


def test_a_result_that_is_not_the_sum_of_the_blocks_reveals_is_refused() -> None:
    c, reveals = unmasking()
    assert not replica_votes(c, result_block(c, reveals, b"\x01" * 32))
