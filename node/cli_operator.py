"""The operator's commands for a real consortium: `fednode init` and `show-node-id` (a site's key and
config), the genesis ceremony (`fednode genesis new/add-member/check`), `fednode data split` (site files
from a bundled dataset), and, on a stopped node, `fednode audit` and `fednode export`.

Each command imports what it needs (ml, the store, the genesis tools) inside its function.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli_options import EXIT_FAILED, UserError, fail

if TYPE_CHECKING:
    from node.config import Genesis
    from node.export import ChainView


@click.command()
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
        raise fail(exc) from None
    click.echo(f"peer id     {result.peer_id}")
    click.echo(f"public key  {result.public_key}")
    click.echo(f"send {result.member_file} to the consortium's coordinator; after the genesis ceremony run "
               f"`fednode genesis check GENESIS --home {home} --confirm HASH`", err=True)
    if announce is None:
        click.echo(f"note: announced at /ip4/127.0.0.1/tcp/{port}, reachable from this machine only; give "
                   f"--announce /ip4/PUBLIC-IP/tcp/{port} for other sites", err=True)


@click.command("show-node-id")
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
        raise fail(exc) from None
    click.echo(ident.public_key.hex() if show_key else peer_id(ident.public_key))


@click.group()
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
        raise fail(exc) from None
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
        raise fail(exc) from None
    click.echo(f"{len(raw['members'])} members; genesis hash now {genesis_hash(raw).hex()}")


@genesis.command("scaling")
@click.option("--home", type=click.Path(file_okay=False), required=True, help="This site's node directory.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False), required=True,
              help="The draft genesis with every member (from the coordinator).")
@click.option("--relay", type=click.Path(file_okay=False), required=True,
              help="The directory of every site's ceremony files, as the coordinator last sent it.")
@click.option("--outbox", type=click.Path(file_okay=False),
              help="Where this site's files go, to send to the coordinator (default: HOME/scaling-outbox).")
def genesis_scaling(home: str, genesis_file: str, relay: str, outbox: str | None) -> None:
    """One step of the scaling ceremony: the sites' feature statistics summed by secure aggregation.

    Run it again each time the coordinator sends a fuller relay directory; after four steps it prints the
    consortium's scaling and writes HOME/scaling.json (docs/operations.md, section 4).
    """
    from ml.sitedata import SiteDataError
    from node.config import ConfigError
    from node.identity import IdentityError
    from node.scaling_ceremony import run_step

    home_path = Path(home)
    try:
        outcome = run_step(home_path, Path(genesis_file), Path(relay),
                           Path(outbox) if outbox else home_path / "scaling-outbox")
    except (ConfigError, IdentityError, SiteDataError, ValueError) as exc:
        raise fail(exc) from None
    for path in outcome.wrote:
        click.echo(f"wrote {path}: send it to the coordinator")
    if outcome.waiting_for:
        click.echo(f"waiting for the files of {', '.join(outcome.waiting_for)}; run again with the fuller relay")
    if outcome.scaling is not None:
        click.echo(f"scaling: {outcome.scaling['source']}; written to {home_path / 'scaling.json'}: send it to the "
                   f"coordinator (genesis set-scaling)")


@genesis.command("set-scaling")
@click.argument("genesis_file", type=click.Path(dir_okay=False))
@click.argument("results", type=click.Path(dir_okay=False), nargs=-1, required=True)
def genesis_set_scaling(genesis_file: str, results: tuple[str, ...]) -> None:
    """Put the scaling ceremony's result (the sites' scaling.json, all identical) into the draft genesis."""
    from node.config import ConfigError, genesis_hash
    from node.scaling_ceremony import apply_scaling

    try:
        raw = apply_scaling(Path(genesis_file), [Path(r) for r in results])
    except ConfigError as exc:
        raise fail(exc) from None
    click.echo(f"scaling set ({raw['scaling']['source']}); genesis hash now {genesis_hash(raw).hex()}")


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
        raise fail(exc) from None
    for line in describe(gen):
        click.echo(line)
    if home is not None:
        click.echo(f"confirmed: {home}/config.json is bound to this genesis; start with "
                   f"`fednode start --config {home}/config.json`", err=True)


@click.group()
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
@click.option("--scaling", "scaling_method", type=click.Choice(["public", "secure-sum"]), default="public",
              show_default=True, help="public: from the whole public dataset; secure-sum: from the site files' "
              "counts, sums and sums of squares, summed by secure aggregation among the sites (in this process).")
def data_split(dataset: str, sites: int, out: str, split: str, alpha: float, split_column: str | None, seed: int,
               data_format: str, scaling_method: str) -> None:
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
        raise fail(exc) from None
    out_path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        sitedata.write_table(frame, out_path / f"site-{i}.{data_format}")
    if scaling_method == "secure-sum":
        scaling = _secure_sum_scaling(task, [out_path / f"site-{i}.{data_format}" for i in range(sites)], seed)
    (out_path / "task.json").write_text(json.dumps({"task": task, "scaling": scaling}, indent=2) + "\n")
    click.echo(f"wrote {sites} site files and task.json under {out}")


def _secure_sum_scaling(task: dict[str, Any], paths: list[Path], seed: int) -> dict[str, Any]:
    """The scaling of the site files by a secure sum of their statistics (`node.scaling`)."""
    import hashlib

    from ml import sitedata
    from node import scaling

    vectors = [scaling.statistics_vector(sitedata.site_statistics(task, path)) for path in paths]
    total = scaling.simulated_secure_sum(vectors, hashlib.sha256(b"fednode scaling").digest(), seed)
    return scaling.scaling_from_sum(total, len(task["features"]), len(paths))


@click.command()
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
    from node.contract import parse_tx, referenced_blobs
    from node.export import locate, read_chain, verify
    from node.store import StoreError

    home_path = Path(home)
    try:
        genesis, _ = locate(home_path, Path(genesis_file) if genesis_file else None)
    except ConfigError as exc:
        raise fail(exc) from None
    report = audit_home(home_path, genesis,
                        lambda b: referenced_blobs(b, lambda raw: parse_tx(raw, genesis.chain_id, genesis.n,
                                                                           genesis.verify)))
    click.echo(report.describe())
    if report.first_error is not None:
        sys.exit(EXIT_FAILED)
    try:
        _echo_consortium_accuracy(genesis, read_chain(report.ledger, genesis))
    except StoreError as exc:
        click.echo(f"consortium accuracy: FAILED: {exc}")
        sys.exit(EXIT_FAILED)
    except (ConfigError, ValueError) as exc:  # e.g. a module model whose file is not beside genesis.json
        click.echo(f"  consortium accuracy: not recomputed: the round contract cannot be replayed here ({exc})")
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


def _echo_consortium_accuracy(genesis: Genesis, chain: ChainView) -> None:
    """Each committed round's consortium accuracy, recomputed from the members' evals on the ledger."""
    names = [m.name for m in genesis.members]
    for record in chain.rounds:
        figures = chain.consortium_accuracy(record.round, names, chain.head_height)
        if figures is None:
            click.echo(f"  round {record.round}: no member's eval on the ledger")
            continue
        click.echo(f"  round {record.round}: consortium accuracy {figures['pooled_accuracy']:.4f} pooled over "
                   f"{figures['held_out_rows']} held-out rows of {figures['sites_reported']} sites, median site "
                   f"{figures['median_site_accuracy']:.4f}")


@click.command()
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
        raise fail(exc) from None
    acc, pooled = card["accuracy"], card["consortium_accuracy"]
    click.echo(f"wrote {path} (round {card['round']}, model {card['model_hash'][:16]}, chain "
               f"{card['chain_id'][:16]}) and its card"
               + (f"; consortium accuracy {pooled['pooled_accuracy']:.4f} ({pooled['sites_reported']} sites, "
                  f"median site {pooled['median_site_accuracy']:.4f})" if pooled else "; no member's eval yet")
               + (f"; held-out accuracy at {acc['site']}: {acc['accuracy']:.4f} ({acc['held_out_rows']} rows)"
                  if acc else ""))
