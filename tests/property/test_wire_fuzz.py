"""Fuzzing Opener.open: any byte string is an Envelope or a Rejected, never another exception.

Valid envelopes round-trip, every mutation of one (bit flip, truncation, extension, byte substitution) is
rejected, and a replay of an accepted envelope is rejected.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from consensus import codec
from node.wire import Envelope, Opener, Rejected, ReplayWindow, Sealer

CHAIN = bytes(range(32))
TYPES = {"prepare": 64, "commit": 64, "update": 4096}
KEYS = [SigningKey(bytes([i + 7]) * 32) for i in range(4)]
MAX_BYTES = 8192


def verify(member: int, data: bytes, signature: bytes) -> bool:
    try:
        KEYS[member].verify_key.verify(data, signature)
    except Exception:  # noqa: BLE001 - any failure is an invalid signature
        return False
    return True


def fresh_opener() -> Opener:
    return Opener(CHAIN, 4, verify, TYPES, my_index=0)


def open_or_reject(op: Opener, data: bytes, peer: int = 1) -> Envelope | Rejected:
    try:
        return op.open(data, MAX_BYTES, peer=peer)
    except Rejected as exc:
        return exc


messages = st.tuples(st.integers(1, 3), st.sampled_from(sorted(TYPES)), st.integers(0, (1 << 63) - 1),
                     st.integers(0, (1 << 63) - 1), st.binary(max_size=64))


def seal(message: tuple[int, str, int, int, bytes]) -> bytes:
    sender, type_, height, seq, payload = message
    return Sealer(CHAIN, sender, lambda d: KEYS[sender].sign(d).signature, itertools.repeat(seq).__next__).seal(
        type_, height, payload)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_accepted_or_rejected(data: bytes) -> None:
    op = fresh_opener()
    result = open_or_reject(op, data)
    assert isinstance(result, Rejected)
    assert sum(op.rejected.values()) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.binary(max_size=40)
                    | st.text(max_size=40), lambda inner: st.lists(inner, max_size=8), max_leaves=30))
def test_any_msgpack_structure_is_rejected(value: object) -> None:
    """Well-formed msgpack of the wrong shape reaches the deeper checks; they must reject it cleanly."""
    for data in (codec.encode(value), codec.encode([codec.encode(value), bytes(64)])):
        assert isinstance(open_or_reject(fresh_opener(), data), Rejected)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_valid_envelopes_round_trip_and_replays_are_rejected(message) -> None:
    sender, type_, height, seq, payload = message
    op = fresh_opener()
    wire = seal(message)
    assert op.open(wire, MAX_BYTES, peer=sender) == Envelope(type_, sender, height, seq, payload)
    assert isinstance(open_or_reject(op, wire, sender), Rejected)


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_mutated_envelopes_are_rejected(message, data) -> None:
    wire = seal(message)
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "substitute"]))
    if kind == "flip":
        position = data.draw(st.integers(0, len(wire) * 8 - 1))
        mutated = bytearray(wire)
        mutated[position // 8] ^= 1 << (position % 8)
    elif kind == "truncate":
        mutated = bytearray(wire[: data.draw(st.integers(0, len(wire) - 1))])
    elif kind == "extend":
        mutated = bytearray(wire + data.draw(st.binary(min_size=1, max_size=16)))
    else:
        position = data.draw(st.integers(0, len(wire) - 1))
        mutated = bytearray(wire)
        mutated[position] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[position]))
    assert isinstance(open_or_reject(fresh_opener(), bytes(mutated), message[0]), Rejected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=120), st.integers(1, 50), st.integers(1, 300))
def test_replay_window_against_a_reference(seqs: list[int], max_seen: int, span: int) -> None:
    """Never accepts a number twice, never one at or below (highest so far - span), and with room for every
    number and a span covering them all it accepts each first occurrence."""
    window = ReplayWindow(span=span, max_seen=max_seen)
    accepted: set[int] = set()
    highest = -1
    for seq in seqs:
        fresh = window.check(seq) is None
        if fresh:
            assert seq not in accepted and seq > highest - span
            window.record(seq)
            accepted.add(seq)
            highest = max(highest, seq)
        assert len(window._seen) <= max_seen
    if max_seen >= len(set(seqs)) and span > 200:
        assert accepted == set(seqs)
