"""Simulator throughput and soak: `python scripts/bench_simulator.py --nodes 4 --byzantine 1 --seeds 2000 --json`.

The simulation itself never reads a clock; this script passes the wall clock in to report runs per second.
Exit status 1 if any seed failed (each failing seed is printed on stderr).
"""

from __future__ import annotations

import sys
import time

from consensus.simulation import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], clock=time.perf_counter))
