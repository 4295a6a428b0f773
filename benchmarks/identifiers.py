"""How fast is oversized input refused, next to normalizing a valid identifier?

python benchmarks/identifiers.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import time

from _common import header, median, percentile, table, us

from credrecovery import IdentifierKind, InvalidIdentifier, normalize_identifier

VALID = {
    IdentifierKind.DOMAIN: "ejemploxmundo.com.ar",
    IdentifierKind.EMAIL: "ejemplo@ejemploxmundo.com.ar",
    IdentifierKind.CLIENT_NUMBER: "9000",
}


def refuse(kind: IdentifierKind, value: str) -> None:
    try:
        normalize_identifier(kind, value)
    except InvalidIdentifier:
        return
    raise AssertionError("oversized input was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    header("refusing a 1 MB identifier")
    megabyte = "a" * 1_000_000
    rows = []
    for kind, valid in VALID.items():
        samples: dict[str, list[float]] = {"valid": [], "1 MB": []}
        for _ in range(args.rounds):
            for label, value in (("valid", valid), ("1 MB", megabyte)):
                started = time.perf_counter()
                if value is megabyte:
                    refuse(kind, value)
                else:
                    normalize_identifier(kind, value)
                samples[label].append(time.perf_counter() - started)
        base = median(samples["valid"])
        for label, s in samples.items():
            rows.append(
                [kind.value, label, us(median(s)), us(percentile(s, 99)), f"{median(s) / base:.2f}"]
            )
    table(["kind", "input", "median", "p99", "× valid input"], rows)
    print("Target: one megabyte refused in well under 100 ms.")


if __name__ == "__main__":
    main()
