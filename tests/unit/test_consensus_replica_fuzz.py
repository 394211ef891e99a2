"""Any sequence of validly signed but arbitrary messages: the replica never raises, and its view and
committed height never move backwards (faulty peers are expected, never a crash)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_consensus_replica import CHAIN, signer, verify

from consensus import messages as m
from consensus.block import Block, CommitCertificate
from consensus.replica import Replica, ReplicaConfig, ValidateBlock

HASHES = [CHAIN, *(bytes([i]) * 32 for i in range(1, 4))]


def sign(msg):
    return replace(msg, signature=signer(msg.sender)(m.signing_bytes(CHAIN, msg)))


views = st.integers(min_value=0, max_value=4)
heights = st.integers(min_value=1, max_value=4)
senders = st.integers(min_value=0, max_value=3)
hashes = st.sampled_from(HASHES)
blocks = st.builds(lambda h, prev, v, p, tx: Block(CHAIN, h, prev, v, p, (tx,)), heights, hashes, views, senders,
                   st.binary(min_size=1, max_size=4))
preprepares = st.builds(lambda v, b, s: sign(m.PrePrepare(v, b.height, b, s)), views, blocks, senders)
prepares = st.builds(lambda v, h, x, s: sign(m.Prepare(v, h, x, s)), views, heights, hashes, senders)
commits = st.builds(lambda v, h, x, s: sign(m.Commit(v, h, x, s)), views, heights, hashes, senders)
checkpoints = st.builds(lambda h, x, s: sign(m.Checkpoint(h, x, s)), heights, hashes, senders)


@st.composite
def certificates(draw):
    view, height, block_hash = draw(views), draw(heights), draw(hashes)
    signers = draw(st.lists(senders, min_size=0, max_size=4, unique=True))
    sigs = tuple((s, sign(m.Commit(view, height, block_hash, s)).signature) for s in signers)
    return CommitCertificate(height, view, block_hash, sigs)


@st.composite
def view_changes(draw):
    prepared = None
    if draw(st.booleans()):
        pp = draw(preprepares)
        backups = draw(st.lists(senders, max_size=3, unique=True))
        prepared = m.PreparedCertificate(pp, tuple(sign(m.Prepare(pp.view, pp.height, pp.block.hash(), s))
                                                   for s in backups))
    cert = draw(st.none() | certificates())
    return sign(m.ViewChange(draw(views), cert, prepared, draw(senders)))


@st.composite
def new_views(draw):
    vcs = draw(st.lists(view_changes(), max_size=4))
    view = draw(views)
    pp = draw(st.none() | preprepares)
    return sign(m.NewView(view, tuple(vcs), pp, view % 4))


messages = st.one_of(preprepares, prepares, commits, checkpoints, view_changes(), new_views())
steps = st.lists(st.one_of(messages, st.just("tick"), st.just("validate")), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(min_value=0, max_value=3))
def test_arbitrary_signed_traffic_never_crashes_or_regresses(sequence, index: int) -> None:
    replica = Replica(ReplicaConfig(CHAIN, 4, 1, checkpoint_interval=2, window=4, view_timeout_ms=50), index,
                      signer(index), verify)
    now, pending = 0, []
    for step in sequence:
        view, height = replica.view, replica.committed_height
        now += 20
        if step == "tick":
            replica.note_pending(now)
            actions = replica.tick(now)
        elif step == "validate":
            actions = [a for b in pending for a in replica.block_validated(b.hash(), True, now)]
            pending = []
        else:
            actions = replica.receive(step, now)
        pending += [a.block for a in actions if isinstance(a, ValidateBlock)]
        assert replica.view >= view and replica.committed_height >= height
