"""The daemon side of absent members: a node the contract lists absent says it is back with one `ready`, the
mempool admits it, and the primary closes a phase without the absent member and carries its `ready` last."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from consensus.block import Block
from node import contract as rc
from node.identity import load as load_identity
from tests.unit.test_daemon_join import ME, N, _member_config, _running


def _ready(d, round_id: int) -> bytes:  # type: ignore[no-untyped-def]
    return rc.make_tx(d.contract.params.chain_id, "ready", ME, round_id, [], d.identity.sign)


def test_an_absent_node_announces_itself_once_per_round(tmp_path: Path) -> None:
    with _running(_member_config(tmp_path)) as d:
        s = d.contract.state
        s.round, s.open = 1, False
        d.rounds.announce_presence()
        assert d.rounds.nursery.started == []  # type: ignore[union-attr]
        s.absent = (ME,)
        d.rounds.announce_presence()
        d.rounds.announce_presence()
        assert d.rounds.nursery.started == ["submit"]  # type: ignore[union-attr]


def test_the_primary_closes_without_the_absent_member_and_carries_its_ready_last(tmp_path: Path) -> None:
    config = _member_config(tmp_path)
    away = load_identity(config.parent.parent / "node-0" / "node.key")  # member 0 is absent; we (3) propose
    with _running(config) as d:
        s = d.contract.state
        s.round, s.open, s.phase, s.participants = 1, True, "keys", tuple(range(N))
        s.expected, s.inputs = tuple(range(N)), {a: (b"", 0) for a in range(1, N)}
        s.absent, s.absent_since = (0,), {0: 1}
        d.timings.phase_started[(1, "keys")] = time.monotonic()  # the phase deadline is far away
        d.mempool.accept(rc.make_tx(d.contract.params.chain_id, "ready", 0, 1, [], away.sign))
        assert len(d.mempool.txs) == 1, "the mempool admits a ready"
        txs = trio.run(d.proposer.next_block_txs)
        assert txs is not None
        kinds = [d.contract.parse(raw).kind for raw in txs]
        assert kinds[0] == "close" and kinds[-1] == "ready", kinds
        checks = d.contract.check_block(Block(d.contract.params.chain_id, 1, b"\0" * 32, 0, ME, tuple(txs)))
        assert not any(isinstance(c, rc.DeadlineCheck) for c in checks), "no replica has to wait for member 0"
        assert d.contract.state.absent == (0,), "check_block leaves the state alone"


def test_a_validated_phase_short_of_its_minimum_is_not_closed_for_an_absent_member(tmp_path: Path) -> None:
    """At N = 4 the seed phase needs 2t_v + 1 + f = 4 inputs while the round excludes nobody. With member 0
    absent but not excluded (it went absent after the round's validation started, so f_eff stays f) and the
    other three in, nobody more is awaited, yet closing would be invalid (the shadow contract refuses it,
    which used to end the primary's daemon): the primary waits, and aborts at the deadline."""
    with _running(_member_config(tmp_path)) as d:
        s = d.contract.state
        s.round, s.open, s.phase, s.participants = 1, True, "seed", tuple(range(N))
        s.expected, s.inputs = tuple(range(N)), {a: (b"", 0) for a in range(1, N)}
        s.absent, s.absent_since = (0,), {0: 1}
        assert d.contract.min_inputs("seed") == N
        d.timings.round_opened_at[1] = time.monotonic()  # deadlines count only for a round seen open here
        d.timings.phase_started[(1, "seed")] = time.monotonic()
        assert trio.run(d.proposer.next_block_txs) is None, "before the deadline the primary waits"
        d.timings.phase_started[(1, "seed")] = time.monotonic() - 10 * d.settings.phase_deadline_s
        txs = trio.run(d.proposer.next_block_txs)
        assert txs is not None
        kinds = [d.contract.parse(raw).kind for raw in txs]
        assert kinds[0] == "abort" and "close" not in kinds, kinds
