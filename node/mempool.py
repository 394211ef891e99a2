"""The mempool: members' transactions waiting for a block, and our own until they are committed.

Owns the pending transactions (bounded, in arrival order, with their arrival times) and the set of our
own not yet committed. Admission checks a transaction against the round contract; pruning forgets what
a committed block made useless; resubmission sends our own again like a PBFT client's retry. May read
the round contract; sends only through the two callbacks it is given (it never imports the transport).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from node import contract as rc
from node.status import Metrics

logger = logging.getLogger("fednode")

MAX_MEMPOOL_TXS = 4096
RESUBMIT_S = 1.0

SendFn = Callable[[int, str, int, bytes], Awaitable[None]]
SendAllFn = Callable[[str, int, bytes], Awaitable[None]]


class Mempool:
    """Pending transactions by digest; `own` marks ours for resubmission."""

    def __init__(self, contract: rc.Contract, index: int, metrics: Metrics, send: SendFn,
                 send_to_all: SendAllFn) -> None:
        self.contract, self.index, self.metrics = contract, index, metrics
        self._send, self._send_to_all = send, send_to_all
        self.txs: OrderedDict[bytes, rc.Tx] = OrderedDict()
        self.arrival: dict[bytes, float] = {}
        self.own: dict[bytes, bytes] = {}
        """Our transactions not yet committed, by digest: resubmitted to every member until they are."""
        self._resubmit_at = 0.0

    def accept(self, raw: bytes) -> None:
        """Admit a member's transaction (a peer's, or our own) if it may still be committed."""
        try:
            tx = self.contract.parse(raw)
        except rc.TxError:
            self.metrics.rejected.labels("bad_tx").inc()
            return
        if tx.kind not in ("update", "sa", "input", "dealt", "stats", "ready") or len(self.txs) >= MAX_MEMPOOL_TXS:
            self.metrics.rejected.labels("unexpected_tx").inc()
            return
        if self._stale(tx):
            self.metrics.rejected.labels("stale_tx").inc()
            return
        digest = hashlib.sha256(raw).digest()
        if digest not in self.txs:
            logger.debug("mempool: %s tx of member %d for round %d", tx.kind, tx.author, tx.round)
        self.txs[digest] = tx
        self.arrival.setdefault(digest, time.monotonic())

    async def submit_own(self, raw: bytes, round_id: int, primary: int) -> None:
        """Our own transaction: into the mempool, remembered for resubmission, and straight to the primary."""
        self.accept(raw)
        self.own[hashlib.sha256(raw).digest()] = raw
        if primary != self.index:
            await self._send(primary, "tx", round_id, raw)

    def drop(self, tx: rc.Tx, why: Exception) -> None:
        """A member's transaction that no block may carry (e.g. a wrong message for the phase): forget it."""
        self.forget(hashlib.sha256(tx.raw).digest())
        self.metrics.rejected.labels("bad_tx").inc()
        logger.warning("dropped a %s tx of member %d for round %d: %s", tx.kind, tx.author, tx.round, why)

    def prune(self) -> None:
        """Forget transactions of rounds that are over: they can never be committed."""
        for digest, tx in list(self.txs.items()):
            if self._stale(tx):
                self.forget(digest)

    def _stale(self, tx: rc.Tx) -> bool:
        """A transaction of a round that is over; a `ready` once the contract would no longer take it (its
        author is back, or the ready predates its absence): a lagging member's ready names an older round."""
        s = self.contract.state
        if tx.kind == "ready":
            return not self.contract.tx_valid_now(tx)
        return tx.round < s.round or (tx.round == s.round and not s.open)

    def forget(self, digest: bytes) -> None:
        """Committed, invalid or stale: out of the mempool, and no longer ours to resubmit."""
        self.txs.pop(digest, None)
        self.arrival.pop(digest, None)
        self.own.pop(digest, None)

    def any_valid_now(self) -> bool:
        return any(self.contract.tx_valid_now(tx) for tx in self.txs.values())

    async def tick(self) -> None:
        """Resubmit our own transactions every RESUBMIT_S (see `_resubmit_own`)."""
        if time.monotonic() >= self._resubmit_at:
            self._resubmit_at = time.monotonic() + RESUBMIT_S
            await self._resubmit_own()

    async def _resubmit_own(self) -> None:
        """Send our transactions that are still valid but not committed after RESUBMIT_S to every member.

        A transaction first goes to the primary alone (only the proposer needs it, and one direct frame is
        the fastest path). Like a PBFT client whose request times out, we then send it to all replicas:
        it reaches a new primary after a view change, survives a dropped frame or a connection still
        forming at start-up, and arms every backup's view-change timer, so a primary that censors it is
        replaced.
        """
        for digest, raw in list(self.own.items()):
            tx = self.txs.get(digest)
            if tx is None:
                del self.own[digest]
            elif self.contract.tx_valid_now(tx) and time.monotonic() - self.arrival[digest] >= RESUBMIT_S:
                await self._send_to_all("tx", tx.round, raw)

    async def hand_own_to(self, primary: int) -> None:
        """A new primary gets every transaction of ours not yet committed, the next round's key
        advertisement included: those are not valid yet, so `_resubmit_own` would not send them, and
        without them the new primary cannot close the keys phase in the block that opens the round."""
        if primary == self.index:
            return
        for digest, raw in list(self.own.items()):
            if digest in self.txs:
                await self._send(primary, "tx", self.txs[digest].round, raw)
