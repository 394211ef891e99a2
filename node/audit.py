"""Offline audit of a stopped node's ledger: `fednode audit HOME`.

The audit trusts nothing but the genesis file. It checks, in this order, and stops at the first problem:

1. nobody has the ledger open (a running daemon would change it under our feet);
2. the LevelDB files themselves, byte for byte (see below);
3. every record LevelDB holds, read with checksums verified;
4. the recorded chain id against genesis;
5. every block from height 1 to the head: it decodes, links to its parent by hash, its certificate carries
   a quorum of valid member signatures on its hash, and the hash index points back to it;
6. that no block, certificate or index entry exists beyond that chain;
7. every stored blob hashes to its key, and every blob a block references (the round contract says which)
   is stored.

LevelDB alone does not notice every flipped byte. With paranoid_checks it refuses a damaged .log record or
table block, but it never reads a table's metaindex block or the padding of its footer when no filter
policy is configured, and when the *last* record of a .log or MANIFEST file claims more bytes than the file
holds it assumes the writer crashed mid-record and silently drops it, the way it must after a real crash.
So before opening, the audit walks the framing of every log file (each record within its 32 KiB block and
within the file, block trailers zero, fragments in order) and checks every table's footer, its zero
padding, the layout of its last two blocks and the metaindex block's CRC. Together with LevelDB's own
checks, this covers every byte of every file except LevelDB's human-readable diagnostic log (LOG, LOG.old)
and the empty LOCK file, which hold no ledger data.

LevelDB modifies a database it opens (it replays the .log into a new table and rotates LOG), so the audit
works on a private copy and leaves the audited home exactly as it found it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import plyvel

from consensus.block import Block
from node.config import Genesis
from node.store import (
    BLOB_PREFIX,
    BLOCK_PREFIX,
    CERT_PREFIX,
    HASH_PREFIX,
    LEDGER_DIR,
    LedgerCorrupt,
    Store,
    StoreError,
    StoreLocked,
    check_stored_block,
    leveldb_message,
    open_here,
    sha256,
)

ReferencedBlobs = Callable[[Block], Iterable[bytes]]

LOG_BLOCK_BYTES = 32768
LOG_HEADER_BYTES = 7
LOG_FULL, LOG_FIRST, LOG_MIDDLE, LOG_LAST = 1, 2, 3, 4
TABLE_FOOTER_BYTES = 48
TABLE_HANDLES_BYTES = 40
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_BYTES = 5
CRC_MASK_DELTA = 0xA282EAD8

UNCHECKED_FILES = frozenset({"LOG", "LOG.old", "LOCK"})
LOG_FILE = re.compile(r"(MANIFEST-\d+|\d+\.log)")
TABLE_FILE = re.compile(r"\d+\.(ldb|sst)")


@dataclass
class AuditReport:
    """What the audit checked, and the first problem it found (None if the ledger is sound)."""

    ledger: Path
    files_checked: int = 0
    bytes_checked: int = 0
    records_read: int = 0
    head_height: int = 0
    blocks_checked: int = 0
    signatures_checked: int = 0
    index_entries_checked: int = 0
    blobs_checked: int = 0
    referenced_blobs_checked: int = 0
    first_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_error is None

    def describe(self) -> str:
        verdict = "OK" if self.ok else f"FAILED: {self.first_error}"
        return "\n".join([
            f"ledger {self.ledger}: {verdict}",
            f"  files: {self.files_checked} ({self.bytes_checked} bytes) framing and footers checked",
            f"  records: {self.records_read} read with checksums verified",
            (f"  blocks: {self.blocks_checked} of {self.head_height} hashed, linked and certified "
             f"({self.signatures_checked} signatures), {self.index_entries_checked} index entries"),
            f"  blobs: {self.blobs_checked} hash to their keys, {self.referenced_blobs_checked} references present",
        ])


def audit_home(home: Path, genesis: Genesis, referenced_blobs: ReferencedBlobs) -> AuditReport:
    """Audit the ledger of the stopped node whose home is `home`; problems end up in `first_error`."""
    ledger = home / LEDGER_DIR
    report = AuditReport(ledger)
    try:
        with private_copy(ledger) as copy:
            try:
                _audit_copy(copy, genesis, referenced_blobs, report)
            except StoreError as exc:
                report.first_error = str(exc).replace(str(copy), str(ledger))
    except StoreError as exc:
        report.first_error = str(exc)
    except OSError as exc:
        report.first_error = f"cannot read {exc.filename or ledger}: {exc.strerror}"
    return report


@contextmanager
def private_copy(ledger: Path) -> Iterator[Path]:
    """Copy the ledger's files to a temporary directory while holding its lock, so no daemon starts mid-copy."""
    if not (ledger / "CURRENT").is_file():
        raise StoreError(f"no ledger at {ledger}")
    if open_here(ledger):
        raise StoreLocked(f"the ledger {ledger} is open in this process; close it before auditing")
    with tempfile.TemporaryDirectory(prefix="fednode-audit-") as tmp:
        copy = Path(tmp) / LEDGER_DIR
        copy.mkdir()
        with _lock_held(ledger / "LOCK"):
            for entry in sorted(ledger.iterdir()):
                if entry.name in UNCHECKED_FILES:
                    continue
                if not entry.is_file() or entry.is_symlink():
                    raise LedgerCorrupt(f"file {entry.name}", "unexpected entry in the ledger directory")
                shutil.copyfile(entry, copy / entry.name)
        yield copy


@contextmanager
def _lock_held(lock_file: Path) -> Iterator[None]:
    """Hold a shared POSIX lock on LevelDB's LOCK file; fail if a daemon holds its exclusive one.

    A shared lock needs only read access, so an auditor may inspect a home it cannot write.
    """
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StoreLocked(f"a fednode daemon is using the ledger {lock_file.parent}; "
                                  "stop it before auditing") from None
            raise
        yield
    finally:
        os.close(fd)


def _audit_copy(copy: Path, genesis: Genesis, referenced_blobs: ReferencedBlobs, report: AuditReport) -> None:
    for path in sorted(copy.iterdir()):
        check_file(path)
        report.files_checked += 1
        report.bytes_checked += path.stat().st_size
    keys = _scan(copy, report)
    store = Store.open(copy, genesis.chain_id, create=False)
    try:
        report.head_height = store.head_height
        _check_chain(store, genesis, referenced_blobs, keys, report)
        _check_blobs(store, report)
    finally:
        store.close()


@dataclass
class _Keys:
    """Keys of the ledger's own records, gathered in one checksummed pass over the whole database."""

    heights: dict[bytes, set[int]]
    index: dict[bytes, int]


def _scan(copy: Path, report: AuditReport) -> _Keys:
    """Open the copy the way the daemon does and read every record, so LevelDB checks every checksum."""
    try:
        db = plyvel.DB(str(copy), create_if_missing=False, paranoid_checks=True)
    except plyvel.Error as exc:
        raise LedgerCorrupt("LevelDB files", f"refused on opening (a damaged .log, MANIFEST or table "
                            f"index): {leveldb_message(exc)}") from None
    keys = _Keys(heights={BLOCK_PREFIX: set(), CERT_PREFIX: set()}, index={})
    last_key = b""
    try:
        with db.iterator(verify_checksums=True) as it:
            for last_key, value in it:
                report.records_read += 1
                _collect(keys, last_key, value)
    except plyvel.Error as exc:
        where = f"after key {last_key[:48]!r}" if last_key else "in the first records"
        raise LedgerCorrupt("LevelDB data", f"{where}: {leveldb_message(exc)}") from None
    finally:
        db.close()
    return keys


def _collect(keys: _Keys, key: bytes, value: bytes) -> None:
    for prefix, heights in keys.heights.items():
        if key.startswith(prefix):
            if len(key) != len(prefix) + 8:
                raise LedgerCorrupt(f"key {key[:48]!r}", "malformed height")
            heights.add(int.from_bytes(key[len(prefix):], "big"))
    if key.startswith(HASH_PREFIX):
        if len(key) != len(HASH_PREFIX) + 32 or len(value) != 8:
            raise LedgerCorrupt(f"index entry {key[len(HASH_PREFIX):].hex()[:16]}", "malformed")
        keys.index[key[len(HASH_PREFIX):]] = int.from_bytes(value, "big")


def _check_chain(store: Store, genesis: Genesis, referenced_blobs: ReferencedBlobs, keys: _Keys,
                 report: AuditReport) -> None:
    prev: Block | None = None
    block_hashes = set()
    for block, cert in store.blocks():
        check_stored_block(genesis.chain_id, prev, block, cert, n=genesis.n, quorum=genesis.quorum,
                           verify=genesis.verify)
        report.signatures_checked += len(cert.signatures)
        if keys.index.get(block.hash()) != block.height:
            raise LedgerCorrupt(f"block {block.height}", "the hash index does not point back to this height")
        report.index_entries_checked += 1
        for digest in referenced_blobs(block):
            if store.get(BLOB_PREFIX + digest) is None:
                raise LedgerCorrupt(f"block {block.height}", f"referenced blob {digest.hex()[:16]}... is missing")
            report.referenced_blobs_checked += 1
        report.blocks_checked += 1
        block_hashes.add(block.hash())
        prev = block
    if prev is not None and prev.hash() != store.head_hash():
        raise LedgerCorrupt("head", f"recorded head hash differs from block {prev.height}'s hash")
    expected = set(range(1, store.head_height + 1))
    for prefix, heights in keys.heights.items():
        if heights - expected:
            raise LedgerCorrupt(f"{prefix.decode()[:-1]} {min(heights - expected)}",
                                f"stored beyond the head at height {store.head_height}")
    if keys.index.keys() - block_hashes:
        stray = min(keys.index.keys() - block_hashes)
        raise LedgerCorrupt(f"index entry {stray.hex()[:16]}", "names no stored block")


def _check_blobs(store: Store, report: AuditReport) -> None:
    for key, value in store.items(BLOB_PREFIX):
        if sha256(value) != key[len(BLOB_PREFIX):]:
            raise LedgerCorrupt(f"blob {key[len(BLOB_PREFIX):].hex()[:16]}", "content does not hash to its key")
        report.blobs_checked += 1


# ---------------------------------------------------------------------- LevelDB file structure

def check_file(path: Path) -> None:
    """Raise LedgerCorrupt unless `path` is a LevelDB file whose framing LevelDB itself would not miss."""
    name = path.name
    if name == "CURRENT":
        _check_current(path)
    elif LOG_FILE.fullmatch(name):
        check_log_framing(name, path.read_bytes())
    elif TABLE_FILE.fullmatch(name):
        check_table_tail(name, path)
    else:
        raise LedgerCorrupt(f"file {name}", "not a LevelDB file")


def _check_current(path: Path) -> None:
    text = path.read_bytes()
    if not re.fullmatch(rb"MANIFEST-\d+\n", text) or not (path.parent / text[:-1].decode()).is_file():
        raise LedgerCorrupt("file CURRENT", "does not name an existing MANIFEST")


def check_log_framing(name: str, data: bytes) -> None:
    """Walk the records of a LevelDB log-format file (a .log or a MANIFEST).

    Every physical record must lie within its 32 KiB block and within the file, block trailers too short for
    a header must be zero, and fragments must come as FULL or FIRST, MIDDLE..., LAST. LevelDB verifies the
    records' CRCs itself when it replays the file.
    """
    offset, in_fragments = 0, False
    while offset < len(data):
        left_in_block = LOG_BLOCK_BYTES - offset % LOG_BLOCK_BYTES
        if left_in_block < LOG_HEADER_BYTES:
            if any(data[offset:offset + left_in_block]):
                raise LedgerCorrupt(f"file {name}", f"nonzero block trailer at offset {offset}")
            offset += left_in_block
            continue
        if len(data) - offset < LOG_HEADER_BYTES:
            raise LedgerCorrupt(f"file {name}", f"truncated record header at offset {offset}")
        length = int.from_bytes(data[offset + 4:offset + 6], "little")
        kind = data[offset + 6]
        end = offset + LOG_HEADER_BYTES + length
        if end > offset + left_in_block or end > len(data):
            raise LedgerCorrupt(f"file {name}", f"record at offset {offset} claims {length} bytes past its "
                                "block or the file's end (a flipped length, or a write torn by a crash)")
        if kind not in (LOG_FULL, LOG_FIRST, LOG_MIDDLE, LOG_LAST) or \
                in_fragments != (kind in (LOG_MIDDLE, LOG_LAST)):
            raise LedgerCorrupt(f"file {name}", f"record of type {kind} out of place at offset {offset}")
        in_fragments = kind in (LOG_FIRST, LOG_MIDDLE)
        offset = end
    if in_fragments:
        raise LedgerCorrupt(f"file {name}", "ends inside a fragmented record")


def check_table_tail(name: str, path: Path) -> None:
    """Check what LevelDB skips in a table without a filter policy: footer padding and the metaindex block.

    The footer holds the metaindex and index block handles (varints), zero padding to 40 bytes, then the
    magic number. The table builder writes the metaindex block, then the index block, then the footer, each
    block followed by a 5-byte trailer (compression type, masked CRC32C of contents and type).
    """
    size = path.stat().st_size
    if size < TABLE_FOOTER_BYTES:
        raise LedgerCorrupt(f"file {name}", "too short for a table footer")
    with path.open("rb") as handle:
        handle.seek(size - TABLE_FOOTER_BYTES)
        footer = handle.read(TABLE_FOOTER_BYTES)
        if int.from_bytes(footer[TABLE_HANDLES_BYTES:], "little") != TABLE_MAGIC:
            raise LedgerCorrupt(f"file {name}", "bad table magic number")
        try:
            (meta_offset, meta_size, index_offset, index_size), used = _varints(footer[:TABLE_HANDLES_BYTES], 4)
        except ValueError:
            raise LedgerCorrupt(f"file {name}", "undecodable block handles in the footer") from None
        if any(footer[used:TABLE_HANDLES_BYTES]):
            raise LedgerCorrupt(f"file {name}", "nonzero footer padding")
        if meta_offset + meta_size + BLOCK_TRAILER_BYTES != index_offset or \
                index_offset + index_size + BLOCK_TRAILER_BYTES != size - TABLE_FOOTER_BYTES:
            raise LedgerCorrupt(f"file {name}", "footer block handles do not match the table's layout")
        handle.seek(meta_offset)
        block = handle.read(meta_size + 1)
        stored_crc = int.from_bytes(handle.read(4), "little")
    if masked_crc32c(block) != stored_crc:
        raise LedgerCorrupt(f"file {name}", "metaindex block checksum mismatch")


def _varints(data: bytes, count: int) -> tuple[list[int], int]:
    values, pos = [], 0
    for _ in range(count):
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("bad varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    return values, pos


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as LevelDB uses; table-driven, meant for the few small blocks checked here."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """LevelDB stores CRCs rotated and offset, so that CRCs of data containing CRCs stay well distributed."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF
