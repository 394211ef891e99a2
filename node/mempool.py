"""The mempool: members' transactions waiting for a block, and our own until they are committed.

Owns the pending transactions (bounded, in arrival order, with their arrival times) and the set of our
own not yet committed. Admission checks a transaction against the round contract and takes only the
current round's and the next one's (nothing else can be committed soon, and a later round's would wait
unpruned); each author has a quota of transactions and of bytes (`AUTHOR_TXS_MAX`, `AUTHOR_BYTES_MAX`),
charged to the transaction's signer, so a member flooding valid transactions fills only its own share
and never refuses an honest member's. Our own transactions are never refused. Pruning forgets what a
committed block or a passing round made useless; resubmission sends our own again like a PBFT
client's retry. May read
the round contract; sends only through the two callbacks it is given (it never imports the transport).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable

from node import contract as rc
from node.status import Metrics

logger = logging.getLogger("fednode")

AUTHOR_TXS_MAX = 32
"""Pending transactions per author, over the two rounds admitted: a member posts a handful per round."""
AUTHOR_BYTES_MAX = 16 * rc.MAX_TX_BODY_BYTES
"""Pending bytes per author (1 MiB): the mempool holds at most members x this, plus our own."""
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
        self._held: Counter[int] = Counter()
        self._held_bytes: Counter[int] = Counter()
        self._relayed: dict[bytes, int] = {}
        """A member's overdue transaction, by digest: the primary we relayed it to (`relay_overdue`)."""

    def accept(self, raw: bytes, *, own: bool = False) -> None:
        """Admit a member's transaction (a peer's, or our own) if it may still be committed soon."""
        try:
            tx = self.contract.parse(raw)
        except rc.TxError:
            self.metrics.rejected.labels("bad_tx").inc()
            return
        if tx.kind not in ("update", "sa", "input", "reveal", "dealt", "stats", "ready", "eval", "complaint", "answer",
                           "disclose", "blame"):
            self.metrics.rejected.labels("unexpected_tx").inc()
            return
        if self._stale(tx) or tx.round > self.contract.state.round + 1:
            self.metrics.rejected.labels("stale_tx" if self._stale(tx) else "future_tx").inc()
            return
        digest = hashlib.sha256(raw).digest()
        if digest in self.txs:
            return
        if not own and not self._within_quota(tx):
            self.metrics.rejected.labels("tx_over_author_quota").inc()
            return
        logger.debug("mempool: %s tx of member %d for round %d", tx.kind, tx.author, tx.round)
        self.txs[digest] = tx
        self.arrival[digest] = time.monotonic()
        self._held[tx.author] += 1
        self._held_bytes[tx.author] += len(tx.raw)

    def _within_quota(self, tx: rc.Tx) -> bool:
        return (self._held[tx.author] < AUTHOR_TXS_MAX
                and self._held_bytes[tx.author] + len(tx.raw) <= AUTHOR_BYTES_MAX)

    def held(self, author: int) -> tuple[int, int]:
        """How many transactions of `author`, and how many bytes, are pending."""
        return self._held[author], self._held_bytes[author]

    async def submit_own(self, raw: bytes, round_id: int, primary: int) -> None:
        """Our own transaction: into the mempool, remembered for resubmission, and straight to the primary."""
        self.accept(raw, own=True)
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
        author is back, or the ready predates its absence): a lagging member's ready names an older round; likewise
a suspended member's `blame` once it is not the one it owes (`Membership.late_disclosure`). An
        `eval` once its round left the contract's window or its author's eval of it is committed (one that
        arrives before its round's result does here is kept: the result is on its way)."""
        s = self.contract.state
        if tx.kind == "ready" or (tx.kind == "blame" and tx.author in s.suspended):
            return not self.contract.tx_valid_now(tx)
        if tx.kind == "eval":
            return self.contract.eval_expired(tx) or tx.author in s.evals.get(tx.round, {})
        return tx.round < s.round or (tx.round == s.round and not s.open)

    def forget(self, digest: bytes) -> None:
        """Committed, invalid or stale: out of the mempool, and no longer ours to resubmit."""
        tx = self.txs.pop(digest, None)
        if tx is not None:
            self._held[tx.author] -= 1
            self._held_bytes[tx.author] -= len(tx.raw)
        self.arrival.pop(digest, None)
        self.own.pop(digest, None)
        self._relayed.pop(digest, None)

    def overdue(self) -> list[bytes]:
        """Digests of the valid transactions a block should already carry: ours, and members' that waited
        RESUBMIT_S (by then their author has handed them to everyone). The daemon hands them to the
        replica's request timer (`Replica.watch_only`), which replaces a primary that leaves them out."""
        now = time.monotonic()
        return [d for d, tx in self.txs.items()
                if (d in self.own or now - self.arrival[d] >= RESUBMIT_S) and self.contract.tx_valid_now(tx)]

    async def relay_overdue(self, overdue: list[bytes], primary: int) -> None:
        """Relay each member's overdue transaction to the primary, once per primary, as a PBFT backup forwards a
        client's request before its timer may replace the primary. Its author sent it to everyone, but a primary
        can miss it while a backup has it (the author's connection to the primary down, say after the primary
        cut it for a flow-control violation); without the relay, the backups' request timers (`overdue`) would
        replace an honest primary for a transaction it never saw. Each member's pending transactions are bounded by
        its quota, so a relay sends at most that much per primary."""
        if primary == self.index:
            return
        for digest in overdue:
            tx = self.txs.get(digest)
            if tx is None or digest in self.own or self._relayed.get(digest) == primary:
                continue
            self._relayed[digest] = primary
            await self._send(primary, "tx", tx.round, tx.raw)

    def any_valid_now(self, kinds: frozenset[str] | None = None) -> bool:
        """Whether a pending transaction (of one of `kinds`, default any) would be valid in the next block."""
        return any(self.contract.tx_valid_now(tx) for tx in self.txs.values() if kinds is None or tx.kind in kinds)

    def own_pending(self, kind: str) -> int:
        """How many of our own transactions of `kind` wait for a block."""
        return sum(1 for d in self.own if d in self.txs and self.txs[d].kind == kind)

    def oldest_arrival(self, txs: list[rc.Tx]) -> float:
        """When the earliest of `txs` (pending ones) arrived, monotonic seconds; now if none."""
        return min((self.arrival.get(hashlib.sha256(tx.raw).digest(), time.monotonic()) for tx in txs),
                   default=time.monotonic())

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
