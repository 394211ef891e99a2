"""Canonical, bounded msgpack encoding shared by every signed structure.

msgpack is not canonical in general: maps have no fixed order and tuples come back as lists. We
therefore only ever encode nested *lists* of ints, byte strings, text strings, booleans and None, in a
fixed field order. msgpack-python packs each of these in its shortest form, so one value has exactly one
encoding. `decode` enforces that: it re-encodes what it decoded and rejects the input if the bytes differ,
so a signature over the bytes is a signature over the value and nobody can produce a second, differently
encoded message with the same meaning (a malleability that would defeat replay detection by digest).

Every length is bounded before anything is allocated: the whole input by `max_bytes`, and each bin, str,
array and map by msgpack's own limits, which it checks while parsing.
"""

from __future__ import annotations

from typing import Any

import msgpack


class DecodeError(ValueError):
    """Input bytes are not a canonical, bounded encoding of the expected shape (a peer's fault)."""


MAX_DEPTH = 16
"""Deepest nesting any fednode structure uses is 4; peers get a little room, never Python's recursion limit."""


def encode(value: Any) -> bytes:
    """Encode nested lists/tuples of int, bytes, str, bool and None canonically.

    Tuples are encoded as lists, so callers may build values from tuples freely; maps are refused because
    their order is not canonical.
    """
    return msgpack.packb(_check(value, 0), use_bin_type=True, strict_types=False)


def _check(value: Any, depth: int) -> Any:
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise TypeError(f"nesting deeper than {MAX_DEPTH}")
        return [_check(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, bytes, str)):
        return value
    raise TypeError(f"type {type(value).__name__} has no canonical encoding")


def decode(data: bytes, *, max_bytes: int, max_items: int = 1 << 16) -> Any:
    """Decode canonical bytes into nested lists; raise DecodeError on anything else.

    `max_bytes` bounds the input and every byte/text string inside it; `max_items` bounds every array.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("not bytes")
    if len(data) > max_bytes:
        raise DecodeError(f"{len(data)} bytes exceeds limit {max_bytes}")
    try:
        value = msgpack.unpackb(
            bytes(data),
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=max_items,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types; all mean "malformed".
        raise DecodeError(f"malformed msgpack: {type(exc).__name__}") from None
    if len(data) >= WALK_CHECK_MIN_BYTES:
        _check_canonical_by_walk(data, value)
        return value
    try:
        canonical = encode(value)
    except TypeError as exc:
        raise DecodeError(str(exc)) from None
    if canonical != bytes(data):
        raise DecodeError("non-canonical encoding")
    return value


WALK_CHECK_MIN_BYTES = 1 << 16
"""From this input size on, `decode` proves canonicity by walking the input instead of re-encoding it:
re-encoding copies every byte string (a 4 MB model payload costs a copy and a comparison of 4 MB, twice
per envelope), while the walk compares only headers and small values."""
LARGE_BIN_BYTES = 256
"""Byte strings from this length on are checked by their header alone in the walk."""


def _check_canonical_by_walk(data: bytes | bytearray | memoryview, value: Any) -> None:
    """Raise DecodeError unless `data` is exactly `encode(value)`, for a `value` msgpack parsed from `data`.

    The walk compares the canonical header of every array and large byte string, and the canonical
    encoding of every other item, at the offset where it must begin. When all of them match, msgpack
    parsed each item exactly there, so the content of a large byte string (which it copied from the input)
    needs no comparison: the input is byte for byte the canonical encoding.
    """
    view = memoryview(data).cast("B")
    if _walk(view, 0, value, 0) != len(view):
        raise DecodeError("non-canonical encoding")


def _walk(view: memoryview, offset: int, value: Any, depth: int) -> int:
    """Check the canonical encoding of `value` at `offset`; return the offset just after it."""
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise DecodeError(f"nesting deeper than {MAX_DEPTH}")
        offset = _expect(view, offset, _HEADER_PACKER.pack_array_header(len(value)))
        for item in value:
            offset = _walk(view, offset, item, depth + 1)
        return offset
    if isinstance(value, bytes) and len(value) >= LARGE_BIN_BYTES:
        return _expect(view, offset, _bin_header(len(value))) + len(value)
    try:
        encoded = encode(value)
    except TypeError as exc:
        raise DecodeError(str(exc)) from None
    return _expect(view, offset, encoded)


def _expect(view: memoryview, offset: int, expected: bytes) -> int:
    end = offset + len(expected)
    if view[offset:end] != expected:
        raise DecodeError("non-canonical encoding")
    return end


def _bin_header(length: int) -> bytes:
    """The shortest msgpack bin header for a large byte string, as msgpack's packer writes it (the walk
    compares shorter ones in full, so the one-byte length of bin 8 never occurs here)."""
    assert length >= LARGE_BIN_BYTES >= 1 << 8, length
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


_HEADER_PACKER = msgpack.Packer(use_bin_type=True)


def expect_list(value: Any, length: int, what: str) -> list[Any]:
    """Return `value` if it is a list of exactly `length` items, else raise DecodeError."""
    if not isinstance(value, list) or len(value) != length:
        raise DecodeError(f"{what}: expected a list of {length} fields")
    return value


def expect_int(value: Any, what: str, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    """Return `value` if it is an int (not a bool) within [lo, hi], else raise DecodeError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise DecodeError(f"{what}: expected an integer in [{lo}, {hi}]")
    return value


def expect_bytes(value: Any, what: str, length: int | None = None, max_len: int = 1 << 30) -> bytes:
    """Return `value` if it is a byte string of the given exact length or at most `max_len`."""
    if not isinstance(value, bytes):
        raise DecodeError(f"{what}: expected bytes")
    if length is not None and len(value) != length:
        raise DecodeError(f"{what}: expected {length} bytes, got {len(value)}")
    if len(value) > max_len:
        raise DecodeError(f"{what}: {len(value)} bytes exceeds {max_len}")
    return value


def expect_str(value: Any, what: str, max_len: int = 256) -> str:
    """Return `value` if it is a text string of at most `max_len` characters."""
    if not isinstance(value, str) or len(value) > max_len:
        raise DecodeError(f"{what}: expected a string of at most {max_len} characters")
    return value
