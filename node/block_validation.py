"""Block validation: whether this replica votes for a proposed block.

Owns no state. A block gets our vote only if every transaction is valid under the round contract, no
phase ends before its deadline as this node saw it, and every result in it (a new global model, a
validated round's accepted set) is what we compute ourselves. May call the round contract, the
aggregator and the phase timings; it never touches the network or the replica (the daemon passes the
verdict on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consensus.block import Block
from node import contract as rc
from node.aggregation import Aggregator
from node.settings import WINDOW_SLACK, WINDOWS, RoundSettings
from node.status import Metrics
from node.timings import Timings

logger = logging.getLogger("fednode")


class BlockValidator:
    """Checks a proposed block against the contract and against our own recomputation of its results."""

    def __init__(self, contract: rc.Contract, settings: RoundSettings, aggregator: Aggregator, timings: Timings,
                 metrics: Metrics, head_height: Callable[[], int]) -> None:
        self.contract, self.settings, self.aggregator = contract, settings, aggregator
        self.timings, self.metrics, self.head_height = timings, metrics, head_height

    async def validate(self, block: Block) -> bool | None:
        """Our verdict on `block`, None if it is not the next block (no vote then); the time goes to
        phase_s["validation"]."""
        if block.height != self.head_height() + 1:
            logger.debug("not validating block %d at head %d", block.height, self.head_height())
            return None
        started = time.monotonic()
        ok = await self.block_ok(block)
        elapsed = time.monotonic() - started
        self.timings.phase_s["validation"] += elapsed
        logger.debug("block %d from %d validated in %.3fs: %s", block.height, block.proposer, elapsed, ok)
        return ok

    async def block_ok(self, block: Block) -> bool:
        """Vote only for blocks whose every transaction is valid and whose results we reproduce."""
        try:
            checks = self.contract.check_block(block)
        except rc.TxError as exc:
            logger.warning("block %d from %d rejected: %s", block.height, block.proposer, exc)
            return False
        for check in checks:
            if isinstance(check, rc.DeadlineCheck):
                ok = self._deadline_ok(block, check)
            elif isinstance(check, rc.WindowCheck):
                ok = self._window_ok(block, check)
            elif isinstance(check, rc.ValidationCheck):
                ok = self._validation_ok(block, check)
            elif isinstance(check, rc.FailureCheck):
                ok = await self._failure_ok(block, check)
            elif isinstance(check, rc.UnmaskAbortCheck):
                ok = await self._unmask_abort_ok(block, check)
            else:
                ok = await self._aggregate_ok(block, check)
            if not ok:
                return False
        return True

    def _deadline_ok(self, block: Block, check: rc.DeadlineCheck) -> bool:
        """The phase (and, after answers, the round's last answer) must be older on our clock than 0.8 of what
        the primary waits: the primary's clock may have started a little before ours."""
        deadline_s = self.settings.phase_deadline_s
        if self.timings.phase_elapsed_s(check.round, check.phase) < 0.8 * check.deadlines * deadline_s:
            logger.warning("block %d ends phase %s of round %d before its deadline", block.height, check.phase,
                           check.round)
            return False
        if check.after_answer and \
                self.timings.phase_elapsed_s(check.round, "answered") < 0.8 * check.after_answer * deadline_s:
            logger.warning("block %d ends phase %s of round %d too soon after its last answer", block.height,
                           check.phase, check.round)
            return False
        return True

    def _window_ok(self, block: Block, check: rc.WindowCheck) -> bool:
        """A complaint (answer) late in the validate phase would leave its dealer (holder) no time to answer
        (disclose a bad answer) before an abort names it: refused past its window (`node.settings.WINDOWS`)."""
        limit = (WINDOWS[check.kind] + WINDOW_SLACK) * self.settings.phase_deadline_s
        if self.timings.phase_elapsed_s(check.round, "validate") > limit:
            logger.warning("block %d carries a %s past its window in round %d", block.height, check.kind,
                           check.round)
            return False
        return True

    def _validation_ok(self, block: Block, check: rc.ValidationCheck) -> bool:
        outcome = self.aggregator.validation_outcome(check)
        for holder in outcome.statistics.inconsistent_publishers if outcome is not None else ():
            self.metrics.rejected.labels("wrong_statistic_shares").inc()
            logger.warning("round %d: member %d published statistic shares inconsistent with the others "
                           "(corrected; evidence in block %d)", check.round, holder - 1, block.height)
        if check.accepted is None:
            if outcome is not None and len(outcome.accepted) >= self.contract.min_members:
                logger.warning("block %d aborts round %d, whose statistics we reconstruct", block.height,
                               check.round)
                return False
        elif outcome is None or not outcome.agrees(check):
            logger.warning("block %d: accepted set %s with inconsistent publishers %s and next bound %d does not "
                           "match ours", block.height, check.accepted, check.liars, check.next_clip_bound_micro)
            return False
        return True

    async def _failure_ok(self, block: Block, check: rc.FailureCheck) -> bool:
        """A `fail` must name the failure our own unmasking found, with the same base scalars of S's members (the
        contract computes the verdict from them)."""
        ours = await self.aggregator.failure(check)
        if ours is None or ours != (check.weight, check.coordinate, check.bases):
            logger.warning("block %d: round %d fail does not match ours (%s)", block.height, check.round,
                           None if ours is None else ours[:2])
            return False
        return True

    async def _unmask_abort_ok(self, block: Block, check: rc.UnmaskAbortCheck) -> bool:
        """An abort of the unmask phase only if our own unmasking (waiting as for a `result`) has neither a result
        nor a failure: a primary holding back a due `result` or `fail` gets no vote for it. Of an excise phase, only
        if our own excision has no result."""
        aggregate = rc.AggregateCheck(check.round, check.global_model_hash, check.included, b"", check.reveals,
                                      check.excised, check.excise_reveals)
        result = await self.aggregator.aggregate(aggregate, wait_s=self.settings.phase_deadline_s)
        # An excise phase's abort: our excision has no result (its S failed before; no `fail` ends an excise phase).
        failure = None if check.excised else self.aggregator.known_failure(check.round)
        if result is not None or failure is not None:
            logger.warning("block %d aborts round %d's unmask phase, for which we have %s", block.height,
                           check.round, "a result" if result is not None else f"the failure {failure[:2]}")
            return False
        return True

    async def _aggregate_ok(self, block: Block, check: rc.AggregateCheck) -> bool:
        if await self.aggregator.aggregate(check, wait_s=self.settings.phase_deadline_s) != check.new_model_hash:
            logger.warning("block %d: round %d aggregate does not match ours", block.height, check.round)
            return False
        return True
