"""Running a node: `fednode start` (one hospital's daemon until a signal) and `fednode status` (ask it).

`start` is the one place that wires the test-only fault injection (`node.faults`) into a daemon, and only
when the node config asks for it. trio, torch and the daemon are imported inside `start`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli_options import UserError, fail

if TYPE_CHECKING:
    from node.hooks import FaultHooks


def _fault_hooks(behaviour: dict[str, Any]) -> FaultHooks:
    """The test-only misbehaviour a node config asks for (`fednode cluster` writes it); none in production."""
    from node.hooks import NO_FAULTS

    if not behaviour:
        return NO_FAULTS
    from node.faults import Faults

    return Faults(behaviour)


def _single_threaded_blas() -> None:
    """numpy's OpenBLAS in one thread, as torch is (`configure_torch`). With two threads, every float dot
    product or norm over a million coordinates (clipping, quantizing, the unmasked sum's bound check) leaves
    OpenBLAS's helper thread spinning for new work: about 0.12 s of CPU per call on this 2-core machine, taken
    from the node's own rounds and its neighbours', for a pass that takes 0.3 ms in one thread. One thread
    also sums in one fixed order, whatever the machine's core count."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


@click.command()
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
        raise fail(exc) from None

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
        _single_threaded_blas()
        learner.train(plan.initial_model(), 0)  # warm torch up now (seconds), not in the first round
        store = Store.open(cfg.db_path, genesis.chain_id)
    except (ConfigError, StoreError, mldata.DataError) as exc:
        raise fail(exc) from None
    try:
        daemon = Daemon(cfg, genesis, ident, store, plan, learner, hooks)
        trio.run(run_until_signalled, daemon)
    except (ConfigError, ListenError) as exc:
        raise fail(exc) from None
    finally:
        store.close()


@click.command()
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
        raise fail(exc) from None
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
