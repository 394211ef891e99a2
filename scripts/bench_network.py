"""Benchmark the libp2p transport (`node.network`) on loopback.

Measures, with real py-libp2p hosts in one process on 127.0.0.1:
connect time (dial until both sides see the connection), latency of a small
gossip message until every other member has it, latency of a small direct
frame, round trip of a small request (one fresh stream per request), and
throughput of 4 MB and 40 MB direct transfers.

Usage: python scripts/bench_network.py [--nodes 4] [--repeats 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from node.network import NetLimits, Network, open_network, peer_id_from_seed

TOPIC = "fednode-bench"
SMALL_BYTES = 200


def _seeds(n: int) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(n)]


@asynccontextmanager
async def _cluster(n: int) -> AsyncIterator[list[Network]]:
    seeds = _seeds(n)
    allowed = {peer_id_from_seed(seed): f"bench-{i}" for i, seed in enumerate(seeds)}
    async with AsyncExitStack() as stack:
        nets = [
            await stack.enter_async_context(open_network(seed, "127.0.0.1", 0, allowed, TOPIC, NetLimits()))
            for seed in seeds
        ]
        for i, net in enumerate(nets):
            for other in nets[i + 1 :]:
                await net.dial(other.listen_addrs[0])
        for net in nets:
            others = [o.peer_id for o in nets if o is not net]
            assert await net.wait_connected(others, timeout_s=10)
            assert await net.wait_gossip_ready(others, timeout_s=10)
        yield nets


async def _timed_ms(action: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await action()
    return 1000 * (time.perf_counter() - start)


def _summary_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def bench_connect(repeats: int) -> dict[str, float]:
    """Dial a fresh pair of hosts and wait until the dialer sees the connection."""
    seeds = _seeds(2)
    allowed = {peer_id_from_seed(seed): "bench" for seed in seeds}
    samples = []
    for _ in range(repeats):
        async with (
            open_network(seeds[0], "127.0.0.1", 0, allowed, TOPIC, NetLimits()) as a,
            open_network(seeds[1], "127.0.0.1", 0, allowed, TOPIC, NetLimits()) as b,
        ):

            async def connect(a: Network = a, b: Network = b) -> None:
                await a.dial(b.listen_addrs[0])
                assert await a.wait_connected([b.peer_id], timeout_s=10)

            samples.append(await _timed_ms(connect))
    return _summary_ms(samples)


async def bench_gossip(nets: list[Network], repeats: int) -> dict[str, float]:
    """Publish from node 0 and wait until every other node has the message."""
    samples = []
    for i in range(repeats):
        payload = i.to_bytes(4, "big") + bytes(SMALL_BYTES - 4)

        async def round_trip(payload: bytes = payload) -> None:
            await nets[0].publish(payload)
            for net in nets[1:]:
                assert (await net.inbox.receive())[2] == payload

        samples.append(await _timed_ms(round_trip))
    return _summary_ms(samples)


async def bench_direct(a: Network, b: Network, size_bytes: int, repeats: int) -> list[float]:
    """Send one frame of `size_bytes` from a to b and wait until b has it."""
    payload = os.urandom(size_bytes)
    samples = []
    for _ in range(repeats):

        async def transfer() -> None:
            assert await a.send(b.peer_id, payload)
            assert len((await b.inbox.receive())[2]) == size_bytes

        samples.append(await _timed_ms(transfer))
    return samples


async def bench_request(a: Network, b: Network, repeats: int) -> dict[str, float]:
    """Round trip of a small request; each request opens and closes its own stream."""

    async def echo(peer: str, data: bytes) -> bytes:
        return data

    b.set_request_handler(echo)
    payload = bytes(SMALL_BYTES)
    samples = []
    for _ in range(repeats):

        async def round_trip() -> None:
            assert await a.request(b.peer_id, payload, timeout_s=10) == payload

        samples.append(await _timed_ms(round_trip))
    return _summary_ms(samples)


async def run_all(nodes: int, repeats: int) -> dict[str, object]:
    results: dict[str, object] = {"nodes": nodes, "repeats": repeats}
    results["connect"] = await bench_connect(min(repeats, 10))
    async with _cluster(nodes) as nets:
        a, b = nets[0], nets[1]
        await bench_direct(a, b, SMALL_BYTES, 3)
        results["gossip_small_all_peers"] = await bench_gossip(nets, repeats)
        results["direct_small"] = _summary_ms(await bench_direct(a, b, SMALL_BYTES, repeats))
        results["request_small"] = await bench_request(a, b, repeats)
        for size_mb in (4, 40):
            samples = await bench_direct(a, b, size_mb * 1_000_000, 3)
            results[f"direct_{size_mb}mb"] = {
                **_summary_ms(samples),
                "throughput_mb_per_s": round(size_mb / (statistics.median(samples) / 1000), 1),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = trio.run(run_all, args.nodes, args.repeats)
    if args.json:
        print(json.dumps(results))
        return
    for name, value in results.items():
        print(f"{name:24} {value}")


if __name__ == "__main__":
    main()
