"""What a local cluster run reports: the progress line while it runs, and afterwards the summary (rounds,
pooled accuracy from the nodes' own figures and the consortium accuracy their `eval`s put on the ledger, heads, faults and their recovery, peak memory, a backdoor's success rate) as text and as
JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from node.cluster_chaos import FaultInjector
from node.cluster_processes import ClusterError, ClusterProcess, Observation
from node.config import load_node_config
from node.store import LEDGER_DIR


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
    ledger = {c["round"]: c for c in first.get("consortium_accuracy", [])}
    return {
        "rounds_requested": rounds,
        "rounds_committed": len(committed),
        "rounds_aborted": sum(1 for e in evaluations if not e["committed"]),
        "accuracy": pooled[max(pooled)] if pooled else None,
        "accuracy_by_round": [round(pooled[e["round"]], 4) for e in committed if e["round"] in pooled],
        "consortium_accuracy": ledger[max(ledger)] if ledger else None,
        "consortium_accuracy_by_round": {r: round(c["pooled_accuracy"], 4) for r, c in sorted(ledger.items())},
        "round_s": [round(e["round_s"], 3) for e in committed if "round_s" in e],
        "height": first["height"],
        "head_hashes": [s["head_hash"] for s in statuses],
        "heads_equal": len({s["head_hash"] for s in statuses}) == 1,
        "views": [s["view"] for s in statuses],
        "phase_s": {i: s["phase_s"] for i, s in enumerate(statuses)},
        "rejected": [e.get("rejected", []) for e in committed],
        "liars": [e.get("liars", []) for e in committed],
        "model_hashes": [e["model_hash"] for e in committed],
        "rejections_by_member": first.get("rejections", {}),
        "convicted": first.get("convicted", []),
        "disputes": first.get("disputes", []),
        "suspended": first.get("suspended", []),
        "wire_rejections": {i: s["rejected"] for i, s in enumerate(statuses) if s["rejected"]},
        "faults": [f.to_json() for f in faults],
        "recovery_s": [f.recovery_s for f in faults],
        "wall_s": round(wall_s, 3),
        "workdir": str(workdir),
    }


def _per_site(sites: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{site.get('site', site['member'])} {site['accuracy']:.4f}" for site in sites)


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
    if (ledger := summary.get("consortium_accuracy")) is not None:
        print(f"  consortium accuracy on the ledger, round {ledger['round']}: pooled {ledger['pooled_accuracy']:.4f} "
              f"over {ledger['held_out_rows']} held-out rows of {ledger['sites_reported']} sites, median site "
              f"{ledger['median_site_accuracy']:.4f} (per site: {_per_site(ledger['sites'])})", file=out)
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
    if any(summary["liars"]):
        print(f"  statistics publishers off the decided polynomial (corrected), per round: {summary['liars']}", file=out)
    if summary["convicted"] or summary["disputes"]:
        print(f"  convicted by a blame verdict (kept out): {summary['convicted']}; disputed pairs (no mask between "
              f"them): {summary['disputes']}", file=out)
    if summary["suspended"]:
        print(f"  suspended, owing a blame disclosure (kept out until it lands): {summary['suspended']}", file=out)
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
