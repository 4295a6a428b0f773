"""Shared helpers for the benchmark scripts: machine facts, tables, client data."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata

from credrecovery import Client, cheap_context

PACKAGES = ("credrecovery", "itsdangerous", "libpass", "limits", "sqlalchemy", "psycopg", "redis")


def header(title: str) -> None:
    """Print what ran where: the numbers only mean something next to this."""
    versions = []
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    print(f"# {title}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"python: {sys.version.split()[0]}; " + ", ".join(versions))
    print()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in cells:
        print("| " + " | ".join(row) + " |")
    print()


def timed_together(
    operations: dict[str, Callable[[], object]], rounds: int, blocks: int = 40
) -> dict[str, list[float]]:
    """``rounds`` timed calls of each operation, in ``blocks`` interleaved blocks.

    A burst of load elsewhere on the machine then falls on each operation alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in operations}
    per_block = max(1, rounds // blocks)
    for _ in range(blocks):
        for name, fn in operations.items():
            block = samples[name]
            for _ in range(per_block):
                started = time.perf_counter()
                fn()
                block.append(time.perf_counter() - started)
    return samples


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def synthetic_clients(count: int, start: int = 1) -> Iterator[tuple[Client, list[str]]]:
    """``count`` normalized clients, one domain each, sharing one cheap hash.

    Hashing once and reusing the hash keeps generating a million clients fast.
    """
    key_hash = cheap_context().hash("benchmark-key")
    for n in range(start, start + count):
        yield (
            Client(number=str(n), email=f"client{n}@example.com", key_hash=key_hash),
            [f"client{n}.example.com"],
        )
