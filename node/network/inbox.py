"""The received messages: one bounded queue per member, handed out one member at a time in turn.

Owns the inbox only; `node.network.budget.PeerLedger` fills it and the daemon's transport drains it.
May call trio and nothing else of the package.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import trio

InboxItem = tuple[str, str, bytes]
"""(kind, peer id, data): kind is "gossip" or "direct"; for gossip the peer is the signed origin."""


@dataclass(frozen=True, slots=True)
class InboxStatistics:
    current_buffer_used: int


class FairInbox:
    """Received messages, one bounded queue per member, handed out one member at a time in turn.

    With one shared queue, a member flooding within its budget could fill it while the protocol task is
    busy, and every other member's messages arriving then would be dropped; here a member fills only its
    own queue, and an honest member's message waits behind at most one message of each other member.
    """

    def __init__(self, per_peer_max: int) -> None:
        self._per_peer_max = per_peer_max
        self._queues: dict[str, collections.deque[InboxItem]] = {}
        self._turns: collections.deque[str] = collections.deque()
        self._arrived = trio.Event()

    def put_nowait(self, item: InboxItem) -> bool:
        """Queue `item` behind its member's earlier ones; False (dropped) if that member's queue is full."""
        queue = self._queues.setdefault(item[1], collections.deque())
        if len(queue) >= self._per_peer_max:
            return False
        if not queue:
            self._turns.append(item[1])
        queue.append(item)
        self._arrived.set()
        return True

    async def receive(self) -> InboxItem:
        while not self._turns:
            await self._arrived.wait()
            self._arrived = trio.Event()
        peer = self._turns.popleft()
        queue = self._queues[peer]
        item = queue.popleft()
        if queue:
            self._turns.append(peer)
        return item

    def __aiter__(self) -> FairInbox:
        return self

    async def __anext__(self) -> InboxItem:
        return await self.receive()

    def statistics(self) -> InboxStatistics:
        return InboxStatistics(sum(len(queue) for queue in self._queues.values()))
