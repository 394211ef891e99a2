"""What the command modules share: the one-line user error, the exit codes, and the dataset, split and
fault options of `fednode testnet` and `fednode cluster` with the testnet they describe.

Only click is imported at module level: `fednode --help` loads this module and must stay fast, so the
choices that come from heavy modules are loaded on first use (`LazyChoice`) and ml is imported inside
the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

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


def fail(exc: Exception) -> UserError:
    return UserError(str(exc))


def dataset_options(func: Any) -> Any:
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
        click.option("--rule", "rule_text", default="", metavar="KEY=VALUE,...",
                     help="Change the robust rule in genesis, e.g. clip_factor=1,norm_ratio=0,distance_ratio=2.5 "
                          "(a per-round norm bound B; docs/validation.md, 'The robust rule')."),
        click.option("--malicious", type=click.IntRange(0, 64), default=0, show_default=True,
                     help="Make the last K hospitals malicious (fault injection for evaluations and tests)."),
        click.option("--malicious-members", metavar="I,J,...",
                     help="Which members are malicious instead of the last K (member 0 is the first primary); "
                          "sets K."),
        click.option("--attack", default="sign-flip", show_default=True,
                     help="What malicious hospitals do: sign-flip, scaling, gaussian, label-flip, backdoor, "
                          "backdoor-median, backdoor-diluted, alie, min-max, rule-aware, or plugin:PATH.py:FUNC "
                          "(FUNC(update, ctx) -> vector)."),
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


def malicious_members(kw: dict[str, Any], nodes: int) -> tuple[int, ...]:
    """The malicious members: --malicious-members if given, else the last --malicious K."""
    text = kw.get("malicious_members")
    if text is None:
        if kw["malicious"] > nodes:
            raise UserError(f"--malicious {kw['malicious']} exceeds --nodes {nodes}")
        return tuple(range(nodes - kw["malicious"], nodes))
    try:
        members = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--malicious-members {text!r}: expected member indices like 0,2") from None
    if len(set(members)) != len(members) or any(not 0 <= i < nodes for i in members):
        raise UserError(f"--malicious-members {text!r}: expected distinct indices in 0..{nodes - 1}")
    if kw["malicious"] not in (0, len(members)):
        raise UserError(f"--malicious {kw['malicious']} contradicts --malicious-members {text!r}")
    return tuple(sorted(members))


def make_testnet(out: Path, nodes: int, rounds: int, seed: int, kw: dict[str, Any],
                  protocol: dict[str, Any] | None = None, crash_rounds: dict[int | None, int] | None = None,
                  **layout: Any) -> list[Path]:
    from ml import data as mldata
    from ml.attacks import AttackError, make_attack
    from ml.robust import RobustRule, rule_changes
    from node.config import ConfigError
    from node.testnet import create_testnet

    dataset, split, training = _specs(kw, seed)
    malicious = malicious_members(kw, nodes)
    try:
        rule = rule_changes(kw["rule_text"])
        RobustRule(**rule)
    except ValueError as exc:
        raise UserError(f"--rule {kw['rule_text']!r}: {exc}") from None
    try:
        make_attack(kw["attack"])
    except AttackError as exc:
        raise fail(exc) from None
    behaviour: dict[str, Any] = {"attack": kw["attack"], "n_malicious": len(malicious)}
    if kw["shell_faults"]:
        behaviour = {"shell_faults": list(kw["shell_faults"])}
    if kw["validator_fault"] != "none":
        behaviour["validator"] = kw["validator_fault"]
    if kw["consensus_fault"] != "none":
        behaviour["consensus_fault"] = kw["consensus_fault"]
    behaviours: dict[int, dict[str, Any]] = {i: dict(behaviour) for i in malicious}
    for node, round_id in (crash_rounds or {}).items():
        assert node is not None, "parse_fault gives crash faults a member index"
        behaviours.setdefault(node, {})["crash_after_input_round"] = round_id
    try:
        return create_testnet(out, nodes, rounds=rounds, seed=seed, dataset=dataset, split=split,
                              model_kind=kw["model_kind"], hidden=kw["hidden"], training=training,
                              protocol=protocol, secure=not kw["plain"], validate=not kw["no_validation"],
                              behaviours=behaviours, hosts=layout.get("layout"), rule=rule,
                              base_port=layout.get("base_port", 26656), data_format=layout.get("data_format", "csv"))
    except (ConfigError, mldata.DataError, ValueError, OSError) as exc:
        raise fail(exc) from None

