"""Sync: catching up on committed blocks we missed, and serving blocks and blobs to peers that ask.

Owns the `fetching` flag (set when the replica or a restart says we may be behind) and the task that
then asks peers for blocks after our head. Every fetched block is checked against its link to our head
and its commit certificate before the daemon's `on_fetched` callback applies it. A catch-up pass asks the
members in random order (those that answered badly last) and stops at the first answer that added a
block, or once every member was asked; an answer that adds nothing (old blocks, a broken link, a bad
certificate, undecodable bytes) is that member's `bad_answer` and the next member is asked, so a member
answering first with stale blocks cannot hold us back. Serving answers `get_blocks`, `get_blob` and
`get_masked` from the store and the content caches; `get_blocks` names the most bytes the requester
will read and is answered with as many whole blocks as fit in it, so an answer is never larger than
its requester can take. May call the
transport (requests), the store and the content caches; never the round driver or the proposer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from consensus import codec
from consensus.block import Block, CertificateError, CommitCertificate, check_link, verify_certificate
from node.config import Genesis
from node.content import Content
from node.status import Metrics
from node.store import Store
from node.transport import Transport
from node.wire import Rejected

logger = logging.getLogger("fednode")

MAX_BLOCKS_PER_FETCH = 64
BLOCKS_RESPONSE_MAX_BYTES = 16 << 20
"""The most bytes of blocks we ask for (and serve) in one answer."""
ANSWER_OVERHEAD_BYTES = 64
"""Room for the msgpack headers of the answer's arrays around the blocks and certificates."""

OnFetched = Callable[[Block, CommitCertificate], Awaitable[None]]


class Sync:
    """Catch-up client and block/blob server."""

    def __init__(self, genesis: Genesis, store: Store, transport: Transport, content: Content, metrics: Metrics,
                 on_fetched: OnFetched) -> None:
        self.genesis, self.store, self.transport, self.content = genesis, store, transport, content
        self.metrics, self.on_fetched = metrics, on_fetched
        self.fetching = True  # ask once for missed blocks: an idle consortium sends nothing that would tell us

    # ------------------------------------------------------------------ catch-up

    async def catch_up_loop(self) -> None:
        """Fetch committed blocks we missed from peers; every block is checked against its certificate."""
        while True:
            await trio.sleep(0.5 if not self.fetching else 0.05)
            if not self.fetching:
                continue
            self.fetching = False
            await self._catch_up_once()

    async def _catch_up_once(self) -> None:
        peers = self.transport.fetch_order()
        if not peers and self.genesis.n > 1:
            self.fetching = True  # no peer connected yet: ask again on the next pass
            return
        for peer in peers:
            budget = min(BLOCKS_RESPONSE_MAX_BYTES, self.transport.limits.frame_max_bytes)
            asked_from = self.store.head_height + 1
            data = await self.transport.request(peer, "get_blocks", codec.encode([asked_from, budget]), budget)
            if not data:
                continue  # nothing newer there (or no answer): ask the next member
            before = self.store.head_height
            if not await self._add_answer(data, asked_from):
                self.transport.violation(self.transport.peer_index[peer], "bad_answer", "get_blocks")
            elif self.store.head_height > before:
                self.fetching = True  # progress: there may be more
                return

    async def _add_answer(self, data: bytes, asked_from: int) -> bool:
        """Apply the blocks of a `get_blocks` answer that extend our head; False if the answer was bad:
        undecodable, empty, starting elsewhere than asked, or holding a block that does not verify. (Blocks
        we got meanwhile through consensus are skipped, not held against the member.)"""
        try:
            items = codec.decode(data, max_bytes=BLOCKS_RESPONSE_MAX_BYTES, max_items=MAX_BLOCKS_PER_FETCH)
            pairs = [(Block.decode(b), CommitCertificate.decode(c)) for b, c in items]
        except (codec.DecodeError, ValueError, TypeError):
            return False
        if not pairs or pairs[0][0].height != asked_from:
            return False
        for block, cert in pairs:
            if block.height > self.store.head_height and not await self._add_fetched(block, cert):
                return False
        return True

    async def _add_fetched(self, block: Block, cert: CommitCertificate) -> bool:
        head = self.store.block(self.store.head_height)
        try:
            check_link(self.genesis.chain_id, head[0] if head else None, block)
            verify_certificate(self.genesis.chain_id, block, cert, n=self.genesis.n, quorum=self.genesis.quorum,
                               verify=self.genesis.verify)
        except CertificateError as exc:
            self.metrics.rejected.labels("bad_fetched_block").inc()
            logger.warning("fetched block %d rejected: %s", block.height, exc)
            return False
        await self.on_fetched(block, cert)
        return True

    # ------------------------------------------------------------------ serving

    async def serve_request(self, peer: str, data: bytes) -> bytes:
        try:
            env = self.transport.open_request(peer, data)
        except Rejected as exc:
            self.metrics.rejected.labels(exc.reason.name.lower()).inc()
            return b""
        if env.type == "get_blob" and len(env.payload) == 32:
            return self.content.blob_for_peer(env.payload)
        if env.type == "get_masked" and len(env.payload) == 32:
            return self.content.masked.get(env.payload, b"")
        if env.type == "get_blocks":
            return self._blocks_response(env.payload)
        return b""

    def _blocks_response(self, payload: bytes) -> bytes:
        """Blocks from the asked height on, as many whole ones as fit the requester's byte budget."""
        try:
            start, budget = codec.decode(payload, max_bytes=64, max_items=2)
            start = codec.expect_int(start, "from_height", lo=1)
            budget = min(codec.expect_int(budget, "max_bytes", lo=1), BLOCKS_RESPONSE_MAX_BYTES)
        except (codec.DecodeError, ValueError, TypeError):
            return b""
        out: list[list[bytes]] = []
        used = ANSWER_OVERHEAD_BYTES
        for height in range(start, min(start + MAX_BLOCKS_PER_FETCH, self.store.head_height + 1)):
            stored = self.store.block(height)
            assert stored is not None
            pair = [stored[0].encode(), stored[1].encode()]
            used += len(pair[0]) + len(pair[1]) + ANSWER_OVERHEAD_BYTES
            if used > budget:
                break
            out.append(pair)
        return codec.encode(out) if out else b""
