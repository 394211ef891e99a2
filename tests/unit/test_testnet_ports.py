"""Ports of a local testnet stay reserved between the moment they are chosen and the daemons' bind."""

from __future__ import annotations

import socket

import pytest
import trio

from node.testnet import free_ports


def test_reserved_ports_are_distinct_and_refused_to_a_plain_bind() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        with socket.socket() as intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))


def test_a_daemon_style_listener_binds_a_reserved_port_and_serves() -> None:
    """trio's listeners (the status server) and libp2p's set SO_REUSEADDR, as the daemon does."""
    (port,) = free_ports(1)

    async def main() -> bytes:
        with trio.fail_after(10):
            listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
            async with listeners[0]:
                client = await trio.open_tcp_stream("127.0.0.1", port)
                server = await listeners[0].accept()
                async with client, server:
                    await client.send_all(b"ping")
                    return await server.receive_some(4)

    assert trio.run(main) == b"ping"
