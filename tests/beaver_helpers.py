"""Test helpers for `smpc.beaver`: a consortium's sketches, shares and one preprocessing attempt, honest by default."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from smpc import beaver, field, przs
from smpc.field import FieldArray
from smpc.prg import SeededRandomBytes
from smpc.validation import SketchParams, local_statistics, share_sketch, statistic_pairs
from tests.smpc_helpers import zero_shares


class Consortium:
    """N members 0..N-1, each an owner (label h + 1) and a holder (share id h + 1), with t = f."""

    def __init__(self, n: int, f: int, width: int, seed: int) -> None:
        self.n, self.f, self.degree, self.seed = n, f, f, seed
        self.members = list(range(n))
        self.ids = [h + 1 for h in self.members]
        self.rand = SeededRandomBytes.from_int(seed)
        self.params = SketchParams.for_clip(1.0, width)
        gen = np.random.default_rng(seed)
        bound = int(self.params.max_norm_fixed / np.sqrt(width))
        self.sketches = {h + 1: gen.integers(-bound, bound, width) for h in self.members}
        dealt = {owner: share_sketch(s, self.degree, self.ids, self.rand) for owner, s in self.sketches.items()}
        self.held = {h: {owner: dealt[owner][h + 1] for owner in self.ids} for h in self.members}
        self.layout = beaver.Layout(tuple(self.ids), width)
        self.attempt = beaver.Attempt(b"chain", 7, 0)
        self.contributions = {d: {a: self.rand(przs.KEY_BYTES) for a in przs.dealt_subsets(self.members, f, d)}
                              for d in self.members}
        self.commitments = {d: {a: beaver.contribution_commitment(self.attempt, a, d, c) for a, c in by.items()}
                            for d, by in self.contributions.items()}
        self.randomness = {h: beaver.holder_randomness(self.keys(h), h, self.layout, self.degree) for h in self.members}

    def keys(self, holder: int) -> beaver.Keys:
        """What `holder` derives from its own contributions and those the others sent it."""
        view = {d: {a: c for a, c in by.items() if holder not in a} for d, by in self.contributions.items()}
        return beaver.holder_keys(self.attempt, self.members, self.degree, holder, view)

    def preprocessing(self) -> dict[int, FieldArray]:
        return {h + 1: beaver.preprocessing_share(self.randomness[h], self.layout) for h in self.members}

    def opened(self) -> FieldArray:
        return beaver.open_preprocessing(self.preprocessing(), self.layout, self.degree, self.f)

    def differences(self) -> dict[int, FieldArray]:
        return {h + 1: beaver.difference_share(self.held[h], self.randomness[h], self.layout) for h in self.members}

    def decoded(self, published: Mapping[int, FieldArray] | None = None) -> beaver.Differences:
        return beaver.decode_differences(self.differences() if published is None else published, self.layout,
                                         self.degree, self.f)

    def statistic_shares(self, differences: Mapping[int, FieldArray] | None = None) -> dict[int, FieldArray]:
        d = self.decoded().values if differences is None else differences
        opened = self.opened()
        return {h + 1: beaver.statistic_share(d, self.randomness[h], opened, self.layout) for h in self.members}

    def today(self) -> dict[int, FieldArray]:
        """Today's degree-2t publications (`local_statistics` with a PRZS zero share) on the same sketch shares."""
        zeros = zero_shares(self.members, self.degree, len(statistic_pairs(self.ids)), self.rand)
        return {h + 1: local_statistics(self.held[h], zeros[h]) for h in self.members}

    def reveals(self, silent: frozenset[int] = frozenset()) -> list[tuple[int, przs.Subset, bytes]]:
        """Every member but the silent reveals its own contributions and every one it received."""
        return [(d, a, c) for d, by in self.contributions.items() for a, c in by.items()
                for revealer in self.members if revealer not in silent and (revealer == d or revealer not in a)]


def forged(vector: FieldArray) -> FieldArray:
    """node/faults.py forge-stats: + 2^40 on every element."""
    return field.add(vector, np.uint64(1 << 40))
