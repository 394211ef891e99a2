"""The canonical codec at its edges: each limit at and one past its bound, and the reason every refusal gives.

Inputs below `codec.WALK_CHECK_MIN_BYTES` are checked by re-encoding, larger ones by the header walk; the
tests that matter for both run through both (`pad` makes an input large without changing its shape).
"""

from __future__ import annotations

import enum

import pytest

from consensus import codec

LARGE = codec.WALK_CHECK_MIN_BYTES
WIDE_ONE = b"\xcf" + (1).to_bytes(8, "big")
"""The integer 1 as a uint64: valid msgpack, not its shortest form."""


class Kind(enum.IntEnum):
    THREE = 3


def nest(depth: int, inner: object) -> list:
    """`inner` inside `depth` lists."""
    value: object = inner
    for _ in range(depth):
        value = [value]
    return value  # type: ignore[return-value]


def pad(items: list) -> list:
    """`items` plus a byte string large enough that the encoding takes the walk."""
    return [*items, b"\0" * LARGE]


def test_encode_refuses_nesting_beyond_max_depth_and_accepts_it_at_the_limit() -> None:
    assert codec.decode(codec.encode(nest(codec.MAX_DEPTH, 7)), max_bytes=64) == nest(codec.MAX_DEPTH, 7)
    with pytest.raises(TypeError, match=f"^nesting deeper than {codec.MAX_DEPTH}$"):
        codec.encode(nest(codec.MAX_DEPTH + 1, 7))


def test_encode_refuses_a_type_without_canonical_encoding_and_names_it() -> None:
    with pytest.raises(TypeError, match="^type float has no canonical encoding$"):
        codec.encode([1, 2.5])
    with pytest.raises(TypeError, match="^type dict has no canonical encoding$"):
        codec.encode({})


def test_encode_writes_an_int_subclass_as_its_value() -> None:
    assert codec.encode([Kind.THREE, True]) == codec.encode([3, True])


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decode_takes_any_bytes_like_input(wrap) -> None:
    assert codec.decode(wrap(codec.encode([1, b"x", "y"])), max_bytes=16) == [1, b"x", "y"]


def test_decode_refuses_what_is_not_bytes() -> None:
    with pytest.raises(codec.DecodeError, match="^not bytes$"):
        codec.decode([1, 2], max_bytes=16)  # type: ignore[arg-type]


def test_decode_returns_lists_and_text_as_sent() -> None:
    value = codec.decode(codec.encode(("a", (b"b",))), max_bytes=16)
    assert value == ["a", [b"b"]]
    assert type(value) is list and type(value[0]) is str and type(value[1]) is list


def test_max_bytes_bounds_the_whole_input_inclusively() -> None:
    data = codec.encode([b"x" * 10])
    assert codec.decode(data, max_bytes=len(data)) == [b"x" * 10]
    with pytest.raises(codec.DecodeError, match=f"^{len(data)} bytes exceeds limit {len(data) - 1}$"):
        codec.decode(data, max_bytes=len(data) - 1)


def test_max_items_bounds_every_array_inclusively() -> None:
    assert codec.decode(codec.encode([[0] * 5]), max_bytes=64, max_items=5) == [[0] * 5]
    with pytest.raises(codec.DecodeError, match="^malformed msgpack: ValueError$"):
        codec.decode(codec.encode([[0] * 6]), max_bytes=64, max_items=5)


def test_the_default_item_bound_is_two_to_the_sixteen() -> None:
    limit = 1 << 16
    assert len(codec.decode(codec.encode([0] * limit), max_bytes=4 * limit)) == limit
    with pytest.raises(codec.DecodeError, match="^malformed msgpack: ValueError$"):
        codec.decode(codec.encode([0] * (limit + 1)), max_bytes=4 * limit)


@pytest.mark.parametrize("data", [b"\x81\xa1a\x01", b"\xd4\x01\x02", b"\xc7\x01\x05\x00"],
                         ids=["map", "fixext", "ext8"])
def test_maps_and_extension_types_are_refused_while_parsing(data: bytes) -> None:
    with pytest.raises(codec.DecodeError, match="^malformed msgpack: ValueError$"):
        codec.decode(data, max_bytes=16)


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(codec.DecodeError, match="^malformed msgpack: ExtraData$"):
        codec.decode(codec.encode([1]) + b"\x01", max_bytes=16)


@pytest.mark.parametrize("large", [False, True], ids=["re-encoded", "walked"])
def test_a_widened_header_is_refused_as_non_canonical(large: bool) -> None:
    canonical = codec.encode(pad([1]) if large else [1])
    widened = canonical[:1] + WIDE_ONE + canonical[2:]
    assert len(widened) >= LARGE or not large
    with pytest.raises(codec.DecodeError, match="^non-canonical encoding$"):
        codec.decode(widened, max_bytes=2 * LARGE)


@pytest.mark.parametrize("large", [False, True], ids=["re-encoded", "walked"])
def test_a_float_is_refused_with_its_type_named(large: bool) -> None:
    canonical = codec.encode(pad([1]) if large else [1])
    with_float = canonical[:1] + b"\xcb" + bytes(8) + canonical[2:]
    with pytest.raises(codec.DecodeError, match="^type float has no canonical encoding$"):
        codec.decode(with_float, max_bytes=2 * LARGE)


@pytest.mark.parametrize("large", [False, True], ids=["re-encoded", "walked"])
def test_nesting_is_bounded_at_max_depth_in_both_checks(large: bool) -> None:
    inner = b"\0" * LARGE if large else 0
    at_limit = nest(codec.MAX_DEPTH, inner)
    assert codec.decode(codec.encode(at_limit), max_bytes=2 * LARGE) == at_limit
    deeper = b"\x91" + codec.encode(at_limit)
    with pytest.raises(codec.DecodeError, match=f"^nesting deeper than {codec.MAX_DEPTH}$"):
        codec.decode(deeper, max_bytes=2 * LARGE)


@pytest.mark.parametrize("length", [codec.LARGE_BIN_BYTES, 300, 511, 512, (1 << 16) - 1, 1 << 16, (1 << 16) + 1])
def test_the_walk_accepts_large_byte_strings_at_each_header_size(length: int) -> None:
    value = pad([b"\1" * length, b"\2" * (length - 1)])
    assert codec.decode(codec.encode(value), max_bytes=4 * LARGE) == value


def test_the_walk_refuses_a_large_byte_string_with_a_widened_header() -> None:
    payload = b"\1" * 300
    canonical = codec.encode(pad([payload]))
    widened = canonical[:1] + b"\xc6" + len(payload).to_bytes(4, "big") + canonical[4:]
    assert widened[6:306] == payload
    with pytest.raises(codec.DecodeError, match="^non-canonical encoding$"):
        codec.decode(widened, max_bytes=2 * LARGE)


def test_expect_str_bounds_length_by_default_at_256_characters() -> None:
    assert codec.expect_str("é" * 256, "name") == "é" * 256
    for bad in ("x" * 257, b"x", None):
        with pytest.raises(codec.DecodeError, match="^name: expected a string of at most 256 characters$"):
            codec.expect_str(bad, "name")
    with pytest.raises(codec.DecodeError, match="^name: expected a string of at most 3 characters$"):
        codec.expect_str("abcd", "name", 3)
    assert codec.expect_str("abc", "name", 3) == "abc"
