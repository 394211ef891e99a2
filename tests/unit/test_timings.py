"""Phase deadlines are judged on this process's clock, and only for rounds it has seen open."""

from __future__ import annotations

from node.timings import Timings


def test_a_phase_of_a_round_not_yet_open_here_is_never_late() -> None:
    """Round 2's key phases ran ahead during round 1, so its inputs phase was stamped when the shares phase
    closed ahead. In the block that aborts round 1 and opens round 2, that stamp must not make round 2's inputs
    phase look past its deadline (the primary would abort round 2 in the same block, naming every member)."""
    t = Timings()
    t.phase_started[(2, "inputs")] = 100.0
    assert t.phase_elapsed_s(2, "inputs", now=200.0) == -1.0
    t.round_opened_at[2] = 190.0
    assert t.phase_elapsed_s(2, "inputs", now=200.0) == 100.0
    assert t.phase_elapsed_s(2, "seed", now=200.0) == -1.0
