"""The ledger on disk: LevelDB (plyvel) holding blocks, certificates, model blobs and the cores' state.

Key layout (see docs/ledger-format.md):

    meta/chain_id          -> the 32-byte chain id, written once when the ledger is created
    meta/head              -> codec [height, block hash] of the newest block
    block/<height, 8B BE>  -> Block.encode()
    cert/<height, 8B BE>   -> CommitCertificate.encode()
    hash/<block hash>      -> height, 8 bytes big-endian
    blob/<sha256>          -> content-addressed bytes (model parameters)
    evidence/by/<sender, 4B BE>/<kind>/<slot>
                           -> a peer's misbehaviour proof, one per (sender, kind, slot), at most
                              EVIDENCE_MAX_PER_SENDER per sender (`record_evidence`)
    anything else          -> free for the cores' persisted state (b"pbft/...", b"evidence/...")

Everything that must survive a crash is written with sync=True: a block, its certificate, its index
entry, the blobs it brings, the new head and the cores' state the daemon persists along with it go in one
synced WriteBatch, so after a crash the ledger holds either all of them or none. LevelDB is opened with paranoid_checks and read with verify_checksums,
so a corrupted file surfaces as an error instead of silently missing records.

Writers must be serialized by the caller (the daemon calls from one trio task); readers may run
concurrently with them, as LevelDB allows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import plyvel

from consensus import codec
from consensus.block import (
    HASH_BYTES,
    MAX_BLOCK_BYTES,
    Block,
    CertificateError,
    CommitCertificate,
    Verify,
    check_link,
    verify_certificate,
)

META_CHAIN_ID = b"meta/chain_id"
META_HEAD = b"meta/head"
BLOCK_PREFIX = b"block/"
CERT_PREFIX = b"cert/"
HASH_PREFIX = b"hash/"
BLOB_PREFIX = b"blob/"
EVIDENCE_PREFIX = b"evidence/by/"
RESERVED_PREFIXES = (b"meta/", BLOCK_PREFIX, CERT_PREFIX, HASH_PREFIX, BLOB_PREFIX, EVIDENCE_PREFIX)
"""Prefixes only this module writes; put_sync and write_batch_sync refuse them."""
MAX_BLOB_BYTES = 256 << 20
EVIDENCE_MAX_PER_SENDER = 64
"""Evidence records kept per member, across restarts: one proof convicts, and each record costs a synced
write, so a member producing conflicting messages as fast as it can buys at most this many."""
EVIDENCE_KIND_MAX_CHARS = 32
EVIDENCE_SLOT_MAX_BYTES = 64
EVIDENCE_MAX_BYTES = 16 << 20
LEDGER_DIR = "ledger"
"""The LevelDB directory inside a node's home (NodeConfig.db_path)."""


class StoreError(Exception):
    """The ledger cannot be opened or used as asked; the message says why."""


class StoreLocked(StoreError):
    """Another fednode daemon (or another Store in this process) has this ledger open."""


class ChainMismatch(StoreError):
    """The ledger on disk belongs to another chain than the genesis we were started with."""


class AppendRefused(StoreError):
    """append_block was handed a block that does not extend the stored head."""


class LedgerCorrupt(StoreError):
    """A stored record is damaged or inconsistent. `record` names it (e.g. 'block 7')."""

    def __init__(self, record: str, detail: str) -> None:
        super().__init__(f"{record}: {detail}")
        self.record = record
        self.detail = detail


def height_key(prefix: bytes, height: int) -> bytes:
    return prefix + height.to_bytes(8, "big")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_open_paths: set[Path] = set()
_open_paths_lock = threading.Lock()


def open_here(path: Path) -> bool:
    """Whether a Store in this process has the ledger at `path` open.

    LevelDB's own in-process check closes the LOCK file's descriptor when it refuses a second open, which
    drops the POSIX lock that keeps *other* processes out; so a second open must never reach LevelDB, and
    nothing else in this process may open and close that LOCK file while the ledger is open.
    """
    with _open_paths_lock:
        return path.resolve() in _open_paths


class Store:
    """An open ledger. Use `Store.open`; call `close` when done (the daemon does in a finally)."""

    def __init__(self, db: plyvel.DB, path: Path, chain_id: bytes, head_height: int, head_hash: bytes) -> None:
        self._db = db
        self.path = path
        self.chain_id = chain_id
        self.head_height = head_height
        self._head_hash = head_hash
        self._evidence_counts: dict[int, int] = {}

    @staticmethod
    def open(path: Path, chain_id: bytes, *, create: bool = True) -> Store:
        """Open (or create) the ledger at `path` for `chain_id`.

        Raises StoreLocked if another daemon uses it, ChainMismatch if it belongs to another chain,
        LedgerCorrupt if LevelDB finds damage, and StoreError for anything else that prevents opening.
        """
        assert len(chain_id) == HASH_BYTES, chain_id
        resolved = path.resolve()
        with _open_paths_lock:
            if resolved in _open_paths:
                raise StoreLocked(_locked_message(path))
            if not create and not (path / "CURRENT").exists():
                raise StoreError(f"no ledger at {path}")
            if create:
                _make_dirs(path)
            db = _open_db(path, create)
            _open_paths.add(resolved)
        try:
            recorded = _get(db, META_CHAIN_ID, "chain id")
            if recorded is None:
                recorded = _initialize(db, path, chain_id)
            if recorded != chain_id:
                raise ChainMismatch(f"ledger {path} belongs to chain {recorded.hex()[:16]}..., not to this genesis "
                                    f"({chain_id.hex()[:16]}...); use another home or the matching genesis")
            height, head_hash = _load_head(db, chain_id)
        except BaseException:
            _close_db(db, resolved)
            raise
        return Store(db, path, chain_id, height, head_hash)

    def close(self) -> None:
        _close_db(self._db, self.path.resolve())

    # ------------------------------------------------------------------ chain

    def head_hash(self) -> bytes:
        """Hash of the newest block, or the chain id while the ledger is empty (block 1's parent)."""
        return self._head_hash

    def append_block(self, block: Block, cert: CommitCertificate, blobs: Mapping[bytes, bytes] | None = None,
                     puts: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Store a final block with its certificate and the blobs it brings, atomically and synced.

        `puts` are records of the cores' state (as for `write_batch_sync`) that go in the same batch: the
        replica's state for the height it delivers costs no synced write of its own.
        The caller has verified the certificate's signatures; this refuses, with AppendRefused, anything that
        does not extend the stored head or whose certificate or blobs do not match by hash.
        """
        block_hash = block.hash()
        encoded = block.encode()
        blobs = blobs or {}
        self._check_append(block, block_hash, cert, len(encoded))
        for digest, data in blobs.items():
            if sha256(data) != digest:
                raise AppendRefused(f"blob {digest.hex()[:16]}... does not hash to its key")
        for key, _value in puts:
            _check_free_key(key)
        with self._db.write_batch(sync=True, transaction=True) as batch:
            for key, value in puts:
                batch.put(key, value)
            for digest, data in blobs.items():
                batch.put(BLOB_PREFIX + digest, data)
            batch.put(height_key(BLOCK_PREFIX, block.height), encoded)
            batch.put(height_key(CERT_PREFIX, block.height), cert.encode())
            batch.put(HASH_PREFIX + block_hash, block.height.to_bytes(8, "big"))
            batch.put(META_HEAD, codec.encode([block.height, block_hash]))
        self.head_height, self._head_hash = block.height, block_hash

    def _check_append(self, block: Block, block_hash: bytes, cert: CommitCertificate, size: int) -> None:
        if block.chain_id != self.chain_id:
            raise AppendRefused(f"block {block.height} belongs to another chain")
        if block.height != self.head_height + 1 or block.prev_hash != self._head_hash:
            raise AppendRefused(f"block {block.height} does not extend the head at height {self.head_height}")
        if cert.height != block.height or cert.block_hash != block_hash:
            raise AppendRefused(f"certificate is not for block {block.height}")
        if size > MAX_BLOCK_BYTES:
            raise AppendRefused(f"block {block.height} encodes to {size} bytes, over {MAX_BLOCK_BYTES}")

    def block(self, height: int) -> tuple[Block, CommitCertificate] | None:
        """The stored block at `height` with its certificate; None above the head or below 1."""
        if not 1 <= height <= self.head_height:
            return None
        return read_block(self._db, height)

    def blocks(self, start: int = 1) -> Iterator[tuple[Block, CommitCertificate]]:
        """Stored blocks from `start` to the head, in order (for replaying the chain on start)."""
        for height in range(max(start, 1), self.head_height + 1):
            yield read_block(self._db, height)

    def height_of(self, block_hash: bytes) -> int | None:
        value = _get(self._db, HASH_PREFIX + block_hash, f"index entry {block_hash.hex()[:16]}")
        if value is None:
            return None
        if len(value) != 8:
            raise LedgerCorrupt(f"index entry {block_hash.hex()[:16]}", "height is not 8 bytes")
        return int.from_bytes(value, "big")

    def verify_chain(self, n: int, quorum: int, verify: Verify) -> None:
        """Check every stored block links to its parent, its certificate verifies and the index agrees.

        Raises LedgerCorrupt naming the first bad height. The daemon calls this on every start.
        """
        prev: Block | None = None
        for block, cert in self.blocks():
            check_stored_block(self.chain_id, prev, block, cert, n=n, quorum=quorum, verify=verify)
            if self.height_of(block.hash()) != block.height:
                raise LedgerCorrupt(f"block {block.height}", "hash index does not point back to this height")
            prev = block
        if prev is not None and prev.hash() != self._head_hash:
            raise LedgerCorrupt("head", f"recorded head hash differs from block {prev.height}'s hash")

    # ------------------------------------------------------------------ blobs

    def put_blob(self, data: bytes) -> bytes:
        """Store `data` under its SHA-256 (synced) and return the hash; storing it again is a no-op."""
        assert len(data) <= MAX_BLOB_BYTES, len(data)
        digest = sha256(data)
        if _get(self._db, BLOB_PREFIX + digest, f"blob {digest.hex()[:16]}") is None:
            self._db.put(BLOB_PREFIX + digest, data, sync=True)
        return digest

    def blob(self, digest: bytes) -> bytes | None:
        """The blob with this SHA-256, checked against it, or None if we do not have it."""
        data = _get(self._db, BLOB_PREFIX + digest, f"blob {digest.hex()[:16]}")
        if data is not None and sha256(data) != digest:
            raise LedgerCorrupt(f"blob {digest.hex()[:16]}", "content does not hash to its key")
        return data

    # ------------------------------------------------------------------ evidence

    def record_evidence(self, kind: str, sender: int, slot: bytes, data: bytes) -> bool:
        """Keep `data` as proof that member `sender` misbehaved (`kind`) at `slot`, synced; False (nothing
        written) if that (sender, kind, slot) is already recorded or the sender has its
        EVIDENCE_MAX_PER_SENDER records. Callers count refusals instead of logging each copy."""
        assert 0 < len(kind) <= EVIDENCE_KIND_MAX_CHARS and "/" not in kind, kind
        assert 0 <= sender < 1 << 32 and len(slot) <= EVIDENCE_SLOT_MAX_BYTES, (sender, slot)
        assert len(data) <= EVIDENCE_MAX_BYTES, len(data)
        key = EVIDENCE_PREFIX + sender.to_bytes(4, "big") + b"/" + kind.encode() + b"/" + slot
        if self.evidence_count(sender) >= EVIDENCE_MAX_PER_SENDER or self.get(key) is not None:
            return False
        self._db.put(key, data, sync=True)
        self._evidence_counts[sender] += 1
        return True

    def evidence_count(self, sender: int) -> int:
        """How many evidence records `sender` has (counted on the ledger once per process, then tracked)."""
        if sender not in self._evidence_counts:
            prefix = EVIDENCE_PREFIX + sender.to_bytes(4, "big") + b"/"
            self._evidence_counts[sender] = sum(1 for _ in self.items(prefix))
        return self._evidence_counts[sender]

    def evidence(self, sender: int) -> Iterator[tuple[str, bytes, bytes]]:
        """The (kind, slot, data) records of `sender`, in key order."""
        prefix = EVIDENCE_PREFIX + sender.to_bytes(4, "big") + b"/"
        for key, data in self.items(prefix):
            kind, _, slot = key[len(prefix):].partition(b"/")
            yield kind.decode(), slot, data

    # ------------------------------------------------------------------ the cores' state

    def put_sync(self, key: bytes, value: bytes) -> None:
        _check_free_key(key)
        self._db.put(key, value, sync=True)

    def get(self, key: bytes) -> bytes | None:
        return _get(self._db, key, f"key {key[:40]!r}")

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value) pairs whose key starts with `prefix`, in key order."""
        try:
            with self._db.iterator(prefix=prefix, verify_checksums=True) as it:
                yield from it
        except plyvel.Error as exc:
            raise LedgerCorrupt(f"records under {prefix!r}", leveldb_message(exc)) from None

    def write_batch_sync(self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes] = ()) -> None:
        """Apply all deletes, then all puts, atomically, synced to disk before returning."""
        with self._db.write_batch(sync=True, transaction=True) as batch:
            for key in deletes:
                _check_free_key(key)
                batch.delete(key)
            for key, value in puts:
                _check_free_key(key)
                batch.put(key, value)


def check_stored_block(chain_id: bytes, prev: Block | None, block: Block, cert: CommitCertificate, *, n: int,
                       quorum: int, verify: Verify) -> None:
    """Raise LedgerCorrupt naming `block` unless it extends `prev` and its certificate proves it final."""
    try:
        check_link(chain_id, prev, block)
        verify_certificate(chain_id, block, cert, n=n, quorum=quorum, verify=verify)
    except CertificateError as exc:
        raise LedgerCorrupt(f"block {block.height}", str(exc)) from None


def read_block(db: plyvel.DB, height: int) -> tuple[Block, CommitCertificate]:
    """Decode the block and certificate stored at `height`; raise LedgerCorrupt if absent or damaged."""
    record = f"block {height}"
    block_bytes = _get(db, height_key(BLOCK_PREFIX, height), record)
    cert_bytes = _get(db, height_key(CERT_PREFIX, height), record)
    if block_bytes is None or cert_bytes is None:
        raise LedgerCorrupt(record, "missing below the recorded head")
    try:
        block, cert = Block.decode(block_bytes), CommitCertificate.decode(cert_bytes)
    except codec.DecodeError as exc:
        raise LedgerCorrupt(record, f"undecodable: {exc}") from None
    if block.height != height:
        raise LedgerCorrupt(record, f"stored block says height {block.height}")
    return block, cert


def _open_db(path: Path, create: bool) -> plyvel.DB:
    try:
        return plyvel.DB(str(path), create_if_missing=create, paranoid_checks=True)
    except plyvel.IOError as exc:
        message = leveldb_message(exc)
        if "/LOCK:" in message and ("unavailable" in message or "already held" in message):
            raise StoreLocked(_locked_message(path)) from None
        raise StoreError(f"cannot open ledger {path}: {message}") from None
    except plyvel.CorruptionError as exc:
        raise LedgerCorrupt(f"ledger {path}", leveldb_message(exc)) from None
    except plyvel.Error as exc:
        raise StoreError(f"cannot open ledger {path}: {leveldb_message(exc)}") from None


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"cannot create ledger directory {path}: {exc.strerror}") from None


def _close_db(db: plyvel.DB, resolved: Path) -> None:
    with _open_paths_lock:
        if not db.closed:
            db.close()
            _open_paths.discard(resolved)


def _locked_message(path: Path) -> str:
    return (f"another fednode daemon is using the ledger {path} (its LevelDB LOCK is held); "
            "stop that daemon or use another home")


def leveldb_message(exc: plyvel.Error) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _get(db: plyvel.DB, key: bytes, record: str) -> bytes | None:
    try:
        return db.get(key, verify_checksums=True)
    except plyvel.Error as exc:
        raise LedgerCorrupt(record, leveldb_message(exc)) from None


def _initialize(db: plyvel.DB, path: Path, chain_id: bytes) -> bytes:
    """Record the chain id in a new ledger; refuse a LevelDB that holds something else already."""
    with db.iterator(include_value=False) as it:
        if next(it, None) is not None:
            raise StoreError(f"{path} is a LevelDB database but not a fednode ledger (no chain id recorded)")
    db.put(META_CHAIN_ID, chain_id, sync=True)
    return chain_id


def _load_head(db: plyvel.DB, chain_id: bytes) -> tuple[int, bytes]:
    raw = _get(db, META_HEAD, "head")
    if raw is None:
        return 0, chain_id
    try:
        height, head_hash = codec.expect_list(codec.decode(raw, max_bytes=64, max_items=2), 2, "head")
        return codec.expect_int(height, "head height", lo=1), codec.expect_bytes(head_hash, "head hash", HASH_BYTES)
    except codec.DecodeError as exc:
        raise LedgerCorrupt("head", f"undecodable: {exc}") from None


def _check_free_key(key: bytes) -> None:
    assert not key.startswith(RESERVED_PREFIXES), f"key {key!r} is reserved for the ledger itself"
