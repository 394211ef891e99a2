"""`node.libp2p_compat._batched_window_update`: the receive window goes back to the sender in batches of
half the initial window, and none of it is lost or handed out twice (the sender may never send more than
the window we granted, which `_WindowedBuffer` enforces)."""

from __future__ import annotations

import random

import trio

from node.libp2p_compat import YAMUX_INITIAL_WINDOW_BYTES, YAMUX_WINDOW_UPDATE_BYTES, _batched_window_update


class _Stream:
    """The attributes of a `YamuxStream` the window update uses; the updates it would send are recorded."""

    def __init__(self) -> None:
        self.window_lock = trio.Lock()
        self._pending_recv_release = 0
        self.recv_window = YAMUX_INITIAL_WINDOW_BYTES
        self.sent: list[int] = []

    async def send_window_update(self, increment: int) -> None:
        self.sent.append(increment)


def test_small_reads_send_no_update_until_half_the_window_was_read() -> None:
    stream = _Stream()

    async def main() -> None:
        for _ in range(1000):
            stream.recv_window -= 300  # a vote arrives...
            await _batched_window_update(stream, bytes_read=300)  # type: ignore[arg-type]  # ...and is read

    trio.run(main)
    assert stream.sent == []
    assert stream.recv_window + stream._pending_recv_release == YAMUX_INITIAL_WINDOW_BYTES


def test_every_byte_read_is_returned_once_and_the_window_never_exceeds_its_initial_size() -> None:
    rng = random.Random(14)
    stream = _Stream()
    read_total = 0

    async def main() -> None:
        nonlocal read_total
        for _ in range(400):
            size = rng.choice([200, 65_536, 1 << 20, 4_000_016])
            size = min(size, stream.recv_window)  # the sender keeps within the window we granted
            stream.recv_window -= size
            read_total += size
            await _batched_window_update(stream, bytes_read=size)  # type: ignore[arg-type]
            assert stream.recv_window + stream._pending_recv_release == YAMUX_INITIAL_WINDOW_BYTES
            assert stream.recv_window >= YAMUX_INITIAL_WINDOW_BYTES - YAMUX_WINDOW_UPDATE_BYTES

    trio.run(main)
    assert sum(stream.sent) + stream._pending_recv_release == read_total
    assert all(update >= YAMUX_WINDOW_UPDATE_BYTES for update in stream.sent)
