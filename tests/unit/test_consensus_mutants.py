"""Tests that kill issue 18's consensus mutants, each planted by hand once and seen to fail:

* certificate verification counting `len(signatures)` instead of distinct signers;
* joining a higher view on f VIEW-CHANGEs instead of f+1.
"""

from __future__ import annotations

import pytest
from consensus_net import CHAIN, Net, signer

from consensus import messages as m
from consensus.block import Block, CertificateError, CommitCertificate, commit_statement, verify_certificate


def repeated_signer_certificate(net: Net, height: int, prev: bytes, sender: int = 3) -> tuple[Block, CommitCertificate]:
    """A block 'certified' by one member's COMMIT repeated a quorum of times (3 for N=4)."""
    block = Block(CHAIN, height, prev, 0, 0, (b"forged",))
    sig = signer(sender)(commit_statement(CHAIN, 0, height, block.hash()))
    return block, CommitCertificate(height, 0, block.hash(), ((sender, sig),) * 3)


def test_a_certificate_of_one_signer_repeated_is_rejected_offline() -> None:
    net = Net()
    block, cert = repeated_signer_certificate(net, 1, CHAIN)
    with pytest.raises(CertificateError, match="twice|distinct"):
        verify_certificate(CHAIN, block, cert, n=4, quorum=3, verify=net.verify)


def test_catch_up_refuses_a_block_certified_by_one_repeated_commit() -> None:
    net = Net()
    block, cert = repeated_signer_certificate(net, 1, CHAIN)
    assert net.replicas[0].add_committed(block, cert, 0) == []
    assert net.replicas[0].committed_height == 0


def test_a_view_change_floor_made_of_one_repeated_commit_is_rejected() -> None:
    net = Net(byzantine={3})
    _, cert = repeated_signer_certificate(net, 1, CHAIN)
    net.to(0, net.sign(m.ViewChange(1, cert, None, 3)))
    assert net.replicas[0].stats["bad_view_change"] == 1
    assert net.replicas[0]._known_cert is None


def test_f_view_changes_for_a_higher_view_do_not_pull_a_replica_along() -> None:
    """N=4, f=1: one Byzantine VIEW-CHANGE for view 5 could be a lie; f+1 = 2 include an honest one."""
    net = Net(byzantine={2, 3})
    net.to(0, net.sign(m.ViewChange(5, None, None, 3)))
    assert net.replicas[0].view == 0 and net.replicas[0].active
    net.to(0, net.sign(m.ViewChange(7, None, None, 2)))
    assert net.replicas[0].view == 5, "f+1 VIEW-CHANGEs: join the smallest view among them"
    assert not net.replicas[0].active
