"""The validation layer's point-to-point messages: a dealer's sketch shares, a holder's sketch-sum share.

Both travel over the Noise-encrypted direct streams, not the ledger, and both are peer input: they are
decoded against the round's exact sizes, checked to be canonical and signed by their author, on arrival,
before anything is stored (a member sending junk a round early once crashed every honest node when the
stored bytes were first decoded at the phase close). `decode_*` raise MalformedMessage, `verify` raises
BadSignature or ProtocolViolation: nothing else escapes (a fuzz test checks it).

    SketchShares = [tag 1, round, dealer, holder, share, contributions, commitments, signature]
    SketchSum    = [tag 2, round, holder, share, signature]
    ExcisedSum   = [tag 3, round, holder, excised, share, signature]

A SketchSum's share is of the sum of the accepted set S's sketches (the unmask phase); an ExcisedSum's, decoded as
a SketchSum with `excised` set, is of the sum over S \\ L once a blame verdict convicted L (`excised`: L's member
indices, strictly increasing, non-empty; the excise phase). The tag and L are signed, so a share of one sum is never
taken for a share of another. `share` is k little-endian GF(p) elements; `contributions` the dealer's PRZS contributions for the subsets
that contain neither it nor the holder, 32 bytes each (`przs.shared_subsets` order); `commitments` its
commitments to every contribution it made (`przs.dealt_subsets` order), whose SHA-256 its `dealt`
transaction puts on the ledger. The signature covers the message without it, under `signing_payload`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import comb
from typing import Any, cast

import msgpack

from smpc import aead, field, keys, przs
from smpc.errors import BadPublicKey, BadSignature, DecryptionFailed, MalformedMessage, ProtocolViolation
from smpc.field import FieldArray
from smpc.signing import SIGNATURE_BYTES, Signer, Verifier, signing_payload

SHARES_TAG, SUM_TAG, EXCISED_SUM_TAG = 1, 2, 3
_DOMAIN = b"fednode/validation/v1/"


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Exact sizes of a round's messages: sketch width k, PRZS degree t, the round's participants."""

    round_id: int
    width: int
    degree: int
    participants: frozenset[int]

    @property
    def contributions_bytes(self) -> int:
        return przs.KEY_BYTES * comb(len(self.participants) - 2, self.degree)

    @property
    def commitments_bytes(self) -> int:
        return 32 * comb(len(self.participants) - 1, self.degree)

    @property
    def max_bytes(self) -> int:
        return 8 * self.width + self.contributions_bytes + self.commitments_bytes + SIGNATURE_BYTES + 64


@dataclass(frozen=True, slots=True)
class SketchShares:
    round_id: int
    dealer: int
    holder: int
    share: FieldArray
    contributions: bytes
    commitments: bytes
    signature: bytes

    def body(self) -> list[Any]:
        return [SHARES_TAG, self.round_id, self.dealer, self.holder, self.share.astype("<u8").tobytes(),
                self.contributions, self.commitments]

    @property
    def author(self) -> int:
        return self.dealer

    def contribution_list(self) -> list[bytes]:
        return _chunks(self.contributions, przs.KEY_BYTES)

    def commitment_list(self) -> list[bytes]:
        return _chunks(self.commitments, 32)

    def commitments_digest(self) -> bytes:
        """What the dealer's `dealt` transaction commits to on the ledger."""
        return commitments_digest(self.commitments)


@dataclass(frozen=True, slots=True)
class SketchSum:
    round_id: int
    holder: int
    share: FieldArray
    signature: bytes
    excised: tuple[int, ...] = ()
    """Empty: a share of the sum over S (unmask phase). Otherwise L, and the share is of the sum over S \\ L."""

    def body(self) -> list[Any]:
        share = self.share.astype("<u8").tobytes()
        if self.excised:
            return [EXCISED_SUM_TAG, self.round_id, self.holder, list(self.excised), share]
        return [SUM_TAG, self.round_id, self.holder, share]

    @property
    def author(self) -> int:
        return self.holder


def commitments_digest(commitments: bytes) -> bytes:
    """SHA-256 of a dealer's concatenated PRZS commitments: the field of its `dealt` transaction."""
    return hashlib.sha256(_DOMAIN + b"commitments" + commitments).digest()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[k : k + size] for k in range(0, len(data), size)]


def _pack(body: list[Any]) -> bytes:
    return cast(bytes, msgpack.packb(body, use_bin_type=True))


def sign_shares(chain_id: bytes, sign: Signer, round_id: int, dealer: int, holder: int, share: FieldArray,
                contributions: bytes, commitments: bytes) -> bytes:
    """The encoded, signed sketch shares of `dealer` for `holder` (member indices)."""
    unsigned = SketchShares(round_id, dealer, holder, share, contributions, commitments, b"")
    return _pack([*unsigned.body(), sign(signing_payload(chain_id, _DOMAIN + _pack(unsigned.body())))])


def sign_sum(chain_id: bytes, sign: Signer, round_id: int, holder: int, share: FieldArray,
             excised: tuple[int, ...] = ()) -> bytes:
    """The encoded, signed share of the accepted sketches' sum held by `holder`; with `excised` (L, member indices in
    increasing order), of the sum of the sketches of S \\ L (an ExcisedSum)."""
    assert list(excised) == sorted(set(excised)), "L in strictly increasing order"
    unsigned = SketchSum(round_id, holder, share, b"", tuple(excised))
    return _pack([*unsigned.body(), sign(signing_payload(chain_id, _DOMAIN + _pack(unsigned.body())))])


def _unpack(data: bytes, limits: ValidationLimits, fields: int, *more: int) -> list[Any]:
    """The message's fields: an array of `fields` (or of one of `more`) items; nested arrays (an ExcisedSum's L)
    hold at most one item per participant."""
    if not isinstance(data, bytes) or len(data) > limits.max_bytes:
        raise MalformedMessage(f"validation message is not bytes of at most {limits.max_bytes}")
    counts = (fields, *more)
    try:
        items = msgpack.unpackb(data, raw=False, max_bin_len=limits.max_bytes, max_str_len=0,
                                max_array_len=max(*counts, len(limits.participants)), max_map_len=0, max_ext_len=0)
    except Exception as error:  # msgpack documents that "other exceptions can be raised"
        raise MalformedMessage(f"not msgpack within limits: {type(error).__name__}") from error
    if not isinstance(items, list) or len(items) not in counts:
        raise MalformedMessage(f"expected an array of {' or '.join(map(str, counts))} fields")
    if _pack(items) != data:
        raise MalformedMessage("non-canonical encoding")
    return items


def _int(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MalformedMessage(f"{what} must be an integer in [{low}, {high}]")
    return value


def _bytes(value: Any, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise MalformedMessage(f"{what} must be exactly {length} bytes")
    return value


def _vector(value: Any, width: int) -> FieldArray:
    try:
        return field.vector_from_bytes(_bytes(value, 8 * width, "share"), width)
    except ValueError as error:
        raise MalformedMessage(str(error)) from None


def _member(value: Any, limits: ValidationLimits, what: str) -> int:
    member = _int(value, 0, 1 << 16, what)
    if member not in limits.participants:
        raise MalformedMessage(f"{what} {member} is not a participant of the round")
    return member


def _round(value: Any, limits: ValidationLimits) -> int:
    if _int(value, 0, (1 << 63) - 1, "round") != limits.round_id:
        raise MalformedMessage(f"validation message for round {value}, not {limits.round_id}")
    return limits.round_id


def decode_shares(data: bytes, limits: ValidationLimits) -> SketchShares:
    """Parse a dealer's sketch shares with this round's sizes; raise MalformedMessage."""
    tag, round_id, dealer, holder, share, contributions, commitments, signature = _unpack(data, limits, 8)
    if tag != SHARES_TAG:
        raise MalformedMessage("not sketch shares")
    return SketchShares(_round(round_id, limits), _member(dealer, limits, "dealer"), _member(holder, limits, "holder"),
                        _vector(share, limits.width), _bytes(contributions, limits.contributions_bytes, "contributions"),
                        _bytes(commitments, limits.commitments_bytes, "commitments"),
                        _bytes(signature, SIGNATURE_BYTES, "signature"))


def decode_sum(data: bytes, limits: ValidationLimits) -> SketchSum:
    """Parse a holder's share of the sketch sum over S (SketchSum) or over S \\ L (ExcisedSum, `excised` set) with
    this round's sizes; raise MalformedMessage."""
    items = _unpack(data, limits, 5, 6)
    excised: tuple[int, ...] = ()
    if items[0] == EXCISED_SUM_TAG and len(items) == 6:
        _, round_id, holder, named, share, signature = items
        if not isinstance(named, list) or not named:
            raise MalformedMessage("an excised sum names a non-empty set")
        excised = tuple(_member(m, limits, "excised member") for m in named)
        if list(excised) != sorted(set(excised)):
            raise MalformedMessage("an excised sum's set must be strictly increasing")
    elif items[0] == SUM_TAG and len(items) == 5:
        _, round_id, holder, share, signature = items
    else:
        raise MalformedMessage("not a sketch-sum share")
    return SketchSum(_round(round_id, limits), _member(holder, limits, "holder"), _vector(share, limits.width),
                     _bytes(signature, SIGNATURE_BYTES, "signature"), excised)


def verify(message: SketchShares | SketchSum, sender: int, chain_id: bytes, verifier: Verifier) -> None:
    """The message must come from its author (the transport's authenticated sender) and carry the author's
    signature. `verifier` takes member indices. Raises ProtocolViolation or BadSignature."""
    if message.author != sender:
        raise ProtocolViolation(f"message authored by member {message.author}, sent by member {sender}", sender)
    if not verifier(sender, signing_payload(chain_id, _DOMAIN + _pack(message.body())), message.signature):
        raise BadSignature("validation message signature does not verify", sender)


def check_contributions(message: SketchShares, limits: ValidationLimits, chain_id: bytes) -> dict[przs.Subset, bytes]:
    """The dealer's contributions by subset, each matching its commitment; raises ProtocolViolation."""
    participants = sorted(limits.participants)
    dealt = przs.dealt_subsets(participants, limits.degree, message.dealer)
    commitments = dict(zip(dealt, message.commitment_list(), strict=True))
    shared = przs.shared_subsets(participants, limits.degree, message.dealer, message.holder)
    contributions = dict(zip(shared, message.contribution_list(), strict=True))
    for subset, contribution in contributions.items():
        expected = przs.commitment(chain_id, message.round_id, subset, message.dealer, contribution)
        if commitments[subset] != expected:
            raise ProtocolViolation(f"contribution for subset {subset} does not match its commitment", message.dealer)
    return contributions


# ------------------------------------------------------------------ shares sealed for the ledger (complaints)

SEAL_OVERHEAD = 32 + 16
"""A sealed bundle: the dealer's ephemeral X25519 public key, then the AEAD ciphertext (16-byte tag)."""


_PROBE_SECRET = bytes([8]) + bytes(30) + bytes([64])
"""A fixed clamped X25519 scalar (a multiple of 8): its product with a key is zero exactly when the key is of low
order, which is when every dealer's seal to it fails, whatever its ephemeral secret."""


def channel_key_usable(public_key: bytes) -> bool:
    """Whether a dealer can seal to this channel key (it is not of low order): a check every replica runs on a
    `reveal`, so that no holder can publish a key its dealers cannot answer to and then blame them (red team
    g8 f1)."""
    try:
        keys.agree(_PROBE_SECRET, public_key)
    except BadPublicKey:
        return False
    return True


def channel_public_key(secret: bytes) -> bytes:
    """The public key of a holder's channel secret for one dealer (published in its `reveal` transaction)."""
    return keys.keypair_from_secret(secret).public_key


def _seal_key(shared: bytes, chain_id: bytes, round_id: int, dealer: int, holder: int) -> bytes:
    return keys.derive_pair_key(shared, keys.KeyPurpose.SKETCH_ENCRYPTION, chain_id, round_id, dealer + 1, holder + 1)


def seal(payload: bytes, holder_public_key: bytes, ephemeral_secret: bytes, chain_id: bytes, round_id: int,
         dealer: int, holder: int) -> bytes:
    """`dealer`'s signed sketch shares for `holder`, encrypted to the channel key `holder` published for this
    dealer: what the dealer's `dealt` commits to by hash and what its `answer` to a complaint carries. Whoever
    learns that channel's secret (the holder disclosing it to prove a bad answer) reads this bundle only.
    Raises BadPublicKey for a holder's low-order key."""
    ephemeral = keys.keypair_from_secret(ephemeral_secret)
    key = _seal_key(keys.agree(ephemeral.secret_key, holder_public_key), chain_id, round_id, dealer, holder)
    return ephemeral.public_key + aead.encrypt(key, chain_id, round_id, dealer + 1, holder + 1, payload, b"sketch")


def unseal(sealed: bytes, channel_secret: bytes, chain_id: bytes, round_id: int, dealer: int, holder: int) -> bytes:
    """The payload of a sealed bundle, with the holder's channel secret for `dealer`. Raises DecryptionFailed
    or BadPublicKey (the dealer's fault: the sealed bytes are its)."""
    if len(sealed) < SEAL_OVERHEAD:
        raise DecryptionFailed("sealed sketch shares too short", dealer + 1)
    try:
        shared = keys.agree(channel_secret, sealed[:32])
    except BadPublicKey:
        raise BadPublicKey("sealed sketch shares carry a low-order key", dealer + 1) from None
    key = _seal_key(shared, chain_id, round_id, dealer, holder)
    return aead.decrypt(key, chain_id, round_id, dealer + 1, holder + 1, sealed[32:], b"sketch")


def answer_fault(sealed: bytes, channel_secret: bytes, limits: ValidationLimits, chain_id: bytes, verifier: Verifier,
                 dealer: int, holder: int, dealt_digest: bytes) -> str | None:
    """Why a dealer's answer cannot give `holder` its shares, None if it can: it does not decrypt, or holds no
    signed sketch shares of `dealer` for `holder` in this round, or its PRZS contributions or commitments
    differ from the dealer's commitments on the ledger (`dealt_digest`). The reason names no participant (the
    unsealing's errors carry participant ids, the checks' member indexes): the caller names the dealer. Pure:
    what every replica computes once the holder disclosed `channel_secret`."""
    try:
        message = decode_shares(unseal(sealed, channel_secret, chain_id, limits.round_id, dealer, holder), limits)
        verify(message, dealer, chain_id, verifier)
        if message.holder != holder:
            raise ProtocolViolation(f"shares for member {message.holder}")
        check_contributions(message, limits, chain_id)
    except ProtocolViolation as violation:
        return violation.reason
    if message.commitments_digest() != dealt_digest:
        return "its commitments differ from its dealt transaction"
    return None
