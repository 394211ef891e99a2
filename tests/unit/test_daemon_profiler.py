"""The opt-in CPU profiler of the daemon (FEDNODE_PROFILE): CPU goes to the stacks that burn it."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from node.daemon import Profiler, profile_summary


def _burn_cpu(stop: threading.Event) -> None:
    data = b"x" * 4096
    while not stop.is_set():
        hashlib.sha256(data).digest()


def _sleep_until(stop: threading.Event) -> None:
    stop.wait()


def test_profiler_charges_cpu_to_the_busy_thread_not_the_sleeping_one(tmp_path: Path) -> None:
    profiler = Profiler(tmp_path, interval_s=0.001)
    stop = threading.Event()
    busy = threading.Thread(target=_burn_cpu, args=(stop,), name="busy")
    idle = threading.Thread(target=_sleep_until, args=(stop,), name="idle")
    busy.start()
    idle.start()
    profiler.start()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # the handler runs on the main thread, as on the daemon's trio loop
        time.sleep(0.001)
    stop.set()
    busy.join()
    idle.join()
    profiler.dump("node")
    folded = next(tmp_path.glob("node-*.folded")).read_text().splitlines()
    by_thread: dict[str, int] = {}
    for line in folded:
        stack, _, cpu_us = line.rpartition(" ")
        by_thread[stack.split(";")[0]] = by_thread.get(stack.split(";")[0], 0) + int(cpu_us)
    assert by_thread.get("busy", 0) > 100_000, by_thread
    assert by_thread.get("idle", 0) < by_thread["busy"] / 20, by_thread
    assert any("_burn_cpu" in line for line in folded if line.startswith("busy;"))
    assert "thread busy" in next(tmp_path.glob("node-*.txt")).read_text()


def test_profiler_off_writes_nothing(tmp_path: Path) -> None:
    profiler = Profiler(None)
    profiler.start()
    profiler.dump("node")
    assert list(tmp_path.iterdir()) == []


def test_summary_counts_self_and_inclusive_cpu() -> None:
    stacks = {("main", "a.py:run", "b.py:leaf"): 3_000_000, ("main", "a.py:run"): 1_000_000,
              ("worker", "c.py:train"): 4_000_000}
    text = profile_summary(stacks)
    assert "total CPU 8.00 s" in text
    assert "thread main: 4.00 s (50.0%)" in text
    self_part, inclusive_part = text.split("by inclusive CPU")
    assert "3.00 s  37.5%  b.py:leaf" in self_part
    assert "4.00 s  50.0%  a.py:run" in inclusive_part
