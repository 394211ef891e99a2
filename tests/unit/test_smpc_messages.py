"""Secure-aggregation messages at the byte level: the one canonical encoding of each, what a decoder accepts at
the edges of the round's limits, and the exact reason for each refusal (what a node logs as evidence)."""

import hashlib

import msgpack
import numpy as np
import pytest

from smpc.errors import MalformedMessage
from smpc.messages import (
    SHARE_BYTES,
    AdvertiseKeys,
    Limits,
    MaskedInput,
    ShareKeys,
    SharePlaintext,
    UnmaskShares,
    decode,
    decode_share,
    encode,
    encode_share,
    peek_tag,
)

LIMITS = Limits(max_participant_id=10, vector_length=6)
SIGNATURE = bytes(range(64))
VECTOR = bytes(range(24))
SHARE = b"".join(x.to_bytes(8, "little") for x in (0, 1, 2, 3, (1 << 61) - 2))


def refused(data: bytes, limits: Limits = LIMITS) -> str:
    with pytest.raises(MalformedMessage) as error:
        decode(data, limits)
    assert error.value.sender is None
    return error.value.reason


def test_the_size_bound_counts_every_pair_a_bundle_may_hold() -> None:
    assert LIMITS.max_message_bytes == 4 * 6 + 10 * 2 * (16 + 256) + 256
    assert refused(bytes(LIMITS.max_message_bytes + 1)) == f"message of {LIMITS.max_message_bytes + 1} bytes exceeds 5720"
    assert refused(bytes(LIMITS.max_message_bytes)) == "not msgpack within limits: ExtraData", "parsed: not too long"


def test_each_message_is_the_documented_array_and_its_signed_body_leaves_out_the_signature() -> None:
    advert = AdvertiseKeys(7, 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE)
    assert encode(advert) == msgpack.packb([1, 7, 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE])
    assert advert.signed_body() == msgpack.packb([1, 7, 2, b"m" * 32, b"e" * 32, b"c" * 32])
    bundle = ShareKeys(7, 2, ((1, b"x"), (3, b"y")), ((1, b"a" * 64), (2, b"b" * 32 + b"B" * 32)), SIGNATURE)
    assert encode(bundle) == msgpack.packb([2, 7, 2, [[1, b"x"], [3, b"y"]], [[1, b"a" * 64], [2, b"b" * 32 + b"B" * 32]],
                                            SIGNATURE])
    masked = MaskedInput(7, 2, VECTOR, SIGNATURE)
    assert encode(masked) == msgpack.packb([3, 7, 2, VECTOR, SIGNATURE])
    assert masked.signed_body() == msgpack.packb([3, 7, 2, hashlib.sha256(VECTOR).digest()])
    assert masked.digest() == hashlib.sha256(masked.signed_body()).digest()
    reveal = UnmaskShares(7, 2, ((1, SHARE),), (), SIGNATURE)
    assert encode(reveal) == msgpack.packb([4, 7, 2, [[1, SHARE]], [], SIGNATURE])
    for message in (advert, bundle, masked, reveal):
        assert decode(encode(message), LIMITS) == message
        assert peek_tag(encode(message)) == message.TAG


def test_a_bundle_hands_out_each_holders_two_commitments_and_none_for_a_stranger() -> None:
    bundle = ShareKeys(7, 2, (), ((2, b"b" * 32 + b"B" * 32),), SIGNATURE)
    assert bundle.commitment(2, mask_key=False) == b"b" * 32
    assert bundle.commitment(2, mask_key=True) == b"B" * 32
    assert bundle.commitment(3, mask_key=True) is None
    assert bundle.commitment(3, mask_key=False) is None


def test_peek_tag_reads_only_canonical_heads() -> None:
    assert peek_tag(b"\x95\x03") == 3
    assert peek_tag(b"\x90\x04") == 4
    assert peek_tag(b"\x9f\x01") == 1
    for data in (b"\x95", b"\x95\x05", b"\x95\x00", b"\x8f\x01", b"\xa0\x01", b"\xdc\x00\x05\x03"):
        assert peek_tag(data) is None, data


def masked_input(head: bytes = b"\x95\x03\x07\x02", tail: bytes = b"\xc4\x40" + SIGNATURE) -> bytes:
    return head + b"\xc4\x18" + VECTOR + tail


def test_a_decoded_masked_input_does_not_change_with_the_buffer_it_came_from() -> None:
    data = bytearray(masked_input())
    message = decode(data, LIMITS)  # type: ignore[arg-type]
    data[10] ^= 0xFF
    assert message == MaskedInput(7, 2, VECTOR, SIGNATURE) and bytes(message.masked) == VECTOR


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x96\x03\x07\x02\xc4\x18" + VECTOR + b"\xc4\x00\xc4\x40" + SIGNATURE,
     "not a masked input of this round's vector length"),
    (b"\x95\x03" + bytes(84) + b"\xc4\x18\x00", "not a masked input of this round's vector length"),
    (b"\x95\x03\x07\x02\xc4\x17" + VECTOR[:23] + b"\xc4\x40" + SIGNATURE,
     "not a masked input of this round's vector length"),
    (b"\x95\x03\x07\x02\xc4\x18" + VECTOR + b"\xc4\x40" + SIGNATURE[:63],
     "not a masked input of this round's vector length"),
    (b"\x95\x03\x07" + b"\xc4\x18" + VECTOR + b"\xc4\x40" + SIGNATURE, "masked input head or tail is not msgpack: ValueError"),
    (b"\x95\x03" + b"\xc4\x18" + VECTOR + b"\xc4\x40" + SIGNATURE, "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03\x07\x02\x01"), "masked input head or tail is not msgpack: ExtraData"),
    (masked_input(b"\x95\x03" + msgpack.packb("x") + b"\x02"), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03" + msgpack.packb(b"x") + b"\x02"), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03" + msgpack.packb([1, 2, 3, 4]) + b"\x02"),
     "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03" + msgpack.packb({b"": 2}) + b"\x02"),
     "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03" + msgpack.packb(msgpack.ExtType(1, b"x")) + b"\x02"),
     "masked input head or tail is not msgpack: ValueError"),
    (masked_input(tail=b"\xd9\x40" + bytes(64)), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(tail=b"\xdc\x00\x3f" + bytes(63)), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(tail=b"\x91\xc4\x3f" + bytes(63)), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(tail=b"\x81\xc4\x00\xc4\x3d" + bytes(61)), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(tail=b"\xc7\x3f\x01" + bytes(63)), "masked input head or tail is not msgpack: ValueError"),
    (masked_input(b"\x95\x03\xff\x02"), "round_id must be an integer in [0, 9223372036854775807]"),
    (masked_input(b"\x95\x03\x07\x00"), "sender must be an integer in [1, 10]"),
    (masked_input(b"\x95\x03\x07\xc3"), "sender must be an integer in [1, 10]"),
    (masked_input(b"\x95\x03\x07\x0b"), "sender must be an integer in [1, 10]"),
    (masked_input(tail=b"\xc5\x00\x3f" + bytes(63)), "signature must be 64..64 bytes"),
    (masked_input(b"\x95\x03\xcc\x07\x02"), "non-canonical encoding"),
    (masked_input(b"\x95\x03\xd1\x7f\xff\x02"), "non-canonical encoding"),
])
def test_a_malformed_masked_input_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    assert refused(data) == reason


def test_a_masked_input_at_the_largest_ids_decodes() -> None:
    limits = Limits(max_participant_id=65535, vector_length=6)
    message = MaskedInput((1 << 63) - 1, 65535, VECTOR, SIGNATURE)
    assert decode(encode(message), limits) == message
    assert decode(msgpack.packb([3, 0x7FFF, 1, VECTOR, SIGNATURE]), LIMITS) == MaskedInput(0x7FFF, 1, VECTOR, SIGNATURE)


def bundle(ciphertexts: object = ((1, b"x"),), commitments: object = ((1, b"a" * 64),)) -> bytes:
    return msgpack.packb([2, 7, 2, ciphertexts, commitments, SIGNATURE])


@pytest.mark.parametrize(("data", "reason"), [
    (msgpack.packb([2, 7, 2]), "not a message array"),
    (msgpack.packb({}), "not a message array"),
    (msgpack.packb([9, 7, 2, SIGNATURE]), "unknown message tag 9"),
    (msgpack.packb([True, 7, 2, SIGNATURE]), "unknown message tag True"),
    (msgpack.packb(["\x01", 7, 2, SIGNATURE]), "not msgpack within limits: ValueError"),
    (msgpack.packb([1, -1, 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE]),
     "round_id must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb([1, 7, 11, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE]), "sender must be an integer in [1, 10]"),
    (msgpack.packb([1, 7, True, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE]), "sender must be an integer in [1, 10]"),
    (msgpack.packb([1, b"7", 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE]),
     "round_id must be an integer in [0, 9223372036854775807]"),
    (msgpack.packb([1, 7, 2, b"m" * 257, b"e" * 32, b"c" * 32, SIGNATURE]), "not msgpack within limits: ValueError"),
    (msgpack.packb([1, 7, 2, {b"": 1}, b"e" * 32, b"c" * 32, SIGNATURE]), "not msgpack within limits: ValueError"),
    (msgpack.packb([1, 7, 2, msgpack.ExtType(1, b"x"), b"e" * 32, b"c" * 32, SIGNATURE]),
     "not msgpack within limits: ValueError"),
    (bundle([[i, b"x"] for i in range(1, 12)]), "not msgpack within limits: ValueError"),
    (msgpack.packb([1, 7, 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE[:63]]), "signature must be 64..64 bytes"),
    (msgpack.packb([1, 7, 2, b"m" * 32, b"e" * 32, SIGNATURE]), "expected 3 fields, got 2"),
    (msgpack.packb([1, 7, 2, b"m" * 32, b"e" * 31, b"c" * 32, SIGNATURE]), "key must be 32..32 bytes"),
    (bundle(5), "expected a list of (id, bytes) pairs"),
    (bundle([5]), "expected an (id, bytes) pair"),
    (bundle([[1, b"x", 3]]), "expected an (id, bytes) pair"),
    (bundle([[0, b"x"]]), "participant id must be an integer in [1, 10]"),
    (bundle([[11, b"x"]]), "participant id must be an integer in [1, 10]"),
    (bundle([[1, b""]]), "pair payload must be 1..256 bytes"),
    (bundle(commitments=[[1, b"a" * 63]]), "pair payload must be 64..64 bytes"),
    (bundle([[1, b"x"], [1, b"y"]]), "pair ids must be strictly increasing"),
    (bundle([[2, b"x"], [1, b"y"]]), "pair ids must be strictly increasing"),
    (msgpack.packb([2, 7, 2, [], SIGNATURE]), "expected 2 fields, got 1"),
    (msgpack.packb([4, 7, 2, [[1, SHARE[:39]]], [], SIGNATURE]), "pair payload must be 40..40 bytes"),
    (msgpack.packb([4, 7, 2, [], [[1, b"\xff" * 40]], SIGNATURE]), "share element outside GF(p)"),
    (msgpack.packb([4, 7, 2, [], SIGNATURE]), "expected 2 fields, got 1"),
    (b"\x9f\x01\x07\x02", "not msgpack within limits: ValueError"),
    (msgpack.packb([1, 0x7FFF, 2, b"m" * 32, b"e" * 32, b"c" * 32, SIGNATURE]).replace(b"\xcd\x7f\xff", b"\xd1\x7f\xff"),
     "non-canonical encoding"),
])
def test_a_malformed_message_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    assert refused(data) == reason


def test_a_masked_input_of_another_vector_length_is_refused_after_parsing() -> None:
    data = b"\xdc\x00\x05" + msgpack.packb(3) + b"\x07\x02" + msgpack.packb(VECTOR[:20]) + msgpack.packb(SIGNATURE)
    assert refused(data) == "masked vector must be 24..24 bytes"
    widened = b"\xdc\x00\x05" + msgpack.packb(3) + b"\x07\x02" + msgpack.packb(VECTOR) + msgpack.packb(SIGNATURE)
    assert refused(widened) == "non-canonical encoding"


def test_a_share_is_five_little_endian_field_elements() -> None:
    share = np.array([0, 1, 2, 3, (1 << 61) - 2], dtype=np.uint64)
    assert encode_share(share) == SHARE
    assert np.array_equal(decode_share(SHARE), share)
    for data, reason in ((SHARE[:39], "share has the wrong size"), (SHARE + b"\x00", "share has the wrong size"),
                         (SHARE[:32] + ((1 << 61) - 1).to_bytes(8, "little"), "share element outside GF(p)")):
        with pytest.raises(MalformedMessage) as error:
            decode_share(data)
        assert error.value.reason == reason


def plaintext(*items: object) -> bytes:
    return msgpack.packb(list(items))


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xc1", "share plaintext is not msgpack"),
    (plaintext(1, 2, SHARE, SHARE + b"\x00"), "share plaintext is not msgpack"),
    (plaintext(1, 2, SHARE, SHARE, SHARE), "share plaintext is not msgpack"),
    (plaintext("x", 2, SHARE, SHARE), "share plaintext is not msgpack"),
    (plaintext({b"": 2}, 2, SHARE, SHARE), "share plaintext is not msgpack"),
    (plaintext(1, 2, SHARE), "share plaintext has the wrong shape"),
    (msgpack.packb(5), "share plaintext has the wrong shape"),
    (plaintext(0, 2, SHARE, SHARE), "sender must be an integer in [1, 10]"),
    (plaintext(1, 11, SHARE, SHARE), "recipient must be an integer in [1, 10]"),
    (plaintext(1, 2, SHARE[:39], SHARE), "share must be 40..40 bytes"),
    (plaintext(1, 2, SHARE, b"\xff" * 40), "share element outside GF(p)"),
])
def test_a_malformed_share_plaintext_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as error:
        SharePlaintext.decode(data, LIMITS)
    assert error.value.reason == reason


def test_a_share_plaintext_is_the_documented_array() -> None:
    plain = SharePlaintext(1, 10, SHARE, SHARE)
    assert plain.encode() == msgpack.packb([1, 10, SHARE, SHARE])
    assert SharePlaintext.decode(plain.encode(), LIMITS) == plain
    assert len(SHARE) == SHARE_BYTES


@pytest.mark.parametrize("vector_length", [63, 64, 16383, 16384])
def test_masked_inputs_decode_with_every_width_of_bin_header(vector_length: int) -> None:
    """A vector of 4 L bytes has a 2-byte bin header below 256 bytes, 3 bytes below 64 KiB, 5 bytes from there."""
    message = MaskedInput(7, 2, bytes(range(256)) * (vector_length // 64) + bytes(4 * (vector_length % 64)), SIGNATURE)
    header = {63: b"\xc4\xfc", 64: b"\xc5\x01\x00", 16383: b"\xc5\xff\xfc", 16384: b"\xc6\x00\x01\x00\x00"}
    assert encode(message)[4:][: len(header[vector_length])] == header[vector_length]
    assert decode(encode(message), Limits(max_participant_id=10, vector_length=vector_length)) == message


def test_the_array_and_bin_limits_follow_the_round() -> None:
    """Arrays up to max(largest id, 8) entries and byte strings up to max(4 L, 256) bytes parse; longer ones do not."""
    small = Limits(max_participant_id=6, vector_length=100)
    nine = msgpack.packb([1, 7, 2, *[b"k" * 32] * 5, SIGNATURE])
    assert refused(nine, small) == "not msgpack within limits: ValueError"
    eight = msgpack.packb([1, 7, 2, *[b"k" * 32] * 4, SIGNATURE])
    assert refused(eight, small) == "expected 3 fields, got 4"
    for payload, reason in ((b"x" * 400, "pair payload must be 1..256 bytes"),
                            (b"x" * 401, "not msgpack within limits: ValueError")):
        assert refused(bundle([[1, payload]]), small) == reason
