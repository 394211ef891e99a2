"""Consensus faults of a malicious member on real daemons (`fednode cluster --consensus-fault`).

One member of 4 (f = 1) misbehaves in consensus. As member 3 it never leads (no view change happens) and
the cluster must simply be unharmed. As member 0 it is the first primary: censoring (it never proposes
member 1's transactions) the honest members' request timers must replace it; equivocating, its block
gathers no quorum, the evidence is recorded, and the view changes. Every round still commits, with equal
heads. (Rotating the view to member 3 with pauses made these runs depend on timing: a primary paused while
no request was pending keeps its view until a phase deadline.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.process.test_cluster import fednode


def run(work: Path, mode: str, *extra: str, rounds: int = 5) -> dict:
    result = fednode("cluster", "--nodes", "4", "--rounds", str(rounds), "--consensus-fault",
                     mode, "--workdir", str(work), "--json", "--stall-timeout", "180", *extra, timeout_s=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == rounds and summary["heads_equal"], summary
    return summary


def test_a_censoring_member_that_never_leads_changes_nothing(tmp_path: Path) -> None:
    summary = run(tmp_path / "run", "censor", "--malicious", "1")
    assert len(set(summary["head_hashes"])) == 1


@pytest.mark.parametrize("mode", ["censor", "equivocate"])
def test_a_misbehaving_primary_loses_its_view(tmp_path: Path, mode: str) -> None:
    work = tmp_path / "run"
    summary = run(work, mode, "--malicious-members", "0")
    logs = [(work / f"node-{i}" / "daemon.log").read_text() for i in (1, 2, 3)]
    views = sorted({int(v) for log in logs for v in re.findall(r"entered view (\d+)", log)})
    assert views and min(views) == 1, f"member 0 must have lost view 0: {views}"
    if mode == "censor":
        assert all(1 not in rejected for rejected in summary["rejected"]), summary["rejected"]
    else:
        assert any("member 0: equivocation_preprepare: evidence recorded" in log for log in logs), \
            "the honest members must have recorded member 0's conflicting pre-prepares as evidence"
