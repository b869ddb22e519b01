"""Start-up cost of the command line: ``entitlements --help`` next to an interpreter that
does nothing (``python -c pass``), plus ``import entitlements`` and ``import sqlalchemy``
for scale, all timed in this one run.

    python benchmarks/cli_startup.py [--runs 30]

Each command is a fresh process, started in turn (A, B, A, B ...) so that drift on a
busy machine hits both alike; the figures are medians of wall time and of the child's
CPU time (user + system). What to compare is the difference to the bare interpreter:
the budget is 150 ms over interpreter start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES: list[tuple[str, list[str]]] = [
    ("python -c pass (baseline)", [sys.executable, "-c", "pass"]),
    ("import entitlements", [sys.executable, "-c", "import entitlements"]),
    ("entitlements --help", [sys.executable, "-m", "entitlements", "--help"]),
    ("entitlements contracts convert --help", [sys.executable, "-m", "entitlements", "contracts", "convert", "--help"]),
    ("import sqlalchemy (for scale)", [sys.executable, "-c", "import sqlalchemy"]),
]  # fmt: skip


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``command`` in a child process."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    walls: dict[str, list[float]] = {name: [] for name, _ in CASES}
    cpus: dict[str, list[float]] = {name: [] for name, _ in CASES}
    for _, command in CASES:  # warm the file cache and the bytecode
        timed(command)
    for _ in range(args.runs):
        for name, command in CASES:
            wall, cpu = timed(command)
            walls[name].append(wall)
            cpus[name].append(cpu)

    base_wall = statistics.median(walls[CASES[0][0]])
    base_cpu = statistics.median(cpus[CASES[0][0]])
    print(f"{args.runs} runs each, medians; 'over' is over the bare interpreter's start")
    print(f"{'command':40} {'wall ms':>8} {'over':>7} {'cpu ms':>8} {'over':>7} {'ratio':>6}")
    for name, _ in CASES:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        print(
            f"{name:40} {wall * 1e3:8.1f} {(wall - base_wall) * 1e3:7.1f} "
            f"{cpu * 1e3:8.1f} {(cpu - base_cpu) * 1e3:7.1f} {wall / base_wall:6.2f}"
        )


if __name__ == "__main__":
    main()
