"""A local multi-hospital cluster: N real daemons as separate processes on 127.0.0.1, with fault injection.

The cluster runner is only a launcher and an observer: the daemons find each other over libp2p exactly as
they would across hospitals, and the runner learns what happened only through their local status
endpoints. Progress goes to stderr; the summary (and, with --json, one JSON object as the last line)
goes to stdout.

Faults (docs/chaos.md) are real operating-system events on the daemons' processes: SIGKILL and a later
restart, SIGSTOP and a later SIGCONT, or SIGKILL, deletion of the node's ledger and a restart from nothing.
Each is triggered when the cluster reaches a round, optionally some seconds later, and the runner measures
from the outside how long the consortium took to heal: the time to a new view after a primary died, and
the time a restarted node needed to reach the height the others had when it came back.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from node.config import load_node_config
from node.status import fetch_status
from node.store import LEDGER_DIR

POLL_S = 0.25
STARTUP_GRACE_S = 180.0  # extra patience before any node first answers: many daemons importing torch at once
FAULT_KINDS = ("kill", "pause", "wipe", "crash")
"""crash: the node SIGKILLs itself at a protocol point (config behaviour.crash_after_input_round); the
injector only observes the death, then restarts the node like a kill."""
_SPEC = re.compile(r"^(primary|\d+)@(\d+)(?:\+(\d+(?:\.\d+)?))?(?::(\d+(?:\.\d+)?))?$")


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


def start_cluster(configs: list[Path]) -> list[ClusterProcess]:
    procs = []
    for i, path in enumerate(configs):
        cfg = load_node_config(path)
        procs.append(ClusterProcess(i, path, cfg.status_port, cfg.home / "daemon.log", cfg.home))
    for p in procs:
        p.start()
    return procs


def progress_line(obs: Observation, n: int, rounds: int, elapsed_s: float) -> str:
    if not obs.statuses:
        return f"[{elapsed_s:6.1f}s] starting {n} nodes..."
    heights = [s["height"] for s in obs.statuses.values()]
    done = min(sum(1 for e in s["evaluations"] if e["committed"]) for s in obs.statuses.values())
    pooled = pooled_accuracy(list(obs.statuses.values()))
    acc = f"{pooled[max(pooled)]:.4f}" if pooled else "  -   "
    peers = min(s["peers"] for s in obs.statuses.values())
    return (f"[{elapsed_s:6.1f}s] round {done}/{rounds} committed | height {min(heights)}-{max(heights)} | "
            f"accuracy {acc} | nodes up {len(obs.statuses)}/{n} | peers {peers}/{n - 1} | view {obs.view()}")


def node_finished(status: dict[str, Any], rounds: int) -> bool:
    """All rounds committed, no round open, and every round either evaluated here or replayed from the
    node's own ledger at start-up (a node restarted after the last round replays them all and evaluates
    none). Judged from the evaluations rather than the daemon's `finished` flag, which turns true as soon as
    the last result block is applied, before that round's evaluation (a worker thread) is listed."""
    evaluations = status["evaluations"]
    return not status["round_open"] and sum(1 for e in evaluations if e["committed"]) >= rounds \
        and all("accuracy" in e or e.get("replayed") for e in evaluations)


def wait_for_finish(procs: list[ClusterProcess], rounds: int, *, stall_timeout_s: float, out: TextIO,
                    injector: FaultInjector | None = None,
                    on_poll: Callable[[Observation, float], None] | None = None) -> tuple[Observation, float]:
    """Poll until every node finished all rounds, all heads agree and every fault was injected and recovered.

    A fault whose round came keeps firing after the rounds are done (the nodes keep running until this
    returns), so a late kill or wipe still exercises restart and catch-up against a finished chain.
    """
    obs = Observation()
    started = time.monotonic()
    last_progress, last_line = started, ""
    heights_seen: dict[int, int] = {}
    while True:
        time.sleep(POLL_S)
        now = time.monotonic()
        obs.poll(procs)
        if injector is not None:
            injector.step(procs, obs, now - started)
        if on_poll is not None:
            on_poll(obs, now - started)
        for p in procs:
            if p.proc is not None and p.proc.poll() not in (None, -signal.SIGKILL):
                raise ClusterError(f"node {p.index} exited with code {p.proc.returncode}; see {p.log_path}")
        line = progress_line(obs, len(procs), rounds, now - started)
        if line.split("]", 1)[1] != last_line.split("]", 1)[-1]:
            print(line, file=out, flush=True)
            last_line = line
        for i, s in obs.statuses.items():
            if s["height"] != heights_seen.get(i):
                heights_seen[i], last_progress = s["height"], now
        if len(obs.statuses) == len(procs) and all(node_finished(s, rounds) for s in obs.statuses.values()) \
                and len({s["head_hash"] for s in obs.statuses.values()}) == 1 \
                and (injector is None or injector.done):
            return obs, now - started
        if now - last_progress > stall_timeout_s + (0.0 if heights_seen else STARTUP_GRACE_S):
            raise ClusterError(f"no progress for {stall_timeout_s:.0f}s; node logs are in "
                               f"{procs[0].log_path.parent.parent}")


def pooled_accuracy(statuses: Sequence[dict[str, Any]]) -> dict[int, float]:
    """Each committed round's accuracy over every site's own held-out rows together: the sites' accuracies
    weighted by their held-out row counts (each site evaluates on its own rows; there is no shared test set)."""
    correct: dict[int, float] = {}
    total: dict[int, int] = {}
    for status in statuses:
        for e in status["evaluations"]:
            if e["committed"] and "accuracy" in e:
                rows = int(e.get("held_out_rows", 1))
                correct[e["round"]] = correct.get(e["round"], 0.0) + e["accuracy"] * rows
                total[e["round"]] = total.get(e["round"], 0) + rows
    return {r: correct[r] / total[r] for r in sorted(total) if total[r]}


def summarize(obs: Observation, wall_s: float, rounds: int, workdir: Path,
              injector: FaultInjector | None = None) -> dict[str, Any]:
    statuses = [obs.statuses[i] for i in sorted(obs.statuses)]
    # The node that evaluated the most rounds itself: one restarted after the last round only replayed them.
    first = max(statuses, key=lambda s: sum(1 for e in s["evaluations"] if "accuracy" in e))
    evaluations = sorted(first["evaluations"], key=lambda e: e["round"])
    committed = [e for e in evaluations if e["committed"]]
    pooled = pooled_accuracy(statuses)
    faults = injector.faults if injector is not None else []
    return {
        "rounds_requested": rounds,
        "rounds_committed": len(committed),
        "rounds_aborted": sum(1 for e in evaluations if not e["committed"]),
        "accuracy": pooled[max(pooled)] if pooled else None,
        "accuracy_by_round": [round(pooled[e["round"]], 4) for e in committed if e["round"] in pooled],
        "round_s": [round(e["round_s"], 3) for e in committed if "round_s" in e],
        "height": first["height"],
        "head_hashes": [s["head_hash"] for s in statuses],
        "heads_equal": len({s["head_hash"] for s in statuses}) == 1,
        "views": [s["view"] for s in statuses],
        "phase_s": {i: s["phase_s"] for i, s in enumerate(statuses)},
        "rejected": [e.get("rejected", []) for e in committed],
        "model_hashes": [e["model_hash"] for e in committed],
        "rejections_by_member": first.get("rejections", {}),
        "wire_rejections": {i: s["rejected"] for i, s in enumerate(statuses) if s["rejected"]},
        "faults": [f.to_json() for f in faults],
        "recovery_s": [f.recovery_s for f in faults],
        "wall_s": round(wall_s, 3),
        "workdir": str(workdir),
    }


def peak_rss(procs: Sequence[ClusterProcess], malicious: Sequence[int]) -> dict[str, Any]:
    """Every node's peak resident set in MB, and the largest among the honest ones (the bound a hostile
    member must not push them past, docs/threat-model.md)."""
    by_node = {p.index: round(p.peak_rss_bytes / 1e6, 1) for p in procs}
    honest = [mb for i, mb in by_node.items() if i not in malicious]
    return {"peak_rss_mb": by_node, "honest_peak_rss_mb": max(honest, default=None)}


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    print(f"\nfednode cluster: {summary['rounds_committed']}/{summary['rounds_requested']} rounds committed "
          f"in {summary['wall_s']:.1f}s, height {summary['height']}", file=out)
    for i, (acc, secs) in enumerate(zip(summary["accuracy_by_round"], summary["round_s"]), start=1):
        print(f"  round {i}: accuracy {acc:.4f}  ({secs:.2f}s)", file=out)
    for fault in summary["faults"]:
        if "skipped" in fault or fault["injected_at_s"] is None:
            print(f"  fault {fault['fault']}: not injected ({fault.get('skipped', 'never due')})", file=out)
            continue
        extra = f", new view after {fault['new_view_s']}s" if fault.get("new_view_s") is not None else ""
        rate = f", catch-up {fault['catch_up_blocks_per_s']} blocks/s" if "catch_up_blocks_per_s" in fault else ""
        print(f"  fault {fault['fault']} on node {fault['node']} at {fault['injected_at_s']}s: recovered "
              f"{fault['recovery_s']}s after it came back{extra}{rate}", file=out)
    if summary.get("backdoor_success_by_round") is not None:
        print(f"  backdoor success rate, per round: {summary['backdoor_success_by_round']}", file=out)
    if any(summary["rejected"]):
        print(f"  rejected by validation, per round: {summary['rejected']}", file=out)
    if summary.get("honest_peak_rss_mb") is not None:
        print(f"  peak RSS of the honest nodes: {summary['honest_peak_rss_mb']} MB", file=out)
    state = "all equal" if summary["heads_equal"] else "DIFFERENT"
    print(f"  head hashes: {state} ({summary['head_hashes'][0][:16]}...)", file=out)
    print(f"  node homes: {summary['workdir']}  (inspect with: fednode audit {summary['workdir']}/node-0)",
          file=out)


def backdoor_success_by_round(workdir: Path, attack_name: str, model_hashes: Sequence[str],
                              node: int = 0) -> list[float] | None:
    """The backdoor's success rate on each committed model, measured on `node`'s held-out rows.

    Only the cluster runner knows which attack its malicious members ran; the daemons do not, so this is
    computed here, after the nodes stopped (their ledgers are unlocked), from the models the ledger names.
    None when the attack is not a trigger backdoor.
    """
    from ml.attacks import Backdoor, backdoor_success_rate, make_attack
    from node.config import load_genesis
    from node.learning import Learner, LearningPlan, vector_from_bytes
    from node.store import Store

    attack = make_attack(attack_name)
    if not isinstance(attack, Backdoor):
        return None
    genesis = load_genesis(workdir / "genesis.json")
    plan = LearningPlan.from_genesis(genesis)
    cfg = load_node_config(workdir / f"node-{node}" / "config.json")
    learner = Learner(plan, genesis.n, node, cfg.data_path, cfg.data_format)
    store = Store.open(workdir / f"node-{node}" / LEDGER_DIR, genesis.chain_id, create=False)
    try:
        rates = []
        for model_hash in model_hashes:
            blob = store.blob(bytes.fromhex(model_hash))
            if blob is None:
                raise ClusterError(f"node {node} does not hold committed model {model_hash[:16]}")
            vec = vector_from_bytes(blob, plan.n_params)
            rates.append(round(backdoor_success_rate(attack, plan.model, vec, learner.local.X_test,
                                                     learner.local.y_test), 4))
        return rates
    finally:
        store.close()
