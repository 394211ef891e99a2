"""Poisoning attacks against plain FedAvg, secure aggregation alone, and fednode with validation on shares.

For each attack, N in {7, 10} (f = 2, 3) and 0 or f malicious nodes (the last f indices), trains
logistic regression on breast cancer for a few rounds under three aggregations and reports the final
test accuracy (and the backdoor success rate):

- ``fedavg``: plain FedAvg of the raw updates, weighted by sample count (no clipping, no rule);
- ``secagg``: the real secure round without validation (node/secure_round.py): every node submits
  ``Weighting.vector`` (clipped, weighted, quantized), the masked sum is unmasked and applied with
  ``apply_sum``, i.e. FedAvg of clipped weighted updates; nothing can be rejected;
- ``fednode``: the real secure round with validation: count-sketch shares, statistics computed on
  shares and published, ``decide_accepted`` with the default genesis rule (``RobustRule(f=f)``:
  ``norm_direction``; ``--rule median_distance`` measures the previous default, factor 2), then
  the sum of the accepted updates only.

The protocol runs in one process (`ProtocolRound`, the same driver as tests/unit/test_secure_round.py):
contract + SecureRound per node, blocks built by hand, every message delivered. Each round is its own
one-round contract (the ledger's chaining of rounds is not what is measured here), which starts from the
previous rounds' count of rejections per member, as the ledger's would (the rule ranks flagged members by
it). Malicious nodes act
as in the daemon: ``ml.attacks.malicious_train`` with an attacker that estimates benign statistics
from its own rows (not omniscient; ``n_malicious`` = f colluders), then the honest weighting. It also reports the false-rejection
rate of honest updates (0 malicious) under IID and Dirichlet(alpha) splits.

    python scripts/evaluate_attacks.py [--seeds 0,1,2] [--rounds 8] [--nodes 7,10] [--jobs 2] [--quick]
        [--write-docs]  # also writes docs/attacks.md and docs/attacks.png
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import hashlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.block import Block
from ml.attacks import Attack, AttackContext, Backdoor, NoAttack, backdoor_success_rate, make_attack, malicious_train
from ml.data import DatasetSpec, LocalData, SplitSpec, node_data
from ml.models import ModelSpec
from ml.params import initial_params
from ml.robust import RULE_KINDS, RobustRule
from ml.simulation import train_seed
from ml.train import TrainConfig, evaluate, fedavg, local_train
from node import contract as rc
from node.secure_round import (
    SecureRound,
    SendShares,
    SendSketchSum,
    SubmitTx,
    ValidationSetup,
    Weighting,
    apply_sum,
    decide_accepted,
    quant_params,
)
from smpc.prg import SeededRandomBytes
from smpc.validation import SketchParams

ATTACKS = ("sign-flip", "scaling", "gaussian", "label-flip", "backdoor", "alie", "min-max")
SETTINGS = ("fedavg", "secagg", "fednode")
ROOT = Path(__file__).resolve().parent.parent
CHAIN = hashlib.sha256(b"fednode attack evaluation").digest()

# The daemon's defaults (node/settings.py round_settings, node/testnet.py build_genesis).
CLIP_L2 = 10.0
SAMPLE_CAP = 1000
SKETCH_WIDTH = 1000
VALIDATION_DEGREE = 1
DEFAULT_RULE = RobustRule().kind


def max_faulty(n: int) -> int:
    """f for N = 3f + 1 (PBFT), as genesis sets it."""
    return (n - 1) // 3


class ProtocolRound:
    """One secure round of n nodes in one process: contracts, SecureRounds, hand-built blocks.

    Every output a node emits is delivered at once to every other node, as the daemon's gossip and
    direct streams would, so the round runs the real masking, sketch sharing, statistics on shares,
    accepted-set decision and unmasking; only networking and consensus are replaced by direct calls.
    Node 0 unmasks the sum (every node could; tests/unit/test_secure_round.py checks that they agree).
    """

    def __init__(self, n: int, validate: bool, seed: int, rule_kind: str = DEFAULT_RULE) -> None:
        f = max_faulty(n)
        self.n = n
        self.keys = [SigningKey(hashlib.sha256(b"key %d %d" % (seed, i)).digest()) for i in range(n)]
        self.weighting = Weighting(clip_l2=CLIP_L2, sample_cap=SAMPLE_CAP)
        self.params = rc.ContractParams(CHAIN, n, rounds=1, initial_model_hash=b"\x00" * 32,
                                        min_updates=2 * f + 1, secure=True, degree=n - f - 1,
                                        vector_length=1, validate=validate,
                                        validation_degree=VALIDATION_DEGREE)
        self.setup = ValidationSetup(VALIDATION_DEGREE, SketchParams.for_clip(self.weighting.total_bound, SKETCH_WIDTH),
                                     RobustRule(kind=rule_kind, f=f)) if validate else None
        self.quant = quant_params(self.weighting, n)
        self.seed = seed
        self.rejections: dict[int, int] = {}
        """Rejections per member over the rounds run so far: each round has its own contract, so the
        ledger's count (which the rule uses to rank flagged members) is carried from one to the next."""
        self._verified: dict[tuple[int, bytes, bytes], bool] = {}

    def verify(self, i: int, data: bytes, sig: bytes) -> bool:
        """Ed25519 verification, remembered: the n in-process contracts all check the same signatures."""
        key = (i, data, sig)
        if key not in self._verified:
            try:
                self.keys[i].verify_key.verify(data, sig)
                self._verified[key] = True
            except Exception:  # noqa: BLE001 - a reference verifier treats every failure as invalid
                self._verified[key] = False
        return self._verified[key]

    def sign(self, i: int):  # type: ignore[no-untyped-def]
        return lambda data: self.keys[i].sign(data).signature

    def run(self, vectors: Sequence[np.ndarray], round_id: int) -> tuple[np.ndarray | None, tuple[int, ...]]:
        """The unmasked sum of the accepted weighted vectors (None: the round aborts), and the rejected indices.

        Like the daemon's primary, the round aborts when the rule accepts fewer than the contract's
        minimum (max(min_updates, t+1)); the global model then stays as it was.
        """
        params = dataclasses.replace(self.params, vector_length=len(vectors[0]))
        state = _RoundState(self, params, round_id)
        state.commit(state.tx("open", [b"\x00" * 32, list(range(self.n))]))
        state.commit(state.tx("close", ["keys"]))
        state.commit(state.tx("close", ["shares"]))
        for i in range(self.n):
            state.emit(i, state.rounds[i].set_update(vectors[i]))
        state.commit(state.tx("close", ["inputs"]))
        rejected: tuple[int, ...] = ()
        if self.setup is not None:
            state.commit(state.tx("close", ["seed"]))
            state.commit(state.tx("close", ["sketch"]))
            contract = state.contracts[0]
            state.commit()
            outcome = decide_accepted(contract.validation_check(None), self.setup, self.quant)
            rejected = tuple(sorted(outcome.rejected))
            if len(outcome.accepted) < contract.min_members:
                return None, rejected
            state.commit(state.tx("accept", [list(outcome.accepted)]))
            self.rejections = dict(contract.state.rejections)
        self._verified.clear()
        total = state.rounds[0].try_sum(deadline_passed=False)
        assert total is not None, "every node is alive and honest as a protocol party: node 0 must unmask"
        return total, rejected


class _RoundState:
    """The mutable part of one round: contracts, SecureRounds, mempool and block height."""

    def __init__(self, owner: ProtocolRound, params: rc.ContractParams, round_id: int) -> None:
        self.owner, self.params, self.round_id = owner, params, round_id
        self.contracts = [rc.Contract(params, owner.verify) for _ in range(owner.n)]
        for contract in self.contracts:
            contract.state.rejections = dict(owner.rejections)
        self.rounds: dict[int, SecureRound] = {}
        self.mempool: list[bytes] = []
        self.height = 0

    def tx(self, kind: str, fields: list[object]) -> bytes:
        return rc.make_tx(CHAIN, kind, 0, 1, fields, self.owner.sign(0))

    def emit(self, sender: int, outputs: list) -> None:  # type: ignore[type-arg]
        for out in outputs:
            if isinstance(out, SendShares):
                self.emit(out.to, self.rounds[out.to].on_sketch_shares(sender, out.payload))
            elif isinstance(out, SubmitTx):
                self.mempool.append(out.raw)
            elif isinstance(out, SendSketchSum):
                for j in set(range(self.owner.n)) - {sender}:
                    self.rounds[j].on_sketch_sum(sender, out.payload)
            else:
                for j in set(range(self.owner.n)) - {sender}:
                    self.rounds[j].on_message(self.rounds[j].decode(out.message))

    def commit(self, *extra: bytes) -> None:
        contract = self.contracts[0]
        txs = [raw for raw in self.mempool if contract.tx_valid_now(contract.parse(raw))] + list(extra)
        self.mempool = [raw for raw in self.mempool if raw not in txs]
        self.height += 1
        block = Block(CHAIN, self.height, CHAIN, 0, 0, tuple(txs))
        contract.check_block(block)
        for i in range(self.owner.n):
            for event in self.contracts[i].apply_block(block):
                self.on_event(i, event)

    def on_event(self, i: int, event: rc.Event) -> None:
        if isinstance(event, rc.RoundOpened):
            rand = SeededRandomBytes(hashlib.sha256(b"rand %d %d %d" % (self.owner.seed, self.round_id, i)).digest())
            self.rounds[i] = SecureRound(self.params, event, i, self.owner.sign(i), self.owner.verify, rand,
                                         self.owner.quant, self.owner.setup)
            self.emit(i, self.rounds[i].start())
        elif isinstance(event, rc.SecAggCommitted):
            self.rounds[i].on_committed(event)
        elif isinstance(event, rc.PhaseClosed):
            self.emit(i, self.rounds[i].on_phase_closed(event))


@dataclass(frozen=True, slots=True)
class Scenario:
    """One federation: N nodes, the attack of its last f nodes ("none": all honest), split and seed."""

    n: int
    attack: str
    split: str
    seed: int
    rounds: int
    alpha: float = 0.5
    rule: str = DEFAULT_RULE

    @property
    def malicious(self) -> tuple[int, ...]:
        f = max_faulty(self.n)
        return () if self.attack == "none" else tuple(range(self.n - f, self.n))


@dataclass(slots=True)
class RunResult:
    """Final accuracy, backdoor success rate of the default trigger, and rejection counts over all rounds."""

    accuracy: float
    backdoor_rate: float
    honest_rejected: int = 0
    honest_total: int = 0
    malicious_rejected: int = 0
    malicious_total: int = 0
    aborted: int = 0
    rejected_per_round: list[tuple[int, ...]] = field(default_factory=list)


def run(scenario: Scenario, setting: str) -> RunResult:
    """Train `scenario.rounds` rounds with aggregation `setting` and evaluate on the shared test split."""
    dataset = DatasetSpec(seed=scenario.seed)
    split = SplitSpec(kind=scenario.split, alpha=scenario.alpha)
    nodes = [node_data(dataset, split, scenario.n, i) for i in range(scenario.n)]
    model = ModelSpec(n_features=nodes[0].X_train.shape[1], n_classes=2)
    training = TrainConfig()
    attack: Attack = NoAttack() if scenario.attack == "none" else make_attack(scenario.attack)
    protocol = ProtocolRound(scenario.n, setting == "fednode", scenario.seed, scenario.rule) if setting != "fedavg" else None
    global_vec = initial_params(model, scenario.seed)
    result = RunResult(0.0, 0.0)
    for round_id in range(1, scenario.rounds + 1):
        updates = [_update(scenario, attack, model, training, nodes[i], global_vec, round_id, i)
                   for i in range(scenario.n)]
        samples = [len(local.y_train) for local in nodes]
        if protocol is None:
            global_vec = fedavg(global_vec, updates, [float(s) for s in samples])
            rejected: tuple[int, ...] = ()
        else:
            vectors = [protocol.weighting.vector(u, s) for u, s in zip(updates, samples)]
            total, rejected = protocol.run(vectors, round_id)
            if total is None:
                result.aborted += 1
            else:
                global_vec = apply_sum(global_vec, total)
        _count(result, scenario.malicious, scenario.n, rejected)
    test = nodes[0]
    result.accuracy = evaluate(model, global_vec, test.X_test, test.y_test).accuracy
    trigger = attack if isinstance(attack, Backdoor) else Backdoor()
    result.backdoor_rate = backdoor_success_rate(trigger, model, global_vec, test.X_test, test.y_test)
    return result


def _update(scenario: Scenario, attack: Attack, model: ModelSpec, training: TrainConfig, local: LocalData,
            global_vec: np.ndarray, round_id: int, node: int) -> np.ndarray:
    seed = train_seed(scenario.seed, round_id, node)
    if node not in scenario.malicious:
        return local_train(model, global_vec, local.X_train, local.y_train, training, seed).update
    ctx = AttackContext(round=round_id, node_index=node, n_nodes=scenario.n,
                        rng=np.random.default_rng([scenario.seed, round_id, node]), global_params=global_vec,
                        n_malicious=len(scenario.malicious), n_classes=model.n_classes)
    return malicious_train(attack, model, global_vec, local.X_train, local.y_train, training, seed, ctx).update


def _count(result: RunResult, malicious: tuple[int, ...], n: int, rejected: tuple[int, ...]) -> None:
    result.rejected_per_round.append(rejected)
    result.malicious_total += len(malicious)
    result.malicious_rejected += sum(1 for i in rejected if i in malicious)
    result.honest_total += n - len(malicious)
    result.honest_rejected += sum(1 for i in rejected if i not in malicious)


@dataclass(frozen=True, slots=True)
class Grid:
    nodes: tuple[int, ...]
    attacks: tuple[str, ...]
    seeds: tuple[int, ...]
    rounds: int
    alpha: float
    rule: str = DEFAULT_RULE


FULL = Grid(nodes=(7, 10), attacks=ATTACKS, seeds=(0, 1, 2), rounds=8, alpha=0.5)
QUICK = Grid(nodes=(4,), attacks=("sign-flip", "backdoor"), seeds=(0,), rounds=2, alpha=0.5)

Results = dict[tuple[str, int, str, str], list[RunResult]]
"""(split, n, attack, setting) -> one result per seed."""


def evaluate_grid(grid: Grid, jobs: int = 1) -> Results:
    """Every (attack, N, setting) on IID data, plus fednode without attack on Dirichlet data.

    Runs are independent, so `jobs` worker processes share them; every run is seeded, so the results
    do not depend on `jobs`.
    """
    keys = [("iid", n, attack, setting) for n in grid.nodes for attack in ("none", *grid.attacks)
            for setting in SETTINGS]
    keys += [("dirichlet", n, "none", "fednode") for n in grid.nodes]
    tasks = [(key, Scenario(key[1], key[2], key[0], seed, grid.rounds, grid.alpha, grid.rule)) for key in keys
             for seed in grid.seeds]
    results: Results = {key: [] for key in keys}
    began = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        outcomes = pool.map(_run_task, [(scenario, key[3]) for key, scenario in tasks])
        for k, ((key, scenario), result) in enumerate(zip(tasks, outcomes), 1):
            results[key].append(result)
            print(f"[{k}/{len(tasks)} {time.monotonic() - began:6.1f}s] {key[0]} N={key[1]} {key[2]} {key[3]} "
                  f"seed {scenario.seed}: accuracy {result.accuracy:.3f}, rejected {result.rejected_per_round}",
                  file=sys.stderr, flush=True)
    return results


def _run_task(task: tuple[Scenario, str]) -> RunResult:
    return run(*task)


def _acc(rs: list[RunResult]) -> str:
    accs = [r.accuracy for r in rs]
    return f"{100 * statistics.mean(accs):.1f} ({100 * min(accs):.1f})"


def _bd(rs: list[RunResult]) -> str:
    rates = [r.backdoor_rate for r in rs]
    return f"{100 * statistics.mean(rates):.0f} ({100 * max(rates):.0f})"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "-"


def table(results: Results, grid: Grid) -> str:
    """The markdown tables: accuracy per attack and setting, then the honest false-rejection rate."""
    lines = [("| attack | N | malicious | FedAvg acc % | SecAgg acc % | fednode acc % | fednode malicious "
              "rejected % | fednode honest rejected % | fednode aborted rounds | backdoor success % FedAvg / SecAgg / "
              "fednode |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in grid.nodes:
        for attack in ("none", *grid.attacks):
            rs = {s: results[("iid", n, attack, s)] for s in SETTINGS}
            node = rs["fednode"]
            mal = _share(sum(r.malicious_rejected for r in node), sum(r.malicious_total for r in node))
            hon = _share(sum(r.honest_rejected for r in node), sum(r.honest_total for r in node))
            bd = " / ".join(_bd(rs[s]) for s in SETTINGS) if attack in ("none", "backdoor") else ""
            count = 0 if attack == "none" else max_faulty(n)
            lines.append(f"| {attack} | {n} | {count} | {_acc(rs['fedavg'])} | {_acc(rs['secagg'])} | "
                         f"{_acc(rs['fednode'])} | {mal} | {hon} | {sum(r.aborted for r in node)} | {bd} |")
    lines += ["", ("| split | N | fednode acc % | honest updates rejected % (mean over seeds, worst seed) | "
                   "aborted rounds |"), "|---|---|---|---|---|"]
    for split, label in (("iid", "IID"), ("dirichlet", f"Dirichlet({grid.alpha})")):
        for n in grid.nodes:
            rs = results[(split, n, "none", "fednode")]
            rates = [r.honest_rejected / r.honest_total for r in rs]
            lines.append(f"| {label} | {n} | {_acc(rs)} | {100 * statistics.mean(rates):.1f} "
                         f"({100 * max(rates):.1f}) | {sum(r.aborted for r in rs)} |")
    return "\n".join(lines)


def plot(results: Results, grid: Grid, path: Path) -> None:
    """Grouped bars of mean final accuracy per attack and setting, one panel per N (dots: worst seed),
    and a last panel with the backdoor success rate per N and setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = ("none", *grid.attacks)
    panels = len(grid.nodes) + ("backdoor" in grid.attacks)
    fig, axes = plt.subplots(panels, 1, figsize=(11, 3.4 * panels), squeeze=False)
    x = np.arange(len(attacks))
    width = 0.27
    for ax, n in zip(axes[:, 0], grid.nodes):
        for k, setting in enumerate(SETTINGS):
            accs = [[r.accuracy for r in results[("iid", n, a, setting)]] for a in attacks]
            ax.bar(x + (k - 1) * width, [100 * statistics.mean(a) for a in accs], width, label=setting)
            ax.plot(x + (k - 1) * width, [100 * min(a) for a in accs], "k.", markersize=4)
        ax.set_xticks(x, [a if a == "none" else f"{a}\n({max_faulty(n)} malicious)" for a in attacks], fontsize=8)
        ax.set_ylabel("final test accuracy %")
        ax.set_ylim(50, 100)
        ax.set_title(f"N = {n}, f = {max_faulty(n)}, breast cancer, logreg, {grid.rounds} rounds, IID")
        ax.legend(loc="lower left", fontsize=8)
    if "backdoor" in grid.attacks:
        ax = axes[-1, 0]
        xn = np.arange(len(grid.nodes))
        for k, setting in enumerate(SETTINGS):
            rates = [statistics.mean(r.backdoor_rate for r in results[("iid", n, "backdoor", setting)])
                     for n in grid.nodes]
            ax.bar(xn + (k - 1) * width, [100 * r for r in rates], width, label=setting)
        ax.set_xticks(xn, [f"N = {n}, {max_faulty(n)} malicious" for n in grid.nodes])
        ax.set_ylabel("backdoor success %")
        ax.set_ylim(0, 100)
        ax.set_title("backdoor: triggered malignant test rows classified benign")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--nodes", default=None, help="comma-separated N values (default 7,10)")
    parser.add_argument("--quick", action="store_true", help="tiny run: N=4, 2 rounds, 1 seed, 2 attacks")
    parser.add_argument("--rule", default=DEFAULT_RULE, choices=RULE_KINDS,
                        help=f"robust rule kind with its default parameters (default {DEFAULT_RULE})")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--write-docs", action="store_true", help="write docs/attacks.md and docs/attacks.png")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    grid = Grid(nodes=tuple(int(v) for v in args.nodes.split(",")) if args.nodes else grid.nodes,
                attacks=grid.attacks,
                seeds=tuple(int(v) for v in args.seeds.split(",")) if args.seeds else grid.seeds,
                rounds=args.rounds or grid.rounds, alpha=grid.alpha, rule=args.rule)
    began = time.monotonic()
    results = evaluate_grid(grid, args.jobs)
    text = table(results, grid)
    print(text)
    if args.write_docs:
        command = "python scripts/evaluate_attacks.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_docs(args.docs_dir, text, grid, command.strip(), time.monotonic() - began)
        plot(results, grid, args.docs_dir / "attacks.png")
    return 0


def write_docs(docs: Path, text: str, grid: Grid, command: str, elapsed_s: float) -> None:
    """docs/attacks.md: how the numbers were made and the tables; an existing "## Reading" section is kept."""
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"# Poisoning attacks: FedAvg vs secure aggregation vs fednode validation\n\n"
              f"Generated by `{command}` on {date} ({elapsed_s:.0f} s). Breast cancer, logistic regression, "
              f"{grid.rounds} rounds, seeds {', '.join(map(str, grid.seeds))}; accuracy is the mean over seeds "
              f"with the worst seed in parentheses (backdoor success: mean, worst seed). The last f node indices "
              f"are malicious; with 0 malicious the attack does not matter, so the `none` row is the clean "
              f"baseline of every attack. Settings: clip_l2 {CLIP_L2}, sample_cap {SAMPLE_CAP}, sketch width "
              f"{SKETCH_WIDTH}, validation degree {VALIDATION_DEGREE}, rule {_rule_text(grid.rule)}, "
              f"secure degree N-f-1 (the daemon's defaults). A fednode round whose rule accepts fewer than "
              f"the contract's minimum (N-f) aborts, as the daemon's primary does, and leaves the model "
              f"unchanged; `aborted` counts those rounds over all seeds. See the script's docstring for what "
              f"each setting runs.\n\n![accuracy per attack](attacks.png)\n\n")
    path = docs / "attacks.md"
    old = path.read_text() if path.exists() else ""
    reading = old[old.index(READING_TITLE):] if READING_TITLE in old else READING_TITLE + "\n\nNot written yet.\n"
    path.write_text(header + text + "\n\n" + reading)


READING_TITLE = "## Reading"


def _rule_text(kind: str) -> str:
    """The rule's kind with the parameters it reads (the ``RobustRule`` defaults)."""
    rule = RobustRule(kind=kind)
    if kind == "median_mad":
        return f"median_mad (min_ratio {rule.min_ratio}, spread_power {rule.spread_power})"
    return f"{kind} (factor {rule.factor})" if kind in ("median_distance", "centroid") else kind


if __name__ == "__main__":
    raise SystemExit(main())
