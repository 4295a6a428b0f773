"""How much memory does an attack spraying distinct identifiers cost?

Each strategy runs in a fresh process that sends one million distinct
identifier values through the per-identifier limit on memory storage, and
reports the peak resident memory it added and how many keys the storage held.
``limits``' moving window (which never frees emptied keys on memory storage)
is the baseline next to the sliding window counter the library uses. A second
phase, with a 2-second window, shows whether keys are reclaimed once their
windows have passed.

    python benchmarks/limiter_memory.py [--identifiers 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from _common import header, table
from credrecovery import RateLimits
from credrecovery.ratelimit import Limiter


def memory_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def stored_keys(storage: MemoryStorage) -> int:
    # Counters, expiry times and moving-window event lists live in three dicts.
    return len(storage.storage) + len(storage.expirations) + len(storage.events)


def spray(strategy: str, identifiers: int, window: str) -> dict[str, float]:
    limits = RateLimits(per_identifier=window)
    limiter = Limiter(limits, b"benchmark-key")
    storage = limiter.storage
    assert isinstance(storage, MemoryStorage)
    moving = MovingWindowRateLimiter(storage)
    item = parse(window)
    before = memory_kib("VmRSS")
    started = time.perf_counter()
    for n in range(identifiers):
        value = f"email:nobody{n}@example.com"
        if strategy == "sliding window counter (used)":
            limiter.hit("per_identifier", value)
        else:
            moving.hit(item, "per_identifier", limiter.digest(value))
    elapsed = time.perf_counter() - started
    peak = memory_kib("VmHWM") - before
    keys = stored_keys(storage)
    keys_after = -1
    if item.get_expiry() <= 10:
        time.sleep(2 * item.get_expiry() + 1.5)
        keys_after = stored_keys(storage)
    return {"peak_mib": peak / 1024, "keys": keys, "keys_after": keys_after,
            "us_per_hit": elapsed / identifiers * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=3, metavar=("STRATEGY", "N", "WINDOW"))
    args = parser.parse_args()
    if args.child:
        strategy, n, window = args.child
        print(json.dumps(spray(strategy, int(n), window)))
        return
    header("memory under a spray of distinct identifiers")
    rows = []
    for window in ("5/hour", "5/2 seconds"):
        n = args.identifiers if window == "5/hour" else min(args.identifiers, 100_000)
        for strategy in ("moving window (baseline)", "sliding window counter (used)"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", strategy, str(n), window],
                check=True, capture_output=True, text=True,
            ).stdout
            r = json.loads(out)
            keys_after = "—" if r["keys_after"] < 0 else f"{r['keys_after']:,}"
            rows.append([strategy, window, f"{n:,}", f"{r['peak_mib']:.0f} MiB",
                         f"{r['keys']:,}", keys_after, f"{r['us_per_hit']:.1f} µs"])
    table(["strategy", "limit", "distinct identifiers", "peak memory added",
           "stored keys", "keys left after 2 windows", "per hit"], rows)


if __name__ == "__main__":
    main()
