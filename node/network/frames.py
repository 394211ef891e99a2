"""Framing of the direct and request streams: the protocol ids, the 4-byte length prefix, and the errors a
peer's bytes can raise.

Owns how a payload is cut into frames and read back with every length checked against its bound before
the body is awaited. Pure of policy: it never charges budgets, counts statistics or closes streams (its
callers in `node.network.streams` do). May call the stream it is given and nothing else of the package.
"""

from __future__ import annotations

import struct

from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol

DIRECT_PROTOCOL = TProtocol("/fednode/direct/1.0.0")
REQUEST_PROTOCOL = TProtocol("/fednode/request/1.0.0")
LANES = ("control", "bulk")
"""Direct-stream lanes: consensus votes, transactions and reveals; model-sized payloads."""
FRAME_HEADER = struct.Struct(">I")
READ_CHUNK_BYTES = 1 << 20


class PeerViolation(Exception):
    """A peer sent bytes that break the framing rules; its stream is closed."""

    reason = "peer_violation"



class FrameTooLarge(PeerViolation):
    """A frame header announced more bytes than `NetLimits.frame_max_bytes`."""

    reason = "frame_too_large"


class TruncatedFrame(PeerViolation):
    """The stream ended in the middle of a frame."""

    reason = "truncated_frame"


def encode_frame(data: bytes) -> bytes:
    """Prefix a payload with its 4-byte big-endian length."""
    return FRAME_HEADER.pack(len(data)) + data


class FrameReader:
    """Reads the length-prefixed frames of one stream, asking it for up to READ_CHUNK_BYTES at a time.

    Reading exactly the 4-byte length and then exactly the body costs two library reads per frame, and
    py-libp2p answers each read with its locks and (usually) a yamux window-update frame sent back; small
    consensus messages arrive several to a yamux frame, so reading whatever has arrived and cutting frames
    out of it locally does one read for many of them. Each frame's announced length is checked against
    `frame_max_bytes` before its body is awaited, and at most READ_CHUNK_BYTES beyond the frame being
    assembled is ever buffered.
    """

    def __init__(self, stream: INetStream, frame_max_bytes: int) -> None:
        self._stream = stream
        self._frame_max_bytes = frame_max_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes read from the stream and not yet returned as frames."""
        return len(self._buffer)

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = await self._stream.read(max(n - len(self._buffer), READ_CHUNK_BYTES))
            if not chunk:
                raise TruncatedFrame(f"stream ended after {len(self._buffer)} of {n} bytes")
            self._buffer += chunk

    async def next(self) -> bytes:
        """The next frame's payload; raises FrameTooLarge, or TruncatedFrame if the stream ends first."""
        await self._fill(FRAME_HEADER.size)
        (length,) = FRAME_HEADER.unpack_from(self._buffer)
        if length > self._frame_max_bytes:
            raise FrameTooLarge(f"frame of {length} bytes exceeds {self._frame_max_bytes}")
        end = FRAME_HEADER.size + length
        await self._fill(end)
        with memoryview(self._buffer) as view:
            frame = bytes(view[FRAME_HEADER.size:end])
        del self._buffer[:end]
        return frame


async def read_frame(stream: INetStream, frame_max_bytes: int) -> bytes:
    """Read the one frame of a request or response stream (bytes after it, if any, are dropped)."""
    return await FrameReader(stream, frame_max_bytes).next()
