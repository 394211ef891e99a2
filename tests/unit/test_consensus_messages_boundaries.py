"""PBFT message decoding at its edges: the reason of every refusal, each bound at and one past its limit,
and every field a decoded message keeps."""

from __future__ import annotations

import pytest
from test_consensus_messages import CHAIN, sample_messages

from consensus import codec
from consensus import messages as m
from consensus.block import MAX_REPLICAS, MAX_SIGNATURE_BYTES, Block

H = b"\7" * 32
BLOCK = Block(CHAIN, 1, CHAIN, 0, 0, (b"tx",))
PP = m.encode(m.PrePrepare(0, 1, BLOCK, 0, b"s"))
PREPARE = m.encode(m.Prepare(0, 1, H, 1, b"s"))
VC = m.encode(m.ViewChange(1, None, None, 2, b"s"))
MAX_HEIGHT = (1 << 63) - 1


def raw(*fields: object) -> bytes:
    """A message's fields encoded canonically, whatever they hold."""
    return codec.encode(list(fields))


def prepared_in_view_change(*cert: object) -> bytes:
    return raw(5, 1, None, codec.encode(list(cert)), 2, b"")


REFUSALS = [
    (b"\xc1", "malformed msgpack: FormatError"),
    (raw(), "message: expected a non-empty list"),
    (codec.encode(5), "message: expected a non-empty list"),
    (raw(True, 0, 1, BLOCK.encode(), 0, b""), "message: unknown type tag True"),
    (raw(99, 1), "message: unknown type tag 99"),
    (raw(2, 0, 1, H, 1), "message type 2: expected 6 fields"),
    (raw(2, 0, 1, H, MAX_REPLICAS, b""), f"sender: expected an integer in [0, {MAX_REPLICAS - 1}]"),
    (raw(2, 0, 1, H, 1, "sig"), "signature: expected bytes"),
    (raw(2, 0, 1, H, 1, bytes(MAX_SIGNATURE_BYTES + 1)),
     f"signature: {MAX_SIGNATURE_BYTES + 1} bytes exceeds {MAX_SIGNATURE_BYTES}"),
    (raw(2, m.MAX_VIEW + 1, 1, H, 1, b""), f"view: expected an integer in [0, {m.MAX_VIEW}]"),
    (raw(3, 0, 0, H, 1, b""), f"height: expected an integer in [1, {MAX_HEIGHT}]"),
    (raw(4, 2, b"short", 1, b""), "block_hash: expected 32 bytes, got 5"),
    (raw(1, 0, 1, "block", 0, b""), "block: expected bytes"),
    (raw(1, 0, 1, bytes(m.MAX_BLOCK_IN_MESSAGE_BYTES + 1), 0, b""),
     f"block: {m.MAX_BLOCK_IN_MESSAGE_BYTES + 1} bytes exceeds {m.MAX_BLOCK_IN_MESSAGE_BYTES}"),
    (raw(1, 0, 2, BLOCK.encode(), 0, b""), "pre-prepare: block height differs from the sequence number"),
    (raw(5, 1, "c", None, 2, b""), "view-change.committed: expected bytes"),
    (raw(5, 1, None, "p", 2, b""), "view-change.prepared: expected bytes"),
    (raw(5, 1, None, b"\xc1", 2, b""), "malformed msgpack: FormatError"),
    (prepared_in_view_change(PP), "prepared certificate: expected a list of 2 fields"),
    (prepared_in_view_change("pp", []), "prepared.preprepare: expected bytes"),
    (prepared_in_view_change(PREPARE, []), "prepared certificate: first item is not a PRE-PREPARE"),
    (prepared_in_view_change(PP, None), f"prepared.prepares: expected a list of at most {MAX_REPLICAS} messages"),
    (prepared_in_view_change(PP, ["p"]), "prepared.prepares: expected bytes"),
    (prepared_in_view_change(PP, [PP]), "prepared.prepares: expected only Prepare messages"),
    (raw(6, 1, None, None, 1, b""), f"new-view.view_changes: expected a list of at most {MAX_REPLICAS} messages"),
    (raw(6, 1, [VC] * (MAX_REPLICAS + 1), None, 1, b""),
     f"new-view.view_changes: expected a list of at most {MAX_REPLICAS} messages"),
    (raw(6, 1, [VC] * (MAX_REPLICAS + 17), None, 1, b""), "malformed msgpack: ValueError"),
    (raw(6, 1, ["vc"], None, 1, b""), "new-view.view_changes: expected bytes"),
    (raw(6, 1, [PREPARE], None, 1, b""), "new-view.view_changes: expected only ViewChange messages"),
    (raw(6, 1, [], "pp", 1, b""), "new-view.preprepare: expected bytes"),
    (raw(6, 1, [], PREPARE, 1, b""), "new-view: embedded message is not a PRE-PREPARE"),
]


@pytest.mark.parametrize(("data", "reason"), REFUSALS, ids=[reason for _, reason in REFUSALS])
def test_each_malformed_message_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(m.MessageError) as refused:
        m.decode(data)
    assert str(refused.value) == reason


@pytest.mark.parametrize(("data", "reason"), [(b"\xc1", "malformed msgpack: FormatError"),
                                              (codec.encode([PREPARE, []]),
                                               "prepared certificate: first item is not a PRE-PREPARE")])
def test_decode_prepared_refuses_with_a_message_error_and_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(m.MessageError) as refused:
        m.decode_prepared(data)
    assert str(refused.value) == reason


@pytest.mark.parametrize("msg", [
    m.Prepare(3, 5, H, 2, b"sig"),
    m.Commit(4, 6, H, MAX_REPLICAS - 1, bytes(MAX_SIGNATURE_BYTES)),
    m.Commit(m.MAX_VIEW, MAX_HEIGHT, H, 0, b""),
    m.NewView(1, (m.decode(VC),) * MAX_REPLICAS, None, 1, b"s"),
    *[msg for msg in sample_messages() if isinstance(msg, m.ViewChange) and msg.committed is not None],
], ids=lambda msg: type(msg).__name__)
def test_a_message_at_the_bounds_decodes_field_for_field(msg: m.Message) -> None:
    decoded = m.decode(m.encode(msg))
    assert type(decoded) is type(msg)
    for name in type(msg).__slots__:
        assert getattr(decoded, name) == getattr(msg, name), name


def test_a_view_change_with_a_commit_certificate_and_no_prepared_one_keeps_the_certificate() -> None:
    full = next(msg for msg in sample_messages() if isinstance(msg, m.ViewChange) and msg.prepared is not None)
    vc = m.ViewChange(full.new_view, full.committed, None, full.sender, b"s")
    assert m.decode(m.encode(vc)).committed == full.committed
