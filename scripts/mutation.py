"""Mutation testing of the protocol cores with mutmut, one target module at a time.

    python scripts/mutation.py                    # the targets of MEASURED
    python scripts/mutation.py smpc/shamir.py     # only these
    python scripts/mutation.py --list             # targets and the tests run against each

For each target the repository's sources, tests and setup.cfg are copied to a scratch directory
(WORKDIR/<target>, default /tmp/fednode-mutation), the `[mutmut]` section of setup.cfg is completed
with the target (`only_mutate`) and its test files (`pytest_add_cli_args_test_selection`), and
`mutmut run --max-children 1` runs there under `nice -n 15`: the worktree never holds mutants and a
run uses one core. mutmut records which tests reach each mutated function and runs only those
against each mutant, so a target takes seconds to a few minutes (docs/testing.md has the figures).

A mutant "survives" when every selected test still passes. Survivors that no test can kill,
because they do not change behaviour, are listed in EQUIVALENT with the argument; the report
counts them apart. The script prints, per target, killed / (all - equivalent) and the diff of
every other survivor, and exits 1 when a target is below TARGET_SCORE.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).with_name("mutmut")
TARGET_SCORE = 0.90
COPIED = ("consensus", "ml", "node", "smpc", "tests", "scripts", "setup.cfg", "pyproject.toml")

UNIT = "tests/unit/"
PROPERTY = "tests/property/"
CONSENSUS_UNIT = tuple(sorted(UNIT + path.name for path in (REPO / UNIT).glob("test_consensus_*.py")))
"""Every consensus unit test file: together they run in about two seconds (the simulator's tests take a
minute and are left out)."""
TARGETS: dict[str, tuple[str, ...]] = {
    "ml/robust.py": (UNIT + "test_ml_robust.py", UNIT + "test_ml_robust_boundaries.py",
                     UNIT + "test_ml_robust_persistence.py", UNIT + "test_clip_bound.py", UNIT + "test_ml_robust_angles.py"),
    "node/wire.py": (UNIT + "test_wire.py", UNIT + "test_wire_boundaries.py", PROPERTY + "test_wire_fuzz.py"),
    "smpc/field.py": (UNIT + "test_smpc_field.py", UNIT + "test_smpc_shamir.py"),
    "smpc/shamir.py": (UNIT + "test_smpc_shamir.py", PROPERTY + "test_smpc_shamir_reference.py"),
    "smpc/prg.py": (UNIT + "test_smpc_prg.py",),
    "smpc/masking.py": (
        UNIT + "test_smpc_masking.py",
        UNIT + "test_smpc_secagg_protocol.py",
        PROPERTY + "test_smpc_masking_sum.py",
    ),
    "smpc/quantize.py": (UNIT + "test_smpc_quantize.py",),
    "smpc/secagg.py": (
        UNIT + "test_smpc_secagg_protocol.py",
        UNIT + "test_smpc_secagg_boundaries.py",
        UNIT + "test_smpc_secagg_evidence.py",
        PROPERTY + "test_smpc_secagg_dropouts.py",
        PROPERTY + "test_smpc_secagg_reordering.py",
    ),
    "smpc/messages.py": (UNIT + "test_smpc_messages.py", UNIT + "test_smpc_secagg_protocol.py",
                         PROPERTY + "test_smpc_messages_fuzz.py"),
    "smpc/validation.py": (UNIT + "test_smpc_validation.py", UNIT + "test_smpc_validation_checks.py",
                           UNIT + "test_smpc_validated_round.py"),
    "smpc/sketch.py": (UNIT + "test_smpc_sketch.py",),
    "smpc/blame.py": (UNIT + "test_smpc_blame.py", UNIT + "test_contract_blame.py"),
    "smpc/przs.py": (UNIT + "test_smpc_przs.py", UNIT + "test_smpc_validated_round.py", UNIT + "test_smpc_beaver.py"),
    "smpc/beaver.py": (UNIT + "test_smpc_beaver.py", PROPERTY + "test_smpc_beaver_audit.py",
                       PROPERTY + "test_smpc_beaver_correction.py"),
    "smpc/validation_messages.py": (UNIT + "test_smpc_validation_messages.py", PROPERTY + "test_smpc_validation_messages_fuzz.py",
                                    UNIT + "test_secure_round.py", UNIT + "test_smpc_sealed_shares.py"),
    "smpc/keys.py": (UNIT + "test_smpc_keys.py",),
    "smpc/aead.py": (UNIT + "test_smpc_keys.py", UNIT + "test_smpc_secagg_protocol.py"),
    "smpc/signing.py": (UNIT + "test_smpc_keys.py", UNIT + "test_smpc_secagg_protocol.py"),
    **{f"node/contract{part}.py": (UNIT + "test_contract.py", UNIT + "test_contract_absent.py",
                                   UNIT + "test_contract_secure_phases.py", UNIT + "test_contract_eval.py",
                                   UNIT + "test_contract_tx.py", UNIT + "test_contract_proposal.py",
                                   UNIT + "test_contract_state.py", UNIT + "test_contract_complaints.py",
                                   UNIT + "test_contract_blame.py")
       for part in ("", "_tx", "_state", "_membership", "_rules", "_transitions")},
    **{f"consensus/{name}.py": CONSENSUS_UNIT
       for name in ("quorum", "block", "normal_case", "view_change", "checkpoints", "replica", "restore", "actions")},
    "consensus/messages.py": CONSENSUS_UNIT + (PROPERTY + "test_codec_fuzz.py",),
    "consensus/codec.py": CONSENSUS_UNIT + (PROPERTY + "test_codec_fuzz.py",),
}
"""Target module -> the test files run against its mutants (the ones that exercise it directly)."""

MEASURED = ("ml/robust.py", "node/wire.py", "smpc/field.py", "smpc/shamir.py", "smpc/prg.py", "smpc/masking.py",
            "smpc/quantize.py", "smpc/keys.py", "smpc/aead.py", "smpc/signing.py", "smpc/validation.py", "smpc/przs.py",
            "consensus/quorum.py", "consensus/block.py", "consensus/normal_case.py", "consensus/view_change.py",
            "node/contract_transitions.py", "node/contract_rules.py", "smpc/secagg.py", "smpc/messages.py",
            "smpc/validation_messages.py", "smpc/sketch.py", "smpc/blame.py", "smpc/beaver.py", "node/contract.py", "node/contract_tx.py",
            "node/contract_state.py", "node/contract_membership.py", "consensus/checkpoints.py", "consensus/actions.py",
            "consensus/codec.py", "consensus/messages.py", "consensus/restore.py", "consensus/replica.py")
"""What a run without arguments covers: the targets whose results docs/testing.md reports."""

SQUARE = "the distance matrix is checked square first, so shape[1] == shape[0]"
FLOAT64_LATER = ("every later use converts the values to Python floats (tolist) or combines them with a float64 "
                 "operand, so int and float32 inputs give the same results")
EQUIVALENT: list[tuple[str, ...]] = [
    ("smpc/prg.py", r'seed\.to_bytes\(SEED_BYTES, \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/prg.py", r"bytearray\((4 \* length \+ _AES_BLOCK_BYTES \+ 1|5 \* length \+ _AES_BLOCK_BYTES - 1)\)",
     "a larger scratch buffer: the view reads only its first 4 * length bytes"),
    ("smpc/prg.py", r"bytearray\(4 \* length \+ _AES_BLOCK_BYTES - 2\)",
     "the cryptography release pinned here needs only len(data) bytes for update_into (older ones needed 15 more)"),
    ("ml/robust.py", r"shape\[1\]", SQUARE),
    ("ml/robust.py", r"^d = np\.asarray\(sq_dists, (dtype=None)?\)$", FLOAT64_LATER),
    ("ml/robust.py", r"^(norms = |ratios = norm_ratios\()\[float\(v\) for v in np\.asarray\(sq_norms, (dtype=None)?\)\.tolist\(\)\]\)?$",
     "tolist() then float() gives the same Python floats from float32 or float64"),
    ("ml/robust.py", r"^(norms|w) = np\.asarray\((sq_norms|weights), (dtype=None)?\)$", FLOAT64_LATER),
    ("ml/robust.py", r"per_sample\(norms, d, np\.asarray\(weights, (dtype=None)?\)\[survivors\]\)",
     "per_sample converts the weights to float64 itself"),
    ("ml/robust.py", r"return np\.array\(sorted\(ranked\[:m\]\), (dtype=None)?\)",
     "a non-empty list of Python ints (m >= 1 is checked) is int64 either way"),
    ("ml/robust.py", r"zip\(ratios, directions, (strict=(None|False))?\)", "both lists have one entry per update"),
    ("ml/robust.py", r"^if len\(flagged\) < f:$",
     "with exactly f flagged, capping rejects the f flagged ones: the same mask"),
    ("ml/robust.py", r"^past = history if history is not None else \[1\] \* len\(keep\)$",
     "a constant history ranks nobody ahead of anybody, whatever the constant"),
    ("ml/robust.py", r"^capped\[worst(\[:max\(0, places\)\])?\] = None$", "None stored into a bool array is False"),
    ("ml/robust.py", r"zip\((near, far|self\.past, passed\.tolist\(\)), (strict=(None|False))?\)",
     "both sequences have one entry per update (per survivor), so strict has nothing to check"),
    ("ml/robust.py", r"if ratios else 2\.0$",
     "with no ratios the threshold is compared with nothing: both callers return an empty mask (and no scores)"),
    ("ml/robust.py", r"and len\(left\.indices\) >= 0:$",
     "with no update left the tier's statistics, flags and places are all empty: the same decision"),
    ("ml/robust.py", r"zip\((left\.indices\.tolist\(\), zip\(ratios, cliques, .*\)|ratios, cliques), (strict=(None|False))?\)",
     "angle_statistics returns one ratio and one clique ratio per survivor"),
    ("ml/robust.py", r"zip\((angles, past|cliques, past|angles, cliques, past, mean_angles, mean_cliques), (strict=(None|False))?\)",
     "persistent_outliers zips its three inputs three times: any length mismatch reaches one of the other two strict zips"),
    ("ml/robust.py", r"len\(members\) >= 2:$",
     "two members are equally far from their mean, so the loop stops there anyway (factor >= 1)"),
    ("ml/robust.py", r"norms\[i\] >= 0 else 0\.0\)$",
     "a zero update has cosine 0 with every other (_cosine), so its score is 0 / sqrt(spread) = 0.0 anyway"),
    ("smpc/field.py", (r"(np\.asarray\((x|a|b|values), (dtype=None)?\)|np\.add\(a, .*, (dtype=None)?\)\)|"
                      r"np\.sum\(values .*, axis=axis, (dtype=None)?\)|, (dtype=None)?\)$)"),
     ("the field operations take uint64 arrays and np.uint64 scalars (FieldArray, FieldLike), for which numpy's "
      "own result type is uint64 already"),
     (r"^(x = \(np\.asarray\(x|return np\.asarray\(x - _P64|return _fold\(|a = np\.asarray\(a|"
     r"b = np\.asarray\(b|values = np\.asarray\(values, dtype=np\.uint64|low = np\.sum|high = np\.sum)")),
    ("smpc/field.py", r"^return np\.asarray\(values, (dtype=None)?\)\.astype\(np\.uint32\)$",
     "int32, int64 and float inputs reach the same uint32 values through either cast"),
    ("smpc/keys.py", r'\.to_bytes\((2|8|4), \),$', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/keys.py", r"length=KEY_BYTES, info=info\)", "HKDF's salt defaults to None"),
    ("smpc/aead.py", r'\.to_bytes\((2|4|8), \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/signing.py", r'\.to_bytes\(2, \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/signing.py", r"^if key is None and len\(signature\) != SIGNATURE_BYTES:$",
     "a known key given a short signature: nacl raises BadSignatureError, which is also False"),
    ("smpc/masking.py", r"^if (other >= owner|dropped >= survivor):$",
     "the two ids are never equal (no pairwise mask with oneself; a dropped member is no survivor)"),
    ("smpc/quantize.py", r"^return bound / norm if norm >= bound else 1\.0$", "at norm == bound the factor is 1.0 either way"),
    ("smpc/shamir.py", r"zip\(.*, (strict=(None|False))?\)", "the zipped sequences have equal lengths by construction"),
    ("smpc/shamir.py", r"lagrange_weights\(xs, at\) for at in targets\], (dtype=None)?\)$",
     "Lagrange weights are Python ints below p < 2^63: int64 here, and field.mul converts them to uint64"),
    ("smpc/shamir.py", r'int\.from_bytes\(chunk, "big"\) for chunk in chunks\], (dtype=None)?\)$',
     "56-bit chunks are int64 here, and share_vector converts them with field.as_field"),
    ("smpc/shamir.py", r"stacked\.astype\(None\)\.tobytes", "the stacked shares are uint64 already"),
    ("smpc/shamir.py", r"field\.sum_mod\(field\.mul\(stacked, weights\[None, :\]\), \)\]$",
     "sum_mod's default axis -1 is axis 1 of the 2-D stack"),
    ("smpc/shamir.py", r'int\.from_bytes\(chunk, \)|\.to_bytes\(w, \)', 'int.from_bytes and int.to_bytes default to "big" since Python 3.11'),
    ("smpc/shamir.py", r"pow\(x, k, (None)?\)|range\(q_terms \+ 2\)",
     "unreduced powers (or one unused extra) give the same solution: _solve_mod_p reduces modulo p"),
    ("smpc/shamir.py", r"\[\*solution\[q_terms:\], 2\]|^quotient = \[1\] \*|remainder\[: len\(monic\) \+ 1\]",
     ("_divide never reads the divisor's leading coefficient nor the quotient's initial values, and the "
      "remainder's entries above len(monic) - 1 are zero after the division")),
    ("smpc/shamir.py", r"candidates\[: degree \+ 2\]|agreeing\[: degree \+ 2\]",
     "every candidate / agreeing share lies on the one polynomial, so t + 2 of them interpolate the same one"),
    ("smpc/shamir.py", r'InconsistentShares\((None|"XXshares disagree|"SHARES DISAGREE)',
     ("unreachable in a test: it needs a wrong share whose error cancels in a combination with SHA-256-derived "
      "weights (probability about 2^-61)"), "shares disagree beyond their random combination"),
    ("ml/robust.py", r"^(return |keep = )np\.array\(\[.*\], (dtype=None)?\)$",
     "the list is never empty there (the empty case returns earlier) and a non-empty list of bools is a bool array",
     r"score == 0\.0 for score|score <= threshold for score in scores\], dtype=bool\)$|c >= min_cosine"),
    ("consensus/checkpoints.py", r'_evidence\("checkpoint", checkpoint\.sender, \(1, checkpoint\.height\)',
     "the slot is only a de-duplication key next to the kind; (1, height) is as unique as (0, height)"),
    ("consensus/checkpoints.py", r"_checkpoint_votes\.get\(height, (None)?\)\.values\(\)",
     "both callers store a vote at that height just before (_make_checkpoint, _on_checkpoint), so the default is never used"),
    ("consensus/checkpoints.py", r"^if not winners or height < self\._stable\[0\]:$",
     ("at the stable height only our own vote can be tallied (the others were collected and _on_checkpoint refuses "
      "any at or below it), below every quorum but a lone replica's, whose stable checkpoint is its own, made once")),
    ("consensus/checkpoints.py", r"_proofs_sent\.get\(checkpoint\.sender, \((1, 0|0, 1)\)\)$",
     ("the default counts only when the stable height equals its 0 (times is 0 otherwise), and at stable height 0 "
      "there is no proof to send")),
    ("consensus/checkpoints.py", r'_may_help\((None|"XXcheckpointXX"|"CHECKPOINT"), checkpoint\.sender,$',
     "the rate-limit key's kind is a private label: any value distinct from the other kinds gives the same limits"),
    ("consensus/view_change.py", r"_view_change_ok\(vc, signature_checked=None\):$",
     "None is falsy like False: the quoted VIEW-CHANGE's signature is checked either way",
     r"signature_checked=False\):$"),
    ("consensus/view_change.py", r'_may_help\((None|"XXnew_viewXX"|"NEW_VIEW"), sender, now_ms\)',
     "the rate-limit key's kind is a private label: any value distinct from the other kinds gives the same limits"),
    ("consensus/view_change.py", r"_evidence\(\"(viewchange|newview)\", (vc|nv)\.sender, \((vc\.new_view|nv\.view), 1\)",
     "the slot is only a de-duplication key next to the kind; (view, 1) is as unique as (view, 0)"),
    ("consensus/view_change.py", r"if vc\.new_view >= nv\.view\}$",
     ("keeps at most one stale VIEW-CHANGE per sender for the installed view, which no count reads (they ask "
      "for new_view > view, or >= view only while no view is installed, by when view has moved above it) and "
      "the sender's next VIEW-CHANGE replaces")),
    ("consensus/view_change.py", r'^self\._justified = ""$',
     "every read compares it with a tuple or slices it into one: \"\" answers like None"),
    ("consensus/normal_case.py",
     (r"_note_height\(prepare\.sender, prepare\.height - 1, None\)|"
      r"_note_height\(commit\.sender, commit\.height - 1, (None, exact=False|now_ms, exact=None|now_ms, |now_ms, exact=True)\)"),
     ("a PREPARE or COMMIT that passed the stale filter is for a height above ours, so the sender's claim is at "
      "least our height: it is never helped, and the time (only read when helping) and `exact` change nothing")),
    ("consensus/normal_case.py",
     (r"^if old is not None or old != commit\.block_hash:$|self\._commits\.get\(\(commit\.view, old\), (None)?\)$|"
      r"^votes\.pop\(commit\.sender, \)$|^self\._commits\.pop\(\(commit\.view, old\), \)$"),
     ("the sender's previous second COMMIT is always held under (view, old) with the sender among its votes "
      "(both are cleared together at the next height), so the defaults are never used, and old = None finds nothing")),
    ("consensus/normal_case.py", r"if m\.height <= self\.committed_height \+ 2\]$",
     "a message two heights ahead replayed early goes back into the future buffer (_slot_message), where it stays"),
    ("smpc/validation.py", r"zip\(pairs, values\.tolist\(\), (strict=(None|False))?\)",
     "values has one entry per pair (asserted just above)"),
    ("smpc/validation.py", r"^statistics = field\.sum_mod\(field\.mul\(diffs, diffs\), \)$",
     "sum_mod's default axis -1 is axis 1 of the 2-D stack"),
    ("smpc/validation.py", r"^if 4 \* self\.max_norm_fixed\*\*2 >= _SIGNED_FIELD_MAX:$",
     "4 M^2 is a float and (p - 1) / 2 = 2^60 - 1 is not a double, so the two are never equal"),
    ("smpc/validation.py", r"^room = math\.sqrt\(_SIGNED_FIELD_MAX (/ 4\) \+|\* 4\) -) math\.sqrt\(width\)$",
     "a larger first guess only costs iterations: the loop lowers the exponent until the parameters fit"),
    ("smpc/validation.py", r'\.to_bytes\((2|8), \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("consensus/view_change.py", r"prepared\.preprepare\.height < self\._final_height\(\):$",
     ("a prepared certificate at exactly the final height is for the block certified there (quorum "
      "intersection), which is then a candidate: _learn_final delivers it and the commit clears the certificate")),
    ("consensus/normal_case.py", (r"^actions = (\[\*prepared\[1\], Broadcast\(prepared\[0\]\)\]|self\._send_prepare\(now_ms\)|"
                                  r"self\._on_prepared\(slot, tuple\(backups\[:self\.quorum - 1\]\)\))$"),
     "the list is still empty there, so assigning it equals extending it"),
    ("consensus/normal_case.py", r"^self\._last_commit = own_commit if \(isinstance\(own_commit, Commit\)\) or True else None$",
     "the outbox holds a Commit or nothing under the Commit key, so the test never changes the value"),
    ("consensus/normal_case.py", r"^actions \+= self\._send_prepare\(None\)$", "_send_prepare never reads the time"),
    ("consensus/normal_case.py", r"^primary = None$",
     ("no PREPARE of the primary is ever stored: a peer's is refused (prepare_from_primary) and a replica sends "
      "none for its own PRE-PREPARE")),
    ("consensus/normal_case.py", r"^block = (None|self\._candidates\.get\(None\))$",
     "_learn_final delivers the block itself when it is a candidate for the next height, with the same certificate"),
    ("consensus/normal_case.py", r"self\._known_cert\.height <= cert\.height:$",
     "a certificate of the same height certifies the same block; either one proves it final in a VIEW-CHANGE"),
    ("consensus/normal_case.py", r"self\._prepared\.preprepare\.height < self\.committed_height:$",
     ("a prepared certificate for a final height is never read: _start_view_change drops any at or below the "
      "final height, and the next prepared slot replaces it")),
    ("consensus/normal_case.py", r"if k\[3\] >= self\.committed_height\}$",
     ("entries for the committed height are never looked up again (such messages are stale before "
      "_check_equivocation) and go at the next commit")),
    ("smpc/przs.py", r'\.to_bytes\((2|8), \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/przs.py", r"for subset in ordered for j in range\(1, degree \+ 1\)\], (dtype=None)?\)$",
     "the weights are Python ints below p < 2^63: int64 here, and field.mul converts them to uint64"),
    ("smpc/przs.py", r"pow\(x, j, (None)?\) % field\.P$",
     "the unreduced power gives the same product modulo p (Python integers do not overflow)"),
    ("node/wire.py", r"^while self\._order and \(self\._order\[0\] < self\.floor",
     ("keeps a number equal to the floor one record longer; check() calls it STALE before looking it up, and "
      "the size bound then evicts it first without moving the floor")),
    ("node/contract_transitions.py", r"^s\.absent_since\.pop\(tx\.author, \)$",
     "every absent member has an absent_since entry (_mark_absent sets both, _apply removes both)"),
    ("node/contract_rules.py",
     r'^committed = s\.channel_keys\.get\(holder, (None|b"XXXX")?\)\[32 \* dealer : 32 \* dealer \+ 32\]',
     ("the default is never read: a holder of V revealed its channel keys, since each phase expects the members "
      "that closed the one before, and the seed (reveal) phase comes before the sketch phase that fixes V")),
    ("node/contract_rules.py", r"^return self\.complaint_refusal\(tx, judge=None\) is None$",
     "judge is only read as a truth value: None is falsy like False"),
    ("node/contract_rules.py",
     r'^if s\.phase != "(XXunmaskXX|UNMASK)" and not set\(members\) >= set\(self\.awaited\(s\.expected\)\):$',
     "in the unmask phase members is s.expected, which holds every awaited member, so no DeadlineCheck either way"),
    ("smpc/secagg.py", r'\.to_bytes\((2|4|8), \)', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/secagg.py", r"^probe = bytes\(\[10\]\) \+ bytes\(31\)",
     "X25519 clears the scalar's three low bits: 9 and 10 both become 8, the same probe"),
    ("smpc/secagg.py", r"^probe = bytes\(\[9\]\) \+ bytes\(32\)",
     "libsodium's crypto_scalarmult reads the first 32 bytes of the scalar; a 33rd is never read"),
    ("smpc/secagg.py", r"^self\._(keys_set|shares_set|input_digests): (frozenset\[int\]|dict\[int, bytes\]) = None$",
     ("read only once the transition that sets it ran (on_keys_committed, on_shares_committed, on_inputs_committed); "
      "a call out of phase fails the phase assert (or a TypeError) either way, and no ledger closes a phase empty")),
    ("smpc/secagg.py", r"^self\._pair_seeds: dict\[int, bytes\] = None$",
     "read only by mask(), which needs can_mask (U2, so on_shares_committed set it) and our secrets (asserted)"),
    ("smpc/secagg.py", r"^self\._masked_sent = None$", "only read as `not self._masked_sent`: None is falsy like False"),
    ("smpc/secagg.py", r"^\"(XX)?(masked input not decoded with this round's limits|MASKED INPUT NOT DECODED)",
     "the message of a multi-line assert (its second line escapes do_not_mutate_patterns)"),
    ("smpc/secagg.py", r'\.astype\("<u4", (copy=(None|True))?\)\.tobytes\(\)',
     "whether astype copies changes no byte that tobytes() returns"),
    ("smpc/messages.py", r"(cast\(None, |^None, )msgpack\.packb\(", "typing.cast returns its value unchanged at run time"),
    ("smpc/messages.py", r"\.astype\(np\.uint32, (copy=(None|True))?\)$",
     "a copy of the read-only view holds the same values, and no caller writes into the vector"),
    ("smpc/messages.py", r"length\.to_bytes\((1|2|4), \)$", 'int.to_bytes defaults to "big" since Python 3.11'),
    ("smpc/messages.py",
     (r"^signature = msgpack\.unpackb\(data\[start \+ length:\], (max_str_len=0,|max_bin_len=SIGNATURE_BYTES, "
      r"max_str_len=1,)$|^max_array_len=0, max_map_len=0, max_ext_len=1\)$"),
     ("the tail is exactly the 66 bytes of one msgpack object: a bin over 64 bytes, a one-character string or a "
      "one-byte ext cannot fill it, so these limits never decide")),
    ("smpc/messages.py", r"^return MaskedInput\(",
     ("_build's masked input is always refused as non-canonical: a canonical one starts 0x95 0x03, which peek_tag "
      "sends to _decode_masked_input instead"), r"^return MaskedInput\(round_id, sender, payload\[0\], signature\)$"),
    ("smpc/validation_messages.py", r"cast\(None, msgpack\.packb\(|msgpack\.packb\(body, \)\)$",
     "typing.cast returns its value unchanged at run time, and use_bin_type defaults to True"),
    ("smpc/validation_messages.py", r"^unsigned = Sketch(Shares|Sum)\(.*, (None|b\"XXXX\")\)$",
     "the unsigned message's signature is never read: body() leaves it out"),
    ("smpc/validation_messages.py",
     r"^items = msgpack\.unpackb\(data, (raw=None, max_bin_len|max_bin_len|raw=False, max_str_len)",
     ("raw defaults to False (None is falsy), and a byte string longer than max_bytes cannot fit in a message "
      "that is at most max_bytes long")),
    ("smpc/validation_messages.py", r"message\.(commitment|contribution)_list\(\), (strict=(None|False))?\)\)$",
     ("decode_shares checked the sizes: one commitment per dealt subset, one contribution per shared subset, so the "
      "zipped lists have equal lengths")),
    ("smpc/sketch.py", r"^if vector\.dtype\.itemsize (<= 4 and|< 4 or|<= 5 or) _largest",
     "both integer paths are exact (splitting into high and low bits only costs time), and no dtype has 5 bytes"),
    ("smpc/sketch.py", r"_largest\(vector\) \* _BLOCK <= _EXACT_FLOAT_INTEGER:$",
     "at |v| * 2^15 = 2^53 every block sum still lies within float64's exact integers"),
    ("smpc/sketch.py", r"^weights = np\.empty\(min\(_BLOCK, self\.dimension\), (dtype=None)?\)$",
     "np.empty's default dtype is float64"),
    ("smpc/sketch.py", r"^np\.copyto\(block, vector\[start : start \+ buckets\.size\], \)$",
     "only integer vectors get here, and the default same_kind casting copies every integer dtype into float64"),
    ("smpc/sketch.py",
     (r"dtype=np\.uint16 if (\(2 \* self\.width <= 1 << 16\) and False|3 \* self\.width <= 1 << 16|"
      r"2 \* self\.width < 1 << 16|2 \* self\.width <= 1 >> 16) else np\.intp\)$"),
     "the 8-byte compact copy for more widths: more memory, the same buckets"),
    ("smpc/sketch.py", r"^self\._compact = None$", "later passes recompute the same buckets from the keystream, only slower"),
    ("smpc/sketch.py", r"if \(vector\.size\) or True else 0$|if vector\.size else 1$",
     "apply asserts the vector has `dimension` > 0 entries, so it is never empty"),
    ("node/contract_tx.py", (r"^while self\.bytes >= self\._max_bytes or len\(self\._values\) > self\._max_entries:$|"
                             r"^while self\.bytes > self\._max_bytes or len\(self\._values\) >= self\._max_entries:$"),
     "a memo holds one transaction fewer: memory, not behaviour"),
    ("node/contract.py", r"^shadow\._apply\(tx, (None|self\.state\.height - 1|self\.state\.height \+ 2)\)$",
     ("the height only stamps the events and outcomes of a shadow that is thrown away: no rule reads a stored "
      "height, so what the later candidates are checked against is the same")),
    ("node/contract.py", r"^shadow\._validate\(tx, proposer=(None|-2)\)$",
     "any id no member has refuses every proposer-only transaction alike"),
    ("node/contract_tx.py", r'expect_bytes\(fields\[0\], "(sa\.message|stats\.shares)", \)\]$',
     ("the body's bound (MAX_TX_BODY_BYTES, checked first) is the tighter one: MAX_STATS_BYTES is larger, and a field "
      "cannot be longer than the body holding it")),
    ("node/contract_tx.py", r'expect_int\(fields\[1\], "eval\.correct", hi=MAX_EVAL_ROWS\)$',
     "expect_int's lo defaults to 0"),
    ("node/contract_state.py", r"^if outcome\.round <= round_id:$",
     "an outcome of round_id itself was returned by the test just before"),
    ("node/contract_membership.py", r"s\.absent_since\.get\(tx\.author, (None|1)?\) <= tx\.round",
     "every absent member has an absent_since entry (_mark_absent sets both, _apply removes both)"),
    ("node/wire.py", r"arrays nested too deeply|ARRAYS NESTED TOO DEEPLY|^raise Rejected\(RejectReason\.MALFORMED, (None)?\) from None$",
     "the RecursionError branch is unreachable: codec.decode refuses nesting deeper than 16 before recursing"),
    ("consensus/codec.py",
     r"^return msgpack\.packb\(_check\(value, 0\), (use_bin_type=True, (strict_types=None)?|strict_types=False)\)$",
     "packb's use_bin_type defaults to True and strict_types to False (None is falsy)"),
    ("consensus/codec.py", r"^(raw=None,)?$", "unpackb's raw defaults to False (None is falsy too)", r"^raw=False,$"),
    ("consensus/codec.py", r"^$", "unpackb's use_list defaults to True", r"^use_list=True,$"),
    ("consensus/codec.py", r"^(strict_map_key=(None|False),)?$",
     "max_map_len=0 refuses every non-empty map while parsing, and the empty map has no key to check",
     r"^strict_map_key=True,$"),
    ("consensus/codec.py", r"^$", "unpackb's default string limits are the input's length, which max_bytes bounds",
     r"^max_(bin|str)_len=max_bytes,$"),
    ("consensus/codec.py", r"^if len\(data\) > WALK_CHECK_MIN_BYTES:$",
     ("at exactly the threshold the re-encoding check runs instead of the walk, and the two agree on every input "
      "(test_codec_fuzz.py::test_the_walk_accepts_exactly_the_canonical_encoding)")),
    ("consensus/codec.py", r"len\(value\) > LARGE_BIN_BYTES:$",
     ("a byte string of exactly 256 bytes compared in full instead of by its header: its content was parsed from "
      "the input at that offset, so the comparison gives the same verdict")),
    ("consensus/codec.py", r'^raise DecodeError\((None|"XXnon-canonical encodingXX"|"NON-CANONICAL ENCODING")\)$',
     ("unreachable: msgpack refuses trailing bytes (ExtraData), and a walk that matched every item of the parsed "
      "value ends where the value ends"), None, r"x__check_canonical_by_walk__"),
    ("consensus/codec.py", r'\.to_bytes\((2|4), \)$', 'int.to_bytes defaults to "big" since Python 3.11'),
    ("consensus/restore.py", (r"= codec\.decode\((persisted\[KEY_VIEW\], max_bytes=65|record, max_bytes=129|"
                              r"persisted\[KEY_STABLE\], max_bytes=129)\)$"),
     ("a bound one byte higher on our own records, which are at most 53 bytes (view record 20, vote record 53, "
      "stable record 44)")),
    ("consensus/restore.py", r"= int\(view\), bool\(None\), int\(attempts\)$",
     ("only _install_view writes a view record with active = True, in the batch that persists that view's NEW-VIEW, "
      "which _restore_view_messages then installs again (active = True)")),
    ("consensus/restore.py", r"^if cert\.height >= self\._final_height\(\):$",
     "a persisted certificate of the height already known certifies the same block; either one proves it final"),
    ("consensus/restore.py", r"^if prepared\.preprepare\.height >= self\.committed_height:$",
     ("a prepared certificate at the committed height is never read (_start_view_change drops any at or below the "
      "final height, which is at least the committed one) and its block, kept as a candidate, is never looked up "
      "(candidates are looked up for the next height) and is evicted first")),
    ("consensus/restore.py", r"^plan = new_view_plan\(None, nv\.view_changes\)$",
     "restore reads only the plan's floor height, and the chain id is only the floor hash's genesis fallback"),
    ("consensus/replica.py", r"^self\.work_pending = None$", "only read as a truth value: None is falsy like False",
     None, "ǁ__init__"),
    ("consensus/replica.py", r"^self\._last_commit(: Commit \| None = \"\"|_resends = (None|1))$",
     ("read only once _last_commit is not None and _last_commit_resends > 0, and every assignment of either sets "
      "both")),
    ("consensus/replica.py", r"^self\._my_view_change: ViewChange \| None = \"\"$",
     ("read only while inactive, and every path to an inactive state sets it first (_start_view_change; restore, "
      "where the view record is persisted after the VIEW-CHANGE it follows)")),
    ("consensus/replica.py", r"^self\._justified: tuple\[int, int, bytes\] \| None = \"\"$",
     "every read compares it with a tuple"),
    ("consensus/replica.py", r"^self\._fetch_(target = 1|retry_at_ms = (None|1))$",
     ("read only in `target <= self._fetch_target and now_ms < self._fetch_retry_at_ms`, which is false until the "
      "first fetch sets both: every target reaching it is at least 1 and no time is negative")),
    ("consensus/replica.py", r"^self\._stable_proof: tuple\[Checkpoint, \.\.\.\] = None$",
     "only read as `not self._stable_proof` before it is first set: None is falsy like ()"),
    ("consensus/replica.py", r"^actions = self\._start_view_change\(self\.view \+ 1, now_ms\)$",
     ("_take_forced returns actions in tick only on the first tick after a restart (install, delivery and catch-up "
      "take the forced PRE-PREPARE themselves), and a transaction watched by then armed the view timer one timeout "
      "after it was first watched, so the view timer, not the request timer, fires on that tick"),
     None, r"tick__mutmut_26$"),
    ("consensus/replica.py", r"^return self\._send_prepare\(None\) \+ self\._progress\(now_ms\)$",
     "_send_prepare never reads the time"),
    ("consensus/replica.py", r"^if known >= 0:$",
     ("a zero claim kept changes no catch-up decision: the f+1-th highest claim is 0 either way when fewer than f+1 "
      "peers claim more, no target is 0, and a missing claim reads as 0")),
    ("consensus/replica.py", r"^return self\._help_peer\(sender, known, now_ms\) if \(exact\) or True else \[\]$",
     ("only a COMMIT passes exact=False, and one that passed the stale filter is above our height: its sender's "
      "claim (height - 1) is at least our height, so _help_peer sends nothing")),
    ("consensus/replica.py", r'and self\._may_help\((None|"XXcommitXX"|"COMMIT"), sender, now_ms\)\):$',
     "a private label of the rate limit, distinct from the other kinds (new_view, checkpoint) either way"),
    ("consensus/replica.py", r"^if cert\.height >= self\._final_height\(\):$",
     "a certificate of the height already known certifies the same block; either one proves it final"),
    ("consensus/replica.py", r"^peer = peers\[self\._fetch_rotation % len\(peers\)\] if \(peers\) or True else None$",
     ("peers holds every other replica, so it is empty only when n = 1, and a lone replica is never behind: every "
      "certificate and checkpoint it knows is its own")),
]
"""(target, regex on the mutated line as mutmut shows it, why no test can tell it from the original[, regex that
the original line must match too (or None)[, regex on the mutant's name, e.g. its function]], where the mutated
line alone is ambiguous)."""


@dataclass
class Outcome:
    target: str
    seconds: float = 0.0
    status: dict[str, list[str]] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    equivalent: dict[str, str] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(len(self.status.get(s, [])) for s in statuses)

    @property
    def total(self) -> int:
        return sum(len(names) for names in self.status.values())

    @property
    def score(self) -> float:
        relevant = self.total - len(self.equivalent)
        return self.count("killed", "timeout", "segfault") / relevant if relevant else 1.0


def prepare(target: str, tests: tuple[str, ...], workdir: Path) -> Path:
    """A scratch copy of the repository whose setup.cfg aims mutmut at one target and its tests."""
    scratch = workdir / target.replace("/", "_").removesuffix(".py")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutants")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, scratch / name, ignore=ignore)
        else:
            shutil.copy2(source, scratch / name)
    config = configparser.ConfigParser(interpolation=None)
    config.read(scratch / "setup.cfg")
    config["mutmut"]["only_mutate"] = target
    config["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    with open(scratch / "setup.cfg", "w") as out:
        config.write(out)
    return scratch


def mutmut(scratch: Path, *args: str, timeout: float) -> str:
    """Run mutmut in its own process group, niced; on timeout the whole group is killed."""
    env = dict(os.environ, HYPOTHESIS_PROFILE="ci", PYTHONHASHSEED="0")
    with subprocess.Popen(
        ["nice", "-n", "15", str(MUTMUT), *args],
        cwd=scratch,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    if process.returncode not in (0, 1):
        raise RuntimeError(f"mutmut {' '.join(args)} failed in {scratch}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return stdout


_DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
names = json.load(sys.stdin)
print(json.dumps({name: get_diff_for_mutant(name, path=find_mutant(name).path) for name in names}))
"""


def diffs(scratch: Path, names: list[str]) -> dict[str, str]:
    """`mutmut show` for many mutants in one process (one `mutmut show` call costs a second or two)."""
    run = subprocess.run(["nice", "-n", "15", sys.executable, "-c", _DIFFS], cwd=scratch, input=json.dumps(names),
                         capture_output=True, text=True, timeout=1800, check=True)
    found: dict[str, str] = json.loads(run.stdout.strip().splitlines()[-1])
    return {name: f"# {name}\n{diff}" for name, diff in found.items()}


def changed_lines(diff: str) -> tuple[str, str]:
    """The (original, mutated) line of a one-line mutant, stripped."""
    lines = diff.splitlines()
    removed = [line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]
    return (removed[0] if removed else ""), (added[0] if added else "")


def equivalence(target: str, diff: str) -> str | None:
    """The argument of the first EQUIVALENT entry that matches this mutant, if any."""
    original, mutated = changed_lines(diff)
    name = diff.split("\n", 1)[0].removeprefix("# ")
    for where, pattern, why, *extra in EQUIVALENT:
        on_original, on_name = (*extra, None, None)[:2]
        if (where == target and re.search(pattern, mutated) and (on_original is None or re.search(on_original, original))
                and (on_name is None or re.search(on_name, name))):
            return why
    return None


def campaign(target: str, workdir: Path, timeout: float) -> Outcome:
    began = time.monotonic()
    scratch = prepare(target, TARGETS[target], workdir)
    mutmut(scratch, "run", "--max-children", "1", timeout=timeout)
    outcome = Outcome(target)
    for line in mutmut(scratch, "results", "--all", "true", timeout=600).splitlines():
        match = re.match(r"\s*(\S+): (.+)$", line)
        if match:
            outcome.status.setdefault(match.group(2).strip(), []).append(match.group(1))
    outcome.diffs = diffs(scratch, outcome.status.get("survived", []) + outcome.status.get("no tests", []))
    for name, diff in outcome.diffs.items():
        reason = equivalence(target, diff)
        if reason:
            outcome.equivalent[name] = reason
    outcome.seconds = time.monotonic() - began
    if not outcome.total:
        raise RuntimeError(f"mutmut reported no mutants for {target}; see {scratch}")
    return outcome


def report(outcome: Outcome) -> str:
    counts = ", ".join(f"{status} {len(names)}" for status, names in sorted(outcome.status.items()))
    head = f"== {outcome.target}: {outcome.total} mutants ({counts}); equivalent {len(outcome.equivalent)}; "
    lines = [head + f"score {outcome.score:.1%} of non-equivalent killed"]
    for name, diff in outcome.diffs.items():
        if name not in outcome.equivalent:
            lines.append(diff.rstrip())
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="target modules (default: MEASURED; any of TARGETS)")
    parser.add_argument("--list", action="store_true", help="print the targets and their tests, run nothing")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fednode-mutation"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per target")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"not a target: {sorted(unknown)}; see --list")
    if args.list:
        for target, tests in TARGETS.items():
            print(target, "<-", " ".join(tests))
        return 0
    outcomes = []
    for target in args.targets or MEASURED:
        outcomes.append(campaign(target, args.workdir, args.timeout))
        print(report(outcomes[-1]), flush=True)
    print("\n| target | mutants | killed | equivalent | not killed | score | minutes |\n|---|---|---|---|---|---|---|")
    for o in outcomes:
        killed = o.count("killed", "timeout", "segfault")
        print(f"| `{o.target}` | {o.total} | {killed} | {len(o.equivalent)} | {o.total - killed - len(o.equivalent)} "
              f"| {o.score:.1%} | {o.seconds / 60:.0f} |")
    below = [o.target for o in outcomes if o.score < TARGET_SCORE]
    print(f"below {TARGET_SCORE:.0%}: {', '.join(below) or 'none'}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
