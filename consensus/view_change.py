"""The view change: VIEW-CHANGE, NEW-VIEW and what a quorum of VIEW-CHANGEs forces on the new view.

`new_view_plan` is the only NEW-VIEW content an honest primary may send, and what backups check.
`ViewChanges` is a mixin of `consensus.replica.Replica`; verified VIEW-CHANGEs are cached per sender so
that a resent or quoted copy costs a comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consensus import codec
from consensus.actions import (
    KEY_NEW_VIEW,
    KEY_VIEW,
    KEY_VIEW_CHANGE,
    Action,
    Broadcast,
    Persist,
    Send,
    ViewChanged,
)
from consensus.block import (
    Block,
    CertificateError,
    CommitCertificate,
    verify_certificate_signatures,
)
from consensus.messages import (
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    encode,
    hash_block,
)


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    """What a quorum of VIEW-CHANGEs forces on the new view.

    `floor_height` is the highest height proven final (with `floor_cert`), and `block` is the block that
    must be re-proposed at floor_height+1 because it may have committed, or None if nothing can have.
    """

    floor_height: int
    floor_hash: bytes
    floor_cert: CommitCertificate | None
    block: Block | None


def new_view_plan(chain_id: bytes, view_changes: Iterable[ViewChange]) -> NewViewPlan:
    """Compute, from verified VIEW-CHANGEs, the only NEW-VIEW content an honest primary may send.

    The floor is the highest commit certificate. If a block B was committed at floor+1 by anyone, a
    quorum prepared it, and that quorum meets every VIEW-CHANGE quorum in an honest replica whose
    VIEW-CHANGE carries a prepared certificate for floor+1; among those certificates the one from the
    highest view is B's (standard PBFT argument), so re-proposing it is safe. Nothing above floor+1 can
    be prepared (preparing h+2 requires having committed h+1). Primary and backups both call this, so a
    NEW-VIEW that deviates from it is rejected.
    """
    vcs = list(view_changes)
    certs = [vc.committed for vc in vcs if vc.committed is not None]
    floor_cert = max(certs, key=lambda c: (c.height, c.block_hash), default=None)
    floor_height = 0 if floor_cert is None else floor_cert.height
    floor_hash = chain_id if floor_cert is None else floor_cert.block_hash
    candidates = [vc.prepared.preprepare for vc in vcs
                  if vc.prepared is not None and vc.prepared.preprepare.height == floor_height + 1
                  and vc.prepared.preprepare.block.prev_hash == floor_hash]
    best = max(candidates, key=lambda pp: (pp.view, hash_block(pp.block)), default=None)
    return NewViewPlan(floor_height, floor_hash, floor_cert, None if best is None else best.block)


class ViewChanges:
    """Starting, joining, verifying and installing views."""

    def _start_view_change(self, target: int, now_ms: int) -> list[Action]:
        assert target > self.view, (target, self.view)
        self.view = target
        self.active = False
        self.attempts += 1
        self.deadline_ms = None
        self._slot = None
        self._prepares.clear()
        self._outbox.clear()
        self._justified = None
        self._new_view = None
        self.stats["view_changes_started"] += 1
        prepared = self._prepared
        if prepared is not None and prepared.preprepare.height <= self._final_height():
            prepared = None
        vc = self._sign_msg(ViewChange(target, self._known_cert, prepared, self.index))
        self._my_view_change = vc
        self._view_changes[self.index] = vc
        actions: list[Action] = [Persist(KEY_VIEW_CHANGE, encode(vc)), Persist(KEY_VIEW, self._view_record()),
                                 Broadcast(vc)]
        return actions + self._view_change_progress(now_ms)

    def _view_record(self) -> bytes:
        return codec.encode([self.view, self.active, self.attempts])

    def _view_change_progress(self, now_ms: int) -> list[Action]:
        """Join higher views on f+1 VIEW-CHANGEs; arm the timer and build NEW-VIEW on a quorum."""
        higher = sorted((vc.new_view for vc in self._view_changes.values() if vc.new_view > self.view),
                        reverse=True)
        if len(higher) > self.config.f:
            return self._start_view_change(higher[self.config.f], now_ms)
        if self.active:
            return []
        if sum(vc.new_view >= self.view for vc in self._view_changes.values()) < self.quorum:
            return []
        if self.deadline_ms is None:
            self.deadline_ms = now_ms + self.timeout_ms()
        return self._try_new_view(now_ms)

    def _on_view_change(self, vc: ViewChange, now_ms: int) -> list[Action]:
        if not self._view_change_ok(vc, signature_checked=True):
            self.stats["bad_view_change"] += 1
            return []
        actions = self._note_height(vc.sender, 0 if vc.committed is None else vc.committed.height, now_ms)
        if vc.committed is not None:
            actions += self._learn_final(vc.committed, now_ms)
        if vc.prepared is not None:
            actions += self._embedded_equivocation(vc.prepared)
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            return actions + self._forward_new_view(vc.sender, now_ms)
        prior = self._view_changes.get(vc.sender)
        if prior is not None and prior.new_view > vc.new_view:
            return actions
        if prior is not None and prior.new_view == vc.new_view and prior != vc:
            return actions + self._evidence("viewchange", vc.sender, (vc.new_view, 0), prior, vc)
        self._view_changes[vc.sender] = vc
        return actions + self._view_change_progress(now_ms)

    def _forward_new_view(self, sender: int, now_ms: int) -> list[Action]:
        """A peer still asks for a view we already run: send it the NEW-VIEW that installed ours."""
        if self._new_view is None or not self._may_help("new_view", sender, now_ms):
            return []
        return [Send(sender, self._new_view)]

    def _embedded_equivocation(self, prepared: PreparedCertificate) -> list[Action]:
        """Messages quoted in a certificate may reveal a primary that sent different blocks to different
        backups; only slots not yet committed are tracked."""
        actions: list[Action] = []
        quoted: list[PrePrepare | Prepare] = [prepared.preprepare, *prepared.prepares]
        for msg in quoted:
            if msg.height == self.committed_height + 1 and msg.sender != self.index:
                actions += self._check_equivocation(msg)[1]
        return actions

    def _view_change_ok(self, vc: ViewChange, *, signature_checked: bool) -> bool:
        """Verify a VIEW-CHANGE (its signature unless already checked, and its certificates) once per
        sender and content: a resent or quoted copy then costs a comparison instead of ~2q signatures."""
        if self._verified_view_changes.get(vc.sender) == vc:
            return True
        if not (signature_checked or self._check_signature(vc)) or not self._valid_view_change(vc):
            return False
        self._verified_view_changes[vc.sender] = vc
        return True

    def _valid_view_change(self, vc: ViewChange) -> bool:
        """Check everything a VIEW-CHANGE claims: its certificate and its prepared certificate."""
        if vc.committed is not None:
            try:
                verify_certificate_signatures(self.config.chain_id, vc.committed, n=self.config.n,
                                              quorum=self.quorum, verify=self._verify)
            except CertificateError:
                return False
        return vc.prepared is None or self._valid_prepared(vc.prepared, vc.new_view)

    def _valid_prepared(self, cert: PreparedCertificate, before_view: int) -> bool:
        pp = cert.preprepare
        if pp.view >= before_view or pp.sender != self.primary(pp.view):
            return False
        if pp.block.chain_id != self.config.chain_id or not self._check_signature(pp):
            return False
        block_hash = hash_block(pp.block)
        senders = set()
        for prepare in cert.prepares:
            if (prepare.view, prepare.height, prepare.block_hash) != (pp.view, pp.height, block_hash):
                return False
            if prepare.sender == pp.sender or prepare.sender in senders or not 0 <= prepare.sender < self.config.n:
                return False
            if not self._check_signature(prepare):
                return False
            senders.add(prepare.sender)
        return len(senders) >= self.quorum - 1

    def _try_new_view(self, now_ms: int) -> list[Action]:
        if self.active or not self.is_primary or self._my_view_change is None:
            return []
        others = [vc for s, vc in sorted(self._view_changes.items())
                  if vc.new_view == self.view and s != self.index]
        if len(others) < self.quorum - 1:
            return []
        chosen = (self._my_view_change, *others[:self.quorum - 1])
        plan = new_view_plan(self.config.chain_id, chosen)
        actions: list[Action] = []
        preprepare = None
        if plan.block is not None:
            voted = self._vote("preprepare", PrePrepare(self.view, plan.floor_height + 1, plan.block, self.index))
            if voted is None:
                return []
            signed, actions = voted
            preprepare = signed
        nv = self._sign_msg(NewView(self.view, chosen, preprepare, self.index))
        self.stats["new_views_sent"] += 1
        return actions + [Persist(KEY_NEW_VIEW, encode(nv)), Broadcast(nv)] + self._install_view(nv, plan, now_ms)

    def _on_new_view(self, nv: NewView, now_ms: int) -> list[Action]:
        if nv.view < self.view or (nv.view == self.view and self.active):
            self.stats["stale_new_view"] += 1
            installed = self._new_view
            if installed is not None and (installed.view, installed.sender) == (nv.view, nv.sender) and installed != nv:
                return self._evidence("newview", nv.sender, (nv.view, 0), installed, nv)
            return []
        plan = self._check_new_view(nv)
        if plan is None:
            self.stats["bad_new_view"] += 1
            return []
        actions: list[Action] = []
        for vc in nv.view_changes:
            if vc.prepared is not None:
                actions += self._embedded_equivocation(vc.prepared)
        return actions + [Persist(KEY_NEW_VIEW, encode(nv))] + self._install_view(nv, plan, now_ms)

    def _check_new_view(self, nv: NewView) -> NewViewPlan | None:
        """Verify every VIEW-CHANGE inside a NEW-VIEW and that its PRE-PREPARE is the forced one."""
        if nv.sender != self.primary(nv.view):
            return None
        senders = {vc.sender for vc in nv.view_changes}
        if len(senders) != len(nv.view_changes) or len(senders) < self.quorum:
            return None
        for vc in nv.view_changes:
            if vc.new_view != nv.view or not 0 <= vc.sender < self.config.n:
                return None
            if not self._view_change_ok(vc, signature_checked=False):
                return None
        plan = new_view_plan(self.config.chain_id, nv.view_changes)
        pp = nv.preprepare
        if plan.block is None:
            return plan if pp is None else None
        if pp is None or (pp.view, pp.height, pp.sender) != (nv.view, plan.floor_height + 1, nv.sender):
            return None
        if hash_block(pp.block) != hash_block(plan.block) or not self._check_signature(pp):
            return None
        return plan

    def _install_view(self, nv: NewView, plan: NewViewPlan, now_ms: int) -> list[Action]:
        self.view = nv.view
        self.active = True
        self.deadline_ms = None
        self._new_view = nv
        self._slot = None
        self._prepares.clear()
        self._outbox.clear()
        self._view_floor = plan.floor_height
        self._view_changes = {s: vc for s, vc in self._view_changes.items() if vc.new_view > nv.view}
        self._set_forced(nv.preprepare)
        self._watched = dict.fromkeys(self._watched, now_ms)
        self.stats["views_installed"] += 1
        actions: list[Action] = [Persist(KEY_VIEW, self._view_record()), ViewChanged(nv.view)]
        if plan.floor_cert is not None:
            actions += self._learn_final(plan.floor_cert, now_ms)
        pp = nv.preprepare
        if pp is not None and pp.height <= self.committed_height:
            actions += self._help_reproposal(pp)
        actions += self._take_forced(now_ms)
        self._arm_timer(now_ms)
        return actions

    def _set_forced(self, pp: PrePrepare | None) -> None:
        self._forced = pp
        self._justified = None if pp is None else (pp.view, pp.height, hash_block(pp.block))
