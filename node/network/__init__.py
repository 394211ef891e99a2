"""The libp2p transport of the daemon: it moves bytes between consortium members.

A `Network` (`node.network.host`) owns one py-libp2p host (Noise + yamux only, see
`node.libp2p_compat`) and offers three ways to move bytes:

* `publish`: gossipsub on one topic, for small consensus messages;
* `send`: one long-lived direct stream per peer carrying length-prefixed
  frames, for anything up to a model blob;
* `request`: one stream per request/response exchange, for fetches.

Everything received lands in one `inbox`, queued per member (bounded) and
handed out one member at a time in turn.  Only members listed in `allowed` (the
genesis peer ids) can connect, open streams or get a message into the inbox.  This package never interprets payloads: signatures, decoding and
replay checks belong to the daemon.  What it guarantees is that no peer's bytes
can end the host, that every length is bounded before anything is read, and
that what a member costs us is bounded before any payload is decoded: each
peer has a token bucket of bytes and one of messages (`PeerBudget`); its direct
frames and requests wait for its buckets (so a flooding peer's streams stall
behind their flow-control windows), its gossip is dropped when they are empty.
A peer may write only where it was asked to: bytes on a direct stream we
opened, or on a request stream after its one request frame, are a violation
and reset the stream.

The package is cut along those jobs, each module's docstring saying what it owns and may call:
`frames` (framing, protocol ids), `inbox`, `budget` (bounds, token buckets, the shared ledger),
`connections` (membership gate, connected set, dialing), `direct`, `requests`, `gossip`, and `host`
(`Network`, `open_network`). This module only re-exports the names the rest of the node uses.
"""

from node.network.budget import (
    GOSSIP_LIBRARY_MAX_BYTES,
    GOSSIP_RPC_OVERHEAD_BYTES,
    NetLimits,
    PeerBudget,
    PeerLedger,
    TokenBucket,
)
from node.network.connections import CONNECTED_CACHE_S, peer_id_from_public_key, peer_id_from_seed
from node.network.frames import (
    DIRECT_PROTOCOL,
    FRAME_HEADER,
    LANES,
    READ_CHUNK_BYTES,
    REQUEST_PROTOCOL,
    FrameReader,
    FrameTooLarge,
    PeerViolation,
    TruncatedFrame,
    encode_frame,
    read_frame,
)
from node.network.host import ListenError, Network, open_network
from node.network.inbox import FairInbox, InboxItem, InboxStatistics
from node.network.requests import RequestHandler

__all__ = [
    "CONNECTED_CACHE_S",
    "DIRECT_PROTOCOL",
    "FRAME_HEADER",
    "GOSSIP_LIBRARY_MAX_BYTES",
    "GOSSIP_RPC_OVERHEAD_BYTES",
    "LANES",
    "READ_CHUNK_BYTES",
    "REQUEST_PROTOCOL",
    "FairInbox",
    "FrameReader",
    "FrameTooLarge",
    "InboxItem",
    "InboxStatistics",
    "ListenError",
    "NetLimits",
    "Network",
    "PeerBudget",
    "PeerLedger",
    "PeerViolation",
    "RequestHandler",
    "TokenBucket",
    "TruncatedFrame",
    "encode_frame",
    "open_network",
    "peer_id_from_public_key",
    "peer_id_from_seed",
    "read_frame",
]
