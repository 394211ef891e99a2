"""Consensus faults of a malicious member on real daemons (`fednode cluster --consensus-fault`).

Member 3 of 4 (f = 1) misbehaves in consensus. In the plain run it never leads (no view change happens)
and the cluster must simply be unharmed. In the other runs pauses rotate the view to member 3 (views 1,
2, 3): as a censoring primary (it never proposes member 0's transactions) the honest members' request
timers must replace it; as an equivocating primary its blocks gather no quorum, the evidence is
recorded, and the view changes. Every round still commits, with equal heads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.process.test_cluster import fednode

ROTATE = ("--pause", "0@1:4", "--pause", "1@3:4", "--pause", "2@5:4", "--max-down", "1")
"""Pauses two rounds apart, so that each (4 s, over two view timeouts) ends before the next is due (with
`--max-down 1` a pause waits for the previous one), and three rounds after the last for member 3 to lead."""
ROTATE_ROUNDS = 8


def run(work: Path, mode: str, *extra: str, rounds: int = 5) -> dict:
    result = fednode("cluster", "--nodes", "4", "--rounds", str(rounds), "--malicious", "1", "--consensus-fault",
                     mode, "--workdir", str(work), "--json", "--stall-timeout", "180", *extra, timeout_s=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == rounds and summary["heads_equal"], summary
    return summary


def test_a_censoring_member_that_never_leads_changes_nothing(tmp_path: Path) -> None:
    summary = run(tmp_path / "run", "censor")
    assert len(set(summary["head_hashes"])) == 1


@pytest.mark.parametrize("mode", ["censor", "equivocate"])
def test_a_misbehaving_primary_loses_its_view(tmp_path: Path, mode: str) -> None:
    work = tmp_path / "run"
    summary = run(work, mode, *ROTATE, rounds=ROTATE_ROUNDS)
    logs = [(work / f"node-{i}" / "daemon.log").read_text() for i in range(3)]
    views = [int(v) for v in re.findall(r"entered view (\d+)", logs[1])]
    assert 3 in views, f"the pauses must have made member 3 primary: {views}"
    assert max(views) >= 4, f"member 3 must have lost its view: {views}"
    if mode == "censor":
        assert all(0 not in rejected for rejected in summary["rejected"]), summary["rejected"]
    else:
        assert any("member 3: equivocation_preprepare: evidence recorded" in log for log in logs), \
            "the honest members must have recorded member 3's conflicting pre-prepares as evidence"
