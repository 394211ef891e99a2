"""The canonical codec: every byte string decodes to a canonical value or raises DecodeError, nothing else."""

from __future__ import annotations

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
