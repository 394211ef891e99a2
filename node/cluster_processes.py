"""The daemons of a local cluster as child processes: start, signal, kill and stop them, and ask each for its
status (the runner's only view of what happened inside).

Each daemon is a real `fednode start` process on 127.0.0.1; if the runner dies, even by SIGKILL, the
daemons get SIGTERM (Linux), so no orphan is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config import load_node_config
from node.status import fetch_status


class ClusterError(Exception):
    """The cluster did not finish (a daemon died, or no progress before the stall timeout)."""


@dataclass
class ClusterProcess:
    index: int
    config_path: Path
    status_port: int
    log_path: Path
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    paused: bool = False
    peak_rss_bytes: int = 0
    """The largest resident set any run of this node reached (the kernel's VmHWM, read at each poll)."""

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it exits
        cmd = [sys.executable, "-m", "node.cli", "start", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads here
        log.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def note_rss(self) -> None:
        assert self.proc is not None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return  # exited between the check and the read
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_bytes = max(self.peak_rss_bytes, int(line.split()[1]) * 1024)

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap: the node gets no chance to flush or say goodbye."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        if self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Observation:
    statuses: dict[int, dict[str, Any]] = field(default_factory=dict)

    def poll(self, procs: list[ClusterProcess]) -> None:
        """Ask every running, unpaused node; a node that does not answer has no status this time."""
        for p in procs:
            if not p.alive() or p.paused:
                self.statuses.pop(p.index, None)
                continue
            p.note_rss()
            try:
                self.statuses[p.index] = fetch_status(p.status_port, timeout_s=1.0)
            except (OSError, ValueError):
                self.statuses.pop(p.index, None)

    def round_reached(self) -> int:
        return max((s["round"] for s in self.statuses.values()), default=0)

    def max_height(self, exclude: int | None = None) -> int:
        return max((s["height"] for i, s in self.statuses.items() if i != exclude), default=0)

    def view(self) -> int:
        return max((s["view"] for s in self.statuses.values()), default=0)

    def majority_view(self) -> int:
        """The view most nodes are in, the higher on a tie (0 before any node answered).

        A lone node that timed out first already reports the next view; the view that matters, and its
        primary, are the ones the majority follows.
        """
        views = Counter(s["view"] for s in self.statuses.values())
        return max(views, key=lambda v: (views[v], v)) if views else 0

    def primary(self) -> int | None:
        """The primary of the majority view (None before any node answered)."""
        view = self.majority_view()
        return next((s["primary"] for s in self.statuses.values() if s["view"] == view), None)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the cluster process dies, even by SIGKILL (Linux), so a
    killed `fednode cluster` (a test timeout, a closed terminal) leaves no orphan daemons behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


def start_cluster(configs: list[Path]) -> list[ClusterProcess]:
    procs = []
    for i, path in enumerate(configs):
        cfg = load_node_config(path)
        procs.append(ClusterProcess(i, path, cfg.status_port, cfg.home / "daemon.log", cfg.home))
    for p in procs:
        p.start()
    return procs
