"""Centralized vs simulated federated accuracy on the same held-out test split.

Prints the accuracy of the model trained on all training rows pooled (the reference the consortium
is compared with) and of plain in-process FedAvg (``ml.simulation``) over N simulated hospitals with
IID and Dirichlet non-IID splits, for each data seed, plus the wall time of one node's local
training in one round. ``--json`` prints one JSON object instead.

    python scripts/centralized_baseline.py [--dataset breast_cancer|lung] [--model logreg|mlp]
        [--nodes 4] [--rounds 5] [--alpha 0.5] [--seeds 0,1,2] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.data import DatasetSpec, SplitSpec, centralized_data, load_dataset
from ml.models import ModelSpec
from ml.params import initial_params
from ml.simulation import SimulationConfig, simulate
from ml.train import TrainConfig, evaluate, local_train

CENTRALIZED_EPOCHS = 50


def centralized_accuracy(dataset: DatasetSpec, model: ModelSpec, training: TrainConfig, seed: int) -> float:
    """Test accuracy after ``CENTRALIZED_EPOCHS`` epochs on the pooled training rows, with the
    consortium's optimizer settings (enough epochs to converge on these small tables)."""
    pooled = centralized_data(dataset)
    start = initial_params(model, seed)
    cfg = dataclasses.replace(training, epochs=CENTRALIZED_EPOCHS)
    update = local_train(model, start, pooled.X_train, pooled.y_train, cfg, seed).update
    return evaluate(model, start + update, pooled.X_test, pooled.y_test).accuracy


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure the script reports, per seed and averaged."""
    splits = {"iid": SplitSpec(), "dirichlet": SplitSpec(kind="dirichlet", alpha=args.alpha)}
    rows: dict[str, list[float]] = {"centralized": [], **{name: [] for name in splits}}
    train_ms: list[float] = []
    for seed in args.seeds:
        dataset = DatasetSpec(name=args.dataset, seed=seed)
        data = load_dataset(dataset)
        model = ModelSpec(kind=args.model, n_features=data.X.shape[1], n_classes=data.n_classes)
        rows["centralized"].append(centralized_accuracy(dataset, model, TrainConfig(), seed))
        for name, split in splits.items():
            result = simulate(SimulationConfig(dataset=dataset, split=split, model=model, n_nodes=args.nodes,
                                               rounds=args.rounds, seed=seed))
            rows[name].append(result.accuracy)
            train_ms.append(1000 * result.train_s_per_node_round)
    return {
        "dataset": args.dataset,
        "model": args.model,
        "nodes": args.nodes,
        "rounds": args.rounds,
        "alpha": args.alpha,
        "seeds": args.seeds,
        "training": dataclasses.asdict(TrainConfig()),
        "accuracy": rows,
        "mean_accuracy": {name: statistics.fmean(values) for name, values in rows.items()},
        "train_ms_per_node_round": statistics.fmean(train_ms),
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"dataset={report['dataset']} model={report['model']} nodes={report['nodes']} "
          f"rounds={report['rounds']} dirichlet alpha={report['alpha']} training={report['training']}")
    accuracy = report["accuracy"]
    print(f"{'setting':<22}" + "".join(f"seed {s:<4}" for s in report["seeds"]) + "mean")
    labels = {"centralized": "centralized", "iid": "federated IID", "dirichlet": "federated Dirichlet"}
    for name, values in accuracy.items():
        print(f"{labels[name]:<22}" + "".join(f"{v:<9.4f}" for v in values) + f"{statistics.fmean(values):.4f}")
    print(f"local training: {report['train_ms_per_node_round']:.1f} ms per node per round")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="breast_cancer", choices=["breast_cancer", "lung"])
    parser.add_argument("--model", default="logreg", choices=["logreg", "mlp"])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = measure(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
