"""Rebuilding a replica from what it persisted (see docs/consensus.md, "Persistence and recovery").

Our own records are trusted: a corrupt one crashes loudly. A persisted NEW-VIEW restores the view's
floor and its forced PRE-PREPARE, which the replica takes up again on its first tick.

A mixin of `consensus.replica.Replica`.
"""

from __future__ import annotations

from consensus import codec
from consensus.actions import (
    KEY_CERT,
    KEY_CHECKPOINT,
    KEY_NEW_VIEW,
    KEY_PREPARED,
    KEY_SIGNED,
    KEY_STABLE,
    KEY_VIEW,
    KEY_VIEW_CHANGE,
    PersistedState,
)
from consensus.block import (
    CommitCertificate,
)
from consensus.messages import (
    Checkpoint,
    NewView,
    ViewChange,
    decode,
    decode_prepared,
    hash_block,
)
from consensus.view_change import new_view_plan


class Restore:
    """`_restore` runs once, from `Replica.__init__`."""

    def _restore(self, persisted: PersistedState) -> None:
        """Rebuild from what we persisted. Our own records are trusted: a corrupt one crashes loudly."""
        if KEY_VIEW in persisted:
            view, active, attempts = codec.decode(persisted[KEY_VIEW], max_bytes=64)
            self.view, self.active, self.attempts = int(view), bool(active), int(attempts)
        for kind in ("preprepare", "prepare", "commit"):
            record = persisted.get(KEY_SIGNED + kind.encode())
            if record is not None:
                view, height, block_hash = codec.decode(record, max_bytes=128)
                self._signed[kind] = (view, height, block_hash)
        if KEY_CERT in persisted:
            cert = CommitCertificate.decode(persisted[KEY_CERT])
            if cert.height > self._final_height():
                self._known_cert = cert
            if cert.height == self.committed_height:
                self._head_cert = cert
        if KEY_PREPARED in persisted:
            prepared = decode_prepared(persisted[KEY_PREPARED])
            if prepared.preprepare.height > self.committed_height:
                self._prepared = prepared
                block = prepared.preprepare.block
                self._remember_candidate(hash_block(block), block)
        if KEY_STABLE in persisted:
            height, block_hash = codec.decode(persisted[KEY_STABLE], max_bytes=128)
            self._stable = (height, block_hash)
        if KEY_CHECKPOINT in persisted:
            checkpoint = decode(persisted[KEY_CHECKPOINT])
            assert isinstance(checkpoint, Checkpoint)
            self._my_checkpoint = checkpoint
            if checkpoint.height > self._stable[0]:
                self._checkpoint_votes[checkpoint.height] = {self.index: checkpoint}
        self._restore_view_messages(persisted)

    def _restore_view_messages(self, persisted: PersistedState) -> None:
        """The view records may lag behind the messages (a crash can cut an action list between two
        Persists): a persisted NEW-VIEW for our view or above means we installed it, and a persisted
        VIEW-CHANGE above our view means we were moving to that view; it is re-sent exactly as signed."""
        if KEY_NEW_VIEW in persisted:
            nv = decode(persisted[KEY_NEW_VIEW])
            assert isinstance(nv, NewView)
            if nv.view >= self.view:
                self.view, self.active = nv.view, True
                plan = new_view_plan(self.config.chain_id, nv.view_changes)
                self._new_view = nv
                self._view_floor = plan.floor_height
                self._set_forced(nv.preprepare)
        if KEY_VIEW_CHANGE in persisted:
            vc = decode(persisted[KEY_VIEW_CHANGE])
            assert isinstance(vc, ViewChange), vc
            if vc.new_view > self.view or (vc.new_view == self.view and not self.active):
                self.view, self.active = vc.new_view, False
                self._my_view_change = vc
                self._view_changes[self.index] = vc
