"""Sync: catching up on committed blocks we missed, and serving blocks and blobs to peers that ask.

Owns the `fetching` flag (set when the replica or a restart says we may be behind) and the task that
then asks peers for blocks after our head. Every fetched block is checked against its link to our head
and its commit certificate before the daemon's `on_fetched` callback applies it. Serving answers
`get_blocks`, `get_blob` and `get_masked` from the store and the content caches. May call the
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
        peers = self.transport.connected_peers()
        if not peers and self.genesis.n > 1:
            self.fetching = True  # no peer connected yet: ask again on the next pass
            return
        for peer in peers:
            data = await self.transport.request(peer, "get_blocks", codec.encode(self.store.head_height + 1))
            if not data:
                continue
            try:
                items = codec.decode(data, max_bytes=MAX_BLOCKS_PER_FETCH * (5 << 20),
                                     max_items=MAX_BLOCKS_PER_FETCH)
                pairs = [(Block.decode(b), CommitCertificate.decode(c)) for b, c in items]
            except (codec.DecodeError, ValueError, TypeError):
                self.metrics.rejected.labels("bad_catch_up").inc()
                continue
            for block, cert in pairs:
                if block.height <= self.store.head_height:
                    continue
                if not await self._add_fetched(block, cert):
                    break
            if pairs:
                self.fetching = True
                return

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
            env = self.transport.open_request(data)
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
        try:
            start = codec.expect_int(codec.decode(payload, max_bytes=32), "from_height", lo=1)
        except codec.DecodeError:
            return b""
        out = []
        for height in range(start, min(start + MAX_BLOCKS_PER_FETCH, self.store.head_height + 1)):
            stored = self.store.block(height)
            assert stored is not None
            out.append([stored[0].encode(), stored[1].encode()])
        return codec.encode(out)
