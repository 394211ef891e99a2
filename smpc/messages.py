"""Secure-aggregation messages: frozen dataclasses with one canonical msgpack encoding each.

Encoding. A message is the msgpack array [tag, round_id, sender, field..., signature], fields in
declaration order, bytes as msgpack bin, integers in their shortest form. msgpack's packer is
deterministic for such values, and the decoder re-encodes what it parsed and rejects the input
unless it is byte-identical, so every message has exactly one encoding: hashes and signatures
can never be malleated by re-encoding.

Signing. A sender signs `signing_payload(chain_id, message.signed_body())`: the same array without
the signature, except that a masked vector is replaced by its SHA-256, so the signature and the
ledger's commitment to a masked input (`MaskedInput.digest`) are small and cheap to compute.

Decoding bounds everything before allocating: the total size, every bin and array length (through
msgpack's limits), then the exact shape and the length of every field, against `Limits` derived
from the round configuration. Any byte string either decodes to a message or raises
MalformedMessage; no other exception escapes `decode` (a fuzz test checks it).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import msgpack
import numpy as np

from smpc import field as gf
from smpc import shamir
from smpc.errors import MalformedMessage
from smpc.field import FieldArray, RingArray
from smpc.keys import KEY_BYTES
from smpc.signing import SIGNATURE_BYTES

DIGEST_BYTES = 32
SHARE_COMMITMENT_BYTES = 2 * DIGEST_BYTES
"""Per holder in a ShareKeys bundle: the hash of its share of b_sender, then of its share of sk_sender."""
SHARE_BYTES = 8 * shamir.SECRET_CHUNKS
MAX_CIPHERTEXT_BYTES = 256
MAX_ROUND_ID = (1 << 63) - 1
MAX_PARTICIPANT_ID = (1 << 16) - 1

Pairs = tuple[tuple[int, bytes], ...]
"""(participant id, bytes) entries sorted by strictly increasing id."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What a decoder accepts: ids in [1, max_participant_id], vectors of exactly vector_length."""

    max_participant_id: int
    vector_length: int

    @property
    def max_message_bytes(self) -> int:
        pair_bytes = 16 + MAX_CIPHERTEXT_BYTES
        return 4 * self.vector_length + self.max_participant_id * 2 * pair_bytes + 256


class _MessageBase:
    """Behaviour shared by every message: the body its signature covers."""

    __slots__ = ()
    TAG: ClassVar[int]
    round_id: int
    sender: int

    def fields(self) -> list[Any]:
        """The message's own fields, in wire order, between the sender and the signature."""
        raise NotImplementedError

    def signed_fields(self) -> list[Any]:
        """The fields the signature covers; defaults to all of them."""
        return self.fields()

    def signed_body(self) -> bytes:
        """The canonical bytes a signature covers (see the module docstring)."""
        return cast(bytes, msgpack.packb([self.TAG, self.round_id, self.sender, *self.signed_fields()]))


@dataclass(frozen=True, slots=True)
class AdvertiseKeys(_MessageBase):
    """Phase 1: the sender's ephemeral X25519 keys and a commitment to its self-mask seed."""

    TAG: ClassVar[int] = 1
    round_id: int
    sender: int
    mask_public_key: bytes
    encryption_public_key: bytes
    self_seed_commitment: bytes
    signature: bytes = b""

    def fields(self) -> list[Any]:
        return [self.mask_public_key, self.encryption_public_key, self.self_seed_commitment]


@dataclass(frozen=True, slots=True)
class ShareKeys(_MessageBase):
    """Phase 2: one ciphertext per recipient, each holding the recipient's two Shamir shares, and for every
    holder (the sender included) the hashes of its two shares (`secagg.share_commitment`), so that each
    share revealed later can be checked on its own."""

    TAG: ClassVar[int] = 2
    round_id: int
    sender: int
    ciphertexts: Pairs
    commitments: Pairs
    """(holder, H(share of b_sender) || H(share of sk_sender)) for every member of U1."""
    signature: bytes = b""

    def fields(self) -> list[Any]:
        return [[list(pair) for pair in self.ciphertexts], [list(pair) for pair in self.commitments]]

    def commitment(self, holder: int, mask_key: bool) -> bytes | None:
        """The committed hash of `holder`'s share of b_sender (or of sk_sender); None if there is none."""
        both = dict(self.commitments).get(holder)
        return None if both is None else both[DIGEST_BYTES:] if mask_key else both[:DIGEST_BYTES]


@dataclass(frozen=True, slots=True)
class MaskedInput(_MessageBase):
    """Phase 3: y_sender, the masked quantized update, as little-endian uint32 bytes."""

    TAG: ClassVar[int] = 3
    round_id: int
    sender: int
    masked: bytes | memoryview
    """Built by this node: bytes. Decoded: a read-only view into the received encoding (no 4 MB copy)."""
    signature: bytes = b""
    masked_sha256: bytes = field(init=False, repr=False, compare=False)
    """Hashed once at construction: signing, verifying and committing all need it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "masked_sha256", hashlib.sha256(self.masked).digest())

    def fields(self) -> list[Any]:
        return [self.masked]

    def signed_fields(self) -> list[Any]:
        return [self.masked_sha256]

    def vector(self) -> RingArray:
        return np.frombuffer(self.masked, dtype="<u4").astype(np.uint32, copy=False)

    def digest(self) -> bytes:
        """The commitment a ledger block records for this input (hash of the signed body)."""
        return hashlib.sha256(self.signed_body()).digest()


@dataclass(frozen=True, slots=True)
class UnmaskShares(_MessageBase):
    """Phase 4: the sender's shares of survivors' self-mask seeds and of dropped nodes' mask keys."""

    TAG: ClassVar[int] = 4
    round_id: int
    sender: int
    self_seed_shares: Pairs
    mask_key_shares: Pairs
    signature: bytes = b""

    def fields(self) -> list[Any]:
        return [[list(pair) for pair in self.self_seed_shares], [list(pair) for pair in self.mask_key_shares]]


Message = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskShares
_BY_TAG: dict[int, type[Message]] = {cls.TAG: cls for cls in (AdvertiseKeys, ShareKeys, MaskedInput, UnmaskShares)}


def peek_tag(data: bytes) -> int | None:
    """The type tag of a canonically encoded message, read without decoding it (cheap mempool filtering).

    Every message is a short msgpack array (a fixarray) whose first element, the tag, is a positive fixint.
    The answer is only a hint: `decode` remains the check.
    """
    if len(data) >= 2 and 0x90 <= data[0] <= 0x9F and data[1] in _BY_TAG:
        return data[1]
    return None


def encode(message: Message) -> bytes:
    """The canonical wire encoding, signature last."""
    assert len(message.signature) == SIGNATURE_BYTES, "encode signed messages only"
    return cast(
        bytes, msgpack.packb([message.TAG, message.round_id, message.sender, *message.fields(), message.signature])
    )


def decode(data: bytes, limits: Limits) -> Message:
    """Parse and fully validate one message, or raise MalformedMessage."""
    if len(data) > limits.max_message_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {limits.max_message_bytes}")
    if peek_tag(data) == MaskedInput.TAG:
        return _decode_masked_input(data, limits)
    try:
        items = msgpack.unpackb(
            data,
            max_bin_len=max(4 * limits.vector_length, MAX_CIPHERTEXT_BYTES),
            max_array_len=max(limits.max_participant_id, 8),
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as error:  # msgpack documents that "other exceptions can be raised"
        raise MalformedMessage(f"not msgpack within limits: {type(error).__name__}") from error
    message = _build(items, limits)
    if not _is_encoding_of(message, data):
        raise MalformedMessage("non-canonical encoding")
    return message


def _decode_masked_input(data: bytes, limits: Limits) -> MaskedInput:
    """A masked input, its vector a view of `data` rather than a copy (a node receives N - 1 per round).

    Its encoding has a fixed layout: [tag, round_id, sender, vector, signature] with the vector exactly
    4 * vector_length bytes. msgpack parses only the few bytes before the vector and the signature after
    it; `_is_encoding_of` then requires those bytes to be exactly the canonical head and tail, so `data` is
    the one encoding of the message, as for every other message.
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # the vector will be a view: of immutable bytes only
    length = 4 * limits.vector_length
    header = _bin_header(length)
    start = len(data) - _SIGNATURE_TAIL_BYTES - length
    head_end = start - len(header)
    if head_end < 2 or data[0] != 0x95 or data[head_end:start] != header:
        raise MalformedMessage("not a masked input of this round's vector length")
    try:
        _tag, round_id, sender = msgpack.unpackb(b"\x93" + data[1:head_end], max_str_len=0, max_bin_len=0,
                                                 max_array_len=3, max_map_len=0, max_ext_len=0)
        signature = msgpack.unpackb(data[start + length:], max_bin_len=SIGNATURE_BYTES, max_str_len=0,
                                    max_array_len=0, max_map_len=0, max_ext_len=0)
    except Exception as error:  # as in `decode`
        raise MalformedMessage(f"masked input head or tail is not msgpack: {type(error).__name__}") from error
    _check_int(round_id, 0, MAX_ROUND_ID, "round_id")
    _check_int(sender, 1, limits.max_participant_id, "sender")
    _check_bytes(signature, SIGNATURE_BYTES, SIGNATURE_BYTES, "signature")
    message = MaskedInput(round_id, sender, memoryview(data)[start:start + length], signature)  # type: ignore[arg-type]
    if not _is_encoding_of(message, data):
        raise MalformedMessage("non-canonical encoding")
    return message


_SIGNATURE_TAIL_BYTES = 2 + SIGNATURE_BYTES
"""A signature's msgpack encoding: bin 8 header (0xc4, 64) and the 64 bytes."""


def _is_encoding_of(message: Message, data: bytes) -> bool:
    """Whether `data` is exactly `encode(message)`, for a message msgpack parsed from `data`.

    A masked input is checked around its vector: if everything before the vector (array, tag, round,
    sender and the vector's bin header) and after it (the signature) is canonical and in place, msgpack
    took the vector from exactly the bytes in between, so re-encoding it (a 4 MB copy and comparison per
    received input) would prove nothing more.
    """
    if not isinstance(message, MaskedInput):
        return encode(message) == data
    head = (_PACKER.pack_array_header(5) + _PACKER.pack(message.TAG) + _PACKER.pack(message.round_id)
            + _PACKER.pack(message.sender) + _bin_header(len(message.masked)))
    tail = _PACKER.pack(message.signature)
    return (len(data) == len(head) + len(message.masked) + len(tail) and data.startswith(head)
            and data.endswith(tail))


def _bin_header(length: int) -> bytes:
    """The shortest msgpack bin header for `length` bytes, as msgpack's packer writes it."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


_PACKER = msgpack.Packer()


def _build(items: object, limits: Limits) -> Message:
    if not isinstance(items, list) or len(items) < 4:
        raise MalformedMessage("not a message array")
    tag, round_id, sender, *rest = items
    cls = _BY_TAG.get(tag) if isinstance(tag, int) and not isinstance(tag, bool) else None
    if cls is None:
        raise MalformedMessage(f"unknown message tag {tag!r}")
    _check_int(round_id, 0, MAX_ROUND_ID, "round_id")
    _check_int(sender, 1, limits.max_participant_id, "sender")
    *payload, signature = rest
    _check_bytes(signature, SIGNATURE_BYTES, SIGNATURE_BYTES, "signature")
    if cls is AdvertiseKeys:
        _check_arity(payload, 3)
        for value in payload:
            _check_bytes(value, KEY_BYTES, KEY_BYTES, "key")
        return AdvertiseKeys(round_id, sender, payload[0], payload[1], payload[2], signature)
    if cls is ShareKeys:
        _check_arity(payload, 2)
        return ShareKeys(round_id, sender, _pairs(payload[0], limits, 1, MAX_CIPHERTEXT_BYTES),
                         _pairs(payload[1], limits, SHARE_COMMITMENT_BYTES, SHARE_COMMITMENT_BYTES), signature)
    if cls is MaskedInput:
        _check_arity(payload, 1)
        length = 4 * limits.vector_length
        _check_bytes(payload[0], length, length, "masked vector")
        return MaskedInput(round_id, sender, payload[0], signature)
    _check_arity(payload, 2)
    seed_shares, key_shares = (_pairs(value, limits, SHARE_BYTES, SHARE_BYTES) for value in payload)
    for _, share in seed_shares + key_shares:
        decode_share(share)
    return UnmaskShares(round_id, sender, seed_shares, key_shares, signature)


def _check_arity(payload: list[object], count: int) -> None:
    if len(payload) != count:
        raise MalformedMessage(f"expected {count} fields, got {len(payload)}")


def _check_int(value: object, low: int, high: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise MalformedMessage(f"{name} must be an integer in [{low}, {high}]")


def _check_bytes(value: object, low: int, high: int, name: str) -> None:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise MalformedMessage(f"{name} must be {low}..{high} bytes")


def _pairs(value: object, limits: Limits, low: int, high: int) -> Pairs:
    if not isinstance(value, list):
        raise MalformedMessage("expected a list of (id, bytes) pairs")
    pairs = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2:
            raise MalformedMessage("expected an (id, bytes) pair")
        _check_int(entry[0], 1, limits.max_participant_id, "participant id")
        _check_bytes(entry[1], low, high, "pair payload")
        pairs.append((entry[0], entry[1]))
    if any(a[0] >= b[0] for a, b in itertools.pairwise(pairs)):
        raise MalformedMessage("pair ids must be strictly increasing")
    return tuple(pairs)


def encode_share(share: FieldArray) -> bytes:
    """A share of a 32-byte secret on the wire: SECRET_CHUNKS little-endian uint64 field elements."""
    assert share.shape == (shamir.SECRET_CHUNKS,), "not a secret share"
    return share.astype("<u8").tobytes()


def decode_share(data: bytes) -> FieldArray:
    """Inverse of `encode_share`; rejects wrong sizes and non-canonical field elements."""
    if len(data) != SHARE_BYTES:
        raise MalformedMessage("share has the wrong size")
    share = np.frombuffer(data, dtype="<u8").astype(np.uint64)
    if not gf.is_field_vector(share):
        raise MalformedMessage("share element outside GF(p)")
    return share


@dataclass(frozen=True, slots=True)
class SharePlaintext:
    """What one ShareKeys ciphertext holds: the recipient's shares of b_sender and sk_sender."""

    sender: int
    recipient: int
    self_seed_share: bytes
    mask_key_share: bytes

    def encode(self) -> bytes:
        return cast(bytes, msgpack.packb([self.sender, self.recipient, self.self_seed_share, self.mask_key_share]))

    @classmethod
    def decode(cls, data: bytes, limits: Limits) -> SharePlaintext:
        """Parse a decrypted bundle; it came from an authenticated peer, but may still be garbage."""
        try:
            items = msgpack.unpackb(data, max_bin_len=SHARE_BYTES, max_array_len=4, max_str_len=0, max_map_len=0)
        except Exception as error:  # see `decode`
            raise MalformedMessage("share plaintext is not msgpack") from error
        if not isinstance(items, list) or len(items) != 4:
            raise MalformedMessage("share plaintext has the wrong shape")
        _check_int(items[0], 1, limits.max_participant_id, "sender")
        _check_int(items[1], 1, limits.max_participant_id, "recipient")
        for share in items[2:]:
            _check_bytes(share, SHARE_BYTES, SHARE_BYTES, "share")
            decode_share(share)
        return cls(*items)
