"""The LevelDB ledger: appends, reads, the cores' keys, chain verification, locking and reopening.

The chain-building helpers here are also used by test_audit.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import plyvel
import pytest
from nacl.signing import SigningKey

from consensus.block import Block, CommitCertificate, commit_statement
from node.config import Genesis, genesis_from_dict
from node.store import (
    EVIDENCE_MAX_PER_SENDER,
    AppendRefused,
    ChainMismatch,
    LedgerCorrupt,
    Store,
    StoreError,
    StoreLocked,
    height_key,
)

MEMBER_KEYS = [SigningKey(hashlib.sha256(b"member %d" % i).digest()) for i in range(4)]
MODEL_TX = b"model:"


def make_genesis() -> Genesis:
    return genesis_from_dict({
        "fednode_genesis": 1, "f": 1,
        "members": [{"name": f"h{i}", "public_key": bytes(k.verify_key).hex(), "address": f"/ip4/127.0.0.1/tcp/{4000 + i}"}
                    for i, k in enumerate(MEMBER_KEYS)],
    })


def certify(genesis: Genesis, block: Block, signers: Iterable[int] = (0, 1, 2)) -> CommitCertificate:
    statement = commit_statement(genesis.chain_id, block.view, block.height, block.hash())
    return CommitCertificate(block.height, block.view, block.hash(),
                             tuple((i, MEMBER_KEYS[i].sign(statement).signature) for i in signers))


def model_blob(height: int) -> bytes:
    return hashlib.sha256(b"model %d" % height).digest() * (4 + height)


def referenced_blobs(block: Block) -> list[bytes]:
    """The tests' stand-in for the round contract: a tx b'model:<hash>' references a model blob."""
    return [tx[len(MODEL_TX):] for tx in block.txs if tx.startswith(MODEL_TX)]


def next_block(genesis: Genesis, store: Store, txs: tuple[bytes, ...] = (b"tx",)) -> Block:
    height = store.head_height + 1
    return Block(genesis.chain_id, height, store.head_hash(), view=0, proposer=0, txs=txs)


def build_chain(genesis: Genesis, path: Path, heights: int = 6) -> Store:
    """A valid ledger where every even block commits a model blob it references."""
    store = Store.open(path, genesis.chain_id)
    for height in range(1, heights + 1):
        blobs = {}
        txs: tuple[bytes, ...] = (b"round %d" % height, b"x" * height)
        if height % 2 == 0:
            blob = model_blob(height)
            blobs[hashlib.sha256(blob).digest()] = blob
            txs += (MODEL_TX + hashlib.sha256(blob).digest(),)
        block = next_block(genesis, store, txs)
        store.append_block(block, certify(genesis, block), blobs)
    store.put_blob(b"an update nobody references")
    store.put_sync(b"pbft/view", b"\x00")
    store.write_batch_sync([(b"pbft/prepared/1", b"a"), (b"evidence/e1", b"proof")])
    return store


@pytest.fixture
def genesis() -> Genesis:
    return make_genesis()


def test_empty_ledger_head_is_chain_id(genesis: Genesis, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", genesis.chain_id)
    assert store.head_height == 0 and store.head_hash() == genesis.chain_id
    assert store.block(1) is None and store.block(0) is None
    store.close()


def test_append_read_and_reopen(genesis: Genesis, tmp_path: Path) -> None:
    store = build_chain(genesis, tmp_path / "db")
    head = store.head_hash()
    block4, cert4 = store.block(4)
    assert store.height_of(block4.hash()) == 4 and store.height_of(b"\x00" * 32) is None
    assert store.blob(hashlib.sha256(model_blob(4)).digest()) == model_blob(4)
    store.close()
    again = Store.open(tmp_path / "db", genesis.chain_id, create=False)
    assert (again.head_height, again.head_hash()) == (6, head)
    assert again.block(4) == (block4, cert4)
    assert [b.height for b, _ in again.blocks(3)] == [3, 4, 5, 6]
    assert dict(again.items(b"pbft/")) == {b"pbft/view": b"\x00", b"pbft/prepared/1": b"a"}
    assert again.get(b"evidence/e1") == b"proof"
    again.verify_chain(genesis.n, genesis.quorum, genesis.verify)
    again.close()


def test_refuses_blocks_that_do_not_extend_head(genesis: Genesis, tmp_path: Path) -> None:
    store = build_chain(genesis, tmp_path / "db", heights=2)
    good = next_block(genesis, store)
    cases = [
        Block(genesis.chain_id, 4, store.head_hash(), 0, 0, ()),  # skips a height
        Block(genesis.chain_id, 3, b"\x01" * 32, 0, 0, ()),  # wrong parent
        Block(b"\x02" * 32, 3, store.head_hash(), 0, 0, ()),  # other chain
    ]
    for block in cases:
        with pytest.raises(AppendRefused):
            store.append_block(block, certify(genesis, block))
    with pytest.raises(AppendRefused):
        store.append_block(good, certify(genesis, cases[0]))
    with pytest.raises(AppendRefused):
        store.append_block(good, certify(genesis, good), {b"\x03" * 32: b"not that"}, [(b"pbft/cert", b"c")])
    assert store.head_height == 2 and store.block(3) is None and store.get(b"pbft/cert") is None
    store.append_block(good, certify(genesis, good), puts=[(b"pbft/cert", b"c")])
    assert store.head_height == 3 and store.get(b"pbft/cert") == b"c"
    store.close()


def test_blobs_are_content_addressed_and_checked(genesis: Genesis, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", genesis.chain_id)
    digest = store.put_blob(b"weights")
    assert digest == hashlib.sha256(b"weights").digest() and store.put_blob(b"weights") == digest
    assert store.blob(digest) == b"weights" and store.blob(b"\x00" * 32) is None
    store.close()
    with plyvel.DB(str(tmp_path / "db")) as db:
        db.put(b"blob/" + digest, b"weightz")
    store = Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(LedgerCorrupt, match="does not hash to its key"):
        store.blob(digest)
    store.close()


def test_reserved_keys_are_refused_to_the_cores(genesis: Genesis, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", genesis.chain_id)
    for key in (b"meta/head", b"block/x", b"blob/x"):
        with pytest.raises(AssertionError):
            store.put_sync(key, b"")
        with pytest.raises(AssertionError):
            store.write_batch_sync([(key, b"")])
        block = next_block(genesis, store)
        with pytest.raises(AssertionError):
            store.append_block(block, certify(genesis, block), puts=[(key, b"")])
    assert store.head_height == 0
    store.put_sync(b"pbft/a", b"1")
    store.write_batch_sync([(b"pbft/b", b"2"), (b"pbft/c", b"3")], deletes=[b"pbft/a", b"pbft/c"])
    assert dict(store.items(b"pbft/")) == {b"pbft/b": b"2", b"pbft/c": b"3"}
    store.close()


def test_other_chain_is_refused(genesis: Genesis, tmp_path: Path) -> None:
    Store.open(tmp_path / "db", genesis.chain_id).close()
    with pytest.raises(ChainMismatch, match="belongs to chain"):
        Store.open(tmp_path / "db", b"\x09" * 32)


def test_missing_ledger_without_create(genesis: Genesis, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no ledger"):
        Store.open(tmp_path / "nothing", genesis.chain_id, create=False)


def test_foreign_leveldb_is_refused(genesis: Genesis, tmp_path: Path) -> None:
    with plyvel.DB(str(tmp_path / "db"), create_if_missing=True) as db:
        db.put(b"something", b"else")
    with pytest.raises(StoreError, match="not a fednode ledger"):
        Store.open(tmp_path / "db", genesis.chain_id)


def test_second_open_in_same_process_is_locked(genesis: Genesis, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(StoreLocked, match="another fednode daemon"):
        Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(StoreLocked):
        Store.open(tmp_path / "." / "db", genesis.chain_id)
    store.close()
    Store.open(tmp_path / "db", genesis.chain_id).close()


def test_second_process_is_locked_out(genesis: Genesis, tmp_path: Path) -> None:
    """Also after a refused in-process open, which in bare LevelDB would drop the cross-process lock."""
    store = Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(StoreLocked):
        Store.open(tmp_path / "db", genesis.chain_id)
    code = ("import sys; from pathlib import Path; from node.store import Store, StoreLocked\n"
            "try:\n    Store.open(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))\n"
            "except StoreLocked as exc:\n    print(exc); sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db"), genesis.chain_id.hex()], check=False,
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=60)
    store.close()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "another fednode daemon" in result.stdout


def test_verify_chain_names_the_bad_height(genesis: Genesis, tmp_path: Path) -> None:
    build_chain(genesis, tmp_path / "db").close()
    with plyvel.DB(str(tmp_path / "db")) as db:
        cert = CommitCertificate.decode(db.get(height_key(b"cert/", 5)))
        forged = (cert.signatures[0], cert.signatures[1], (2, bytes(64)))
        db.put(height_key(b"cert/", 5), CommitCertificate(cert.height, cert.view, cert.block_hash, forged).encode())
    store = Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(LedgerCorrupt, match="block 5: bad signature from replica 2") as info:
        store.verify_chain(genesis.n, genesis.quorum, genesis.verify)
    assert info.value.record == "block 5"
    store.close()


def test_verify_chain_catches_a_tampered_transaction(genesis: Genesis, tmp_path: Path) -> None:
    store = build_chain(genesis, tmp_path / "db")
    store.close()
    with plyvel.DB(str(tmp_path / "db")) as db:
        block = Block.decode(db.get(height_key(b"block/", 3)))
        db.put(height_key(b"block/", 3), Block(block.chain_id, 3, block.prev_hash, block.view, block.proposer,
                                                (b"round 3", b"y" * 3)).encode())
    store = Store.open(tmp_path / "db", genesis.chain_id)
    with pytest.raises(LedgerCorrupt, match="block 3: certificate is for another block"):
        store.verify_chain(genesis.n, genesis.quorum, genesis.verify)
    store.close()


def test_an_evidence_flood_costs_one_write_per_sender_kind_and_slot_and_a_capped_total(tmp_path: Path) -> None:
    """The review's member signed 50,752 conflicting checkpoints; each became a synced record. Copies of one
    (sender, kind, slot) are one record, distinct slots stop at the per-sender cap, other senders unaffected,
    and the cap holds across a restart."""
    chain_id = hashlib.sha256(b"evidence chain").digest()
    store = Store.open(tmp_path / "ledger", chain_id)
    try:
        assert store.record_evidence("checkpoint", 3, b"\x00" * 8, b"proof")
        assert not any(store.record_evidence("checkpoint", 3, b"\x00" * 8, b"proof %d" % i) for i in range(100))
        written = sum(store.record_evidence("checkpoint", 3, i.to_bytes(8, "big"), b"p") for i in range(1, 1000))
        assert written == EVIDENCE_MAX_PER_SENDER - 1
        assert store.record_evidence("checkpoint", 2, b"\x00" * 8, b"proof")
        assert [kind for kind, _, _ in store.evidence(2)] == ["checkpoint"]
    finally:
        store.close()
    again = Store.open(tmp_path / "ledger", chain_id)
    try:
        assert again.evidence_count(3) == EVIDENCE_MAX_PER_SENDER
        assert not again.record_evidence("prepare", 3, b"\x01", b"one more")
    finally:
        again.close()
