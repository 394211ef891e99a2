"""PBFT messages: canonical round trips, exact signed bytes, and a decoder that only ever raises MessageError."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec
from consensus import messages as m
from consensus.block import Block, CommitCertificate, commit_statement, verify_certificate

CHAIN = hashlib.sha256(b"test-chain").digest()


def sign(index: int, data: bytes) -> bytes:
    return hashlib.blake2b(data, key=bytes([index + 1]) * 16, digest_size=16).digest()


def verify(index: int, data: bytes, sig: bytes) -> bool:
    return sign(index, data) == sig


def signed(msg):
    from dataclasses import replace
    return replace(msg, signature=sign(msg.sender, m.signing_bytes(CHAIN, msg)))


def sample_messages() -> list:
    block = Block(CHAIN, 1, CHAIN, 0, 0, (b"tx1", b"tx2"))
    h = block.hash()
    pp = signed(m.PrePrepare(0, 1, block, 0))
    prepares = tuple(signed(m.Prepare(0, 1, h, i)) for i in (1, 2))
    commits = [signed(m.Commit(0, 1, h, i)) for i in range(3)]
    cert = CommitCertificate(1, 0, h, tuple((c.sender, c.signature) for c in commits))
    vc = signed(m.ViewChange(1, cert, m.PreparedCertificate(pp, prepares), 2))
    vc_empty = signed(m.ViewChange(1, None, None, 3))
    nv = signed(m.NewView(1, (vc, vc_empty), pp, 1))
    return [pp, *prepares, *commits, signed(m.Checkpoint(16, h, 3)), vc, vc_empty, nv,
            signed(m.NewView(2, (vc_empty,), None, 2))]


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda x: type(x).__name__)
def test_round_trip_is_exact_and_canonical(msg) -> None:
    data = m.encode(msg)
    assert m.decode(data) == msg
    assert m.encode(m.decode(data)) == data
    assert verify(msg.sender, m.signing_bytes(CHAIN, msg), msg.signature)


def test_commits_form_a_certificate_that_block_py_verifies() -> None:
    block = Block(CHAIN, 1, CHAIN, 3, 3, (b"a",))
    commits = [signed(m.Commit(3, 1, block.hash(), i)) for i in (0, 2, 3)]
    assert m.signing_bytes(CHAIN, commits[0]) == commit_statement(CHAIN, 3, 1, block.hash())
    cert = CommitCertificate(1, 3, block.hash(), tuple((c.sender, c.signature) for c in commits))
    verify_certificate(CHAIN, block, cert, n=4, quorum=3, verify=verify)


def test_signature_binds_chain_and_content() -> None:
    commit = signed(m.Commit(0, 5, b"\1" * 32, 1))
    other_chain = hashlib.sha256(b"other").digest()
    assert not verify(1, m.signing_bytes(other_chain, commit), commit.signature)
    moved = m.Commit(0, 6, b"\1" * 32, 1, commit.signature)
    assert not verify(1, m.signing_bytes(CHAIN, moved), moved.signature)


def test_malformed_inputs_raise_message_error() -> None:
    good = m.encode(sample_messages()[0])
    bad_inputs = [b"", b"\xc1", codec.encode([99, 1, 2]), codec.encode([2, 0, 1, b"short", 1, b""]),
                  codec.encode([2, 0, 0, b"\0" * 32, 1, b""]), codec.encode([2, True, 1, b"\0" * 32, 1, b""]),
                  codec.encode([4, 1, b"\0" * 32, 999, b""]), good[:-1], good + b"\0",
                  codec.encode([6, 1, [codec.encode([2, 0, 1, b"\0" * 32, 1, b""])], None, 1, b""])]
    for data in bad_inputs:
        with pytest.raises(m.MessageError):
            m.decode(data)


def test_oversized_input_is_rejected_before_parsing() -> None:
    with pytest.raises(m.MessageError):
        m.decode(b"\x91" + b"\0" * (m.MAX_MESSAGE_BYTES + 1))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        m.decode(data)
    except m.MessageError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_messages(data: st.DataObject) -> None:
    original = m.encode(data.draw(st.sampled_from(sample_messages())))
    position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    mutated = original[:position] + bytes([value]) + original[position + 1:]
    try:
        decoded = m.decode(mutated)
    except m.MessageError:
        return
    assert m.encode(decoded) == mutated, "anything accepted is canonical"
