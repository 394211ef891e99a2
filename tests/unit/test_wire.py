"""Envelope sealing and every rejection reason, one by one, in the order the checks run."""

from __future__ import annotations

import hashlib
import itertools

import msgpack
import pytest
from nacl.signing import SigningKey

from consensus import codec
from node.wire import (
    ANY_RECIPIENT,
    ENVELOPE_OVERHEAD_BYTES,
    SIGNATURE_DOMAIN,
    WIRE_VERSION,
    Envelope,
    Limits,
    MonotonicSeq,
    Opener,
    Rejected,
    RejectReason,
    ReplayWindow,
    Sealer,
    signed_digest,
)

CHAIN = bytes(range(32))
OTHER_CHAIN = bytes(32)
TYPES = {"prepare": 200, "update": 1 << 20}
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
ANY = ANY_RECIPIENT


def verify(member: int, data: bytes, signature: bytes) -> bool:
    try:
        KEYS[member].verify_key.verify(data, signature)
    except Exception:  # noqa: BLE001 - any failure is an invalid signature
        return False
    return True


def sign_as(member: int):
    return lambda data: KEYS[member].sign(data).signature


def sealer(member: int = 1, chain: bytes = CHAIN, start: int = 100) -> Sealer:
    counter = itertools.count(start)
    return Sealer(chain, member, sign_as(member), lambda: next(counter))


def opener(**kwargs) -> Opener:
    return Opener(CHAIN, 4, verify, TYPES, my_index=0, **kwargs)


def expect(reason: RejectReason, op: Opener, data: bytes, max_bytes: int = 1 << 22, peer: int | None = 1,
           addressed: bool = False) -> None:
    with pytest.raises(Rejected) as info:
        op.open(data, max_bytes, peer=peer, addressed=addressed)
    assert info.value.reason is reason, info.value
    assert op.rejected[reason] >= 1


def raw_envelope(body_fields: list, member: int = 1) -> bytes:
    body = codec.encode(body_fields)
    return codec.encode([body, sign_as(member)(signed_digest(body))])


def test_round_trip() -> None:
    op = opener()
    env = op.open(sealer().seal("prepare", 7, b"hello"), 1 << 16, peer=1)
    assert env == Envelope(type="prepare", sender=1, height=7, seq=100, payload=b"hello")
    assert op.accepted == 1 and not op.rejected


def test_signature_covers_exactly_the_body() -> None:
    wire = sealer().seal("prepare", 3, b"x")
    body, signature = codec.decode(wire, max_bytes=1 << 16)
    KEYS[1].verify_key.verify(SIGNATURE_DOMAIN + hashlib.sha256(body).digest(), signature)
    assert codec.decode(body, max_bytes=1 << 16) == [WIRE_VERSION, CHAIN, "prepare", 1, ANY, 3, 100, b"x"]


def test_a_signature_over_the_body_itself_is_refused() -> None:
    """Version 1 signed the body bytes; such a signature (or one made for another purpose) is not valid now."""
    body = codec.encode([WIRE_VERSION, CHAIN, "prepare", 2, ANY, 1, 1, b"x"])
    expect(RejectReason.BAD_SIGNATURE, opener(), codec.encode([body, sign_as(2)(body)]), peer=2)
    other_digest = hashlib.sha256(body).digest()
    expect(RejectReason.BAD_SIGNATURE, opener(), codec.encode([body, sign_as(2)(other_digest)]), peer=2)


def test_oversized_before_decoding() -> None:
    op = opener()
    expect(RejectReason.OVERSIZED, op, b"\xff" * 1001, max_bytes=1000)


def test_garbage_is_malformed() -> None:
    op = opener()
    for data in (b"", b"\xc1", b"\x92\x01\x02", codec.encode([b"x"]), b"\x91" * 950 + b"\x01"):
        expect(RejectReason.MALFORMED, op, data)


def test_non_canonical_outer_encoding() -> None:
    good = sealer().seal("prepare", 3, b"x")
    body, signature = codec.decode(good, max_bytes=1 << 16)
    # The same list written with an array16 header instead of a fixarray: same meaning, other bytes.
    padded = b"\xdc\x00\x02" + msgpack.packb(body, use_bin_type=True) + msgpack.packb(signature, use_bin_type=True)
    assert msgpack.unpackb(padded) == [body, signature]
    expect(RejectReason.NON_CANONICAL, opener(), padded)


def test_bad_version() -> None:
    fields = [WIRE_VERSION - 1, CHAIN, "prepare", 1, ANY, 3, 5, b"x"]
    expect(RejectReason.BAD_VERSION, opener(), raw_envelope(fields))
    expect(RejectReason.BAD_VERSION, opener(), raw_envelope([True, *fields[1:]]))


def test_wrong_chain() -> None:
    expect(RejectReason.WRONG_CHAIN, opener(), sealer(chain=OTHER_CHAIN).seal("prepare", 1, b""))


def test_unknown_type() -> None:
    expect(RejectReason.UNKNOWN_TYPE, opener(), sealer().seal("gossip-bomb", 1, b""))


def test_payload_limit_per_type() -> None:
    op = opener()
    expect(RejectReason.OVERSIZED, op, sealer().seal("prepare", 1, b"x" * 201))
    assert op.open(sealer(start=5).seal("update", 1, b"x" * 201), 1 << 22, peer=1).payload == b"x" * 201


def test_unknown_sender_and_self() -> None:
    expect(RejectReason.UNKNOWN_SENDER, opener(), raw_envelope([WIRE_VERSION, CHAIN, "prepare", 4, ANY, 1, 1, b""]))
    expect(RejectReason.SELF, opener(), sealer(member=0).seal("prepare", 1, b""), peer=None)


def test_bad_signature_from_impostor() -> None:
    body = codec.encode([WIRE_VERSION, CHAIN, "prepare", 2, ANY, 1, 1, b""])
    forged = codec.encode([body, sign_as(3)(signed_digest(body))])
    op = opener()
    expect(RejectReason.BAD_SIGNATURE, op, forged, peer=2)
    # A forged message must not consume the sequence number it claims.
    assert op.open(raw_envelope([WIRE_VERSION, CHAIN, "prepare", 2, ANY, 1, 1, b""], member=2), 1 << 16, peer=2).seq == 1


def test_malformed_fields() -> None:
    for fields in ([WIRE_VERSION, CHAIN[:31], "prepare", 1, ANY, 1, 1, b""], [WIRE_VERSION, CHAIN, 7, 1, ANY, 1, 1, b""],
                   [WIRE_VERSION, CHAIN, "prepare", 1, ANY, 1, 1, "text"],
                   [WIRE_VERSION, CHAIN, "prepare", -1, ANY, 1, 1, b""],
                   [WIRE_VERSION, CHAIN, "prepare", 1, ANY, True, 1, b""],
                   [WIRE_VERSION, CHAIN, "prepare", 1, ANY, 1, None, b""],
                   [WIRE_VERSION, CHAIN, "prepare", 1, -1, 1, 1, b""], [WIRE_VERSION, CHAIN, "prepare", 1, ANY, 1, 1],
                   [WIRE_VERSION, CHAIN, "x" * 33, 1, ANY, 1, 1, b""]):
        expect(RejectReason.MALFORMED, opener(), raw_envelope(fields))


def test_replay_and_reorder() -> None:
    op = opener()
    seal = sealer()
    first, second, third = (seal.seal("prepare", 1, b"") for _ in range(3))
    assert op.open(third, 1 << 16, peer=1).seq == 102
    assert op.open(first, 1 << 16, peer=1).seq == 100  # reordered by gossip: still fresh
    expect(RejectReason.REPLAYED, op, first)
    expect(RejectReason.REPLAYED, op, third)
    assert op.open(second, 1 << 16, peer=1).seq == 101


def test_window_span_makes_old_messages_stale() -> None:
    op = opener(replay_span=10)
    old = sealer(start=5).seal("prepare", 1, b"")
    op.open(sealer(start=50).seal("prepare", 1, b""), 1 << 16, peer=1)
    expect(RejectReason.STALE, op, old)


def test_restarted_receiver_refuses_replays_below_initial_floor() -> None:
    old = sealer(start=1_000).seal("prepare", 1, b"")
    expect(RejectReason.STALE, opener(initial_floor=5_000), old)


def test_restarted_sender_is_accepted() -> None:
    """A sender that restarts keeps numbering above what it used before, so its new messages pass."""
    clock_us = iter([1_000, 1_000, 1_000, 2_000])
    before = MonotonicSeq(lambda: next(clock_us))
    op = opener()
    seal = Sealer(CHAIN, 1, sign_as(1), before)
    op.open(seal.seal("prepare", 1, b""), 1 << 16, peer=1)
    op.open(seal.seal("prepare", 1, b""), 1 << 16, peer=1)
    op.open(seal.seal("prepare", 1, b""), 1 << 16, peer=1)
    after = Sealer(CHAIN, 1, sign_as(1), MonotonicSeq(lambda: next(clock_us)))
    assert op.open(after.seal("prepare", 1, b""), 1 << 16, peer=1).seq == 2_000


def test_monotonic_seq_never_repeats_when_clock_stalls_or_steps_back() -> None:
    readings = iter([10, 10, 5, 30, 29])
    seq = MonotonicSeq(lambda: next(readings), start=7)
    assert [seq() for _ in range(5)] == [10, 11, 12, 30, 31]


def test_window_memory_is_bounded_and_forgetting_raises_floor() -> None:
    window = ReplayWindow(span=1 << 40, max_seen=16)
    for seq in range(0, 200, 2):
        window.record(seq)
    assert len(window._seen) <= 16
    assert all(window.check(seq) is not None for seq in range(0, 200, 2))
    assert window.check(199) is None and window.check(1) is RejectReason.STALE


def test_limits_channel_selection() -> None:
    limits = Limits({"prepare": 1000, "update": 10 << 20})
    assert limits.channel_bytes_max("prepare") == limits.max_envelope_bytes
    assert limits.channel_bytes_max("update") == limits.max_blob_envelope_bytes
    with pytest.raises(AssertionError):
        Limits({"huge": limits.max_blob_envelope_bytes})


def test_envelope_overhead_bound_holds() -> None:
    wire = Sealer(CHAIN, 63, sign_as(1), lambda: (1 << 63) - 1).seal("x" * 32, (1 << 63) - 1, b"p" * 70_000)
    assert len(wire) - 70_000 <= ENVELOPE_OVERHEAD_BYTES


def test_a_relayed_envelope_cannot_spend_the_genuine_copys_sequence_number() -> None:
    """Member 2 relays member 1's request to us before member 1's own copy arrives: the relayed copy is
    refused as coming from the wrong peer, before the window records its number, so the genuine copy passes."""
    op = opener()
    request = sealer(member=1).seal("prepare", 0, b"digest", to=0)
    expect(RejectReason.WRONG_PEER, op, request, peer=2, addressed=True)
    assert op.open(request, 1 << 16, peer=1, addressed=True).sender == 1


def test_an_envelope_sealed_for_another_member_is_refused() -> None:
    """A request member 1 sealed for member 2 is useless to anyone else, even arriving from member 1."""
    op = opener()
    expect(RejectReason.WRONG_RECIPIENT, op, sealer(member=1).seal("prepare", 0, b"", to=2))
    assert op.open(sealer(member=1, start=9).seal("prepare", 0, b"", to=0), 1 << 16, peer=1).seq == 9


def test_requests_must_be_sealed_for_us_not_for_everyone() -> None:
    op = opener()
    expect(RejectReason.WRONG_RECIPIENT, op, sealer(member=1).seal("prepare", 0, b""), addressed=True)
    assert op.open(sealer(member=1).seal("prepare", 0, b""), 1 << 16, peer=1).seq == 100
