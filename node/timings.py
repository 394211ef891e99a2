"""When this process saw each round open and each phase start, and where its time went.

Owns the monotonic timestamps of round opens, phase starts, round ends and each round's last committed answer (key
"answered" of `phase_started`: an abort of a validate phase also waits after it), on which deadlines are local
judgements read by the round driver, the proposer and block validation; and `phase_s`, the seconds spent per
activity that `/status` reports. Calls nothing but the monotonic clock.
"""

from __future__ import annotations

import math
import time
from collections import Counter


class Timings:
    """Round and phase start times as this process saw them, and seconds per activity."""

    def __init__(self) -> None:
        self.round_opened_at: dict[int, float] = {}
        self.phase_started: dict[tuple[int, str], float] = {}
        self.round_closed_at: dict[int, float] = {}
        """When this process saw each round end (its `result` or abort delivered)."""
        self.phase_s: Counter[str] = Counter()

    def since_open_s(self, round_id: int, now: float | None = None) -> float:
        """Seconds since this process saw `round_id` open (NaN if it did not: ahead, or before a restart)."""
        opened = self.round_opened_at.get(round_id)
        return (time.monotonic() if now is None else now) - opened if opened is not None else math.nan

    def phase_elapsed_s(self, round_id: int, phase: str, now: float | None = None) -> float:
        """Seconds since `phase` of `round_id` started here; -1 if it did not, or if this process has not seen
        the round open yet. A round opened in the block being proposed or checked has no phase past any
        deadline: its inputs phase, which its key phases ahead started long before, waits for training that
        begins only at the open (a validate-phase abort once opened the retry and aborted it in one block,
        naming every member missing)."""
        started = self.phase_started.get((round_id, phase))
        if started is None or round_id not in self.round_opened_at:
            return -1.0
        return (time.monotonic() if now is None else now) - started
