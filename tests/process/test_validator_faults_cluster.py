"""Malicious hospitals that also misbehave as validators, on real daemons.

Member 4 (of N = 5, f = 1) poisons its update (Gaussian noise) and publishes wrong statistic shares. The honest majority's
reconstruction (Berlekamp-Welch: 5 degree-2 shares correct one error) corrects its shares and records it in the
`accept`, every replica re-derives the accepted set and the inconsistent publishers before voting, and the poisoned
update is rejected: no honest node commits a wrong accepted set.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from tests.process.test_cluster import fednode


def _honest_member_with_fault(tmp_path: Path, fault: str, nodes: int, *extra: str) -> tuple[dict, Path]:  # type: ignore[type-arg]
    """`fednode cluster --nodes N --rounds 2 [extra] --malicious 1` whose malicious member trains honestly (an
    attack plugin returning its update) and commits validator fault `fault`: the run's JSON summary and workdir."""
    plugin = tmp_path / "honest.py"
    plugin.write_text("def honest(update, ctx):\n    return update\n")
    work = tmp_path / "run"
    result = fednode("cluster", "--nodes", str(nodes), "--rounds", "2", *extra, "--malicious", "1", "--attack",
                     f"plugin:{plugin}:honest", "--validator-fault", fault, "--workdir", str(work), "--json",
                     "--stall-timeout", "180", timeout_s=420)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), work


def test_corrupt_statistic_shares_are_corrected_and_the_poisoned_update_rejected(tmp_path: Path) -> None:
    work = tmp_path / "run"
    result = fednode("cluster", "--nodes", "5", "--rounds", "2", "--malicious", "1", "--attack", "gaussian",
                     "--validator-fault", "corrupt", "--workdir", str(work), "--json", "--stall-timeout", "180",
                     timeout_s=420)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 2 and len(set(summary["head_hashes"])) == 1
    # Each round records it on the ledger as inconsistent (evidence, not an exclusion: docs/validation.md G3) and
    # rejects its update.
    assert summary["liars"] == [[4], [4]] and summary["rejected"] == [[4], [4]], summary
    assert summary["accuracy"] >= 0.93
    assert summary["backdoor_success_by_round"] is None  # measured only for a trigger backdoor
    # Every replica checks the accepted set and the liars before voting (the primary, which proposed it, need not).
    named_by = [honest for honest in range(4)
                if summary["wire_rejections"].get(str(honest), {}).get("wrong_statistic_shares", 0) >= 1
                and "member 4 published statistic shares inconsistent" in
                (work / f"node-{honest}" / "daemon.log").read_text()]
    assert len(named_by) >= 3, summary["wire_rejections"]


def test_a_member_withholding_its_seed_reveal_leaves_each_round_and_the_others_commit(tmp_path: Path) -> None:
    """Member 4 (of N = 5, f = 1, t_v = 1) masks its update but never reveals its sketch-seed value, the one
    choice left to a member that would grind the sketch: the seed phase closes at its deadline with the
    other four reveals (2t_v + 1 + f = 4), member 4 is out of the round, and both rounds commit without it."""
    work = tmp_path / "run"
    result = fednode("cluster", "--nodes", "5", "--rounds", "2", "--malicious", "1", "--attack", "scaling",
                     "--validator-fault", "grind-seed", "--phase-deadline", "4", "--workdir", str(work), "--json",
                     "--stall-timeout", "180", timeout_s=420)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 2 and len(set(summary["head_hashes"])) == 1
    assert summary["accuracy"] >= 0.93
    for honest in range(4):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert len(re.findall(r"phase seed closed at height \d+ with 4 members", log)) >= 2, honest


def _one_round_against_a_faulty_dealer(work: Path, fault: str) -> list[tuple[int, str]]:
    """`fednode cluster` of 5 with member 4 a dealer running validator fault `fault`: the one round commits with
    equal heads; each honest member's index and daemon log."""
    result = fednode("cluster", "--nodes", "5", "--rounds", "1", "--malicious", "1", "--attack", "scaling",
                     "--validator-fault", fault, "--phase-deadline", "6", "--workdir", str(work),
                     "--json", "--stall-timeout", "180", timeout_s=420)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 1 and len(set(summary["head_hashes"])) == 1
    return [(honest, (work / f"node-{honest}" / "daemon.log").read_text()) for honest in range(4)]


def test_a_dealer_withholding_its_sketch_shares_is_named_on_the_ledger_and_left_out(tmp_path: Path) -> None:
    """Red team v6 on real daemons: member 4 (of N = 5, f = 1, t_v = 1) commits `dealt` but sends every holder
    junk instead of its sketch shares, and never answers the complaints the holders then put on the ledger.
    Round 1 aborts at the validate deadline naming member 4 (its unanswered complaints), which is absent and
    excluded when round 2 opens; round 2 validates without it and commits."""
    for honest, log in _one_round_against_a_faulty_dealer(tmp_path / "run", "withhold-shares"):
        assert re.search(rf"member {honest} complains that member 4 sent it no valid sketch shares", log), honest
        assert re.search(r"round 1 aborted: .*missing \[4\]", log), honest


def test_a_dealer_answering_with_junk_is_proven_by_disclosures_and_named(tmp_path: Path) -> None:
    """Member 4 commits in `dealt` the hash of a junk bundle for every holder, sends them junk and answers every
    complaint with that junk. Each honest holder proves the answer bad on the ledger (`disclose`, its channel
    secret for member 4), so round 1's abort names member 4 alone, not the holders whose complaints it did
    answer; round 2 validates without it and commits. (On real daemons only: a disclosure must pass the
    primary's mempool, which the in-process tests do not have.)"""
    for honest, log in _one_round_against_a_faulty_dealer(tmp_path / "run", "junk-answer"):
        assert "answer holds no valid shares" in log, honest
        assert re.search(r"round 1 aborted: .*missing \[4\]", log), honest


def _logged_at(log: str, pattern: str) -> datetime:
    """When the first line of `log` matching `pattern` was written (the daemon log's asctime)."""
    match = re.search(rf"^(\S+ \S+) .*{pattern}", log, re.MULTILINE)
    assert match, pattern
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")


def test_a_frivolous_complaint_is_named_about_two_deadlines_into_the_validate_phase(tmp_path: Path) -> None:
    """Red team g8 f3 on real daemons: member 3 (of N = 4, f = 1, t_v = 1: every holder must publish) complains
    about member 0, which served it well, and publishes no statistics. Member 0 answers at once; the abort then
    waits 1.25 deadlines after that answer (past the complaint window), not the 4 deadlines it waited with
    complaints before, and names member 3; the retry leaves it out and commits. The deadline, 13 s, outlasts
    the censorship bound at f = 1 (12 s), so the named member lowers f_eff and the three others validate alone."""
    deadline_s, work = 13.0, tmp_path / "run"
    result = fednode("cluster", "--nodes", "4", "--rounds", "1", "--malicious", "1", "--attack", "scaling",
                     "--validator-fault", "frivolous-complaint", "--phase-deadline", str(deadline_s),
                     "--workdir", str(work), "--json", "--stall-timeout", "240", timeout_s=480)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rounds_committed"] == 1 and len(set(summary["head_hashes"])) == 1
    for honest in range(3):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert re.search(r"member 3 complains that member 0 sent it no valid sketch shares", log), honest
        assert re.search(r"round 1 aborted: .*missing \[3\]", log), honest
    log = (work / "node-0" / "daemon.log").read_text()
    validate_s = (_logged_at(log, r"round 1 aborted") - _logged_at(log, r"round 1: phase sketch closed")).total_seconds()
    print(f"validate phase of the frivolously complained round: {validate_s:.1f} s = {validate_s / deadline_s:.2f} D")
    assert validate_s < 3.2 * deadline_s, validate_s


def test_a_masked_input_contradicting_its_sketch_is_convicted_once_and_later_rounds_commit(tmp_path: Path) -> None:
    """`lie-identity` on real daemons: member 4 (of N = 5, f = 1) trains honestly (so validation accepts it) but
    masks its update plus 2^20 per coordinate while sketching the update itself. Unmasking fails at every node;
    the primary's `fail` opens the blame phase, every holder discloses, and the verdict every replica recomputes
    convicts member 4 on its own disclosures. Round 1 is not aborted but finishes over S \\ {4} (the excise phase:
    the others reveal their shares of member 4's mask key and, as holders, their shares of the sketches' sum over
    S \\ {4}, which the linear identity of the excised sum checks), member 4 is kept out, and round 2 commits without
    it. (With four members left and the secure-aggregation degree t = 3, a round whose rule rejects one of them
    aborts: "validation accepted only", unrelated to the blame.)"""
    summary, work = _honest_member_with_fault(tmp_path, "lie-identity", 5)
    assert summary["rounds_committed"] == 2 and summary["convicted"] == [4] and summary["disputes"] == [], summary
    assert len(set(summary["head_hashes"])) == 1 and summary["accuracy"] >= 0.93
    for honest in range(4):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert re.search(r"round 1: the ledger convicts \[4\]", log), honest
        assert len(re.findall(r"fails .*: blame phase", log)) == 1, honest  # member 4 is never in S again
        assert re.search(r"round 1: the verdict convicted \[4\] of S: the round finishes without them", log), honest
        assert re.search(r"round 1 committed: 4 inputs", log), honest


def test_a_dealer_whose_shares_contradict_its_advert_is_convicted_by_the_unmask_abort(tmp_path: Path) -> None:
    """`bad-deal` on real daemons (red team rt2-1/rt2-2): member 4 (of N = 5, f = 1, t = 3) deals the shares of its
    secrets to holders 1 and 2 off its polynomial, committing to exactly what it sends. Every member reveals on the
    ledger; the committed shares of its self seed fit no degree-3 polynomial, so every replica votes for the
    primary's abort, which convicts member 4. Round 2's key phases ran ahead with it, so its mask key (a dropped
    member of U2 there) is proven bad again and that round aborts too; from round 3 on, nobody expects it."""
    summary, work = _honest_member_with_fault(tmp_path, "bad-deal", 5)
    assert (summary["rounds_committed"], summary["rounds_aborted"], summary["convicted"]) == (2, 2, [4]), summary
    assert len(set(summary["head_hashes"])) == 1 and summary["accuracy"] >= 0.93
    for honest in range(4):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert re.search(r"round 1: the ledger convicts \[4\]", log), honest


@pytest.mark.parametrize("validation", [False, True], ids=["no-validation", "validation"])
def test_a_weight_liar_is_convicted_with_or_without_validation_and_later_rounds_commit(validation: bool,
                                                                                       tmp_path: Path) -> None:
    """`lie-weight` on real daemons (red team B13): member 3 (of N = 4, f = 1) masks its weight plus 2^20 and commits
    its true weight. The unmasked weight differs from the committed weights' sum at every node (with validation the
    sketch, which does not cover the weight, agrees); the primary's `fail` [1, -1, bases] opens the blame phase, the
    disclosures follow (without validation S's members', their pair scalars alone), and the verdict every replica
    recomputes convicts member 3 alone. With or without validation round 1 is not aborted but finishes over S \\ {3}
    (the excise phase: the three others reveal their shares of member 3's mask key, and with validation send their
    shares of the sketches' sum over S \\ {3}, docs/validation.md "Excising convicted survivors"), and round 2
    commits without it."""
    summary, work = _honest_member_with_fault(tmp_path, "lie-weight", 4, *(() if validation else ("--no-validation",)))
    assert (summary["rounds_committed"], summary["rounds_aborted"], summary["convicted"]) == (2, 0, [3]), summary
    assert summary["disputes"] == [] and len(set(summary["head_hashes"])) == 1 and summary["accuracy"] >= 0.9
    for honest in range(3):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert re.search(r"round 1: the ledger convicts \[3\]", log), honest
        blames = re.findall(r"the unmasked sum fails \(weight (\w+), sketch coordinate (\S+)\): blame phase", log)
        assert blames == [("True", "None")], (honest, blames)  # the weight alone, once: member 3 is never in S again
        assert re.search(r"round 1: the verdict convicted \[3\] of S: the round finishes without them", log), honest
        assert re.search(r"round 1 committed: 3 inputs", log), honest


def test_a_liar_about_its_pair_masks_disputes_each_honest_partner_once_and_is_convicted_at_f_plus_1(
        tmp_path: Path) -> None:
    """`lie-disclosure` on real daemons: member 3 (of N = 4, f = 1) masks as `lie-identity` (its update plus 2^20 per
    coordinate, sketched as trained), and its blame disclosure lies about its pair scalar with its lowest partner it
    still shares a mask with, so that it passes its own check. Round 1's verdict convicts nobody and records the
    dispute (0, 3): the round aborts. In the retry, the pair (0, 3) masks nothing, so the lie falls on member 1: the
    dispute (1, 3) gives member 3 its second distinct partner, f + 1, and the ledger convicts it; that round finishes
    over the three others (the excise phase) and the next commits without it. No honest member is convicted, and
    no two honest members dispute."""
    summary, work = _honest_member_with_fault(tmp_path, "lie-disclosure", 4)
    assert (summary["rounds_committed"], summary["rounds_aborted"], summary["convicted"]) == (2, 1, [3]), summary
    assert sorted(map(tuple, summary["disputes"])) == [(0, 3), (1, 3)], summary
    assert len(set(summary["head_hashes"])) == 1 and summary["accuracy"] >= 0.9
    for honest in range(3):
        log = (work / f"node-{honest}" / "daemon.log").read_text()
        assert len(re.findall(r"fails .*: blame phase", log)) == 2, honest  # one per dispute, then never in S again
        assert re.search(r"round 1: the ledger convicts \[\] .*disputed pairs \[\[0, 3\]\]", log), honest  # the abort's evidence
        assert re.search(r"round 2: the ledger convicts \[3\]", log), honest
        assert re.search(r"round 2: the verdict convicted \[3\] of S: the round finishes without them", log), honest
        assert re.search(r"round 2 committed: 3 inputs", log), honest
    liar = (work / "node-3" / "daemon.log").read_text()
    assert re.findall(r"lying in our blame disclosure about our pair scalar with member (\d)", liar) == ["0", "1"]
