"""What a replica returns and how it is configured: the action types of the shell contract
(consensus.replica's docstring), `ReplicaConfig`, the persisted keys and every per-peer limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from consensus.block import Block, CommitCertificate
from consensus.messages import Commit, Message, Prepare, PrePrepare
from consensus.quorum import quorum_size

SlotMessage = PrePrepare | Prepare | Commit
M = TypeVar("M", bound=Message)
V = TypeVar("V", PrePrepare, Prepare, Commit)

PersistedState = Mapping[bytes, bytes]
"""The key -> value map of everything this replica asked to persist (keys start with b"pbft/")."""

MAX_COMMIT_VIEWS_PER_SENDER = 4
"""Views per sender for which COMMITs of the current height are kept (bounds a Byzantine sender)."""
MAX_CANDIDATE_BLOCKS = 8
MAX_EVIDENCE_PER_SENDER = 8
"""Evidence records per sender and incarnation: one proof convicts; more would let a Byzantine member
turn every variant of a message into a synced write."""
MAX_WATCHED_TXS = 1024
"""Transactions whose commitment the request timer tracks (the shell's own valid ones)."""
MAX_TIMEOUT_DOUBLINGS = 30
LAST_COMMIT_RESENDS = 3
"""Idle retransmissions of our last COMMIT; a peer still behind after that is helped when it speaks."""
MAX_PROOF_SENDS = 3
"""Times one peer is sent the proof of one stable checkpoint."""

KEY_VIEW = b"pbft/view"
KEY_SIGNED = b"pbft/signed/"
KEY_PREPARED = b"pbft/prepared"
KEY_CERT = b"pbft/cert"
KEY_VIEW_CHANGE = b"pbft/view_change"
KEY_NEW_VIEW = b"pbft/new_view"
KEY_CHECKPOINT = b"pbft/checkpoint"
KEY_STABLE = b"pbft/stable"


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    chain_id: bytes
    n: int
    f: int
    checkpoint_interval: int = 16
    window: int = 64
    view_timeout_ms: int = 2000
    max_view_timeout_ms: int = 30000
    request_timeout_factor: int = 2
    """A watched transaction not committed within this many current view timeouts starts a view change."""

    def __post_init__(self) -> None:
        assert self.checkpoint_interval >= 1 and self.window >= self.checkpoint_interval, self
        assert self.request_timeout_factor >= 1, self
        assert 0 < self.view_timeout_ms <= self.max_view_timeout_ms, self
        quorum_size(self.n, self.f)


@dataclass(frozen=True, slots=True)
class Persist:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    msg: Message


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    msg: Message


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    block: Block


@dataclass(frozen=True, slots=True)
class Deliver:
    block: Block
    cert: CommitCertificate


@dataclass(frozen=True, slots=True)
class RecordEvidence:
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FetchBlocks:
    from_height: int
    peer: int | None


@dataclass(frozen=True, slots=True)
class ViewChanged:
    view: int


Action = Persist | Broadcast | Send | ValidateBlock | Deliver | RecordEvidence | FetchBlocks | ViewChanged
