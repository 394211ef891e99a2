"""A hostile member against the honest nodes' shells, on real daemons (issue 17; docs/chaos.md).

Member 3 of N = 4 keeps its real key and runs every shell attack at once (`--shell-fault all`): junk
sketch shares, a stream whose first frame overruns its window (every honest node must see it), a mempool
flood, stale `get_blocks` answers, an evidence flood, relayed requests and a re-sent 1 MiB envelope. Every round must still commit, every
head agree, accuracy stay where a clean run puts it, and no honest node's memory grow past the bound.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.process.test_cluster import fednode

CLEAN_ACCURACY = 0.97
"""What a clean 4-node, 6-round cluster reaches on the default data (0.97-0.99 in runs on this machine)."""
HONEST_PEAK_RSS_MB = 1.5 * 560
"""1.5x the peak RSS of a clean run's nodes (537-548 MB measured)."""


def test_every_shell_attack_at_once_costs_no_round(tmp_path: Path) -> None:
    work = tmp_path / "run"
    result = fednode("cluster", "--nodes", "4", "--rounds", "6", "--malicious", "1", "--shell-fault", "all",
                     "--workdir", str(work), "--json", "--stall-timeout", "180", timeout_s=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 6 and summary["rounds_aborted"] == 0, summary["rounds_aborted"]
    assert len(set(summary["head_hashes"])) == 1
    assert summary["accuracy"] >= CLEAN_ACCURACY - 0.02
    assert 0 < summary["honest_peak_rss_mb"] <= HONEST_PEAK_RSS_MB, summary["peak_rss_mb"]
    honest = ("0", "1", "2")
    assert all("flow_control_violation" in summary["wire_rejections"].get(node, {}) for node in honest), \
        summary["wire_rejections"]
    seen = {reason for node in honest for reason in summary["wire_rejections"].get(node, {})}
    assert {"future_tx", "equivocation_checkpoint", "replayed"} <= seen, seen
