"""Checkpoints and watermarks: every `checkpoint_interval` heights a signed CHECKPOINT; a quorum of
matching ones is the stable checkpoint (the low watermark); votes are kept only within a window above
our height, so a peer can make us hold at most window/interval of them.

A mixin of `consensus.replica.Replica`.
"""

from __future__ import annotations

from collections import Counter

from consensus import codec
from consensus.actions import KEY_CHECKPOINT, KEY_STABLE, MAX_PROOF_SENDS, Action, Broadcast, Persist, Send
from consensus.messages import (
    Checkpoint,
    encode,
)


class Checkpoints:
    """Checkpoint votes, stability and the proof sent to a peer that missed it."""

    def _make_checkpoint(self, height: int, block_hash: bytes) -> list[Action]:
        checkpoint = self._sign_msg(Checkpoint(height, block_hash, self.index))
        self._my_checkpoint = checkpoint
        self._checkpoint_votes.setdefault(height, {})[self.index] = checkpoint
        actions: list[Action] = [Persist(KEY_CHECKPOINT, encode(checkpoint)), Broadcast(checkpoint)]
        return actions + self._check_stable(height)

    def _on_checkpoint(self, checkpoint: Checkpoint, now_ms: int) -> list[Action]:
        actions = self._note_height(checkpoint.sender, checkpoint.height, now_ms)
        if checkpoint.height <= self._stable[0]:
            return actions + self._forward_stable_proof(checkpoint, now_ms)
        if checkpoint.height > self._checkpoint_ceiling():
            self.stats["checkpoint_above_window"] += 1
            return actions + self._maybe_fetch(now_ms)
        votes = self._checkpoint_votes.setdefault(checkpoint.height, {})
        prior = votes.setdefault(checkpoint.sender, checkpoint)
        if prior.block_hash != checkpoint.block_hash:
            return actions + self._evidence("checkpoint", checkpoint.sender, (0, checkpoint.height), prior, checkpoint)
        return actions + self._check_stable(checkpoint.height) + self._maybe_fetch(now_ms)

    def _checkpoint_ceiling(self) -> int:
        """Checkpoint votes are kept only within a window above where we are, so each sender has at most
        window/interval of them held; a peer further ahead still counts towards catch-up (`_note_height`)."""
        return max(self.committed_height, self._stable[0]) + self.config.window

    def _check_stable(self, height: int) -> list[Action]:
        """A checkpoint signed by a quorum becomes the low watermark; everything below is collected."""
        tally = Counter(c.block_hash for c in self._checkpoint_votes.get(height, {}).values())
        winners = [h for h, count in tally.items() if count >= self.quorum]
        if not winners or height <= self._stable[0]:
            return []
        self._stable = (height, winners[0])
        self._stable_proof = tuple(c for c in self._checkpoint_votes[height].values() if c.block_hash == winners[0])
        self.stats["stable_checkpoints"] += 1
        self._checkpoint_votes = {h: v for h, v in self._checkpoint_votes.items() if h > height}
        return [Persist(KEY_STABLE, codec.encode([height, winners[0]]))]

    def _forward_stable_proof(self, checkpoint: Checkpoint, now_ms: int) -> list[Action]:
        """A peer still announces a checkpoint at or below our stable one: it missed the quorum that made
        ours stable (peers stop retransmitting once stable), so send it the quorum of signed checkpoints.

        At most a few times per peer and stable checkpoint, so replayed checkpoints cannot make us
        amplify traffic towards a peer for ever."""
        sent_for, times = self._proofs_sent.get(checkpoint.sender, (0, 0))
        times = times if sent_for == self._stable[0] else 0
        if not self._stable_proof or times >= MAX_PROOF_SENDS or not self._may_help("checkpoint", checkpoint.sender,
                                                                                   now_ms):
            return []
        self._proofs_sent[checkpoint.sender] = (self._stable[0], times + 1)
        return [Send(checkpoint.sender, c) for c in self._stable_proof if c.sender != checkpoint.sender]
