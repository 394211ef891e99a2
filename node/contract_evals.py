"""Which `eval` transactions the round contract takes, and what it records of them (module doc of `node.contract`).

An `eval` [model_hash, correct, total] is a member's evaluation of a committed round's model on its own
held-out rows. The contract takes one per member per committed round, for the last `EVAL_WINDOW` round ids
only, naming exactly the model that round committed; a member's first committed eval declares its held-out
rows, and every later one must count the same rows (a site cannot grow its weight in the pooled figure
round by round). So the ledger holds at most N evals per committed round, and the state at most
N x EVAL_WINDOW of them. A mixin over the contract's `params` and `state`; pure, may call
`node.contract_state`, `node.contract_tx` and `node.contract_events` only.
"""

from __future__ import annotations

from node.contract_events import EvalCommitted
from node.contract_state import ContractParams, ContractState
from node.contract_tx import Tx

EVAL_WINDOW = 3
"""Round ids an `eval` may still name: the current round and the two before it. A member evaluates as soon as
a result commits, and the next round takes several blocks, so an honest eval is never late; a lagging or
restarted member's evaluations of older rounds stay off the ledger."""


class Evaluations:
    """The `eval` rules and bookkeeping of `node.contract.Contract`."""

    params: ContractParams
    state: ContractState

    def eval_error(self, tx: Tx) -> str | None:
        """Why the `eval` `tx` is not valid now, or None."""
        s = self.state
        model_hash, _correct, total = tx.fields
        if self.eval_expired(tx):
            return f"round {tx.round} is too old: evals are taken for rounds after {s.round - EVAL_WINDOW}"
        committed = s.committed_model(tx.round)
        if committed is None:
            return f"round {tx.round} has no committed result"
        if model_hash != committed:
            return f"names model {bytes(model_hash).hex()[:16]}, round {tx.round} committed {committed.hex()[:16]}"  # type: ignore[arg-type]
        if tx.author in s.evals.get(tx.round, {}):
            return f"member {tx.author} already evaluated round {tx.round}"
        rows = s.eval_rows.get(tx.author, total)
        if total != rows:
            return f"total {total} differs from the {rows} held-out rows member {tx.author} declared in its first eval"
        return None

    def eval_expired(self, tx: Tx) -> bool:
        """Whether an `eval` names a round too old to be taken (the mempool forgets it)."""
        return tx.round <= self.state.round - EVAL_WINDOW

    def _apply_eval(self, tx: Tx, height: int) -> EvalCommitted:
        s = self.state
        _, correct, total = tx.fields
        s.evals.setdefault(tx.round, {})[tx.author] = (correct, total)  # type: ignore[assignment]
        s.eval_rows.setdefault(tx.author, total)  # type: ignore[arg-type]
        return EvalCommitted(tx.round, tx.author, correct, total, height)  # type: ignore[arg-type]

    def _forget_old_evals(self) -> None:
        """When a round opens: the evals of rounds that left the window are on the ledger, no longer needed here."""
        s = self.state
        for old in [r for r in s.evals if r <= s.round - EVAL_WINDOW]:
            del s.evals[old]
