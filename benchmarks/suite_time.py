"""How long the test suite and the quick loop take, next to the machine's speed that moment.

Each round times the quick loop as tests/README.md gives it, then with
``--full`` the whole suite as ``.ci/run`` runs it (services required), and
just before and just after each, a fixed pure-Python workload: the baseline,
one core's interpreter speed, which on a shared machine varies from day to
day and within minutes. It prints each command's wall time, the CPU seconds
of everything it started, and the wall time as a multiple of the mean of its
two baselines.

    python benchmarks/suite_time.py [--rounds 3] [--full]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import header, median, table

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "sum(i * i for i in range(20_000_000))"
FULL = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
QUICK = [*FULL, "-m", "not slow"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (of every process it waited for) of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def baseline() -> float:
    """Wall seconds of the fixed workload, in a fresh interpreter."""
    return timed([sys.executable, "-c", BASELINE], dict(os.environ))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also time the whole suite")
    args = parser.parse_args()
    header("Test suite and quick loop, next to a fixed workload")
    # Both with bytecode on, as tests/README.md advises and .ci/run does.
    bytecode = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    quick_env = {**bytecode, "CREDRECOVERY_HYPOTHESIS_PROFILE": "dev"}
    full_env = {**bytecode, "CREDRECOVERY_REQUIRE_SERVICES": "1"}
    # The first quick run leaves pytest's rewritten test modules behind for the rest.
    timed(QUICK, quick_env)
    results: dict[str, list[tuple[float, float, float]]] = {"quick loop": [], "full suite": []}
    runs = [("quick loop", QUICK, quick_env)]
    if args.full:
        runs.append(("full suite", FULL, full_env))
    for _ in range(args.rounds):
        for name, command, env in runs:
            # The machine's speed drifts within minutes: the baseline is timed
            # on both sides of the command, and their mean taken.
            before = baseline()
            print(f"load {os.getloadavg()[0]:.2f}")
            wall, cpu = timed(command, env)
            base = (before + baseline()) / 2
            results[name].append((wall, cpu, wall / base))
            print(
                f"  {name}: {wall:.1f} s, {cpu:.0f} CPU-s; baseline {base:.2f} s;"
                f" {wall / base:.0f} × baseline"
            )
    print()
    rows = [
        [
            name,
            len(samples),
            f"{median([r[0] for r in samples]):.1f} s",
            f"{median([r[1] for r in samples]):.0f} CPU-s",
            f"{median([r[2] for r in samples]):.0f}",
        ]
        for name, samples in results.items()
        if samples
    ]
    table(["command", "rounds", "median wall", "median CPU", "median wall ÷ baseline"], rows)


if __name__ == "__main__":
    main()
