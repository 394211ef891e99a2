"""The consortium's accuracy of a round, from its members' `eval` transactions on the ledger.

Pure: the same committed evals give the same figures wherever they are computed (`/status`, `fednode
cluster`, the model card of `fednode export`, and `fednode audit`, which recomputes the card's from the
ledger). Each eval is one site's (correct, total) on its own held-out rows; nothing else is shared.

`pooled_accuracy` is sum(correct) / sum(total): every held-out row of every reporting site counts once, as
if the sites' rows formed one test set. A Byzantine member can lie about its own counts; the contract fixes
its rows at its first eval, but within that a lie moves the pooled figure by up to its share of the rows.
`median_site_accuracy`, the median of the sites' own accuracies, moves by at most one rank per liar, so with
f liars among more than 2f reporting sites it lies between honest sites' accuracies: report both, and the
per-site figures, and read a gap between them as a sign to look at the sites.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def consortium_accuracy(evals: Mapping[int, tuple[int, int]], names: Sequence[str] | None) -> dict[str, Any] | None:
    """The pooled and median accuracy of one round's evals (member -> (correct, total)); None without any."""
    if not evals:
        return None
    members = sorted(evals)
    correct = sum(evals[m][0] for m in members)
    total = sum(evals[m][1] for m in members)
    return {
        "pooled_accuracy": correct / total,
        "median_site_accuracy": statistics.median(evals[m][0] / evals[m][1] for m in members),
        "sites_reported": len(members),
        "correct": correct,
        "held_out_rows": total,
        "sites": [{"member": m, **({"site": names[m]} if names is not None and m < len(names) else {}),
                   "correct": evals[m][0], "held_out_rows": evals[m][1], "accuracy": evals[m][0] / evals[m][1]}
                  for m in members],
    }
