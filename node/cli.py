"""The `fednode` command line. Every user-facing error is one line on stderr and a non-zero exit code."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from node.hooks import FaultHooks

EXIT_USAGE = 2
EXIT_FAILED = 1


class LazyChoice(click.Choice):
    """A Choice whose values come from a module imported only when they are needed (parsing, a subcommand's
    --help), so that `fednode --help` stays fast."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        self._values: tuple[str, ...] | None = None
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        if self._values is None:
            self._values = tuple(self._load())
        return self._values

    @choices.setter
    def choices(self, _value: Sequence[str]) -> None:
        """click.Choice assigns its choices in __init__; ours are loaded on first use."""


def _validator_faults() -> list[str]:
    from node.hooks import VALIDATOR_FAULTS

    return ["none", *VALIDATOR_FAULTS]


def _shell_faults() -> list[str]:
    from node.hooks import SHELL_FAULT_NAMES

    return [*SHELL_FAULT_NAMES, "all"]


def _consensus_faults() -> list[str]:
    from node.consensus_faults import MODES

    return ["none", *MODES]


class UserError(click.ClickException):
    """A one-line error for the user: no traceback."""

    exit_code = EXIT_USAGE


def _fail(exc: Exception) -> UserError:
    return UserError(str(exc))


GLOBAL_FLAGS = ("-v", "--verbose")


class FednodeGroup(click.Group):
    """Global flags are accepted after the subcommand too (`fednode start -v`): they are moved in front."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in GLOBAL_FLAGS] + args[end:]
        return super().parse_args(ctx, flags + rest)


@click.group(cls=FednodeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fednode", prog_name="fednode", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail to stderr (also after the subcommand).")
def cli(verbose: bool) -> None:
    """fednode: federated learning across hospitals, with secure aggregation and a PBFT ledger."""
    level = logging.DEBUG if verbose or os.environ.get("FEDNODE_DEBUG") else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("fednode").setLevel(level)


def _dataset_options(func: Any) -> Any:
    for option in reversed([
        click.option("--dataset", default="breast_cancer", show_default=True,
                     help="Training data: a bundled dataset (breast_cancer, lung, digits, actg175) or csv (your own)."),
        click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="CSV file (with --dataset csv)."),
        click.option("--label", "label_column", help="Label column of the CSV (with --dataset csv)."),
        click.option("--split", type=click.Choice(["iid", "dirichlet", "column"]), default="iid", show_default=True,
                     help="How training rows are divided among hospitals."),
        click.option("--alpha", type=float, default=0.5, show_default=True,
                     help="Dirichlet concentration for --split dirichlet (smaller = more skewed)."),
        click.option("--split-column", help="Column to split by for --split column (e.g. inst for lung)."),
        click.option("--model", "model_kind", type=click.Choice(["logreg", "mlp"]), default="logreg",
                     show_default=True, help="Model trained by the consortium."),
        click.option("--hidden", type=int, default=32, show_default=True, help="Hidden units of --model mlp."),
        click.option("--epochs", type=click.IntRange(1), help="Local epochs per round (default: ml.train's)."),
        click.option("--lr", type=click.FloatRange(0.0, min_open=True),
                     help="Local learning rate (default: ml.train's)."),
        click.option("--plain", is_flag=True,
                     help="Send updates unmasked (no secure aggregation); for comparisons and debugging only."),
        click.option("--no-validation", is_flag=True,
                     help="Skip validation on shares (secure aggregation alone); for comparisons only."),
        click.option("--malicious", type=click.IntRange(0, 64), default=0, show_default=True,
                     help="Make the last K hospitals malicious (fault injection for evaluations and tests)."),
        click.option("--attack", default="sign-flip", show_default=True,
                     help="What malicious hospitals do: sign-flip, scaling, gaussian, label-flip, backdoor, alie, "
                          "min-max, rule-aware, or plugin:PATH.py:FUNC (FUNC(update, ctx) -> vector)."),
        click.option("--validator-fault", type=LazyChoice(_validator_faults), default="none",
                     show_default=True, help="Malicious hospitals also misbehave as validators (node/faults.py, "
                     "docs/chaos.md)."),
        click.option("--shell-fault", "shell_faults", type=LazyChoice(_shell_faults), multiple=True,
                     help="Malicious hospitals attack their peers' networking shell instead of poisoning their "
                          "update (docs/chaos.md). Repeatable; 'all' runs every one at once."),
        click.option("--consensus-fault", type=LazyChoice(_consensus_faults), default="none",
                     show_default=True, help="Malicious hospitals also misbehave in consensus (docs/chaos.md)."),
    ]):
        func = option(func)
    return func


def _specs(kw: dict[str, Any], seed: int) -> tuple[Any, Any, Any]:
    """The dataset, split and training specs the options describe (ml is imported here: it loads torch)."""
    from ml import data as mldata
    from ml.train import TrainConfig

    if kw["dataset"] not in mldata.DATASET_NAMES:
        raise UserError(f"--dataset {kw['dataset']!r}: expected one of {', '.join(mldata.DATASET_NAMES)}")
    if kw["dataset"] == "csv" and not (kw["csv_path"] and kw["label_column"]):
        raise UserError("--dataset csv needs --csv FILE and --label COLUMN")
    csv_path = str(Path(kw["csv_path"]).resolve()) if kw["csv_path"] else None
    dataset = mldata.DatasetSpec(name=kw["dataset"], csv_path=csv_path, label_column=kw["label_column"], seed=seed)
    split = mldata.SplitSpec(kind=kw["split"], alpha=kw["alpha"], column=kw["split_column"])
    tuned = {k: kw[k] for k in ("epochs", "lr") if kw[k] is not None}
    training = TrainConfig(**tuned)
    return dataset, split, training


def _make_testnet(out: Path, nodes: int, rounds: int, seed: int, kw: dict[str, Any],
                  protocol: dict[str, Any] | None = None, crash_rounds: dict[int | None, int] | None = None,
                  **layout: Any) -> list[Path]:
    from ml import data as mldata
    from ml.attacks import AttackError, make_attack
    from node.config import ConfigError
    from node.testnet import create_testnet

    dataset, split, training = _specs(kw, seed)
    if kw["malicious"] > nodes:
        raise UserError(f"--malicious {kw['malicious']} exceeds --nodes {nodes}")
    try:
        make_attack(kw["attack"])
    except AttackError as exc:
        raise _fail(exc) from None
    behaviour: dict[str, Any] = {"attack": kw["attack"], "n_malicious": kw["malicious"]}
    if kw["shell_faults"]:
        behaviour = {"shell_faults": list(kw["shell_faults"])}
    if kw["validator_fault"] != "none":
        behaviour["validator"] = kw["validator_fault"]
    if kw["consensus_fault"] != "none":
        behaviour["consensus_fault"] = kw["consensus_fault"]
    malicious = range(nodes - kw["malicious"], nodes)
    behaviours: dict[int, dict[str, Any]] = {i: dict(behaviour) for i in malicious}
    for node, round_id in (crash_rounds or {}).items():
        assert node is not None, "parse_fault gives crash faults a member index"
        behaviours.setdefault(node, {})["crash_after_input_round"] = round_id
    try:
        return create_testnet(out, nodes, rounds=rounds, seed=seed, dataset=dataset, split=split,
                              model_kind=kw["model_kind"], hidden=kw["hidden"], training=training,
                              protocol=protocol, secure=not kw["plain"], validate=not kw["no_validation"],
                              behaviours=behaviours, hosts=layout.get("layout"),
                              base_port=layout.get("base_port", 26656), data_format=layout.get("data_format", "csv"))
    except (ConfigError, mldata.DataError, ValueError, OSError) as exc:
        raise _fail(exc) from None


@cli.command()
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
@_dataset_options
def testnet(nodes: int, out: str, rounds: int, seed: int, hosts: str | None, starting_ip: str | None,
            base_port: int, data_format: str, **kw: Any) -> None:
    """Create keys, a genesis file, and one config and data file per node (DIR/node-<i>/)."""
    from node.config import ConfigError
    from node.testnet import host_list

    try:
        layout = host_list(nodes, hosts.split(",") if hosts else None, starting_ip)
    except ConfigError as exc:
        raise _fail(exc) from None
    configs = _make_testnet(Path(out), nodes, rounds, seed, kw, layout=layout, base_port=base_port,
                            data_format=data_format)
    click.echo(f"created {len(configs)} nodes under {out}; start each with: fednode start --config "
               f"{configs[0]}")


def _fault_hooks(behaviour: dict[str, Any]) -> FaultHooks:
    """The test-only misbehaviour a node config asks for (`fednode cluster` writes it); none in production."""
    from node.hooks import NO_FAULTS

    if not behaviour:
        return NO_FAULTS
    from node.faults import Faults

    return Faults(behaviour)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="The node's config.json.")
@click.option("--peers", multiple=True, help="Peer multiaddr /ip4/H/tcp/P/p2p/ID (repeatable); default: genesis.")
def start(config_path: str, peers: tuple[str, ...]) -> None:
    """Run one hospital's daemon until SIGINT/SIGTERM."""
    import trio

    from node.config import ConfigError, load_node
    from node.identity import IdentityError
    from node.identity import load as load_identity

    try:
        cfg, genesis = load_node(Path(config_path), peers)
        ident = load_identity(cfg.key_path)
        index = genesis.index_of(ident.public_key)
    except (ConfigError, IdentityError) as exc:
        raise _fail(exc) from None

    from ml import data as mldata
    from ml.train import configure_torch
    from node.daemon import Daemon, run_until_signalled
    from node.learning import Learner, LearningPlan
    from node.network import ListenError
    from node.store import Store, StoreError

    try:
        plan = LearningPlan.from_genesis(genesis)
        learner = Learner(plan, genesis.n, index, cfg.data_path, cfg.data_format)
        hooks = _fault_hooks(cfg.behaviour)
        configure_torch()
        learner.train(plan.initial_model(), 0)  # warm torch up now (seconds), not in the first round
        store = Store.open(cfg.db_path, genesis.chain_id)
    except (ConfigError, StoreError, mldata.DataError) as exc:
        raise _fail(exc) from None
    try:
        daemon = Daemon(cfg, genesis, ident, store, plan, learner, hooks)
        trio.run(run_until_signalled, daemon)
    except (ConfigError, ListenError) as exc:
        raise _fail(exc) from None
    finally:
        store.close()


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="The node's config.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status object.")
def status(config_path: str, as_json: bool) -> None:
    """Ask a running node for its height, round, head hash, peers and view."""
    from node.config import ConfigError, load_node_config
    from node.status import fetch_status

    try:
        cfg = load_node_config(Path(config_path))
        st = fetch_status(cfg.status_port, host=cfg.status_host, token=cfg.status_token)
    except ConfigError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise UserError(f"node is not running or not reachable on {cfg.status_host}:{cfg.status_port} "
                        f"({exc})") from None
    if as_json:
        click.echo(json.dumps(st))
        return
    acc = f"{st['evaluations'][-1]['accuracy']:.4f}" if st["evaluations"] else "-"
    click.echo(f"{st['name']} (member {st['index']}): height {st['height']} head {st['head_hash'][:16]} "
               f"round {st['round']}/{st['rounds']} {'open' if st['round_open'] else 'closed'} "
               f"view {st['view']} (primary {st['primary']}) peers {st['peers']} accuracy {acc}")


@cli.command()
@click.argument("home", type=click.Path(file_okay=False))
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False),
              help="The genesis file (default: the one HOME/config.json names, else HOME/genesis.json).")
@click.option("--model", "model_file", type=click.Path(dir_okay=False),
              help="Also verify this exported model (and its .card.json) against the chain.")
def audit(home: str, genesis_file: str | None, model_file: str | None) -> None:
    """Verify a stopped node's ledger offline (HOME holds ledger/ and genesis.json, or a node config).

    Exit 1 naming the first bad record, or what in an exported model does not match the chain.
    """
    from node.audit import audit_home
    from node.config import ConfigError
    from node.contract import referenced_blobs
    from node.export import locate, verify
    from node.store import StoreError

    home_path = Path(home)
    try:
        genesis, _ = locate(home_path, Path(genesis_file) if genesis_file else None)
    except ConfigError as exc:
        raise _fail(exc) from None
    report = audit_home(home_path, genesis,
                        lambda b: referenced_blobs(b, genesis.chain_id, genesis.n, genesis.verify))
    click.echo(report.describe())
    if report.first_error is not None:
        sys.exit(EXIT_FAILED)
    if model_file is None:
        return
    try:
        problems = verify(genesis, report.ledger, Path(model_file))
    except StoreError as exc:
        problems = [str(exc)]
    for problem in problems:
        click.echo(f"model {model_file}: FAILED: {problem}")
    if problems:
        sys.exit(EXIT_FAILED)
    click.echo(f"model {model_file}: OK: byte for byte the model the ledger committed, card matches the chain")


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), required=True,
              help="A stopped node's home (or a directory with ledger/ and genesis.json).")
@click.option("--round", "round_id", type=click.IntRange(1), help="Round to export (default: the last committed).")
@click.option("--format", "fmt", type=click.Choice(["torch", "safetensors", "onnx"]), default="safetensors",
              show_default=True, help="Model file format.")
@click.option("--out", type=click.Path(dir_okay=False), help="Model file (default: HOME/exports/model-round-R.EXT); "
              "the card goes beside it as <file>.card.json.")
def export(home: str, round_id: int | None, fmt: str, out: str | None) -> None:
    """Write the consortium's model of a committed round with its model card."""
    from ml import data as mldata
    from node.config import ConfigError
    from node.export import ExportError
    from node.export import export as write_export
    from node.identity import IdentityError
    from node.store import StoreError

    try:
        path, card = write_export(Path(home), fmt, Path(out) if out else None, round_id)
    except (ConfigError, ExportError, StoreError, IdentityError, mldata.DataError, OSError) as exc:
        raise _fail(exc) from None
    acc = card["accuracy"]
    click.echo(f"wrote {path} (round {card['round']}, model {card['model_hash'][:16]}, chain "
               f"{card['chain_id'][:16]}) and its card"
               + (f"; held-out accuracy at {acc['site']}: {acc['accuracy']:.4f} ({acc['held_out_rows']} rows)"
                  if acc else ""))


@cli.command()
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
@_dataset_options
def cluster(nodes: int, rounds: int, workdir: str | None, seed: int, as_json: bool, stall_timeout: float,
            kills: tuple[str, ...], crashes: tuple[str, ...], restart_after: float, pauses: tuple[str, ...], wipes: tuple[str, ...],
            max_down: int | None, view_timeout_ms: int | None, phase_deadline: float | None, **kw: Any) -> None:
    """Run a local N-hospital cluster as real processes, show progress, print a summary.

    Fault options inject real process faults and the summary reports when each happened and how long the
    node took to recover (docs/chaos.md). Example: --kill primary@2+1.5 --wipe 3@1.
    """
    from node.cluster import (
        ClusterError,
        FaultInjector,
        backdoor_success_by_round,
        parse_fault,
        peak_rss,
        print_summary,
        start_cluster,
        summarize,
        wait_for_finish,
    )

    try:
        specs = [parse_fault(kind, text, nodes=nodes, rounds=rounds)
                 for kind, texts in (("kill", kills), ("pause", pauses), ("wipe", wipes), ("crash", crashes))
                 for text in texts]
    except ValueError as exc:
        raise _fail(exc) from None
    protocol: dict[str, Any] = {}
    if view_timeout_ms is not None:
        protocol["view_timeout_ms"] = view_timeout_ms
    if phase_deadline is not None:
        protocol["phase_deadline_s"] = phase_deadline
    work = Path(workdir) if workdir else Path("runs") / time.strftime("cluster-%Y%m%d-%H%M%S")
    crash_rounds = {spec.node: spec.round for spec in specs if spec.kind == "crash"}
    configs = _make_testnet(work, nodes, rounds, seed, kw, protocol, crash_rounds)
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
    summary |= peak_rss(procs, range(nodes - kw["malicious"], nodes))
    if kw["malicious"] and not kw["shell_faults"] and len(summary["model_hashes"]) == summary["rounds_committed"]:
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


@cli.command()
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


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), required=True, help="This site's node directory.")
@click.option("--name", required=True, help="This site's name in the consortium (letters, digits, . _ -).")
@click.option("--listen-host", default="0.0.0.0", show_default=True, help="IP address the p2p port binds.")
@click.option("--port", type=click.IntRange(1, 65535), default=26656, show_default=True, help="p2p port.")
@click.option("--announce", help="Multiaddr other sites dial, /ip4/PUBLIC-IP/tcp/PORT (default: "
              "/ip4/127.0.0.1/tcp/PORT, reachable from this machine only).")
@click.option("--status-port", type=click.IntRange(0, 65535), default=26660, show_default=True,
              help="Port of /status and /metrics (bound to 127.0.0.1).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), help="This site's data file (CSV or Parquet).")
def init(home: str, name: str, listen_host: str, port: int, announce: str | None, status_port: int,
         data_path: str | None) -> None:
    """Create this site's key (mode 0600), member.json for the coordinator, and config.json."""
    from node.config import ConfigError
    from node.genesis import init_home

    try:
        result = init_home(Path(home), name=name, listen_host=listen_host, port=port, status_port=status_port,
                           announce=announce, data=Path(data_path) if data_path else None)
    except ConfigError as exc:
        raise _fail(exc) from None
    click.echo(f"peer id     {result.peer_id}")
    click.echo(f"public key  {result.public_key}")
    click.echo(f"send {result.member_file} to the consortium's coordinator; after the genesis ceremony run "
               f"`fednode genesis check GENESIS --home {home} --confirm HASH`", err=True)
    if announce is None:
        click.echo(f"note: announced at /ip4/127.0.0.1/tcp/{port}, reachable from this machine only; give "
                   f"--announce /ip4/PUBLIC-IP/tcp/{port} for other sites", err=True)


@cli.command("show-node-id")
@click.option("--home", type=click.Path(file_okay=False), required=True, help="The site's node directory.")
@click.option("--public-key", "show_key", is_flag=True, help="Print the Ed25519 public key (hex) instead.")
def show_node_id(home: str, show_key: bool) -> None:
    """Print this site's libp2p peer id (or its public key)."""
    from node.config import ConfigError
    from node.genesis import home_identity
    from node.identity import IdentityError, peer_id

    try:
        ident = home_identity(Path(home))
    except (ConfigError, IdentityError) as exc:
        raise _fail(exc) from None
    click.echo(ident.public_key.hex() if show_key else peer_id(ident.public_key))


@cli.group()
def genesis() -> None:
    """The genesis ceremony: new draft, add members, check and confirm the final file."""


@genesis.command("new")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Draft genesis file to create.")
@click.option("--task", "task_file", type=click.Path(dir_okay=False), required=True,
              help="JSON file with the 'task' schema and the agreed 'scaling' (see `fednode data split`).")
@click.option("--consortium", default="", help="The consortium's name.")
@click.option("--rounds", type=click.IntRange(1, 1_000_000), default=5, show_default=True, help="Federated rounds.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the initial model.")
@click.option("--model", "model_kind", type=click.Choice(["logreg", "mlp"]), default="logreg", show_default=True,
              help="Built-in model (see --model-module for your own).")
@click.option("--hidden", type=click.IntRange(1), default=32, show_default=True, help="Hidden units of mlp.")
@click.option("--model-module", help="The consortium's own model instead: FILE.py:FUNC, FUNC(n_features, "
              "n_classes) -> torch.nn.Module; the file's sha256 is pinned in genesis and each site puts the file "
              "next to its genesis.json.")
@click.option("--epochs", type=click.IntRange(1), default=2, show_default=True, help="Local epochs per round.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=0.5, show_default=True,
              help="Local learning rate.")
@click.option("--phase-deadline", type=click.FloatRange(0.1), default=30.0, show_default=True,
              help="Seconds a round phase waits for missing members.")
@click.option("--plain", is_flag=True, help="No secure aggregation (comparisons only).")
def genesis_new(out: str, task_file: str, consortium: str, rounds: int, seed: int, model_kind: str, hidden: int,
                model_module: str | None, epochs: int, lr: float, phase_deadline: float, plain: bool) -> None:
    """Write a draft genesis (no members yet) for the task in --task."""
    from node.config import ConfigError, load_document
    from node.genesis import module_model, new_genesis

    out_path = Path(out)
    try:
        if out_path.exists():
            raise ConfigError(f"{out} exists; choose another --out")
        model: dict[str, Any] = {"kind": model_kind, "hidden": hidden}
        module_path = None
        if model_module:
            model, module_path = module_model(model_module)
        draft = new_genesis(consortium=consortium, task_doc=load_document(Path(task_file), "task"), rounds=rounds,
                            seed=seed, model=model, training={"epochs": epochs, "lr": lr},
                            protocol={"phase_deadline_s": phase_deadline}, secure=not plain, validate=not plain,
                            module_path=module_path)
    except ConfigError as exc:
        raise _fail(exc) from None
    out_path.write_text(json.dumps(draft, indent=2) + "\n")
    click.echo(f"wrote {out}; add each site with: fednode genesis add-member {out} MEMBER.json ...")


@genesis.command("add-member")
@click.argument("genesis_file", type=click.Path(dir_okay=False))
@click.argument("member_files", type=click.Path(dir_okay=False), nargs=-1, required=True)
def genesis_add_member(genesis_file: str, member_files: tuple[str, ...]) -> None:
    """Add sites (their member.json from `fednode init`) to a genesis file."""
    from node.config import ConfigError, genesis_hash
    from node.genesis import add_members

    try:
        raw = add_members(Path(genesis_file), [Path(m) for m in member_files])
    except ConfigError as exc:
        raise _fail(exc) from None
    click.echo(f"{len(raw['members'])} members; genesis hash now {genesis_hash(raw).hex()}")


@genesis.command("check")
@click.argument("genesis_file", type=click.Path(dir_okay=False))
@click.option("--home", type=click.Path(file_okay=False), help="This site's node directory (with --confirm).")
@click.option("--confirm", "confirm_hash", help="The final genesis hash as the coordinator read it out; with "
              "--home, binds the site's config to this genesis (its node starts only then).")
def genesis_check(genesis_file: str, home: str | None, confirm_hash: str | None) -> None:
    """Validate a genesis file and print its hash and members; with --home and --confirm, confirm it."""
    from ml.sitedata import SiteDataError
    from node.config import ConfigError, load_genesis
    from node.genesis import confirm, describe
    from node.identity import IdentityError

    if (home is None) != (confirm_hash is None):
        raise UserError("--home and --confirm go together")
    try:
        if home is not None and confirm_hash is not None:
            gen = confirm(Path(genesis_file), Path(home), confirm_hash)
        else:
            gen = load_genesis(Path(genesis_file))
    except (ConfigError, IdentityError, SiteDataError) as exc:
        raise _fail(exc) from None
    for line in describe(gen):
        click.echo(line)
    if home is not None:
        click.echo(f"confirmed: {home}/config.json is bound to this genesis; start with "
                   f"`fednode start --config {home}/config.json`", err=True)


@cli.group()
def data() -> None:
    """Site data files: split a bundled dataset into one file per site, with the matching task schema."""


@data.command("split")
@click.option("--dataset", default="breast_cancer", show_default=True,
              help="Bundled public dataset (breast_cancer, lung, or another name ml.data registers).")
@click.option("--sites", type=click.IntRange(1, 64), default=4, show_default=True, help="Number of sites.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Directory to create.")
@click.option("--split", type=click.Choice(["iid", "dirichlet", "column"]), default="iid", show_default=True,
              help="How rows are divided among sites.")
@click.option("--alpha", type=click.FloatRange(0.0, min_open=True), default=0.5, show_default=True,
              help="Dirichlet concentration for --split dirichlet.")
@click.option("--split-column", help="Column for --split column (e.g. inst for lung).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the split.")
@click.option("--format", "data_format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
def data_split(dataset: str, sites: int, out: str, split: str, alpha: float, split_column: str | None, seed: int,
               data_format: str) -> None:
    """Write OUT/site-<i>.csv (one per site) and OUT/task.json (the schema and scaling for `genesis new`)."""
    from ml import data as mldata
    from ml import sitedata

    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) if out_path.is_dir() else out_path.exists():
        raise UserError(f"{out} exists and is not an empty directory")
    if dataset == "csv" or dataset not in mldata.DATASET_NAMES:
        raise UserError(f"--dataset {dataset!r}: expected one of "
                        f"{', '.join(n for n in mldata.DATASET_NAMES if n != 'csv')}")
    spec = mldata.DatasetSpec(name=dataset, seed=seed)
    try:
        task, scaling = sitedata.task_for_dataset(spec)
        frames = sitedata.site_frames(spec, mldata.SplitSpec(kind=split, alpha=alpha, column=split_column), sites)
    except mldata.DataError as exc:
        raise _fail(exc) from None
    out_path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        sitedata.write_table(frame, out_path / f"site-{i}.{data_format}")
    (out_path / "task.json").write_text(json.dumps({"task": task, "scaling": scaling}, indent=2) + "\n")
    click.echo(f"wrote {sites} site files and task.json under {out}")


def main() -> None:
    cli(prog_name="fednode")


if __name__ == "__main__":
    main()
