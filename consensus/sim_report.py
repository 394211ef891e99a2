"""Results of simulation runs: one run's verdict, and their sum over a sweep (what `fednode simulate`
prints)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RunResult:
    seed: int
    violations: list[str]
    validity_violations: list[str]
    live: bool
    heights: list[int]
    stats: Counter[str]
    recovery_ms: int | None
    """Simulated time from the end of the faults until every honest node committed the fresh txs."""
    strategies: tuple[str, ...] = ()
    peak_memory: int = 0


@dataclass(slots=True)
class SimReport:
    runs: int = 0
    safety_violations: int = 0
    liveness_failures: int = 0
    runs_per_s: float = 0.0
    failing_seeds: list[int] = field(default_factory=list)
    details: dict[int, list[str]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    recovery_ms: list[int] = field(default_factory=list)
    validity_violations: int = 0
    strategies: Counter[str] = field(default_factory=Counter)
    peak_memory: int = 0

    def add(self, result: RunResult, out: Any = None, label: str = "") -> None:
        """Count one run; a failing one is printed to `out` with its seed."""
        self.runs += 1
        self.stats.update(result.stats)
        self.strategies.update(result.strategies)
        self.peak_memory = max(self.peak_memory, result.peak_memory)
        if result.recovery_ms is not None:
            self.recovery_ms.append(result.recovery_ms)
        self.safety_violations += bool(result.violations)
        self.validity_violations += bool(result.validity_violations)
        self.liveness_failures += not result.live
        problems = result.violations + result.validity_violations
        problems += [] if result.live else ["liveness: an honest member's transaction did not commit everywhere"]
        if problems:
            self.failing_seeds.append(result.seed)
            self.details[result.seed] = problems
            if out is not None:
                print(f"FAILED seed={result.seed} {label}: {problems}", file=out)

    def merge(self, other: SimReport) -> None:
        self.runs += other.runs
        self.safety_violations += other.safety_violations
        self.validity_violations += other.validity_violations
        self.liveness_failures += other.liveness_failures
        self.failing_seeds += other.failing_seeds
        self.details.update(other.details)
        self.stats.update(other.stats)
        self.recovery_ms += other.recovery_ms
        self.strategies.update(other.strategies)
        self.peak_memory = max(self.peak_memory, other.peak_memory)

    def to_json(self) -> dict[str, Any]:
        recovery = sorted(self.recovery_ms)
        return {"runs": self.runs, "safety_violations": self.safety_violations,
                "validity_violations": self.validity_violations,
                "liveness_failures": self.liveness_failures, "runs_per_s": round(self.runs_per_s, 2),
                "runs_per_strategy": dict(sorted(self.strategies.items())),
                "peak_replica_state_entries": self.peak_memory,
                "failing_seeds": self.failing_seeds,
                "recovery_ms_p50": recovery[len(recovery) // 2] if recovery else None,
                "recovery_ms_p99": recovery[len(recovery) * 99 // 100] if recovery else None,
                "recovery_ms_max": recovery[-1] if recovery else None,
                "details": {str(s): v for s, v in self.details.items()}, "stats": dict(self.stats)}
