"""The canonical codec: every byte string decodes to a canonical value or raises DecodeError, nothing else."""

from __future__ import annotations

import random

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import codec

values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=64)
                      | st.text(max_size=16), lambda inner: st.lists(inner, max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        value = codec.decode(data, max_bytes=1024)
    except codec.DecodeError:
        return
    assert codec.encode(value) == data


@settings(max_examples=300, deadline=None)
@given(values)
def test_canonical_round_trip(value: object) -> None:
    data = codec.encode(value)
    assert codec.encode(codec.decode(data, max_bytes=1 << 20)) == data


def test_deep_nesting_is_a_decode_error_not_a_recursion_error() -> None:
    for depth in (17, 900, 5000):
        try:
            codec.decode(b"\x91" * depth + b"\xc0", max_bytes=1 << 20)
        except codec.DecodeError:
            continue
        raise AssertionError(f"depth {depth} accepted")


def _loose_encode(value: object, rng: random.Random) -> bytes:
    """An encoding msgpack parses to `value`, with randomly widened headers (so often not canonical)."""
    wide = rng.random() < 0.2
    if isinstance(value, list):
        n = len(value)
        header = (b"\xdc" + n.to_bytes(2, "big")) if wide else msgpack.Packer().pack_array_header(n)
        return header + b"".join(_loose_encode(item, rng) for item in value)
    if isinstance(value, bytes) and wide:
        return b"\xc6" + len(value).to_bytes(4, "big") + value
    if isinstance(value, str) and wide:
        raw = value.encode()
        return b"\xdb" + len(raw).to_bytes(4, "big") + raw
    if isinstance(value, int) and not isinstance(value, bool) and wide and 0 <= value < 2**63:
        return b"\xcf" + value.to_bytes(8, "big")
    return codec.encode(value)


big_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                          | st.binary(max_size=600) | st.text(max_size=16),
                          lambda inner: st.lists(inner, max_size=5), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(big_values, st.integers(0, 2**32))
def test_the_walk_accepts_exactly_the_canonical_encoding(value: object, seed: int) -> None:
    """Large inputs are checked by a walk over headers (no re-encoding); it must agree with re-encoding."""
    data = _loose_encode(value, random.Random(seed))
    parsed = msgpack.unpackb(data, raw=False)
    try:
        codec._check_canonical_by_walk(data, parsed)
        walk_ok = True
    except codec.DecodeError:
        walk_ok = False
    assert walk_ok == (codec.encode(parsed) == data), (seed, data[:64])


def test_large_inputs_take_the_walk_and_keep_rejecting_wide_headers() -> None:
    payload = bytes(range(256)) * 1024
    good = codec.encode([1, b"x" * 32, "t", payload])
    assert len(good) >= codec.WALK_CHECK_MIN_BYTES
    assert codec.decode(good, max_bytes=1 << 20) == [1, b"x" * 32, "t", payload]
    wide_int = b"\x94\xcf" + (1).to_bytes(8, "big") + good[2:]
    try:
        codec.decode(wide_int, max_bytes=1 << 20)
    except codec.DecodeError as exc:
        assert str(exc) == "non-canonical encoding"
    else:
        raise AssertionError("a widened integer header was accepted")
