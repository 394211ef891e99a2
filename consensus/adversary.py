"""Byzantine members for the simulator: strategies that sign valid messages chosen adaptively.

A Byzantine node holds its real key. It keeps a shadow replica purely as bookkeeping (to know the
chain head, the view and what it has seen); every message the shadow would send passes through the
strategy's `outgoing`, which may drop it, change it and re-sign it, or add others, and the strategy
also speaks on its own (`on_tick`), proposes what it likes (`proposal`) and serves catch-up requests
with what it likes (`serve`). Every strategy aims at one of the attacks of docs/consensus.md
("Adversary model").

The strategies read the simulation's RNG through `node.rng` and never import `random`: a run stays
reproducible from its seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from consensus.block import Block, CommitCertificate, commit_statement
from consensus.messages import (
    Checkpoint,
    Commit,
    Message,
    NewView,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    hash_block,
)
from consensus.replica import new_view_plan

if TYPE_CHECKING:
    from consensus.sim_node import SimNode

Out = list[tuple[int, Message]]
FLOOD_PER_TICK = 12
VOTE_FLOOD_PER_TICK = 30
MAX_REMEMBERED = 400


class Strategy:
    """Honest-looking by default; subclasses override the hooks their attack needs."""

    name = "shadow"

    def setup(self, node: SimNode) -> None:
        """Called once the simulation knows every node (pick victims, audiences)."""

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        return [(to, msg)]

    def on_receive(self, node: SimNode, msg: Message, now_ms: int) -> None:
        """Observe a message before the shadow replica sees it."""

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        """Unsolicited traffic."""

    def proposal(self, node: SimNode, txs: tuple[bytes, ...], now_ms: int) -> tuple[bytes, ...] | None:
        """What to propose when the shadow is ready; None waits."""
        return txs

    def serve(self, node: SimNode, blocks: list[tuple[Block, CommitCertificate]],
              from_height: int) -> list[tuple[Block, CommitCertificate]]:
        """What to answer a catch-up request with."""
        return blocks

    def delay_ms(self, node: SimNode, src: int, to: int, height: int | None, msg: Message | None) -> int:
        """Extra delay for a message (or, with `msg` None, a catch-up answer from `height`) to `to`; asked
        only while network faults last."""
        return 0


class Silent(Strategy):
    name = "silent"

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        return []


class Equivocate(Strategy):
    """As primary, different PRE-PREPAREs to two groups of backups, and votes for both blocks."""

    name = "equivocate"

    def __init__(self) -> None:
        self.variants: dict[tuple[int, int], tuple[bytes, PrePrepare, frozenset[int]]] = {}

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        if isinstance(msg, PrePrepare) and msg.sender == node.index:
            original, other, group = self._variant(node, msg)
            return [(to, other)] if to in group else [(to, msg)]
        if isinstance(msg, (Prepare, Commit)) and (msg.view, msg.height) in self.variants:
            original, other, group = self.variants[(msg.view, msg.height)]
            if to in group and msg.block_hash == original:
                return [(to, node.sign(replace(msg, block_hash=hash_block(other.block))))]
        return [(to, msg)]

    def _variant(self, node: SimNode, pp: PrePrepare) -> tuple[bytes, PrePrepare, frozenset[int]]:
        key = (pp.view, pp.height)
        if key not in self.variants:
            block = Block(pp.block.chain_id, pp.height, pp.block.prev_hash, pp.view, node.index,
                          (*pp.block.txs[:-1], node.rng.randbytes(8)))
            group = frozenset(i for i in range(node.sim.config.nodes) if node.rng.random() < 0.5)
            self.variants[key] = (hash_block(pp.block), node.sign(replace(pp, block=block)), group)
        return self.variants[key]


class ChosenViewChange(Strategy):
    """VIEW-CHANGEs quoting stale certificates, and as new primary a NEW-VIEW built from the subset of the
    VIEW-CHANGEs it received that forces the least (ideally nothing), sometimes a different one to
    different replicas."""

    name = "chosen_view_change"

    def __init__(self) -> None:
        self.received: dict[int, dict[int, ViewChange]] = {}
        self.old_certs: list[CommitCertificate] = []
        self.old_prepared: list[PreparedCertificate] = []

    def on_receive(self, node: SimNode, msg: Message, now_ms: int) -> None:
        if isinstance(msg, ViewChange) and node.genuine(msg) and len(self.received) < 64:
            self.received.setdefault(msg.new_view, {})[msg.sender] = msg
            if msg.committed is not None and len(self.old_certs) < 8:
                self.old_certs.append(msg.committed)
            if msg.prepared is not None and len(self.old_prepared) < 8:
                self.old_prepared.append(msg.prepared)

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        if isinstance(msg, ViewChange) and msg.sender == node.index:
            return [(to, self._stale_view_change(node, msg))]
        if isinstance(msg, NewView) and msg.sender == node.index:
            return [(to, self._chosen_new_view(node, msg))]
        return [(to, msg)]

    def _stale_view_change(self, node: SimNode, vc: ViewChange) -> ViewChange:
        cert = node.rng.choice([vc.committed, *self.old_certs[:2]])
        prepared = node.rng.choice([vc.prepared, None, *self.old_prepared[:2]])
        if prepared is not None and prepared.preprepare.view >= vc.new_view:
            prepared = None
        return node.sign(replace(vc, committed=cert, prepared=prepared))

    def _chosen_new_view(self, node: SimNode, nv: NewView) -> NewView:
        own = next(vc for vc in nv.view_changes if vc.sender == node.index)
        others = [vc for s, vc in self.received.get(nv.view, {}).items() if s != node.index]
        quorum = len(nv.view_changes)
        options = [(own, *combo) for combo in itertools.combinations(others, quorum - 1)][:20]
        if not options:
            return nv
        chain_id = node.sim.chain_id

        def weight(vcs: Sequence[ViewChange]) -> tuple[int, int]:
            plan = new_view_plan(chain_id, vcs)
            return (plan.block is not None, plan.floor_height)

        options.sort(key=weight)
        chosen = options[0] if node.rng.random() < 0.7 else node.rng.choice(options)
        plan = new_view_plan(chain_id, chosen)
        pp = None if plan.block is None else node.sign(PrePrepare(nv.view, plan.floor_height + 1, plan.block,
                                                                  node.index))
        return node.sign(NewView(nv.view, tuple(chosen), pp, node.index))


class WithholdCommits(Strategy):
    """Sends its COMMITs to only some replicas (chosen per height) to split who can commit."""

    name = "withhold_commits"

    def __init__(self) -> None:
        self.audience: dict[int, frozenset[int]] = {}

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        if isinstance(msg, Commit):
            if msg.height not in self.audience:
                if len(self.audience) > 64:
                    self.audience.clear()
                n = node.sim.config.nodes
                self.audience[msg.height] = frozenset(node.rng.sample(range(n), node.rng.randint(0, n - 1)))
            return [(to, msg)] if to in self.audience[msg.height] else []
        return [(to, msg)]


class FreshAfterNewView(WithholdCommits):
    """Splits who commits (withheld COMMITs, and a network schedule that lets one replica alone commit a
    block B while another lags), then as the new primary sends a correct NEW-VIEW built from VIEW-CHANGEs
    that leave out the replica that committed B (so B is forced, not final), plus a fresh PRE-PREPARE
    (and its own COMMIT) for another block at that height, before or after the NEW-VIEW, re-sent while its
    view lasts: a replica that restarts or lags behind the forced block sees it."""

    name = "fresh_after_new_view"

    def __init__(self) -> None:
        super().__init__()
        self.fresh: dict[int, tuple[PrePrepare, Commit]] = {}
        self.plan: tuple[int, int, int, int] | None = None
        self.view_changes: dict[tuple[int, int], ViewChange] = {}
        self.new_views: dict[int, NewView] = {}

    def on_receive(self, node: SimNode, msg: Message, now_ms: int) -> None:
        if isinstance(msg, ViewChange) and len(self.view_changes) < 256 and node.genuine(msg):
            self.view_changes[(msg.new_view, msg.sender)] = msg

    def outgoing(self, node: SimNode, to: int, msg: Message) -> Out:
        if isinstance(msg, NewView) and msg.sender == node.index:
            msg = self._forcing_new_view(node, msg)
        pp = msg.preprepare if isinstance(msg, NewView) else msg if isinstance(msg, PrePrepare) else None
        if pp is None or pp.sender != node.index or pp.block.view == pp.view or node.rng.random() < 0.3:
            return super().outgoing(node, to, msg)
        fresh, commit = self._fresh(node, pp)
        extra: Out = [(to, fresh), (to, commit)]
        return extra + [(to, msg)] if node.rng.random() < 0.5 else [(to, msg)] + extra

    def delay_ms(self, node: SimNode, src: int, to: int, height: int | None, msg: Message | None) -> int:
        """The schedule that sets up a fork: once this member is next in line as primary, pick a height h
        two above its head, one honest replica `lucky` that alone gets the COMMITs for h, and one `lagger`
        that gets nothing at h-1 or above until the next view runs."""
        replica = node.replica
        n = node.sim.config.nodes
        if self.plan is None and replica.primary(replica.view + 1) == node.index:
            honest = sorted(node.sim.honest_indices)
            if len(honest) >= 2:
                lucky, lagger = node.rng.sample(honest, 2)
                self.plan = (replica.committed_height + 2, lucky, lagger, replica.view)
        if self.plan is None or replica.view > self.plan[3] + 1 or replica.view >= n * 4:
            return 0
        target, lucky, lagger, _ = self.plan
        if to == lagger and (msg is None or (height is not None and height >= target - 1)):
            return 1500
        if src == lucky and isinstance(msg, (ViewChange, NewView)):
            return 1500  # its VIEW-CHANGE would carry the certificate of the block only it committed
        fetch_reaching_target = msg is None and height is not None and height <= target
        if (fetch_reaching_target or (isinstance(msg, Commit) and height == target)) and to != lucky:
            return 1500
        return 0

    def _forcing_new_view(self, node: SimNode, nv: NewView) -> NewView:
        """The same NEW-VIEW to everyone, from our VIEW-CHANGE and others' that leave out `lucky`, if those
        still force a block (validly: `new_view_plan` of exactly the quoted VIEW-CHANGEs)."""
        if nv.view in self.new_views or self.plan is None:
            return self.new_views.get(nv.view, nv)
        lucky = self.plan[1]
        own = next(vc for vc in nv.view_changes if vc.sender == node.index)
        others = [vc for (view, s), vc in sorted(self.view_changes.items())
                  if view == nv.view and s not in (node.index, lucky)]
        chosen = (own, *others[:len(nv.view_changes) - 1])
        plan = new_view_plan(node.sim.chain_id, chosen)
        if len(chosen) < len(nv.view_changes) or plan.block is None:
            return nv
        pp = node.sign(PrePrepare(nv.view, plan.floor_height + 1, plan.block, node.index))
        self.new_views[nv.view] = node.sign(NewView(nv.view, chosen, pp, node.index))
        return self.new_views[nv.view]

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        pair = self.fresh.get(node.replica.view)
        if pair is not None and pair[0].height > node.replica.committed_height - 1:
            to = node.rng.randrange(node.sim.config.nodes)
            for msg in pair:
                node.transmit(to, msg)

    def _fresh(self, node: SimNode, forced: PrePrepare) -> tuple[PrePrepare, Commit]:
        if forced.view not in self.fresh:
            block = Block(forced.block.chain_id, forced.height, forced.block.prev_hash, forced.view, node.index,
                          (node.rng.randbytes(8),))
            pp = node.sign(PrePrepare(forced.view, forced.height, block, node.index))
            commit = node.sign(Commit(forced.view, forced.height, hash_block(block), node.index))
            self.fresh[forced.view] = (pp, commit)
        return self.fresh[forced.view]


class CheckpointFlood(Strategy):
    """Signed CHECKPOINTs for far-future heights and bogus ones inside the window, every tick."""

    name = "checkpoint_flood"

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        interval = node.sim.config.checkpoint_interval
        base = node.replica.committed_height // interval * interval
        for _ in range(FLOOD_PER_TICK):
            height = base + interval * node.rng.choice([node.rng.randint(1, 3), node.rng.randint(10, 10**6)])
            node.transmit(node.rng.randrange(node.sim.config.nodes),
                          node.sign(Checkpoint(height, node.rng.randbytes(32), node.index)))


class VoteFlood(Strategy):
    """PREPAREs and COMMITs for many block hashes at the open height (and a few views and the next
    height), to every member, every tick: without one vote per (sender, view, height) each is held."""

    name = "vote_flood"

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        replica = node.replica
        for _ in range(VOTE_FLOOD_PER_TICK):
            kind = node.rng.choice([Prepare, Commit])
            view = replica.view + (node.rng.randint(0, 3) if kind is Commit else 0)
            msg = node.sign(kind(view, replica.committed_height + node.rng.randint(1, 2), node.rng.randbytes(32),
                                 node.index))
            for to in range(node.sim.config.nodes):
                node.transmit(to, msg)


class Replay(Strategy):
    """Re-sends old, validly signed messages of others (any view, any height)."""

    name = "replay"

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def on_receive(self, node: SimNode, msg: Message, now_ms: int) -> None:
        if len(self.seen) < MAX_REMEMBERED:
            self.seen.append(msg)

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        if self.seen and node.rng.random() < 0.5:
            node.transmit(node.rng.randrange(node.sim.config.nodes), node.rng.choice(self.seen))


class Censor(Strategy):
    """As primary, never proposes one honest member's transactions (blocks still commit)."""

    name = "censor"

    def __init__(self) -> None:
        self.victim = -1

    def setup(self, node: SimNode) -> None:
        honest = sorted(node.sim.honest_indices)
        self.victim = node.rng.choice(honest) if honest else -1

    def proposal(self, node: SimNode, txs: tuple[bytes, ...], now_ms: int) -> tuple[bytes, ...] | None:
        return tuple(tx for tx in txs if node.sim.origin(tx) != self.victim)


class SlowPrimary(Strategy):
    """As primary, waits almost a view timeout before every proposal."""

    name = "slow_primary"

    def __init__(self) -> None:
        self.ready_since: tuple[int, int] | None = None

    def proposal(self, node: SimNode, txs: tuple[bytes, ...], now_ms: int) -> tuple[bytes, ...] | None:
        height = node.replica.committed_height
        if self.ready_since is None or self.ready_since[0] != height:
            self.ready_since = (height, now_ms)
        wait = node.replica.timeout_ms() * 8 // 10
        return txs if now_ms - self.ready_since[1] >= wait else None


class ForgeCertificates(Strategy):
    """Certificates made of its own COMMIT repeated a quorum of times, for blocks nobody else signed: in
    VIEW-CHANGEs, as COMMIT bursts, and as catch-up answers."""

    name = "forge_certificates"

    def _fake(self, node: SimNode, height: int, prev: bytes) -> tuple[Block, CommitCertificate]:
        replica = node.replica
        block = Block(node.sim.chain_id, height, prev, replica.view, node.index, (node.rng.randbytes(8),))
        sig = node.signer(commit_statement(node.sim.chain_id, replica.view, height, block.hash()))
        cert = CommitCertificate(height, replica.view, block.hash(), ((node.index, sig),) * replica.quorum)
        return block, cert

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        if node.rng.random() > 0.3:
            return
        replica = node.replica
        _, cert = self._fake(node, replica.committed_height + 1, replica.last_hash)
        vc = node.sign(ViewChange(replica.view + 1, cert, None, node.index))
        node.transmit(node.rng.randrange(node.sim.config.nodes), vc)

    def serve(self, node: SimNode, blocks: list[tuple[Block, CommitCertificate]],
              from_height: int) -> list[tuple[Block, CommitCertificate]]:
        prev = blocks[0][0].prev_hash if blocks else node.replica.last_hash
        return [self._fake(node, from_height, prev)]


class Forge(Strategy):
    """Messages that must be rejected: bad signatures, other members' names, bogus certificates."""

    name = "forge"

    def on_tick(self, node: SimNode, now_ms: int) -> None:
        if node.rng.random() < 0.3:
            node.transmit(node.rng.randrange(node.sim.config.nodes), self._forgery(node))

    def proposal(self, node: SimNode, txs: tuple[bytes, ...], now_ms: int) -> tuple[bytes, ...] | None:
        if txs and node.rng.random() < 0.5:
            return (node.sim.invalid_tx(), *txs[1:])
        return txs

    def _forgery(self, node: SimNode) -> Message:
        rng, replica, n = node.rng, node.replica, node.sim.config.nodes
        height = replica.committed_height + 1
        block = Block(node.sim.chain_id, height, replica.last_hash, replica.view, node.index, (rng.randbytes(8),))
        victim = rng.randrange(n)
        choice = rng.randrange(4)
        if choice == 0:
            return Commit(replica.view, height, block.hash(), victim, rng.randbytes(16))
        if choice == 1:
            return PrePrepare(replica.view, height, block, victim, rng.randbytes(16))
        primary = replica.primary(replica.view)
        fake_prepares = tuple(Prepare(replica.view, height, block.hash(), s, rng.randbytes(16))
                              for s in range(n) if s != primary)
        pp = node.sign(PrePrepare(replica.view, height, block, primary)) if primary == node.index else \
            PrePrepare(replica.view, height, block, primary, rng.randbytes(16))
        vc = node.sign(ViewChange(replica.view + 1, None, PreparedCertificate(pp, fake_prepares), node.index))
        if choice == 2:
            return vc
        target = next(v for v in range(replica.view + 1, replica.view + 1 + n) if v % n == node.index)
        vcs = tuple(node.sign(replace(vc, new_view=target)) if s == node.index
                    else ViewChange(target, None, None, s, rng.randbytes(16)) for s in range(n))
        return node.sign(NewView(target, vcs, None, node.index))


class Twin(Strategy):
    """An honest copy of a replica whose other copy runs elsewhere (same key): equivocation by design."""

    name = "twins"


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Silent, Equivocate, FreshAfterNewView, ChosenViewChange, WithholdCommits, CheckpointFlood, VoteFlood,
    Replay, Censor, SlowPrimary, ForgeCertificates, Forge, Twin)}
"""Every strategy by name; the simulator draws from these by default."""


def make(name: str) -> Strategy:
    return STRATEGIES[name]()

