"""Consensus faults of a malicious member on real daemons (`fednode cluster --consensus-fault`).

Member 3 of 4 (f = 1) runs the censor fault: as primary it never proposes member 0's transactions. In the
plain run it never leads (no view change happens) and the cluster must simply be unharmed. In the second
run pauses rotate the view to member 3 (views 1, 2, 3); the honest members' request timers must replace
it (view 4 or later), and every round still commits with member 0's update included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.process.test_cluster import fednode


def run(work: Path, *extra: str) -> dict:
    result = fednode("cluster", "--nodes", "4", "--rounds", "5", "--malicious", "1", "--consensus-fault", "censor",
                     "--workdir", str(work), "--json", "--stall-timeout", "180", *extra, timeout_s=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_censoring_member_that_never_leads_changes_nothing(tmp_path: Path) -> None:
    summary = run(tmp_path / "run")
    assert summary["rounds_committed"] == 5 and summary["heads_equal"]
    assert len(set(summary["head_hashes"])) == 1


def test_a_censoring_primary_is_replaced_by_the_request_timers(tmp_path: Path) -> None:
    work = tmp_path / "run"
    summary = run(work, "--pause", "0@1:4", "--pause", "1@2:4", "--pause", "2@3:4", "--max-down", "1")
    assert summary["rounds_committed"] == 5 and summary["heads_equal"]
    views = [int(v) for v in re.findall(r"entered view (\d+)", (work / "node-1" / "daemon.log").read_text())]
    assert 3 in views, f"the pauses must have made member 3 primary: {views}"
    assert max(views) >= 4, f"the censor must have lost its view: {views}"
    assert all(0 not in rejected for rejected in summary["rejected"]), summary["rejected"]
