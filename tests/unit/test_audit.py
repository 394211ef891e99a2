"""`audit_home`: passes on a sound ledger, names the record when values are tampered with, and reports
(never crashes on, never passes) a byte flipped anywhere in the LevelDB files."""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
from pathlib import Path

import plyvel
import pytest

from consensus.block import Block, CommitCertificate
from node.audit import AuditReport, audit_home, check_log_framing, crc32c
from node.config import Genesis
from node.store import LEDGER_DIR, Store, height_key
from tests.unit.test_store import (
    build_chain,
    certify,
    make_genesis,
    model_blob,
    next_block,
    referenced_blobs,
)

FLIP_SEED = 20261125
UNCHECKED = {"LOG", "LOG.old", "LOCK"}


@pytest.fixture(scope="module")
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture(scope="module")
def pristine(genesis: Genesis, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose ledger has both a table (blocks 1-6, compacted on reopening) and a .log (blocks 7-9)."""
    home = tmp_path_factory.mktemp("pristine")
    build_chain(genesis, home / LEDGER_DIR).close()
    store = Store.open(home / LEDGER_DIR, genesis.chain_id)
    for _ in range(3):
        block = next_block(genesis, store, (b"later",))
        store.append_block(block, certify(genesis, block))
    store.close()
    return home


def fresh_copy(pristine: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(pristine, home)
    return home


def audit(home: Path, genesis: Genesis) -> AuditReport:
    return audit_home(home, genesis, referenced_blobs)


def tamper(home: Path, key: bytes, value: bytes | None) -> None:
    with plyvel.DB(str(home / LEDGER_DIR)) as db:
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)


def test_sound_ledger_passes_and_counts(genesis: Genesis, pristine: Path) -> None:
    files_before = {p.name: p.read_bytes() for p in (pristine / LEDGER_DIR).iterdir() if p.name not in UNCHECKED}
    report = audit(pristine, genesis)
    assert report.ok, report.describe()
    assert (report.head_height, report.blocks_checked, report.index_entries_checked) == (9, 9, 9)
    assert report.signatures_checked == 27 and report.referenced_blobs_checked == 3 and report.blobs_checked == 4
    assert report.records_read >= 9 * 3 + 4 and report.files_checked >= 4
    assert "OK" in report.describe()
    suffixes = {Path(name).suffix for name in files_before}
    assert {".ldb", ".log"} <= suffixes, files_before.keys()
    # The audit works on a copy: the audited files are left exactly as they were.
    assert files_before == {p.name: p.read_bytes() for p in (pristine / LEDGER_DIR).iterdir()
                            if p.name not in UNCHECKED}


def flip_positions(size: int, rng: random.Random) -> list[int]:
    """Every byte of small files; for larger ones the framing at both ends plus random positions inside."""
    if size <= 160:
        return list(range(size))
    edges = list(range(24)) + list(range(size - 96, size))
    return sorted(set(edges + rng.sample(range(size), 24)))


def test_any_flipped_byte_is_reported(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    """The audit leaves the home untouched, so one copy serves: flip a byte, audit, restore the file."""
    rng = random.Random(FLIP_SEED)
    home = fresh_copy(pristine, tmp_path)
    checked = 0
    for name in sorted(p.name for p in (home / LEDGER_DIR).iterdir() if p.name not in UNCHECKED):
        target = home / LEDGER_DIR / name
        data = target.read_bytes()
        for position in flip_positions(len(data), rng):
            flipped = bytearray(data)
            flipped[position] ^= rng.randrange(1, 256)
            target.write_bytes(bytes(flipped))
            report = audit(home, genesis)
            assert not report.ok, f"flip in {name} at {position} passed the audit (seed {FLIP_SEED})"
            checked += 1
        target.write_bytes(data)
    assert checked > 200
    assert audit(home, genesis).ok


def test_tampered_transaction_names_the_block(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    with plyvel.DB(str(home / LEDGER_DIR)) as db:
        block = Block.decode(db.get(height_key(b"block/", 3)))
    tampered = Block(block.chain_id, 3, block.prev_hash, block.view, block.proposer, (b"round 3", b"zzz"))
    tamper(home, height_key(b"block/", 3), tampered.encode())
    assert audit(home, genesis).first_error == "block 3: certificate is for another block"


def test_forged_certificate_signature_names_block_and_replica(genesis: Genesis, pristine: Path,
                                                               tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    with plyvel.DB(str(home / LEDGER_DIR)) as db:
        cert = CommitCertificate.decode(db.get(height_key(b"cert/", 7)))
    replica, signature = cert.signatures[2]
    forged = cert.signatures[:2] + ((replica, signature[:-1] + bytes([signature[-1] ^ 1])),)
    tamper(home, height_key(b"cert/", 7), CommitCertificate(7, cert.view, cert.block_hash, forged).encode())
    assert audit(home, genesis).first_error == f"block 7: bad signature from replica {replica}"


def test_certificate_without_quorum(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    with plyvel.DB(str(home / LEDGER_DIR)) as db:
        cert = CommitCertificate.decode(db.get(height_key(b"cert/", 2)))
    tamper(home, height_key(b"cert/", 2), CommitCertificate(2, cert.view, cert.block_hash, cert.signatures[:2]).encode())
    assert audit(home, genesis).first_error == "block 2: 2 signatures, quorum is 3"


def test_tampered_blob(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    digest = hashlib.sha256(model_blob(4)).digest()
    tamper(home, b"blob/" + digest, model_blob(4)[:-1] + b"!")
    assert audit(home, genesis).first_error == f"blob {digest.hex()[:16]}: content does not hash to its key"


def test_missing_referenced_blob(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    digest = hashlib.sha256(model_blob(6)).digest()
    tamper(home, b"blob/" + digest, None)
    assert audit(home, genesis).first_error == f"block 6: referenced blob {digest.hex()[:16]}... is missing"


def test_hash_index_and_extra_records(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    with plyvel.DB(str(home / LEDGER_DIR)) as db:
        block5 = Block.decode(db.get(height_key(b"block/", 5)))
    tamper(home, b"hash/" + block5.hash(), (4).to_bytes(8, "big"))
    assert audit(home, genesis).first_error == "block 5: the hash index does not point back to this height"

    home = fresh_copy(pristine, tmp_path)
    tamper(home, height_key(b"cert/", 12), b"\x90")
    assert audit(home, genesis).first_error == "cert 12: stored beyond the head at height 9"

    home = fresh_copy(pristine, tmp_path)
    stray = b"\x07" * 32
    tamper(home, b"hash/" + stray, (2).to_bytes(8, "big"))
    assert audit(home, genesis).first_error == f"index entry {stray.hex()[:16]}: names no stored block"


def test_dropped_head_block_is_reported(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    tamper(home, height_key(b"block/", 9), None)
    assert audit(home, genesis).first_error == "block 9: missing below the recorded head"


def test_other_genesis_is_a_chain_mismatch(pristine: Path, tmp_path: Path) -> None:
    other = make_genesis()
    object.__setattr__(other, "chain_id", b"\x05" * 32)
    report = audit(fresh_copy(pristine, tmp_path), other)
    assert report.first_error is not None and "belongs to chain" in report.first_error
    assert str(tmp_path / "home" / LEDGER_DIR) in report.first_error


def test_missing_home(genesis: Genesis, tmp_path: Path) -> None:
    assert audit(tmp_path / "nowhere", genesis).first_error == f"no ledger at {tmp_path / 'nowhere' / LEDGER_DIR}"


def test_ledger_open_in_this_process_is_refused(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    store = Store.open(home / LEDGER_DIR, genesis.chain_id)
    try:
        report = audit(home, genesis)
    finally:
        store.close()
    assert report.first_error is not None and "open in this process" in report.first_error


def test_ledger_of_a_running_daemon_is_refused(genesis: Genesis, pristine: Path, tmp_path: Path) -> None:
    home = fresh_copy(pristine, tmp_path)
    code = "import sys, plyvel; db = plyvel.DB(sys.argv[1]); print('open', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(home / LEDGER_DIR)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        report = audit(home, genesis)
    finally:
        holder.communicate("", timeout=30)
    assert report.first_error is not None and "daemon is using the ledger" in report.first_error
    assert audit(home, genesis).ok


def test_torn_or_extended_log_tail_is_reported() -> None:
    record = (0).to_bytes(4, "little") + (5).to_bytes(2, "little") + bytes([1]) + b"hello"
    check_log_framing("x.log", record * 3)
    for broken in (record * 3 + b"\x00", (record * 3)[:-1], record + bytes(7), record[:6]):
        with pytest.raises(Exception, match="x.log"):
            check_log_framing("x.log", broken)


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283


WRITER = """
import sys
from pathlib import Path
from tests.unit.test_store import build_chain, certify, make_genesis, next_block
genesis = make_genesis()
store = build_chain(genesis, Path(sys.argv[1]), heights=2)
while True:
    block = next_block(genesis, store, (b"tx" * store.head_height,))
    store.append_block(block, certify(genesis, block))
    print(store.head_height, flush=True)
"""


def test_sigkilled_writer_leaves_a_sound_ledger(genesis: Genesis, tmp_path: Path) -> None:
    """Appends are atomic: a writer killed at any moment leaves a chain that audits clean, up to its last ack."""
    home = tmp_path / "killed"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home / LEDGER_DIR)], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[2])
    assert writer.stdout is not None
    acknowledged = 0
    while acknowledged < 40:
        line = writer.stdout.readline()
        assert line, "the writer died early"
        acknowledged = int(line)
    writer.kill()
    writer.wait(timeout=30)
    report = audit(home, genesis)
    assert report.ok, report.describe()
    assert report.head_height >= acknowledged
    store = Store.open(home / LEDGER_DIR, genesis.chain_id)
    try:
        store.verify_chain(genesis.n, genesis.quorum, genesis.verify)
        assert store.head_height == report.head_height
    finally:
        store.close()
