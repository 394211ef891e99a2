"""The primary carries dealers' answers (sealed sketch shares, up to ~63 KB each) a bounded amount per block."""

from __future__ import annotations

from node import contract as rc
from node.proposer import ANSWER_BYTES_PER_BLOCK, _within_answer_budget


def _tx(kind: str, size: int, author: int) -> rc.Tx:
    return rc.Tx(kind, author, 1, (), bytes(size))


def test_answers_beyond_the_block_budget_wait_for_the_next_block_and_nothing_else_does() -> None:
    big = rc.MAX_ANSWER_BYTES
    txs = [_tx("answer", big, a) for a in range(12)] + [_tx("stats", 100, a) for a in range(12)]
    kept = _within_answer_budget(txs)
    answers = [tx for tx in kept if tx.kind == "answer"]
    assert len(answers) == ANSWER_BYTES_PER_BLOCK // big and sum(len(tx.raw) for tx in answers) <= ANSWER_BYTES_PER_BLOCK
    assert [tx for tx in kept if tx.kind == "stats"] == txs[12:]
    assert answers == txs[: len(answers)]
