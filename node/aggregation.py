"""A round's new global model from its inputs, and a validated round's accepted set, computed once.

Owns the cache of aggregates (round, global model, included inputs) -> new model hash, shared by the
primary proposing a `result`, a replica checking one, and the precomputation that starts when the
unmask phase begins. May read the content caches, this node's secure rounds, the phase timings and the
store (evidence of a failed linear identity); it never touches the network (missing inputs are fetched
through the content's `fetch` callback).
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np
import trio

from consensus import codec
from node import contract as rc
from node.content import IN_FLIGHT_WAIT_S, Content
from node.secure_round import LinearIdentityFailed, ValidationOutcome, apply_sum, decide_accepted
from node.secure_rounds import SecureRounds
from node.settings import RoundSettings
from node.store import Store
from node.timings import Timings
from smpc.errors import InconsistentShares, MissingMessages, NotEnoughShares, RoundAborted
from smpc.quantize import QuantParams

logger = logging.getLogger("fednode")

MAX_AGGREGATES = 8

AggregateKey = tuple[int, bytes, tuple[tuple[int, bytes, int], ...]]


class Aggregator:
    """Sums the inputs a block names (plaintext or unmasked) and applies them to the global model."""

    def __init__(self, settings: RoundSettings, quant: QuantParams, content: Content, secure: SecureRounds,
                 timings: Timings, store: Store) -> None:
        self.settings, self.quant, self.content, self.secure = settings, quant, content, secure
        self.timings, self.store = timings, store
        self.aggregated: dict[AggregateKey, bytes] = {}
        """AggregateCheck (round, global model, included) -> the new model's hash, for the last few rounds."""

    async def aggregate(self, check: rc.AggregateCheck, wait_s: float) -> bytes | None:
        """Compute the round's new global model from its inputs; remember it; return its hash (computed once
        per check: the primary proposing, a replica checking and `precompute` share it)."""
        key = (check.round, check.global_model_hash, check.included)
        if (known := self._known(key)) is not None:
            return known
        global_vec = await self.content.model(check.global_model_hash)
        if self.settings.contract.secure:
            total = await self._secure_sum(check, wait_s)
        else:
            total = await self._plain_sum(check)
        if total is None:
            return None
        if (known := self._known(key)) is not None:
            return known  # another caller (the precomputation, a proposal, a block check) finished it meanwhile
        try:
            new_vec = apply_sum(global_vec, total)
        except ValueError:
            return None
        self.aggregated[key] = digest = self.content.remember_model(new_vec)
        while len(self.aggregated) > MAX_AGGREGATES:
            del self.aggregated[next(iter(self.aggregated))]
        return digest

    def _known(self, key: AggregateKey) -> bytes | None:
        """The new model's hash if this aggregate was computed and the model is still held."""
        known = self.aggregated.get(key)
        return known if known is not None and known in self.content.models else None

    async def precompute(self, check: rc.AggregateCheck) -> None:
        """The unmask phase began (the survivors are fixed): unmask as soon as the reveals are in, so that
        when the primary's `result` arrives this replica votes at once instead of unmasking only then."""
        await self.aggregate(check, wait_s=self.settings.phase_deadline_s)

    async def _plain_sum(self, check: rc.AggregateCheck) -> np.ndarray | None:
        """The float64 sum of the included update vectors, added one by one in ledger order (the order fixes
        the rounding, so every node gets the same bits; no N x L float64 matrix is ever built)."""
        total: np.ndarray | None = None
        for _author, digest, _n in check.included:
            vec = await self.content.update_vector(digest)
            if vec is None:
                return None
            if total is None:
                total = vec.astype(np.float64)
            else:
                np.add(total, vec, out=total)
        return total

    async def _secure_sum(self, check: rc.AggregateCheck, wait_s: float) -> np.ndarray | None:
        """Unmask the survivors' sum (with `check.excised`, the sum over S \\ L of an excise phase): wait for reveals,
        fetch missing masked inputs, give up after wait_s."""
        sr = self.secure.get(check.round)
        if sr is None:
            return None
        deadline = time.monotonic() + wait_s
        while True:
            if self.secure.get(check.round) is not sr:
                return None  # the round ended (committed or aborted) while we waited
            phase = "excise" if check.excised else "unmask"
            late = self.timings.phase_elapsed_s(check.round, phase) > self.settings.unmask_grace_s
            try:
                # On this task: the machine is not thread-safe. A check's reveals are the ledger's as of its tx.
                if check.excised:
                    total = sr.try_excised_sum(late, check.reveals, check.excise_reveals)
                else:
                    total = sr.try_sum(late and (check.reveals is not None or sr.enough_reveals), check.reveals)
            except MissingMessages as exc:
                await self._recover_masked(check, exc.missing)
                total = None
            except RoundAborted as exc:
                logger.warning("round %d: cannot unmask: %s", check.round, exc)
                if isinstance(exc, LinearIdentityFailed):
                    self.store.put_sync(b"evidence/identity/%d" % check.round,
                                        codec.encode(["linear_identity", check.round, str(exc)]))
                return None
            if total is not None:
                return total
            if time.monotonic() > deadline:
                return None
            await trio.sleep(0.05)

    async def _recover_masked(self, check: rc.AggregateCheck, missing: frozenset[int]) -> None:
        """Feed the round the masked inputs it misses: held here, or (once no longer in flight) from peers."""
        in_flight = self.timings.phase_elapsed_s(check.round, "unmask") < IN_FLIGHT_WAIT_S
        for author, digest, _ in check.included:
            if author + 1 not in missing:
                continue
            data = self.content.masked.get(digest)
            if not data and not in_flight:
                data = await self.content.fetch("get_masked", digest,
                                                functools.partial(self.secure.masked_digest, check.round))
            if data:
                self.secure.accept_secagg(check.round, data)  # again if it came before its phase here

    async def failure(self, check: rc.FailureCheck) -> tuple[bool, int | None, bytes] | None:
        """What our own unmasking of the round's S failed, as a `fail` names it: (weight failed, b*, base scalars);
        None if it succeeded or could not finish in a phase deadline (waiting as for a `result`)."""
        sr = self.secure.get(check.round)
        if sr is None:
            return None
        await self._secure_sum(rc.AggregateCheck(check.round, check.global_model_hash, check.included, b"",
                                                 check.reveals), self.settings.phase_deadline_s)
        return sr.failure_fields()

    def known_failure(self, round_id: int) -> tuple[bool, int | None, bytes] | None:
        """The failure our unmasking of `round_id` already found (the primary's `fail`), None if none yet."""
        sr = self.secure.get(round_id)
        return None if sr is None else sr.failure_fields()

    def validation_outcome(self, check: rc.ValidationCheck) -> ValidationOutcome | None:
        assert self.settings.validation is not None
        try:
            return decide_accepted(check, self.settings.validation, self.quant)
        except (NotEnoughShares, InconsistentShares, ValueError) as exc:
            logger.warning("validation statistics cannot be reconstructed: %s", exc)
            return None
