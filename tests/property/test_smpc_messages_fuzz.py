"""Every decoder: valid messages round-trip; any bytes give a message or MalformedMessage."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpc.errors import MalformedMessage
from smpc.messages import (
    SHARE_BYTES,
    AdvertiseKeys,
    Limits,
    MaskedInput,
    Message,
    ShareKeys,
    SharePlaintext,
    UnmaskShares,
    decode,
    encode,
)

LIMITS = Limits(max_participant_id=10, vector_length=6)
ids = st.integers(min_value=1, max_value=10)
rounds = st.integers(min_value=0, max_value=2**63 - 1)
signatures = st.binary(min_size=64, max_size=64)
share = st.lists(st.integers(min_value=0, max_value=2**61 - 2), min_size=5, max_size=5).map(
    lambda xs: b"".join(x.to_bytes(8, "little") for x in xs)
)


def pairs(payload: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[tuple[int, bytes], ...]]:
    return st.dictionaries(ids, payload, max_size=10).map(lambda d: tuple(sorted(d.items())))


key = st.binary(min_size=32, max_size=32)
valid_messages = st.one_of(
    st.builds(AdvertiseKeys, rounds, ids, key, key, key, signatures),
    st.builds(ShareKeys, rounds, ids, pairs(st.binary(min_size=1, max_size=256)),
              pairs(st.binary(min_size=64, max_size=64)), signatures),
    st.builds(MaskedInput, rounds, ids, st.binary(min_size=24, max_size=24), signatures),
    st.builds(UnmaskShares, rounds, ids, pairs(share), pairs(share), signatures),
)


def decode_or_typed_error(data: bytes) -> Message | None:
    try:
        message = decode(data, LIMITS)
    except MalformedMessage:
        return None
    assert encode(message) == data
    return message


@settings(max_examples=150, deadline=None)
@given(valid_messages)
def test_valid_messages_round_trip(message: Message) -> None:
    assert decode(encode(message), LIMITS) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    decode_or_typed_error(data)


@settings(max_examples=200, deadline=None)
@given(valid_messages, st.data())
def test_mutated_encodings_decode_or_raise_the_typed_error(message: Message, data: st.DataObject) -> None:
    decode_or_typed_error(mutate(encode(message), data))


def mutate(original: bytes, data: st.DataObject) -> bytes:
    """One to four byte flips, truncations or insertions."""
    encoded = bytearray(original)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(encoded)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(encoded):
            encoded[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "cut":
            del encoded[position:]
        else:
            encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    return bytes(encoded)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.integers(min_value=-(2**63), max_value=2**64 - 1), st.binary(max_size=70), st.booleans(), st.none()
        ),
        lambda inner: st.lists(inner, max_size=6),
        max_leaves=20,
    )
)
def test_structured_garbage_is_rejected_with_the_typed_error(value: object) -> None:
    decode_or_typed_error(msgpack.packb([2, 1, 1, value, b"s" * 64]))
    decode_or_typed_error(msgpack.packb(value))


def test_oversized_messages_are_rejected_before_parsing() -> None:
    with pytest.raises(MalformedMessage, match="exceeds"):
        decode(b"\x00" * (LIMITS.max_message_bytes + 1), LIMITS)


plaintexts = st.builds(SharePlaintext, ids, ids, share, share)


@settings(max_examples=300, deadline=None)
@given(plaintexts, st.data())
def test_share_plaintext_decoder_gives_the_canonical_plaintext_or_the_typed_error(
    plaintext: SharePlaintext, data: st.DataObject
) -> None:
    """Valid plaintexts round-trip; a corrupted one either raises MalformedMessage (any other exception
    fails the test) or decodes to a plaintext whose encoding is exactly the bytes given."""
    assert SharePlaintext.decode(plaintext.encode(), LIMITS) == plaintext
    corrupted = mutate(plaintext.encode(), data)
    try:
        decoded = SharePlaintext.decode(corrupted, LIMITS)
    except MalformedMessage:
        return
    assert decoded.encode() == corrupted


def test_share_plaintext_round_trip_and_field_check() -> None:
    good = SharePlaintext(1, 2, b"\x01" * SHARE_BYTES, b"\x02" * SHARE_BYTES)
    assert SharePlaintext.decode(good.encode(), LIMITS) == good
    bad = SharePlaintext(1, 2, b"\xff" * SHARE_BYTES, b"\x02" * SHARE_BYTES)
    with pytest.raises(MalformedMessage, match=r"GF\(p\)"):
        SharePlaintext.decode(bad.encode(), LIMITS)


@settings(max_examples=200, deadline=None)
@given(st.builds(MaskedInput, rounds, ids, st.binary(min_size=24, max_size=24), signatures),
       st.sampled_from(["round", "vector", "signature", "array"]))
def test_masked_input_with_a_widened_header_is_not_canonical(message: MaskedInput, widen: str) -> None:
    """Masked inputs are checked around their vector instead of re-encoded; every other byte still counts."""
    fields = [msgpack.packb(x) for x in (message.TAG, message.round_id, message.sender)]
    vector = msgpack.packb(message.masked)
    signature = msgpack.packb(message.signature)
    head = b"\x95"
    if widen == "round":
        fields[1] = b"\xcf" + message.round_id.to_bytes(8, "big")
    elif widen == "vector":
        vector = b"\xc6" + len(message.masked).to_bytes(4, "big") + message.masked
    elif widen == "signature":
        signature = b"\xc5" + (64).to_bytes(2, "big") + message.signature
    else:
        head = b"\xdc\x00\x05"
    data = head + b"".join(fields) + vector + signature
    assert msgpack.unpackb(data) == [message.TAG, message.round_id, message.sender, message.masked, message.signature]
    assert decode_or_typed_error(data) is None or data == encode(message)


@settings(max_examples=100, deadline=None)
@given(st.builds(MaskedInput, rounds, ids, st.binary(min_size=24, max_size=24), signatures))
def test_a_decoded_masked_input_views_the_received_bytes_instead_of_copying_them(message: MaskedInput) -> None:
    data = encode(message)
    decoded = decode(data, LIMITS)
    assert isinstance(decoded, MaskedInput) and decoded == message
    assert isinstance(decoded.masked, memoryview) and decoded.masked.obj is data
    assert decoded.masked_sha256 == message.masked_sha256 and decoded.digest() == message.digest()
