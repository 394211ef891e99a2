"""The local-consortium commands: `fednode testnet` (homes for N nodes), `fednode cluster` (N real daemons on
this machine, with fault injection) and `fednode simulate` (seeded simulations of the PBFT core).

Heavy modules (ml, the cluster runner, the consensus simulation) are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from node.cli_options import EXIT_FAILED, UserError, dataset_options, fail, make_testnet, malicious_members


@click.command()
@click.option("--nodes", type=click.IntRange(1, 64), default=4, show_default=True, help="Number of hospitals.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory to create.")
@click.option("--rounds", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Federated rounds.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the model init and data split.")
@click.option("--hosts", help="Comma-separated IPv4 address of each member's machine (cycled); nodes listen on "
              "0.0.0.0 at fixed ports from --base-port. Default: every node on 127.0.0.1 at free ports.")
@click.option("--starting-ip", help="First member's IPv4 address; member i is at this address + i (like --hosts).")
@click.option("--base-port", type=click.IntRange(1, 65534), default=26656, show_default=True,
              help="With --hosts/--starting-ip: p2p port of the first node on a host (status on port + 1).")
@click.option("--format", "data_format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Format of each node's data file.")
@dataset_options
def testnet(nodes: int, out: str, rounds: int, seed: int, hosts: str | None, starting_ip: str | None,
            base_port: int, data_format: str, **kw: Any) -> None:
    """Create keys, a genesis file, and one config and data file per node (DIR/node-<i>/)."""
    from node.config import ConfigError
    from node.testnet import host_list

    try:
        layout = host_list(nodes, hosts.split(",") if hosts else None, starting_ip)
    except ConfigError as exc:
        raise fail(exc) from None
    configs = make_testnet(Path(out), nodes, rounds, seed, kw, layout=layout, base_port=base_port,
                            data_format=data_format)
    click.echo(f"created {len(configs)} nodes under {out}; start each with: fednode start --config "
               f"{configs[0]}")


@click.command()
@click.option("--nodes", type=click.IntRange(1, 32), default=4, show_default=True, help="Number of hospitals.")
@click.option("--rounds", type=click.IntRange(1, 10_000), default=5, show_default=True, help="Federated rounds.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where node homes go (default: ./runs/<time>).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the model init and data split.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last stdout line).")
@click.option("--stall-timeout", type=float, default=120.0, show_default=True,
              help="Give up when no node makes progress for this many seconds.")
@click.option("--kill", "kills", multiple=True, metavar="NODE@ROUND[+S]",
              help="SIGKILL member NODE (an index, or 'primary': the current primary) when the cluster reaches "
                   "ROUND, or S seconds later; it is restarted after --restart-after. Repeatable.")
@click.option("--crash", "crashes", multiple=True, metavar="NODE@ROUND",
              help="Member NODE SIGKILLs itself right after it sent its masked update in ROUND (before it "
                   "deals validation shares or reveals anything); restarted after --restart-after. Repeatable.")
@click.option("--restart-after", type=click.FloatRange(0.0), default=2.0, show_default=True,
              help="Seconds between a --kill/--wipe/--crash and the node's restart.")
@click.option("--pause", "pauses", multiple=True, metavar="NODE@ROUND[+S]:SECONDS",
              help="SIGSTOP member NODE when the cluster reaches ROUND (+S seconds), SIGCONT it SECONDS later. "
                   "Repeatable.")
@click.option("--wipe", "wipes", multiple=True, metavar="NODE@ROUND[+S]",
              help="SIGKILL member NODE, delete its ledger directory and restart it after --restart-after: it "
                   "must catch up from its peers. Repeatable.")
@click.option("--max-down", type=click.IntRange(1), help="At most this many nodes disrupted at once (down, "
              "paused or not yet recovered): a fault due while the limit is reached waits. Default: no limit.")
@click.option("--view-timeout-ms", type=click.IntRange(1), help="PBFT view-change timeout written to genesis "
              "(daemon default 2000).")
@click.option("--phase-deadline", type=click.FloatRange(0.1), help="Seconds before a round phase may close "
              "without every member, written to genesis (daemon default 30).")
@dataset_options
def cluster(nodes: int, rounds: int, workdir: str | None, seed: int, as_json: bool, stall_timeout: float,
            kills: tuple[str, ...], crashes: tuple[str, ...], restart_after: float, pauses: tuple[str, ...], wipes: tuple[str, ...],
            max_down: int | None, view_timeout_ms: int | None, phase_deadline: float | None, **kw: Any) -> None:
    """Run a local N-hospital cluster as real processes, show progress, print a summary.

    Fault options inject real process faults and the summary reports when each happened and how long the
    node took to recover (docs/chaos.md). Example: --kill primary@2+1.5 --wipe 3@1.
    """
    from node.cluster import wait_for_finish
    from node.cluster_chaos import FaultInjector, parse_fault
    from node.cluster_processes import ClusterError, start_cluster
    from node.cluster_report import backdoor_success_by_round, peak_rss, print_summary, summarize

    try:
        specs = [parse_fault(kind, text, nodes=nodes, rounds=rounds)
                 for kind, texts in (("kill", kills), ("pause", pauses), ("wipe", wipes), ("crash", crashes))
                 for text in texts]
    except ValueError as exc:
        raise fail(exc) from None
    protocol: dict[str, Any] = {}
    if view_timeout_ms is not None:
        protocol["view_timeout_ms"] = view_timeout_ms
    if phase_deadline is not None:
        protocol["phase_deadline_s"] = phase_deadline
    work = Path(workdir) if workdir else Path("runs") / time.strftime("cluster-%Y%m%d-%H%M%S")
    crash_rounds = {spec.node: spec.round for spec in specs if spec.kind == "crash"}
    configs = make_testnet(work, nodes, rounds, seed, kw, protocol, crash_rounds)
    click.echo(f"starting {nodes} hospitals in {work} ...", err=True)
    injector = FaultInjector(specs, restart_after, sys.stderr, max_down) if specs else None
    procs = start_cluster(configs)
    try:
        obs, wall_s = wait_for_finish(procs, rounds, stall_timeout_s=stall_timeout, out=sys.stderr,
                                      injector=injector)
    except ClusterError as exc:
        raise UserError(str(exc)) from None
    finally:
        for p in procs:
            p.stop()
    summary = summarize(obs, wall_s, rounds, work, injector)
    malicious = malicious_members(kw, nodes)
    summary |= peak_rss(procs, malicious)
    if malicious and not kw["shell_faults"] and len(summary["model_hashes"]) == summary["rounds_committed"]:
        try:
            summary["backdoor_success_by_round"] = backdoor_success_by_round(work, kw["attack"],
                                                                             summary["model_hashes"])
        except ClusterError as exc:
            raise UserError(str(exc)) from None
    print_summary(summary, sys.stderr if as_json else sys.stdout)
    if as_json:
        click.echo(json.dumps(summary))
    if summary["rounds_committed"] < rounds or not summary["heads_equal"]:
        sys.exit(EXIT_FAILED)


@click.command()
@click.option("--nodes", type=click.IntRange(1, 64), default=4, show_default=True, help="Replicas per run.")
@click.option("--byzantine", type=click.IntRange(0, 21), default=1, show_default=True,
              help="Byzantine replicas per run (at most (nodes-1)//3).")
@click.option("--seeds", type=click.IntRange(1, 10_000_000), default=200, show_default=True, help="Runs.")
@click.option("--first-seed", type=int, default=0, show_default=True, help="Seed of the first run.")
@click.option("--strategies", default="all", show_default=True,
              help="Comma-separated Byzantine strategies to draw from (docs/consensus.md), or 'all'.")
@click.option("--twins", is_flag=True, help="Also run the Twins enumeration (N=4 only).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object (last stdout line).")
def simulate(nodes: int, byzantine: int, seeds: int, first_seed: int, strategies: str, twins: bool,
             as_json: bool) -> None:
    """Seeded simulations of the PBFT core against network faults, crashes and an adaptive Byzantine
    adversary; checks safety, validity, liveness and per-peer memory.

    Every failing seed is printed; rerun one with --first-seed SEED --seeds 1.
    """
    from consensus.adversary import STRATEGIES
    from consensus.quorum import max_faulty
    from consensus.simulation import SimConfig, SimReport, run_simulations, run_twins

    if byzantine > max_faulty(nodes):
        raise UserError(f"--byzantine {byzantine} exceeds (nodes-1)//3 = {max_faulty(nodes)} for {nodes} nodes")
    chosen = tuple(STRATEGIES) if strategies == "all" else tuple(s.strip() for s in strategies.split(","))
    unknown = [s for s in chosen if s not in STRATEGIES]
    if unknown or not chosen:
        raise UserError(f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}")
    if twins and nodes != 4:
        raise UserError("--twins enumerates scenarios for --nodes 4 only")
    config = SimConfig(behaviours=chosen)
    total = SimReport()
    started = time.perf_counter()
    chunk = 100
    for start in range(first_seed, first_seed + seeds, chunk):
        total.merge(run_simulations(nodes, byzantine, range(start, min(start + chunk, first_seed + seeds)),
                                    config=config, out=sys.stderr))
        elapsed = time.perf_counter() - started
        click.echo(f"  {total.runs}/{seeds} runs, {total.safety_violations} safety violations, "
                   f"{total.validity_violations} validity violations, {total.liveness_failures} liveness failures, "
                   f"{total.runs / elapsed:.1f} runs/s", err=True)
    if twins:
        total.merge(run_twins(config=config, out=sys.stderr))
    total.runs_per_s = total.runs / (time.perf_counter() - started)
    report = total.to_json()
    report.pop("stats")
    report.update(nodes=nodes, byzantine=byzantine, first_seed=first_seed, strategies=list(chosen), twins=twins)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{total.runs} runs: {total.safety_violations} safety violations, {total.validity_violations} "
                   f"validity violations, {total.liveness_failures} liveness failures, {total.runs_per_s:.1f} runs/s; "
                   f"failing seeds: {total.failing_seeds}")
    if total.failing_seeds:
        sys.exit(EXIT_FAILED)

