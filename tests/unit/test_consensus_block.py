"""Blocks and commit certificates on their own: decoding a peer's bytes, certificate checks, chain links.

A peer hands us blocks and certificates during catch-up and inside VIEW-CHANGEs; these tests pin what
is refused, with which typed error and message (the message names the field, so an operator reading
the evidence log knows what the peer got wrong), and the exact size and count bounds.
"""

from __future__ import annotations

import pytest
from consensus_net import CHAIN, signer

from consensus import codec
from consensus.block import (
    MAX_REPLICAS,
    MAX_SIGNATURE_BYTES,
    MAX_TX_BYTES,
    MAX_TXS_PER_BLOCK,
    Block,
    CertificateError,
    CommitCertificate,
    chain_ok,
    check_link,
    commit_statement,
    verify_certificate,
)

OTHER_CHAIN = bytes(32)
CERT_MAX_BYTES = 64 * MAX_REPLICAS + 1024


def any_index_verify(index: int, data: bytes, sig: bytes) -> bool:
    """A verifier that knows a key for every index: bounding the signer is the certificate check's job."""
    return signer(index)(data) == sig


def block_at(height: int, prev: bytes, view: int = 7, proposer: int = 3) -> Block:
    return Block(CHAIN, height, prev, view, proposer, (b"tx-%d" % height,))


def certify(block: Block, signers: tuple[int, ...] = (0, 1, 2), *, view: int = 0, height: int | None = None,
            block_hash: bytes | None = None) -> CommitCertificate:
    height = block.height if height is None else height
    block_hash = block.hash() if block_hash is None else block_hash
    statement = commit_statement(CHAIN, view, height, block_hash)
    return CommitCertificate(height, view, block_hash, tuple((s, signer(s)(statement)) for s in signers))


def chain(length: int) -> list[tuple[Block, CommitCertificate]]:
    blocks, prev = [], CHAIN
    for height in range(1, length + 1):
        block = block_at(height, prev)
        blocks.append((block, certify(block)))
        prev = block.hash()
    return blocks


def block_fields(**changes: object) -> list[object]:
    fields = [1, CHAIN, 2, bytes(range(32)), 7, 3, [b"a", b"b"]]
    names = ["version", "chain_id", "height", "prev_hash", "view", "proposer", "txs"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return fields


def test_a_block_round_trips_every_field() -> None:
    block = Block(CHAIN, 5, bytes(range(32)), 9, MAX_REPLICAS - 1, (b"", b"x" * MAX_TX_BYTES))
    assert Block.decode(block.encode()) == block


@pytest.mark.parametrize(("changes", "message"), [
    ({"version": 2}, r"^block: unknown version 2$"),
    ({"txs": b"not a list"}, r"^block: txs must be a list$"),
    ({"chain_id": CHAIN[:31]}, r"^block\.chain_id: expected 32 bytes, got 31$"),
    ({"height": 0}, r"^block\.height: expected an integer in \[1, "),
    ({"prev_hash": b"x" * 33}, r"^block\.prev_hash: expected 32 bytes, got 33$"),
    ({"view": -1}, r"^block\.view: expected an integer in \[0, "),
    ({"proposer": MAX_REPLICAS}, r"^block\.proposer: expected an integer in \[0, 255\]$"),
    ({"txs": [b"ok", 5]}, r"^block\.tx: expected bytes$"),
    ({"txs": [b"x" * (MAX_TX_BYTES + 1)]}, rf"^block\.tx: {MAX_TX_BYTES + 1} bytes exceeds {MAX_TX_BYTES}$"),
])
def test_a_malformed_block_is_refused_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(codec.DecodeError, match=message):
        Block.decode(codec.encode(block_fields(**changes)))


def test_a_block_that_is_not_a_list_of_seven_fields_is_refused() -> None:
    with pytest.raises(codec.DecodeError, match=r"^block: expected a list of 7 fields$"):
        Block.decode(codec.encode(block_fields()[:6]))


def test_a_block_holds_at_most_max_txs_per_block_transactions() -> None:
    full = block_fields(txs=[b""] * MAX_TXS_PER_BLOCK)
    assert len(Block.decode(codec.encode(full)).txs) == MAX_TXS_PER_BLOCK
    with pytest.raises(codec.DecodeError, match="malformed msgpack"):
        Block.decode(codec.encode(block_fields(txs=[b""] * (MAX_TXS_PER_BLOCK + 1))))


def cert_fields(**changes: object) -> list[object]:
    fields = [3, 1, bytes(range(32)), [[0, b"s" * 64], [MAX_REPLICAS - 1, b""]]]
    names = ["height", "view", "block_hash", "signatures"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return fields


def test_a_certificate_round_trips_every_field() -> None:
    cert = CommitCertificate(3, 1, bytes(range(32)), ((0, b"s" * MAX_SIGNATURE_BYTES), (MAX_REPLICAS - 1, b"")))
    assert CommitCertificate.decode(cert.encode()) == cert


@pytest.mark.parametrize(("changes", "message"), [
    ({"signatures": b"none"}, r"^certificate: signatures must be a list$"),
    ({"signatures": [[0, b"s", 1]]}, r"^certificate\.signature: expected a list of 2 fields$"),
    ({"signatures": [[MAX_REPLICAS, b"s"]]}, r"^certificate\.replica: expected an integer in \[0, 255\]$"),
    ({"signatures": [[0, b"s" * 65]]}, r"^certificate\.sig: 65 bytes exceeds 64$"),
    ({"height": 0}, r"^certificate\.height: expected an integer in \[1, "),
    ({"view": -1}, r"^certificate\.view: expected an integer in \[0, "),
    ({"block_hash": b"h" * 31}, r"^certificate\.block_hash: expected 32 bytes, got 31$"),
])
def test_a_malformed_certificate_is_refused_naming_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(codec.DecodeError, match=message):
        CommitCertificate.decode(codec.encode(cert_fields(**changes)))


def test_a_certificate_that_is_not_a_list_of_four_fields_is_refused() -> None:
    with pytest.raises(codec.DecodeError, match=r"^certificate: expected a list of 4 fields$"):
        CommitCertificate.decode(codec.encode(cert_fields()[:3]))


def test_a_certificate_holds_at_most_max_replicas_signatures() -> None:
    pairs = [[i % MAX_REPLICAS, b""] for i in range(MAX_REPLICAS + 1)]
    assert len(CommitCertificate.decode(codec.encode(cert_fields(signatures=pairs[:-1]))).signatures) == MAX_REPLICAS
    with pytest.raises(codec.DecodeError, match="malformed msgpack"):
        CommitCertificate.decode(codec.encode(cert_fields(signatures=pairs)))


def sized_certificate(size: int) -> bytes:
    """An encoded certificate of exactly `size` bytes: 64-byte signatures, the last one trimmed to fit."""
    pairs = [[i, b"s" * 64] for i in range(MAX_REPLICAS)]
    while len(codec.encode(cert_fields(signatures=pairs))) > size:
        pairs.pop()
    pairs.append([len(pairs), b""])
    excess = size - len(codec.encode(cert_fields(signatures=pairs)))
    pairs[-1][1] = b"s" * excess
    data = codec.encode(cert_fields(signatures=pairs))
    assert len(data) == size, (len(data), size)
    return data


def test_certificates_up_to_the_byte_bound_decode_and_one_byte_more_is_refused() -> None:
    """The bound leaves room for 240 Ed25519 signatures (a quorum of any N up to 256 plus more)."""
    many = codec.encode(cert_fields(signatures=[[i, b"s" * 64] for i in range(240)]))
    assert len(CommitCertificate.decode(many).signatures) == 240
    assert CommitCertificate.decode(sized_certificate(CERT_MAX_BYTES)).height == 3
    with pytest.raises(codec.DecodeError, match=rf"^{CERT_MAX_BYTES + 1} bytes exceeds limit {CERT_MAX_BYTES}$"):
        CommitCertificate.decode(sized_certificate(CERT_MAX_BYTES + 1))


def test_a_valid_certificate_is_accepted() -> None:
    block = block_at(1, CHAIN)
    verify_certificate(CHAIN, block, certify(block), n=4, quorum=3, verify=any_index_verify)


def test_a_block_of_another_chain_is_refused() -> None:
    block = Block(OTHER_CHAIN, 1, OTHER_CHAIN, 0, 0, ())
    with pytest.raises(CertificateError, match="^block belongs to another chain$"):
        verify_certificate(CHAIN, block, certify(block), n=4, quorum=3, verify=any_index_verify)


@pytest.mark.parametrize("height_shift", [1, 0])
def test_a_certificate_for_another_height_or_hash_is_refused(height_shift: int) -> None:
    """A quorum really signed (height 2, this block's hash): it still certifies no block at height 1."""
    block = block_at(1, CHAIN)
    other_hash = block.hash() if height_shift else block_at(1, OTHER_CHAIN).hash()
    cert = certify(block, height=1 + height_shift, block_hash=other_hash)
    with pytest.raises(CertificateError, match="^certificate is for another block$"):
        verify_certificate(CHAIN, block, cert, n=4, quorum=3, verify=any_index_verify)


def test_a_signer_outside_the_membership_is_refused_even_if_its_signature_verifies() -> None:
    """N = 4: index 4 is no member, whatever key the verifier would find for it."""
    block = block_at(1, CHAIN)
    with pytest.raises(CertificateError, match="^unknown replica 4$"):
        verify_certificate(CHAIN, block, certify(block, (0, 1, 4)), n=4, quorum=3, verify=any_index_verify)
    with pytest.raises(CertificateError, match="^unknown replica -1$"):
        cert = certify(block)
        negative = CommitCertificate(cert.height, cert.view, cert.block_hash, ((-1, b"x"), *cert.signatures))
        verify_certificate(CHAIN, block, negative, n=4, quorum=3, verify=any_index_verify)


def test_a_bad_signature_and_a_short_quorum_are_refused_naming_the_reason() -> None:
    block = block_at(1, CHAIN)
    cert = certify(block)
    forged = CommitCertificate(cert.height, cert.view, cert.block_hash, (*cert.signatures[:2], (2, b"forged")))
    with pytest.raises(CertificateError, match="^bad signature from replica 2$"):
        verify_certificate(CHAIN, block, forged, n=4, quorum=3, verify=any_index_verify)
    with pytest.raises(CertificateError, match="^2 signatures, quorum is 3$"):
        verify_certificate(CHAIN, block, certify(block, (0, 1)), n=4, quorum=3, verify=any_index_verify)


def test_a_whole_chain_of_linked_certified_blocks_is_accepted() -> None:
    chain_ok(CHAIN, chain(3), n=4, quorum=3, verify=any_index_verify)


def test_a_chain_must_start_at_height_one_from_the_chain_id_and_go_up_by_one() -> None:
    blocks = chain(3)
    with pytest.raises(CertificateError, match="^height 2, expected 1$"):
        chain_ok(CHAIN, blocks[1:], n=4, quorum=3, verify=any_index_verify)
    with pytest.raises(CertificateError, match="^height 3, expected 2$"):
        chain_ok(CHAIN, [blocks[0], blocks[2]], n=4, quorum=3, verify=any_index_verify)
    orphan = block_at(1, OTHER_CHAIN)
    with pytest.raises(CertificateError, match="^block 1 does not link to its parent$"):
        chain_ok(CHAIN, [(orphan, certify(orphan))], n=4, quorum=3, verify=any_index_verify)


def test_a_block_that_does_not_link_to_the_previous_hash_is_refused() -> None:
    first, second = block_at(1, CHAIN), block_at(2, CHAIN)
    with pytest.raises(CertificateError, match="^block 2 does not link to its parent$"):
        check_link(CHAIN, first, second)
    check_link(CHAIN, first, block_at(2, first.hash()))


def test_a_chain_with_one_badly_certified_block_is_refused() -> None:
    blocks = chain(3)
    blocks[1] = (blocks[1][0], certify(blocks[1][0], (0, 1)))
    with pytest.raises(CertificateError, match="^2 signatures, quorum is 3$"):
        chain_ok(CHAIN, blocks, n=4, quorum=3, verify=any_index_verify)
