"""How much memory does an attack spraying distinct identifiers cost?

Each configuration runs in a fresh process that sends one million distinct
identifier values through the per-identifier limit, and reports the peak
resident memory it added and how many rate-limit keys the storage held. The
library's own configuration (``RateLimits()`` on ``"memory://"``: a bounded
store counted with the sliding window counter) is set next to ``limits``'
``MemoryStorage`` with the moving window (the baseline, which never frees
emptied keys) and with the sliding window counter. A second phase, with a
2-second window, shows whether keys are reclaimed once their windows have
passed in a service still receiving traffic: two windows after the spray,
one more request arrives, and the keys are counted a moment later.

    python benchmarks/limiter_memory.py [--identifiers 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

from _common import header, table
from limits import parse
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from credrecovery import RateLimits
from credrecovery._limits_storage import BoundedMemoryStorage
from credrecovery.ratelimit import Limiter

CONFIGURATIONS = {
    "used": (
        f"bounded store ({RateLimits().memory_max_keys:,} keys), sliding window counter (used)"
    ),
    "baseline": "limits MemoryStorage, moving window (baseline)",
    "memory-swc": "limits MemoryStorage, sliding window counter",
}


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def stored_keys(storage: Storage) -> int:
    """Distinct rate-limit keys held: counters, and moving-window event lists."""
    if isinstance(storage, BoundedMemoryStorage):
        return len(storage)
    assert isinstance(storage, MemoryStorage)
    # Each counter also has an entry in ``expirations``, and often in ``locks``.
    return len(storage.storage) + len(storage.events)


def spray(configuration: str, identifiers: int, window: str) -> dict[str, float]:
    limiter = Limiter(RateLimits(per_identifier=window), b"benchmark-key")
    item = parse(window)
    storage: Storage
    hit: Callable[[str], object]
    if configuration == "used":
        storage = limiter.storage

        def hit(value: str) -> object:
            return limiter.hit("per_identifier", value)
    else:
        storage = MemoryStorage()
        strategy = (
            MovingWindowRateLimiter(storage)
            if configuration == "baseline"
            else SlidingWindowCounterRateLimiter(storage)
        )

        def hit(value: str) -> object:
            return strategy.hit(item, "per_identifier", limiter.digest(value))

    before = memory_kib("VmRSS")
    started = time.perf_counter()
    for n in range(identifiers):
        hit(f"email:nobody{n}@example.com")
    elapsed = time.perf_counter() - started
    peak = memory_kib("VmHWM") - before
    keys = stored_keys(storage)
    keys_after = -1
    if item.get_expiry() <= 10:
        time.sleep(2 * item.get_expiry() + 1.5)
        # MemoryStorage sweeps only from a timer armed by a write, and the
        # bounded store only as new keys arrive: one more request, as a live
        # service would see, then a moment for the sweep to finish.
        hit("email:latecomer@example.com")
        time.sleep(0.2)
        if isinstance(storage, MemoryStorage):
            storage.timer.join()
        keys_after = stored_keys(storage)
    return {
        "peak_mib": peak / 1024,
        "keys": keys,
        "keys_after": keys_after,
        "us_per_hit": elapsed / identifiers * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("CONFIGURATION", "N", "WINDOW"))
    args = parser.parse_args()
    if args.child:
        configuration, n, window = args.child
        print(json.dumps(spray(configuration, int(n), window)))
        return
    header("memory under a spray of distinct identifiers")
    rows = []
    for window in ("5/hour", "5/2 seconds"):
        n = args.identifiers if window == "5/hour" else min(args.identifiers, 100_000)
        for configuration, label in CONFIGURATIONS.items():
            out = subprocess.run(
                [sys.executable, __file__, "--child", configuration, str(n), window],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out)
            keys_after = "—" if r["keys_after"] < 0 else f"{r['keys_after']:,}"
            rows.append(
                [
                    label,
                    window,
                    f"{n:,}",
                    f"{r['peak_mib']:.0f} MiB",
                    f"{r['keys']:,}",
                    keys_after,
                    f"{r['us_per_hit']:.1f} µs",
                ]
            )
    table(
        [
            "storage and strategy",
            "limit",
            "distinct identifiers",
            "peak memory added",
            "stored keys",
            "keys left after 2 windows",
            "per hit",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
