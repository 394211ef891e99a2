"""The `fednode` command line: the click group, its global flags, and the entry point (`fednode =
node.cli:main`). Every user-facing error is one line on stderr and a non-zero exit code.

The commands live in modules with one job each: `node.cli_operator` (a site's key, the genesis ceremony,
site data, audit and export), `node.cli_node` (start a node, ask its status), `node.cli_local` (testnet,
local cluster, simulation); `node.cli_options` holds what they share. Importing them loads only click, so
`fednode --help` stays fast.
"""

from __future__ import annotations

import logging
import os

import click

from node.cli_local import cluster, simulate, testnet
from node.cli_node import start, status
from node.cli_operator import audit, data, export, genesis, init, show_node_id

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


for command in (testnet, start, status, audit, export, cluster, simulate, init, show_node_id, genesis, data):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="fednode")


if __name__ == "__main__":
    main()
