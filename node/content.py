"""Model-sized content by hash: global models, plaintext update blobs and masked inputs held in memory.

Owns three bounded caches (the last few global models, update blobs, masked inputs) and the admission
of peers' update blobs. Update blobs and masked inputs are charged to the member that sent them
(`node.quotas.AuthorCache`): a member sending many can only evict its own, never an honest member's
before it is used. A payload named on the ledger but not here is waited for (it may be in flight)
and then fetched from peers through the `fetch` callback it is given, and checked by hash. May read the
store; it never imports the transport.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np
import trio

from node import contract as rc
from node.learning import vector_bytes, vector_from_bytes
from node.quotas import AuthorCache
from node.status import Metrics
from node.store import Store

IN_FLIGHT_WAIT_S = 3.0
"""How long a model-sized payload named on the ledger may still be on its way before we fetch it: every
member sends its update to every peer, so asking for it at once would only transfer it twice."""
PENDING_PER_MEMBER = 4
"""Update blobs (and, separately, masked inputs) held per member: one per round, for this round and the
next, with room to spare."""
FETCHED = -1
"""The author charged with content fetched by hash (its author is not known where it arrives)."""
MAX_MODELS = 4

FetchFn = Callable[..., Awaitable[bytes | None]]
"""`Transport.fetch(kind, digest, names=None)`: content named `digest`, checked, from some member."""


class Content:
    """In-memory content by SHA-256: `models` (vectors), `update_blobs` and `masked` (raw bytes)."""

    def __init__(self, store: Store, n_params: int, metrics: Metrics, fetch: FetchFn) -> None:
        self.store, self.n_params, self.metrics, self.fetch = store, n_params, metrics, fetch
        self.models: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.update_blobs: AuthorCache[bytes, bytes] = AuthorCache(PENDING_PER_MEMBER)
        self.masked: AuthorCache[bytes, bytes] = AuthorCache(PENDING_PER_MEMBER)

    def remember_model(self, vec: np.ndarray) -> bytes:
        digest = hashlib.sha256(vector_bytes(vec)).digest()
        self.models[digest] = vec
        while len(self.models) > MAX_MODELS:
            self.models.popitem(last=False)
        return digest

    async def model(self, model_hash: bytes) -> np.ndarray:
        """The global model with this hash: from memory, the store, or a peer; verified by hash."""
        while True:
            if model_hash in self.models:
                return self.models[model_hash]
            blob = self.store.blob(model_hash) or await self.fetch("get_blob", model_hash)
            if blob is not None and hashlib.sha256(blob).digest() == model_hash:
                self.remember_model(vector_from_bytes(blob, self.n_params))
                continue
            await trio.sleep(0.2)

    def accept_update_blob(self, sender: int, round_id: int, blob: bytes, s: rc.ContractState) -> None:
        """A peer's plaintext update, kept if it has the model's size and belongs to this round or the next."""
        if len(blob) != 4 * (self.n_params + 1) or round_id not in (s.round, s.round + 1):
            self.metrics.rejected.labels("unexpected_blob").inc()
            return
        self.keep_update_blob(sender, hashlib.sha256(blob).digest(), blob)

    def keep_update_blob(self, author: int, digest: bytes, blob: bytes) -> None:
        self.update_blobs.put(author, digest, blob)

    def keep_masked(self, author: int, digest: bytes, data: bytes) -> None:
        """A masked input whose signature by `author` was checked (or our own)."""
        self.masked.put(author, digest, data)

    async def update_vector(self, digest: bytes) -> np.ndarray | None:
        """The update named `digest`: arrived, or fetched after IN_FLIGHT_WAIT_S; None if unobtainable."""
        blob = await arrived(self.update_blobs, digest, IN_FLIGHT_WAIT_S)
        if blob is None:
            blob = await self.fetch("get_blob", digest)
            if blob is None or hashlib.sha256(blob).digest() != digest:
                return None
            self.keep_update_blob(FETCHED, digest, blob)
        try:
            return vector_from_bytes(blob, self.n_params + 1)
        except ValueError:
            return None

    def blob_for_peer(self, digest: bytes) -> bytes:
        """What we serve a peer asking for `digest` (`get_blob`): an update, a stored or a held model."""
        blob = self.update_blobs.get(digest) or self.store.blob(digest)
        if blob is None and digest in self.models:
            blob = vector_bytes(self.models[digest])
        return blob or b""


async def arrived(received: AuthorCache[bytes, bytes], digest: bytes, wait_s: float) -> bytes | None:
    """Wait up to `wait_s` for the payload named `digest` to arrive from its author."""
    deadline = time.monotonic() + wait_s
    while (data := received.get(digest)) is None and time.monotonic() < deadline:
        await trio.sleep(0.02)
    return data
