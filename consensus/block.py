"""Ledger blocks, their hashes and commit certificates.

A block is what one PBFT sequence number orders: a header that links to its parent by hash, plus a
list of opaque transactions that the round contract interprets. The block hash covers the header, and
the header covers the transactions through `txs_hash`, so a certificate over the block hash pins every
transaction byte.

A commit certificate is the proof that a block is final: signatures of a quorum of distinct replicas
on the COMMIT statement for (view, height, block hash) of this chain. Anyone holding the genesis
public keys can check it offline, which is what `fednode audit` and catch-up from peers rely on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus import codec

BLOCK_VERSION = 1
HASH_BYTES = 32
MAX_TXS_PER_BLOCK = 4096
MAX_TX_BYTES = 1 << 20
MAX_BLOCK_BYTES = 16 << 20
MAX_SIGNATURE_BYTES = 64
MAX_REPLICAS = 256

Verify = Callable[[int, bytes, bytes], bool]
"""verify(replica_index, signed_bytes, signature) -> bool, pure (e.g. Ed25519 with genesis keys)."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Block:
    """One ledger entry. `height` is the PBFT sequence number; block 1's parent hash is the chain id."""

    chain_id: bytes
    height: int
    prev_hash: bytes
    view: int
    proposer: int
    txs: tuple[bytes, ...]

    def txs_hash(self) -> bytes:
        return sha256(codec.encode(list(self.txs)))

    def header_fields(self) -> list[object]:
        return [BLOCK_VERSION, self.chain_id, self.height, self.prev_hash, self.view, self.proposer,
                self.txs_hash()]

    def hash(self) -> bytes:
        return sha256(codec.encode(self.header_fields()))

    def encode(self) -> bytes:
        return codec.encode([BLOCK_VERSION, self.chain_id, self.height, self.prev_hash, self.view,
                             self.proposer, list(self.txs)])

    @staticmethod
    def decode(data: bytes) -> Block:
        """Parse a block; raise codec.DecodeError if it is malformed, oversized or non-canonical."""
        fields = codec.expect_list(codec.decode(data, max_bytes=MAX_BLOCK_BYTES, max_items=MAX_TXS_PER_BLOCK),
                                   7, "block")
        if fields[0] != BLOCK_VERSION:
            raise codec.DecodeError(f"block: unknown version {fields[0]!r}")
        txs = fields[6]
        if not isinstance(txs, list):
            raise codec.DecodeError("block: txs must be a list")
        return Block(
            chain_id=codec.expect_bytes(fields[1], "block.chain_id", HASH_BYTES),
            height=codec.expect_int(fields[2], "block.height", lo=1),
            prev_hash=codec.expect_bytes(fields[3], "block.prev_hash", HASH_BYTES),
            view=codec.expect_int(fields[4], "block.view"),
            proposer=codec.expect_int(fields[5], "block.proposer", hi=MAX_REPLICAS - 1),
            txs=tuple(codec.expect_bytes(t, "block.tx", max_len=MAX_TX_BYTES) for t in txs),
        )


def commit_statement(chain_id: bytes, view: int, height: int, block_hash: bytes) -> bytes:
    """The exact bytes a replica signs when it commits `block_hash` at `height` in `view`."""
    return codec.encode(["fednode/commit/v1", chain_id, view, height, block_hash])


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """A quorum of COMMIT signatures for one block, all from one view."""

    height: int
    view: int
    block_hash: bytes
    signatures: tuple[tuple[int, bytes], ...]

    def encode(self) -> bytes:
        return codec.encode([self.height, self.view, self.block_hash,
                             [[r, s] for r, s in self.signatures]])

    @staticmethod
    def decode(data: bytes) -> CommitCertificate:
        fields = codec.expect_list(codec.decode(data, max_bytes=64 * MAX_REPLICAS + 1024,
                                                max_items=MAX_REPLICAS), 4, "certificate")
        sigs = fields[3]
        if not isinstance(sigs, list):
            raise codec.DecodeError("certificate: signatures must be a list")
        pairs = []
        for item in sigs:
            replica, sig = codec.expect_list(item, 2, "certificate.signature")
            pairs.append((codec.expect_int(replica, "certificate.replica", hi=MAX_REPLICAS - 1),
                          codec.expect_bytes(sig, "certificate.sig", max_len=MAX_SIGNATURE_BYTES)))
        return CommitCertificate(
            height=codec.expect_int(fields[0], "certificate.height", lo=1),
            view=codec.expect_int(fields[1], "certificate.view"),
            block_hash=codec.expect_bytes(fields[2], "certificate.block_hash", HASH_BYTES),
            signatures=tuple(pairs),
        )


class CertificateError(ValueError):
    """A certificate does not prove its block final."""


def verify_certificate(chain_id: bytes, block: Block, cert: CommitCertificate, *, n: int, quorum: int,
                       verify: Verify) -> None:
    """Raise CertificateError unless `cert` carries `quorum` valid commits by distinct replicas for `block`."""
    if block.chain_id != chain_id:
        raise CertificateError("block belongs to another chain")
    if cert.height != block.height or cert.block_hash != block.hash():
        raise CertificateError("certificate is for another block")
    verify_certificate_signatures(chain_id, cert, n=n, quorum=quorum, verify=verify)


def verify_certificate_signatures(chain_id: bytes, cert: CommitCertificate, *, n: int, quorum: int,
                                  verify: Verify) -> None:
    """Raise CertificateError unless `cert` holds `quorum` valid COMMITs by distinct replicas.

    This needs only the block hash, not the block: a PBFT VIEW-CHANGE proves how far the chain is final
    with a certificate alone, and the new primary links its next block to that hash.
    """
    statement = commit_statement(chain_id, cert.view, cert.height, cert.block_hash)
    signers: set[int] = set()
    for replica, signature in cert.signatures:
        if not 0 <= replica < n:
            raise CertificateError(f"unknown replica {replica}")
        if replica in signers:
            raise CertificateError(f"replica {replica} signed twice")
        if not verify(replica, statement, signature):
            raise CertificateError(f"bad signature from replica {replica}")
        signers.add(replica)
    if len(signers) < quorum:
        raise CertificateError(f"{len(signers)} signatures, quorum is {quorum}")


def check_link(chain_id: bytes, prev: Block | None, block: Block) -> None:
    """Raise CertificateError unless `block` directly extends `prev` (None means genesis)."""
    expected_height = 1 if prev is None else prev.height + 1
    expected_parent = chain_id if prev is None else prev.hash()
    if block.height != expected_height:
        raise CertificateError(f"height {block.height}, expected {expected_height}")
    if block.prev_hash != expected_parent:
        raise CertificateError(f"block {block.height} does not link to its parent")


def chain_ok(chain_id: bytes, blocks: Sequence[tuple[Block, CommitCertificate]], *, n: int, quorum: int,
             verify: Verify) -> None:
    """Verify a whole chain from height 1: links and certificates. Raises CertificateError."""
    prev: Block | None = None
    for block, cert in blocks:
        check_link(chain_id, prev, block)
        verify_certificate(chain_id, block, cert, n=n, quorum=quorum, verify=verify)
        prev = block
