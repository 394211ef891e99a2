"""The signed envelope every peer message travels in, and the checks a received one must pass.

Layout (see docs/wire-format.md):

    body = codec.encode([version, chain_id, type, sender, recipient, height, seq, payload])
    wire = codec.encode([body, signature])        # Ed25519 over SIGNATURE_DOMAIN + sha256(body)

The body is signed as bytes rather than re-encoded from fields, so the receiver verifies precisely what
the sender signed; the canonical codec additionally guarantees that no second encoding of the same
fields exists, so a replayed message cannot be disguised by re-encoding it. The signature covers the
body's SHA-256 (behind a domain tag) rather than the body itself: Ed25519 hashes its message twice with
SHA-512 to sign and once to verify, and pynacl copies it twice more, which for a 4 MB model payload cost
29 ms to seal and 16 ms per verification against 3 ms for one SHA-256 (measured, this machine). Forging
a message then needs a SHA-256 collision or second preimage, as forging a committed digest already does.

`Opener.open` runs the checks cheapest-first and bounded-first: size before any decoding, structure
before the Ed25519 verification, and the verification before the replay window is touched (so a forged
message can never consume or advance a sender's window). Every envelope names its recipient (one member, or
`ANY_RECIPIENT` for a message meant for all), and the receiver is told which member the bytes came from (the
connection's authenticated peer, or gossip's signed origin): a sender that is not that member, or a
recipient that is not us, is refused before the signature check and before the window. A member relaying
another's envelope therefore cannot spend the sequence number the genuine copy needs, and a request sealed
for one member is worthless to any other. Every failure is a `Rejected` carrying a
`RejectReason`, counted in `Opener.rejected`; nothing else escapes, whatever the bytes.

Replay protection survives restarts on both sides. A sender numbers its messages with a `MonotonicSeq`,
which never repeats a value even across process restarts because it follows a microsecond clock; the
receiver keeps a bounded window per sender (`ReplayWindow`) and may start it at a floor below which
every message is stale, so even a freshly restarted receiver refuses messages replayed from long ago.
Gossip reorders messages, so the window accepts any unseen sequence number inside it, not only the next.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from consensus import codec

WIRE_VERSION = 3
"""3: the body names its recipient; 2 did not; version 1 signed the body bytes themselves."""
SIGNATURE_DOMAIN = b"fednode/wire/v2/body-sha256:"
"""Separates envelope signatures from everything else a member's key signs (PBFT messages, transactions and
blocks are msgpack arrays, secure-aggregation messages start with their own tag)."""
CHAIN_ID_BYTES = 32
SIGNATURE_BYTES = 64
MAX_TYPE_CHARS = 32
MAX_SEQ = (1 << 63) - 1
MAX_HEIGHT = (1 << 63) - 1
ANY_RECIPIENT = MAX_SEQ
"""The recipient of a message meant for every member (gossip, a broadcast sent as direct frames)."""
BODY_FIELDS = 8
ENVELOPE_OVERHEAD_BYTES = 256
"""An upper bound on what an envelope adds to its payload: headers, chain id, type, integers, signature."""

DEFAULT_MAX_ENVELOPE_BYTES = 256 << 10
DEFAULT_MAX_BLOB_ENVELOPE_BYTES = 64 << 20
DEFAULT_REPLAY_SPAN = 600 * 1_000_000
"""Ten minutes of microsecond-clock sequence numbers: how far behind a sender's newest message may arrive."""
DEFAULT_REPLAY_MAX_SEEN = 8192
"""How many recent sequence numbers are remembered per sender before the window's floor is raised."""

Sign = Callable[[bytes], bytes]
Verify = Callable[[int, bytes, bytes], bool]


class RejectReason(enum.Enum):
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    BAD_VERSION = "bad_version"
    WRONG_CHAIN = "wrong_chain"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    REPLAYED = "replayed"
    STALE = "stale"
    SELF = "self"
    WRONG_PEER = "wrong_peer"
    WRONG_RECIPIENT = "wrong_recipient"


class Rejected(Exception):
    """A received envelope failed a check; the peer's fault (or a gossip echo), never ours."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    """An authenticated message: `sender` signed it for this chain, and it was not seen before."""

    type: str
    sender: int
    height: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Limits:
    """Byte bounds for the two channels and for each message type's payload.

    Small consensus messages travel by gossip and are bounded by `max_envelope_bytes`; model-size payloads
    travel on direct streams and are bounded by `max_blob_envelope_bytes`. `payload_bytes_max` is the table
    of known types; a type absent from it is refused as UNKNOWN_TYPE.
    """

    payload_bytes_max: Mapping[str, int]
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES
    max_blob_envelope_bytes: int = DEFAULT_MAX_BLOB_ENVELOPE_BYTES

    def __post_init__(self) -> None:
        assert 0 < self.max_envelope_bytes <= self.max_blob_envelope_bytes, self
        for type_, limit in self.payload_bytes_max.items():
            assert 0 < len(type_) <= MAX_TYPE_CHARS, type_
            assert 0 <= limit <= self.max_blob_envelope_bytes - ENVELOPE_OVERHEAD_BYTES, (type_, limit)

    def channel_bytes_max(self, type_: str) -> int:
        """The envelope bound of the channel a type belongs on: gossip if its payload fits, else streams."""
        if self.payload_bytes_max[type_] + ENVELOPE_OVERHEAD_BYTES <= self.max_envelope_bytes:
            return self.max_envelope_bytes
        return self.max_blob_envelope_bytes


def signed_digest(body: bytes) -> bytes:
    """What the sender's Ed25519 key signs for an envelope with this body (see the module docstring)."""
    return SIGNATURE_DOMAIN + hashlib.sha256(body).digest()


class MonotonicSeq:
    """Sequence numbers that strictly increase, also across restarts of this process.

    Each value is max(previous + 1, clock()), with `clock` returning microseconds since the epoch (the shell
    passes `lambda: time.time_ns() // 1000`). After a restart the clock has moved past every value issued
    before, as long as fewer than a million messages per second were sent and the clock did not step back;
    `start` lets the shell resume from a persisted high-water mark to cover a clock that did.
    """

    def __init__(self, clock: Callable[[], int], start: int = 0) -> None:
        self._clock = clock
        self._last = start

    def __call__(self) -> int:
        self._last = max(self._last + 1, self._clock())
        assert 0 <= self._last <= MAX_SEQ, self._last
        return self._last


class Sealer:
    """Builds and signs this node's envelopes."""

    def __init__(self, chain_id: bytes, my_index: int, sign: Sign, seq_source: Callable[[], int]) -> None:
        assert len(chain_id) == CHAIN_ID_BYTES, chain_id
        self._chain_id = chain_id
        self._my_index = my_index
        self._sign = sign
        self._seq_source = seq_source

    def seal(self, type: str, height: int, payload: bytes, to: int = ANY_RECIPIENT) -> bytes:
        """Sign a message for member `to`, or for every member (ANY_RECIPIENT)."""
        assert 0 < len(type) <= MAX_TYPE_CHARS, type
        assert 0 <= height <= MAX_HEIGHT, height
        assert to == ANY_RECIPIENT or (0 <= to != self._my_index), to
        body = codec.encode([WIRE_VERSION, self._chain_id, type, self._my_index, to, height, self._seq_source(),
                             bytes(payload)])
        signature = self._sign(signed_digest(body))
        assert len(signature) == SIGNATURE_BYTES, len(signature)
        return codec.encode([body, signature])


@dataclass(slots=True)
class ReplayWindow:
    """One sender's recently seen sequence numbers, bounded in memory.

    A sequence number is accepted once, and only if it is above `floor`. The floor is the larger of
    (highest accepted - span) and the largest number ever evicted from the bounded seen-set, so forgetting
    a number never makes it acceptable again.
    """

    span: int
    max_seen: int
    floor: int = -1
    highest: int = -1
    _seen: set[int] = field(default_factory=set)
    _order: list[int] = field(default_factory=list)

    def check(self, seq: int) -> RejectReason | None:
        if seq <= self.floor:
            return RejectReason.STALE
        if seq in self._seen:
            return RejectReason.REPLAYED
        return None

    def record(self, seq: int) -> None:
        assert self.check(seq) is None, seq
        self._seen.add(seq)
        heapq.heappush(self._order, seq)
        self.highest = max(self.highest, seq)
        self.floor = max(self.floor, self.highest - self.span)
        while self._order and (self._order[0] <= self.floor or len(self._seen) > self.max_seen):
            oldest = heapq.heappop(self._order)
            self._seen.discard(oldest)
            self.floor = max(self.floor, oldest)


class Opener:
    """Checks received envelopes for one chain and one receiving member.

    `known_types` maps each accepted type to its payload bound in bytes. `initial_floor` is the sequence
    number at or below which every sender's messages are stale from the start; the shell passes
    now_us - replay_span so that a restarted receiver still refuses old replays (this asks the members'
    clocks to agree within the span).
    """

    def __init__(self, chain_id: bytes, n_members: int, verify: Verify, known_types: Mapping[str, int],
                 my_index: int, *, replay_span: int = DEFAULT_REPLAY_SPAN,
                 replay_max_seen: int = DEFAULT_REPLAY_MAX_SEEN, initial_floor: int = -1) -> None:
        assert len(chain_id) == CHAIN_ID_BYTES and n_members > 0 and replay_max_seen > 0
        self._chain_id = chain_id
        self._n_members = n_members
        self._verify = verify
        self._known_types = dict(known_types)
        self._my_index = my_index
        self._windows = [ReplayWindow(replay_span, replay_max_seen, floor=initial_floor) for _ in range(n_members)]
        self.rejected: Counter[RejectReason] = Counter()
        self.accepted = 0

    def open(self, data: bytes, max_bytes: int, *, peer: int | None, addressed: bool = False) -> Envelope:
        """Return the authenticated envelope in `data`, or raise Rejected (and count it).

        `peer` is the member the transport authenticated as the source of these bytes; None only for bytes
        with no such source (a stored copy), where the sender check is skipped. `addressed` refuses
        envelopes sealed for every member: a request must be sealed for the member it asks.
        """
        try:
            envelope = self._open(data, max_bytes, peer, addressed)
        except Rejected as exc:
            self.rejected[exc.reason] += 1
            raise
        self.accepted += 1
        return envelope

    def _open(self, data: bytes, max_bytes: int, peer: int | None, addressed: bool) -> Envelope:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise Rejected(RejectReason.MALFORMED, "not a byte string")
        if len(data) > max_bytes:
            raise Rejected(RejectReason.OVERSIZED, f"{len(data)} bytes exceeds the channel limit {max_bytes}")
        body_bytes, signature = _fields(_decode(data, max_bytes, 2), 2, "envelope")
        if not isinstance(body_bytes, bytes) or not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise Rejected(RejectReason.MALFORMED, "envelope must be [body bytes, 64-byte signature]")
        body = _decode(body_bytes, len(body_bytes), BODY_FIELDS)
        if not isinstance(body, list) or not body:
            raise Rejected(RejectReason.MALFORMED, "body must be a non-empty list")
        if body[0] != WIRE_VERSION or isinstance(body[0], bool):
            raise Rejected(RejectReason.BAD_VERSION, f"version {body[0]!r}, expected {WIRE_VERSION}")
        _, chain_id, raw_type, sender, recipient, height, seq, raw_payload = _fields(body, BODY_FIELDS, "body")
        type_, payload = self._check_header(chain_id, raw_type, raw_payload)
        sender, recipient = _int(sender, "sender"), _int(recipient, "recipient")
        height, seq = _int(height, "height"), _int(seq, "seq")
        self._check_sender(sender, peer)
        self._check_recipient(recipient, addressed)
        if not self._verify(sender, signed_digest(body_bytes), signature):
            raise Rejected(RejectReason.BAD_SIGNATURE, f"signature does not verify for member {sender}")
        window = self._windows[sender]
        reason = window.check(seq)
        if reason is not None:
            raise Rejected(reason, f"seq {seq} from member {sender} (window floor {window.floor})")
        window.record(seq)
        return Envelope(type=type_, sender=sender, height=height, seq=seq, payload=payload)

    def _check_header(self, chain_id: object, type_: object, payload: object) -> tuple[str, bytes]:
        if not isinstance(chain_id, bytes) or len(chain_id) != CHAIN_ID_BYTES:
            raise Rejected(RejectReason.MALFORMED, "chain id must be 32 bytes")
        if chain_id != self._chain_id:
            raise Rejected(RejectReason.WRONG_CHAIN, f"chain {chain_id.hex()[:16]}...")
        if not isinstance(type_, str) or len(type_) > MAX_TYPE_CHARS:
            raise Rejected(RejectReason.MALFORMED, f"type must be a string of at most {MAX_TYPE_CHARS} characters")
        payload_max = self._known_types.get(type_)
        if payload_max is None:
            raise Rejected(RejectReason.UNKNOWN_TYPE, f"type {type_!r}")
        if not isinstance(payload, bytes):
            raise Rejected(RejectReason.MALFORMED, "payload must be bytes")
        if len(payload) > payload_max:
            raise Rejected(RejectReason.OVERSIZED, f"{type_} payload of {len(payload)} bytes exceeds {payload_max}")
        return type_, payload

    def _check_sender(self, sender: int, peer: int | None) -> None:
        """Refuse unknown members, our own messages echoed back by gossip, and a sender other than the member
        the bytes came from, all before paying for a verify."""
        if sender >= self._n_members:
            raise Rejected(RejectReason.UNKNOWN_SENDER, f"member {sender} of {self._n_members}")
        if sender == self._my_index:
            raise Rejected(RejectReason.SELF, "our own message echoed back")
        if peer is not None and sender != peer:
            raise Rejected(RejectReason.WRONG_PEER, f"member {sender}'s envelope relayed by member {peer}")

    def _check_recipient(self, recipient: int, addressed: bool) -> None:
        if recipient == ANY_RECIPIENT and not addressed:
            return
        if recipient != self._my_index:
            what = "every member" if recipient == ANY_RECIPIENT else f"member {recipient}"
            raise Rejected(RejectReason.WRONG_RECIPIENT, f"sealed for {what}, not for us")


def _decode(data: bytes, max_bytes: int, max_items: int) -> object:
    """codec.decode with its one error split into the two reasons a peer can be told apart by.

    codec.decode re-encodes recursively to prove canonicity, so arrays nested several hundred deep (which
    msgpack itself accepts up to depth 1024) exhaust Python's recursion limit there; no envelope nests
    arrays at all, so that input is simply malformed.
    """
    try:
        return codec.decode(data, max_bytes=max_bytes, max_items=max_items)
    except RecursionError:
        raise Rejected(RejectReason.MALFORMED, "arrays nested too deeply") from None
    except codec.DecodeError as exc:
        reason = RejectReason.NON_CANONICAL if str(exc) == "non-canonical encoding" else RejectReason.MALFORMED
        raise Rejected(reason, str(exc)) from None


def _fields(value: object, length: int, what: str) -> list[object]:
    if not isinstance(value, list) or len(value) != length:
        raise Rejected(RejectReason.MALFORMED, f"{what} must be a list of {length} fields")
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise Rejected(RejectReason.MALFORMED, f"{what} must be an integer in [0, 2^63)")
    return value
