"""Micro-benchmark of what the design-contracts pass put on the restore's hot path, side by side in one process:
reading a Salesforce timestamp (the former `salesforce.values.parse_datetime` against `instants.parse_instant`), and a
status compared and ranked as a plain string against a StrEnum member (restore/decisions.py).

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_contracts.py
"""

from __future__ import annotations

import timeit
from datetime import UTC, datetime
from enum import StrEnum

from sf_pipeline.instants import parse_instant


def old_parse(text: str) -> datetime:
    """salesforce.values.parse_datetime before this pass (its fallback never ran on Python 3.11)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


class Status(StrEnum):
    RESTORE = "restore"
    NOOP = "noop"


RESTORE, NOOP = Status.RESTORE, Status.NOOP  # decisions.py's module aliases
VALUES = [f"2026-11-20T10:00:{i % 60:02d}.000+0000" for i in range(1000)]
PLAIN = ["restore", "noop"] * 500
ENUMS = [RESTORE, NOOP] * 500
RANK_PLAIN = {"restore": 1, "noop": 0}
RANK_ENUM = {RESTORE: 1, NOOP: 0}


def per_item_ns(fn) -> float:
    return min(timeit.repeat(fn, number=50, repeat=7)) / 50 / 1000 * 1e9


def main() -> None:
    for _ in range(3):
        old = per_item_ns(lambda: [old_parse(v) for v in VALUES])
        new = per_item_ns(lambda: [parse_instant(v, "datetime") for v in VALUES])
        plain = per_item_ns(lambda: [RANK_PLAIN[s] for s in PLAIN if s == "restore" or s in ("noop",)])
        enum = per_item_ns(lambda: [RANK_ENUM[s] for s in ENUMS if s == RESTORE or s in (NOOP,)])
        print(
            f"timestamp: old {old:.0f} ns, parse_instant {new:.0f} ns (x{new / old:.2f}); "
            f"status: str {plain:.0f} ns, StrEnum {enum:.0f} ns (x{enum / plain:.2f})"
        )


if __name__ == "__main__":
    main()
