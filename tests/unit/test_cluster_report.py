"""`fednode cluster`'s report of the consortium accuracy: a node is finished only once its own eval of the last
round is on the ledger, and the summary carries the ledger's figures next to the nodes' own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from node.cluster import node_finished, stall_report, unfinished_reason
from node.cluster_processes import ClusterProcess, Observation
from node.cluster_report import print_summary, summarize
from node.consortium import consortium_accuracy

NAMES = ["hospital-0", "hospital-1"]
EVALS = {1: {0: (27, 29), 1: (29, 29)}}


def _status(index: int, evals_pending: int = 0) -> dict:
    correct, rows = EVALS[1][index]
    return {"height": 5, "head_hash": "ab" * 32, "view": 0, "phase_s": {}, "rejected": {}, "round_open": False,
            "evaluations": [{"round": 1, "committed": True, "accuracy": correct / rows, "held_out_rows": rows,
                             "round_s": 1.0, "model_hash": "cd" * 32, "rejected": []}],
            "evals_pending": evals_pending,
            "consortium_accuracy": [{"round": 1, **consortium_accuracy(EVALS[1], NAMES)}]}


def test_a_node_whose_eval_of_the_last_round_is_pending_has_not_finished() -> None:
    assert not node_finished(_status(0, evals_pending=1), rounds=1)
    assert node_finished(_status(0), rounds=1)


def test_the_summary_reports_the_ledgers_consortium_accuracy() -> None:
    summary = summarize(Observation({0: _status(0), 1: _status(1)}), 3.0, 1, Path("/tmp/run"))
    assert summary["consortium_accuracy"]["pooled_accuracy"] == pytest.approx(56 / 58)
    assert summary["accuracy"] == pytest.approx(summary["consortium_accuracy"]["pooled_accuracy"])
    assert summary["consortium_accuracy_by_round"] == {1: round(56 / 58, 4)}
    out = io.StringIO()
    print_summary(summary, out)
    assert ("consortium accuracy on the ledger, round 1: pooled 0.9655 over 58 held-out rows of 2 sites, median "
            "site 0.9655 (per site: hospital-0 0.9310, hospital-1 1.0000)") in out.getvalue()


def test_a_stall_names_each_node_that_keeps_the_cluster_from_finishing() -> None:
    procs = [ClusterProcess(index=i, config_path=Path("c.json"), status_port=0, log_path=Path("d.log"), home=Path("h"))
             for i in range(4)]
    other_head = {**_status(1), "head_hash": "ef" * 32}
    obs = Observation({0: _status(0), 1: other_head, 2: _status(0, evals_pending=1)})
    report = stall_report(obs, procs, rounds=1)
    assert report.split("; ") == [
        "node 1 (height 5, view 0): head efefefefefef at height 5 differs",
        "node 2 (height 5, view 0): 1 own eval transaction(s) not on the ledger",
        "node 3: no status",
    ]
    assert unfinished_reason({**_status(0), "round_open": True, "round": 2}, rounds=1) == "round 2 open"
    assert unfinished_reason(_status(0), rounds=2) == "1 of 2 rounds committed"
    pending = {**_status(0), "evaluations": [{"round": 1, "committed": True}]}
    assert unfinished_reason(pending, rounds=1) == "evaluation of round(s) [1] not done"
    assert stall_report(Observation({0: _status(0)}), procs[:1], rounds=1) == "every node finished"
