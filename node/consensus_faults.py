"""Test-only consensus misbehaviour of a live node (`fednode cluster --consensus-fault MODE`).

A malicious node runs the honest replica, and this object rewrites what it does, with its real key:

- `equivocate`: as primary, a PRE-PREPARE for a different block (the same transactions minus the last)
  to half the backups;
- `censor`: as primary, never proposes the transactions of one member (the next one after us);
- `slow-primary`: as primary, waits 80 % of the view timeout before every proposal;
- `checkpoint-flood`: signed CHECKPOINTs for far-future heights and bogus ones in the window;
- `vote-flood`: PREPAREs and COMMITs for random block hashes at the open height.

The floods are sent with every batch of actions the replica returns, at most `FLOOD_PER_S` messages a
second. docs/chaos.md describes what each mode must not achieve. Nothing here runs in production: only
the daemon's fault plug-in (`node.faults`) uses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

from consensus import messages as pbft
from consensus.block import Block
from consensus.replica import Action, Broadcast, Send

MODES = ("equivocate", "censor", "slow-primary", "checkpoint-flood", "vote-flood")
FLOOD_PER_S = 40
FLOOD_BATCH = 10


class ConsensusFault:
    """One mode of consensus misbehaviour, bound to this node's identity."""

    def __init__(self, mode: str, index: int, n: int, chain_id: bytes, sign: Callable[[bytes], bytes],
                 checkpoint_interval: int, view_timeout_ms: int) -> None:
        assert mode in MODES, mode
        self.mode, self.index, self.n, self.chain_id, self._sign = mode, index, n, chain_id, sign
        self.checkpoint_interval, self.view_timeout_ms = checkpoint_interval, view_timeout_ms
        self.victim = (index + 1) % n
        self._counter = 0
        self._flood_credit = 0.0
        self._flood_at_ms: int | None = None
        self._ready_since: tuple[int, int] | None = None

    def sign(self, msg: pbft.Message) -> pbft.Message:
        return replace(msg, signature=self._sign(pbft.signing_bytes(self.chain_id, msg)))

    def _junk(self, tag: bytes) -> bytes:
        """Deterministic junk (a counter hashed): the fault needs no RNG to be reproducible."""
        self._counter += 1
        return hashlib.sha256(tag + self.index.to_bytes(2, "big") + self._counter.to_bytes(8, "big")).digest()

    # ------------------------------------------------------------------ the replica's actions

    def actions(self, actions: Sequence[Action], view: int, height: int, now_ms: int) -> list[Action]:
        """What to execute instead of `actions` (the replica's own, honest ones)."""
        out: list[Action] = []
        for action in actions:
            if self.mode == "equivocate" and isinstance(action, Broadcast) and isinstance(action.msg, pbft.PrePrepare) \
                    and action.msg.sender == self.index:
                out += self._equivocate(action.msg)
            else:
                out.append(action)
        if self.mode in ("checkpoint-flood", "vote-flood"):
            out += [Broadcast(m) for m in self._flood(view, height, now_ms)]
        return out

    def _equivocate(self, pp: pbft.PrePrepare) -> list[Action]:
        """The honest PRE-PREPARE to the lower half of the backups, another block to the upper half."""
        block = pp.block
        if not block.txs:
            return [Broadcast(pp)]
        other = Block(block.chain_id, block.height, block.prev_hash, block.view, block.proposer, block.txs[:-1])
        variant = self.sign(replace(pp, block=other))
        backups = [i for i in range(self.n) if i != self.index]
        half = len(backups) // 2
        return [Send(to, pp if k < half else variant) for k, to in enumerate(backups)]

    def _flood(self, view: int, height: int, now_ms: int) -> list[pbft.Message]:
        if self._flood_at_ms is not None:
            self._flood_credit = min(FLOOD_BATCH, self._flood_credit + (now_ms - self._flood_at_ms) * FLOOD_PER_S / 1000)
        self._flood_at_ms = now_ms
        count = int(self._flood_credit)
        self._flood_credit -= count
        if self.mode == "checkpoint-flood":
            base = height // self.checkpoint_interval * self.checkpoint_interval
            return [self.sign(pbft.Checkpoint(base + self.checkpoint_interval * (1 + k * 997), self._junk(b"cp"),
                                              self.index)) for k in range(count)]
        kinds = (pbft.Prepare, pbft.Commit)
        return [self.sign(kinds[k % 2](view, height + 1, self._junk(b"vote"), self.index)) for k in range(count)]

    # ------------------------------------------------------------------ the primary's proposal

    def propose_now(self, height: int, now_ms: int) -> bool:
        """Whether the primary may propose `height` now (slow-primary: only after 80 % of a view timeout)."""
        if self.mode != "slow-primary":
            return True
        if self._ready_since is None or self._ready_since[0] != height:
            self._ready_since = (height, now_ms)
        return now_ms - self._ready_since[1] >= self.view_timeout_ms * 8 // 10

    def proposal(self, txs: list[bytes], authors: Sequence[int]) -> list[bytes]:
        """What to propose instead of `txs` (whose authors are `authors`): censor drops the victim's."""
        if self.mode == "censor":
            return [tx for tx, author in zip(txs, authors, strict=True) if author != self.victim]
        return txs
