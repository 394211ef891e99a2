"""The chaos schedule of a local cluster: which process fault hits which node when, and how long the
consortium took to heal (docs/chaos.md).

Faults are real operating-system events on the daemons' processes: SIGKILL and a later restart, SIGSTOP
and a later SIGCONT, or SIGKILL, deletion of the node's ledger and a restart from nothing. Each is
triggered when the cluster reaches a round, optionally some seconds later, and the injector measures from
the outside the time to a new view after a primary died, and the time a restarted node needed to reach the
height the others had when it came back.
"""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from node.cluster_processes import ClusterProcess, Observation
from node.store import LEDGER_DIR

FAULT_KINDS = ("kill", "pause", "wipe", "crash")
"""crash: the node SIGKILLs itself at a protocol point (config behaviour.crash_after_input_round); the
injector only observes the death, then restarts the node like a kill."""
_SPEC = re.compile(r"^(primary|\d+)@(\d+)(?:\+(\d+(?:\.\d+)?))?(?::(\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class FaultSpec:
    """One fault to inject: `kind` on `node` (None: the primary of the moment) once round `round` opened,
    `delay_s` later; a pause lasts `pause_s`."""

    kind: str
    node: int | None
    round: int
    delay_s: float = 0.0
    pause_s: float = 0.0

    def describe(self) -> str:
        who = "primary" if self.node is None else str(self.node)
        extra = f"+{self.delay_s:g}" if self.delay_s else ""
        length = f":{self.pause_s:g}" if self.kind == "pause" else ""
        return f"{self.kind} {who}@{self.round}{extra}{length}"


def parse_fault(kind: str, text: str, *, nodes: int, rounds: int) -> FaultSpec:
    """Parse `NODE@ROUND[+DELAY]` (`:SECONDS` required for a pause); ValueError says what is wrong."""
    assert kind in FAULT_KINDS, kind
    m = _SPEC.match(text.strip())
    form = "NODE@ROUND[+DELAY]:SECONDS" if kind == "pause" else "NODE@ROUND[+DELAY]"
    if m is None or (m.group(4) is None) != (kind != "pause"):
        raise ValueError(f"--{kind} {text!r}: expected {form}, NODE a member index or 'primary'")
    node = None if m.group(1) == "primary" else int(m.group(1))
    if kind == "crash" and (node is None or m.group(3)):
        raise ValueError(f"--crash {text!r}: expected NODE@ROUND with NODE a member index (the node crashes "
                         "itself right after sending its masked update)")
    if node is not None and node >= nodes:
        raise ValueError(f"--{kind} {text!r}: there are only {nodes} nodes (0..{nodes - 1})")
    round_id = int(m.group(2))
    if not 1 <= round_id <= rounds:
        raise ValueError(f"--{kind} {text!r}: ROUND must be in 1..{rounds}")
    return FaultSpec(kind, node, round_id, float(m.group(3) or 0.0), float(m.group(4) or 0.0))


@dataclass
class Fault:
    """A fault's life: waiting for its round, injected, node back (restarted or resumed), recovered."""

    spec: FaultSpec
    restart_after_s: float
    node: int | None = None
    due_s: float | None = None
    injected_s: float | None = None
    view_at: int = 0
    was_primary: bool = False
    height_at: int = 0
    new_view_s: float | None = None
    back_s: float | None = None
    target_height: int | None = None
    answered_s: float | None = None
    height_when_answered: int = 0
    recovered_s: float | None = None
    in_sync_s: float | None = None
    skipped: str | None = None

    @property
    def done(self) -> bool:
        """Skipped, or the node reached its target height and was once level with the others."""
        return self.skipped is not None or (self.recovered_s is not None and self.in_sync_s is not None)

    def to_json(self) -> dict[str, Any]:
        """Times are seconds since the cluster was started; durations are named *_s too."""
        out: dict[str, Any] = {"fault": self.spec.describe(), "kind": self.spec.kind, "node": self.node,
                               "round": self.spec.round}
        if self.skipped is not None:
            out["skipped"] = self.skipped
            return out
        out.update(injected_at_s=_r(self.injected_s), view_at_injection=self.view_at,
                   height_at_injection=self.height_at, back_at_s=_r(self.back_s),
                   target_height=self.target_height, recovered_at_s=_r(self.recovered_s),
                   recovery_s=self.recovery_s, was_primary=self.was_primary,
                   in_sync_s=_r(None if self.in_sync_s is None or self.back_s is None
                                else self.in_sync_s - self.back_s))
        if self.was_primary:
            out["new_view_s"] = _r(self.new_view_s)
        if self.answered_s is not None and self.back_s is not None:
            out["startup_s"] = _r(self.answered_s - self.back_s)
        rate = self.catch_up_blocks_per_s
        if rate is not None:
            out["catch_up_blocks"] = (self.target_height or 0) - self.height_when_answered
            out["catch_up_blocks_per_s"] = round(rate, 2)
        return out

    @property
    def recovery_s(self) -> float | None:
        if self.recovered_s is None or self.back_s is None:
            return None
        return _r(self.recovered_s - self.back_s)

    @property
    def catch_up_blocks_per_s(self) -> float | None:
        """Blocks fetched per second, from the node's first status answer to reaching its target."""
        if self.recovered_s is None or self.answered_s is None or self.target_height is None:
            return None
        blocks = self.target_height - self.height_when_answered
        elapsed = self.recovered_s - self.answered_s
        return blocks / elapsed if blocks > 0 and elapsed > 0 else None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class FaultInjector:
    """Drives the fault schedule from the poll loop: one `step` per observation, never blocking long."""

    def __init__(self, specs: Sequence[FaultSpec], restart_after_s: float, out: TextIO,
                 max_down: int | None = None) -> None:
        self.faults = [Fault(spec, restart_after_s) for spec in specs]
        self.out = out
        self.max_down = max_down

    def disrupted(self) -> set[int]:
        """Nodes hit by a fault that has not recovered yet (down, paused, or still catching up)."""
        return {f.node for f in self.faults
                if f.injected_s is not None and not f.done and f.node is not None}

    @property
    def done(self) -> bool:
        return all(f.done for f in self.faults)

    def step(self, procs: list[ClusterProcess], obs: Observation, now_s: float) -> None:
        for fault in self.faults:
            if fault.was_primary and fault.new_view_s is None:
                self._watch_new_view(fault, obs, now_s)
            if not fault.done:
                self._advance(fault, procs, obs, now_s)

    def _watch_new_view(self, fault: Fault, obs: Observation, now_s: float) -> None:
        """Time from the primary's fault to a block committed in a later view (its node may be back first)."""
        assert fault.injected_s is not None
        if any(s["view"] > fault.view_at and s["height"] > fault.height_at for s in obs.statuses.values()):
            fault.new_view_s = now_s - fault.injected_s
            self._say(now_s, f"new view {obs.view()} committing after the primary's {fault.spec.kind}: "
                             f"{fault.new_view_s:.2f}s")

    def _advance(self, fault: Fault, procs: list[ClusterProcess], obs: Observation, now_s: float) -> None:
        spec = fault.spec
        if fault.injected_s is None and spec.kind == "crash":
            if spec.node is not None and procs[spec.node].proc is not None and not procs[spec.node].alive():
                self._inject(fault, procs, obs, now_s)
            return
        if fault.injected_s is None:
            if fault.due_s is None and obs.round_reached() >= spec.round:
                fault.due_s = now_s + spec.delay_s
            if fault.due_s is not None and now_s >= fault.due_s and self._may_disrupt(fault, obs):
                self._inject(fault, procs, obs, now_s)
            return
        proc = procs[fault.node] if fault.node is not None else None
        if proc is None:
            return
        if fault.back_s is None:
            wait_s = spec.pause_s if spec.kind == "pause" else fault.restart_after_s
            if now_s - fault.injected_s >= wait_s:
                self._bring_back(fault, proc, obs, now_s)
            return
        status = obs.statuses.get(proc.index)
        if status is None:
            return
        if fault.answered_s is None:
            fault.answered_s, fault.height_when_answered = now_s, status["height"]
        if fault.in_sync_s is None and status["height"] >= obs.max_height(exclude=proc.index):
            fault.in_sync_s = now_s
        if fault.recovered_s is None and fault.target_height is not None \
                and status["height"] >= fault.target_height:
            fault.recovered_s = now_s
            self._say(now_s, f"node {proc.index} recovered from {spec.describe()}: height {status['height']} "
                             f"{fault.recovery_s:.2f}s after it came back")

    def _may_disrupt(self, fault: Fault, obs: Observation) -> bool:
        """Whether injecting now keeps at most `max_down` nodes disrupted; if not, the fault waits."""
        if self.max_down is None:
            return True
        down = self.disrupted()
        node = fault.spec.node if fault.spec.node is not None else obs.primary()
        return node not in down and len(down) < self.max_down

    def _inject(self, fault: Fault, procs: list[ClusterProcess], obs: Observation, now_s: float) -> None:
        node = fault.spec.node if fault.spec.node is not None else obs.primary()
        if fault.spec.kind != "crash" and (node is None or not procs[node].alive() or procs[node].paused):
            fault.skipped = f"node {node} was not running when the fault was due"
            fault.injected_s = now_s
            self._say(now_s, f"skipped {fault.spec.describe()}: {fault.skipped}")
            return
        fault.node, fault.injected_s = node, now_s
        fault.view_at, fault.height_at = obs.majority_view(), obs.max_height()
        fault.was_primary = obs.primary() == node
        proc = procs[node]
        if fault.spec.kind == "crash":
            self._say(now_s, f"node {node} crashed itself after sending its masked update in round "
                             f"{fault.spec.round} (height {fault.height_at}, view {fault.view_at})")
            return
        if fault.spec.kind == "pause":
            proc.signal(signal.SIGSTOP)
            proc.paused = True
        else:
            proc.kill()
            if fault.spec.kind == "wipe":
                shutil.rmtree(proc.home / LEDGER_DIR, ignore_errors=True)
        role = " (primary)" if fault.was_primary else ""
        self._say(now_s, f"injected {fault.spec.describe()} on node {node}{role} at height {fault.height_at}, "
                         f"view {fault.view_at}")

    def _bring_back(self, fault: Fault, proc: ClusterProcess, obs: Observation, now_s: float) -> None:
        fault.back_s = now_s
        fault.target_height = obs.max_height(exclude=proc.index)
        if fault.spec.kind == "pause":
            proc.signal(signal.SIGCONT)
            proc.paused = False
            verb = "resumed"
        else:
            proc.start()
            verb = "restarted"
        self._say(now_s, f"{verb} node {proc.index}; the others are at height {fault.target_height}")

    def _say(self, now_s: float, text: str) -> None:
        print(f"[{now_s:6.1f}s] fault: {text}", file=self.out, flush=True)
