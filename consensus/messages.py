"""PBFT messages: frozen dataclasses, their canonical encoding and the exact bytes each one signs.

Every message names its `sender` (a replica index from genesis) and carries the sender's `signature` over
`signing_bytes(chain_id, msg)`. The chain id is signed but not sent: a message replayed onto another chain
fails verification. A COMMIT signs exactly `block.commit_statement(...)`, so a quorum of COMMITs is a
`block.CommitCertificate` that anyone can check offline.

Nested structures (the block in a PRE-PREPARE, the messages inside a VIEW-CHANGE or NEW-VIEW) travel as
their own canonical encodings, embedded as byte strings, so each one is decoded with its own bounds and
re-verified on its own signature. Decoding rejects anything malformed, oversized or non-canonical with a
`MessageError` (a `codec.DecodeError`), never another exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from consensus import codec
from consensus.block import (
    HASH_BYTES,
    MAX_REPLICAS,
    MAX_SIGNATURE_BYTES,
    Block,
    CommitCertificate,
    commit_statement,
    sha256,
)

MAX_MESSAGE_BYTES = 4 << 20
"""Upper bound of one encoded message; blocks are small (transactions are hashes and commitments)."""
MAX_BLOCK_IN_MESSAGE_BYTES = 1 << 20
MAX_VIEW = (1 << 62) - 1


class MessageError(codec.DecodeError):
    """A peer sent bytes that are not a well-formed PBFT message."""


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary of `view` proposes `block` for sequence number `height` (= block height)."""

    view: int
    height: int
    block: Block
    sender: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Prepare:
    """A backup vouches that it accepted and validated the PRE-PREPARE of `block_hash`."""

    view: int
    height: int
    block_hash: bytes
    sender: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Commit:
    """A replica has a prepared certificate for `block_hash` and will commit it once a quorum agrees."""

    view: int
    height: int
    block_hash: bytes
    sender: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The sender has committed `block_hash` at `height`, a multiple of the checkpoint interval."""

    height: int
    block_hash: bytes
    sender: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """A PRE-PREPARE plus a quorum-minus-one of matching PREPAREs from distinct backups.

    It proves that no other block can have been prepared at that height in that view. It is not a
    message on its own: it travels inside VIEW-CHANGE and is persisted before its holder sends COMMIT.
    """

    preprepare: PrePrepare
    prepares: tuple[Prepare, ...]


@dataclass(frozen=True, slots=True)
class ViewChange:
    """The sender gives up on the views below `new_view` and reports what it knows.

    `committed` is the certificate of the highest block the sender knows to be final (None at genesis);
    `prepared` is its prepared certificate for the height above that, if it has one.
    """

    new_view: int
    committed: CommitCertificate | None
    prepared: PreparedCertificate | None
    sender: int
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class NewView:
    """The primary of `view` starts it, justified by a quorum of VIEW-CHANGEs for `view`.

    `preprepare` re-proposes the block that the VIEW-CHANGEs force (see replica.new_view_plan), or is None
    when nothing above the highest final block can have been committed.
    """

    view: int
    view_changes: tuple[ViewChange, ...]
    preprepare: PrePrepare | None
    sender: int
    signature: bytes = b""


Message = PrePrepare | Prepare | Commit | Checkpoint | ViewChange | NewView

_TAGS: dict[type, int] = {PrePrepare: 1, Prepare: 2, Commit: 3, Checkpoint: 4, ViewChange: 5, NewView: 6}


HASHED_BLOCKS_MAX = 16
"""Blocks whose hashes `hash_block` remembers: the few a replica votes on at once. The memo holds the blocks
themselves (up to MAX_BLOCK_IN_MESSAGE_BYTES each), and any member's PRE-PREPARE is hashed before the
rules refuse it, so this bounds what a member sending distinct ones can pin: 16 MiB."""


@lru_cache(maxsize=HASHED_BLOCKS_MAX)
def hash_block(block: Block) -> bytes:
    """`block.hash()`, memoised: one PRE-PREPARE's block is hashed to verify, vote, log and certify it."""
    return block.hash()


def block_hash_of(msg: PrePrepare | Prepare | Commit | Checkpoint) -> bytes:
    """The block a slot message is about; PRE-PREPARE hashes its block (the hash covers every tx)."""
    return hash_block(msg.block) if isinstance(msg, PrePrepare) else msg.block_hash


def signing_bytes(chain_id: bytes, msg: Message) -> bytes:
    """The exact bytes `msg.sender` signs: everything but the signature, plus the chain id.

    Memoised for the messages without a block (votes and checkpoints: messages are immutable and hashable,
    and one is verified by every receiver in a simulation). A memo holds its messages, and every message's
    signature is checked before the rules refuse it, so one of PRE-PREPAREs, VIEW-CHANGEs and NEW-VIEWs
    would let a member pin thousands of 1 MiB blocks by sending distinct ones; theirs cost a `hash_block`.
    """
    if isinstance(msg, (Prepare, Commit, Checkpoint)):
        return _vote_signing_bytes(chain_id, msg)
    return _signing_bytes(chain_id, msg)


def _signing_bytes(chain_id: bytes, msg: Message) -> bytes:
    if isinstance(msg, Commit):
        return commit_statement(chain_id, msg.view, msg.height, msg.block_hash)
    if isinstance(msg, PrePrepare):
        return codec.encode(["fednode/preprepare/v1", chain_id, msg.view, msg.height, hash_block(msg.block)])
    if isinstance(msg, Prepare):
        return codec.encode(["fednode/prepare/v1", chain_id, msg.view, msg.height, msg.block_hash])
    if isinstance(msg, Checkpoint):
        return codec.encode(["fednode/checkpoint/v1", chain_id, msg.height, msg.block_hash])
    if isinstance(msg, ViewChange):
        return codec.encode(["fednode/viewchange/v1", chain_id, msg.new_view, _view_change_body(msg)])
    if isinstance(msg, NewView):
        return codec.encode(["fednode/newview/v1", chain_id, msg.view, [sha256(encode(vc)) for vc in msg.view_changes],
                             None if msg.preprepare is None else encode(msg.preprepare)])
    raise TypeError(f"not a PBFT message: {type(msg).__name__}")


_vote_signing_bytes = lru_cache(maxsize=4096)(_signing_bytes)


def encode(msg: Message) -> bytes:
    """Canonical bytes of `msg`, signature included."""
    return codec.encode([_TAGS[type(msg)], *_body(msg), msg.sender, msg.signature])


def _body(msg: Message) -> list[Any]:
    if isinstance(msg, PrePrepare):
        return [msg.view, msg.height, msg.block.encode()]
    if isinstance(msg, (Prepare, Commit)):
        return [msg.view, msg.height, msg.block_hash]
    if isinstance(msg, Checkpoint):
        return [msg.height, msg.block_hash]
    if isinstance(msg, ViewChange):
        return [msg.new_view, *_view_change_body(msg)]
    return [msg.view, [encode(vc) for vc in msg.view_changes],
            None if msg.preprepare is None else encode(msg.preprepare)]


def _view_change_body(msg: ViewChange) -> list[Any]:
    return [None if msg.committed is None else msg.committed.encode(),
            None if msg.prepared is None else encode_prepared(msg.prepared)]


def encode_prepared(cert: PreparedCertificate) -> bytes:
    return codec.encode([encode(cert.preprepare), [encode(p) for p in cert.prepares]])


def decode_prepared(data: bytes) -> PreparedCertificate:
    """Parse a prepared certificate; raise MessageError if malformed (signatures are not checked here)."""
    try:
        return _decode_prepared(data)
    except MessageError:
        raise
    except codec.DecodeError as exc:
        raise MessageError(str(exc)) from None


def _decode_prepared(data: bytes) -> PreparedCertificate:
    fields = codec.expect_list(_decode_value(data), 2, "prepared certificate")
    preprepare = decode(codec.expect_bytes(fields[0], "prepared.preprepare"))
    if not isinstance(preprepare, PrePrepare):
        raise MessageError("prepared certificate: first item is not a PRE-PREPARE")
    prepares = _nested_list(fields[1], Prepare, "prepared.prepares")
    return PreparedCertificate(preprepare, tuple(prepares))


def decode(data: bytes) -> Message:
    """Parse one message; raise MessageError (a codec.DecodeError) on malformed input.

    Only the shape is checked here; the replica checks signatures and protocol rules.
    """
    try:
        return _decode_message(data)
    except MessageError:
        raise
    except codec.DecodeError as exc:
        raise MessageError(str(exc)) from None


def _decode_message(data: bytes) -> Message:
    value = _decode_value(data)
    if not isinstance(value, list) or not value:
        raise MessageError("message: expected a non-empty list")
    tag = value[0]
    parser = _PARSERS.get(tag) if isinstance(tag, int) and not isinstance(tag, bool) else None
    if parser is None:
        raise MessageError(f"message: unknown type tag {tag!r}")
    expected_fields, parse = parser
    if len(value) != expected_fields + 3:
        raise MessageError(f"message type {tag}: expected {expected_fields + 3} fields")
    sender = codec.expect_int(value[-2], "sender", hi=MAX_REPLICAS - 1)
    signature = codec.expect_bytes(value[-1], "signature", max_len=MAX_SIGNATURE_BYTES)
    return parse(value[1:-2], sender, signature)


def _decode_value(data: bytes) -> Any:
    return codec.decode(data, max_bytes=MAX_MESSAGE_BYTES, max_items=MAX_REPLICAS + 16)


def _nested_list(value: Any, kind: type, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_REPLICAS:
        raise MessageError(f"{what}: expected a list of at most {MAX_REPLICAS} messages")
    out = [decode(codec.expect_bytes(item, what)) for item in value]
    if not all(isinstance(m, kind) for m in out):
        raise MessageError(f"{what}: expected only {kind.__name__} messages")
    return out


def _view(value: Any) -> int:
    return codec.expect_int(value, "view", hi=MAX_VIEW)


def _height(value: Any) -> int:
    return codec.expect_int(value, "height", lo=1)


def _hash(value: Any) -> bytes:
    return codec.expect_bytes(value, "block_hash", HASH_BYTES)


def _parse_preprepare(f: list[Any], sender: int, sig: bytes) -> PrePrepare:
    block_bytes = codec.expect_bytes(f[2], "block", max_len=MAX_BLOCK_IN_MESSAGE_BYTES)
    block = Block.decode(block_bytes)
    height = _height(f[1])
    if block.height != height:
        raise MessageError("pre-prepare: block height differs from the sequence number")
    return PrePrepare(_view(f[0]), height, block, sender, sig)


def _parse_vote(kind: type[Prepare | Commit], f: list[Any], sender: int, sig: bytes) -> Prepare | Commit:
    return kind(_view(f[0]), _height(f[1]), _hash(f[2]), sender, sig)


def _parse_checkpoint(f: list[Any], sender: int, sig: bytes) -> Checkpoint:
    return Checkpoint(_height(f[0]), _hash(f[1]), sender, sig)


def _parse_view_change(f: list[Any], sender: int, sig: bytes) -> ViewChange:
    committed = None
    if f[1] is not None:
        committed = CommitCertificate.decode(codec.expect_bytes(f[1], "view-change.committed"))
    prepared = None if f[2] is None else decode_prepared(codec.expect_bytes(f[2], "view-change.prepared"))
    return ViewChange(_view(f[0]), committed, prepared, sender, sig)


def _parse_new_view(f: list[Any], sender: int, sig: bytes) -> NewView:
    view_changes = _nested_list(f[1], ViewChange, "new-view.view_changes")
    preprepare: PrePrepare | None = None
    if f[2] is not None:
        embedded = decode(codec.expect_bytes(f[2], "new-view.preprepare"))
        if not isinstance(embedded, PrePrepare):
            raise MessageError("new-view: embedded message is not a PRE-PREPARE")
        preprepare = embedded
    return NewView(_view(f[0]), tuple(view_changes), preprepare, sender, sig)


_PARSERS: dict[int, tuple[int, Any]] = {
    1: (3, _parse_preprepare),
    2: (3, partial(_parse_vote, Prepare)),
    3: (3, partial(_parse_vote, Commit)),
    4: (2, _parse_checkpoint),
    5: (3, _parse_view_change),
    6: (3, _parse_new_view),
}
