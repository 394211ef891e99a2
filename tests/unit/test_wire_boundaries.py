"""node.wire at its boundaries: what each rejection tells the operator, the limits themselves accepted,
the counters, the channel choice and the replay window's memory bound.

These came out of mutation testing (scripts/mutation.py): test_wire.py checks each rejection's reason,
these also check its detail (it is what the daemon logs against a peer) and the off-by-one cases."""

from __future__ import annotations

import pytest

from consensus import codec
from node.wire import (
    ANY_RECIPIENT,
    ENVELOPE_OVERHEAD_BYTES,
    WIRE_VERSION,
    Limits,
    MonotonicSeq,
    Opener,
    Rejected,
    RejectReason,
    ReplayWindow,
    signed_digest,
)
from tests.unit.test_wire import CHAIN, OTHER_CHAIN, raw_envelope, sealer, sign_as, verify

LONGEST_TYPE = "t" * 32
TYPES = {"prepare": 200, LONGEST_TYPE: 10}


def opener() -> Opener:
    return Opener(CHAIN, 4, verify, TYPES, my_index=0)


def body(*, version: object = WIRE_VERSION, chain: object = CHAIN, type_: object = "prepare", sender: object = 1,
         to: object = ANY_RECIPIENT, height: object = 0, seq: object = 5, payload: object = b"") -> list[object]:
    return [version, chain, type_, sender, to, height, seq, payload]


def envelope_of(fields: list[object]) -> bytes:
    encoded = codec.encode(fields)
    return codec.encode([encoded, sign_as(1)(signed_digest(encoded))])


def codec_error(data: bytes, max_items: int) -> str:
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(data, max_bytes=1 << 22, max_items=max_items)
    return str(info.value)


CASES = [
    ("not bytes", lambda: "text", "malformed: not a byte string"),
    ("oversized", lambda: b"\x00" * 101, "oversized: 101 bytes exceeds the channel limit 100"),
    ("three fields", lambda: codec.encode([b"a", b"b", b"c"]),
     "malformed: " + codec_error(codec.encode([b"a", b"b", b"c"]), 2)),
    ("one field", lambda: codec.encode([b"a"]), "malformed: envelope must be a list of 2 fields"),
    ("short signature", lambda: codec.encode([codec.encode(body()), b"s" * 63]),
     "malformed: envelope must be [body bytes, 64-byte signature]"),
    ("body not bytes", lambda: codec.encode([5, b"s" * 64]),
     "malformed: envelope must be [body bytes, 64-byte signature]"),
    ("signature not bytes", lambda: codec.encode([codec.encode(body()), 5]),
     "malformed: envelope must be [body bytes, 64-byte signature]"),
    ("garbage", lambda: b"\xc1", "malformed: " + codec_error(b"\xc1", 2)),
    ("body not a list", lambda: envelope_of(7), "malformed: body must be a non-empty list"),  # type: ignore[arg-type]
    ("empty body", lambda: envelope_of([]), "malformed: body must be a non-empty list"),
    ("nine fields", lambda: envelope_of([*body(), b""]), "malformed: " + codec_error(codec.encode([*body(), b""]), 8)),
    ("seven fields", lambda: envelope_of(body()[:7]), "malformed: body must be a list of 8 fields"),
    ("version", lambda: envelope_of(body(version=WIRE_VERSION - 1)),
     f"bad_version: version {WIRE_VERSION - 1}, expected {WIRE_VERSION}"),
    ("short chain", lambda: envelope_of(body(chain=b"c" * 31)), "malformed: chain id must be 32 bytes"),
    ("other chain", lambda: envelope_of(body(chain=OTHER_CHAIN)), "wrong_chain: chain 0000000000000000..."),
    ("long type", lambda: envelope_of(body(type_="t" * 33)),
     "malformed: type must be a string of at most 32 characters"),
    ("unknown type", lambda: envelope_of(body(type_="vote")), "unknown_type: type 'vote'"),
    ("payload not bytes", lambda: envelope_of(body(payload="p")), "malformed: payload must be bytes"),
    ("big payload", lambda: envelope_of(body(payload=b"p" * 201)), "oversized: prepare payload of 201 bytes exceeds 200"),
    ("sender", lambda: envelope_of(body(sender=True)), "malformed: sender must be an integer in [0, 2^63)"),
    ("recipient", lambda: envelope_of(body(to=-1)), "malformed: recipient must be an integer in [0, 2^63)"),
    ("other recipient", lambda: envelope_of(body(to=2)), "wrong_recipient: sealed for member 2, not for us"),
    ("height", lambda: envelope_of(body(height=-1)), "malformed: height must be an integer in [0, 2^63)"),
    ("seq", lambda: envelope_of(body(seq=b"1")), "malformed: seq must be an integer in [0, 2^63)"),
    ("stranger", lambda: envelope_of(body(sender=4)), "unknown_sender: member 4 of 4"),
    ("echo", lambda: envelope_of(body(sender=0)), "self: our own message echoed back"),
    ("relayed", lambda: envelope_of(body(sender=3)), "wrong_peer: member 3's envelope relayed by member 1"),
    ("impostor", lambda: raw_envelope(body(sender=1), member=2), "bad_signature: signature does not verify for member 1"),
]


@pytest.mark.parametrize(("data", "message"), [pytest.param(d, m, id=i) for i, d, m in CASES])
def test_each_rejection_says_what_was_wrong(data, message: str) -> None:  # type: ignore[no-untyped-def]
    op = opener()
    with pytest.raises(Rejected) as info:
        op.open(data(), 100 if message.startswith("oversized: 101") else 1 << 16, peer=1)
    assert str(info.value) == message
    assert info.value.reason.value + ": " + info.value.detail == message
    assert isinstance(info.value.reason, RejectReason)


def test_replays_name_the_sequence_number_and_the_window() -> None:
    op = opener()
    wire = sealer().seal("prepare", 1, b"x")
    op.open(wire, 1 << 16, peer=1)
    with pytest.raises(Rejected, match=r"^replayed: seq 100 from member 1 \(window floor -1\)$"):
        op.open(wire, 1 << 16, peer=1)


def test_the_limits_themselves_are_accepted() -> None:
    op = opener()
    at_limit = sealer().seal("prepare", 0, b"p" * 200)
    assert op.open(at_limit, len(at_limit), peer=1).payload == b"p" * 200
    assert op.open(sealer(start=7).seal(LONGEST_TYPE, 0, b""), 1 << 16, peer=1).type == LONGEST_TYPE


def test_counters_count_every_outcome() -> None:
    op = opener()
    for start in (1, 2):
        op.open(sealer(start=start).seal("prepare", 0, b""), 1 << 16, peer=1)
    for _ in range(2):
        with pytest.raises(Rejected):
            op.open(b"\xc1", 1 << 16, peer=1)
    assert op.accepted == 2 and op.rejected == {RejectReason.MALFORMED: 2}


def test_a_type_goes_on_gossip_exactly_while_its_envelope_fits() -> None:
    limits = Limits({"fits": 1000 - ENVELOPE_OVERHEAD_BYTES, "over": 1001 - ENVELOPE_OVERHEAD_BYTES},
                    max_envelope_bytes=1000, max_blob_envelope_bytes=1 << 20)
    assert limits.channel_bytes_max("fits") == 1000
    assert limits.channel_bytes_max("over") == 1 << 20


def test_monotonic_seq_starts_above_zero_and_above_its_floor() -> None:
    assert MonotonicSeq(lambda: 0)() == 1
    assert MonotonicSeq(lambda: 0, start=41)() == 42


def test_replay_window_remembers_exactly_max_seen_numbers() -> None:
    window = ReplayWindow(span=1 << 40, max_seen=4)
    for seq in (10, 11, 12, 13):
        window.record(seq)
    assert window.floor == -1 and window.check(5) is None
    window.record(14)
    assert window.floor == 10 and window.check(10) is RejectReason.STALE and window.check(11) is RejectReason.REPLAYED
