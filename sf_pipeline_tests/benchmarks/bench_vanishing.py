"""Benchmark devorg's vanishing-record paths on a generated org (in memory).

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_vanishing.py --size 100000

Generates `--size` Opportunities (and the generator's ratios of the other objects), then times:
soft deletes of 20 % of the Opportunities (each logged in the delete log), the recycle bin's retention
purge of all of them when the clock passes 15 days, `mass-hard-delete` (Bulk API 2.0 hardDelete jobs,
25 % of Opportunities and Contacts), and `mass-merge` (30 % of the Accounts), and prints records per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import sf_pipeline.devorg  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.devorg.generator import generate_org  # noqa: E402
from sf_pipeline.devorg.org import Org  # noqa: E402
from sf_pipeline.devorg.scenarios import run_scenario  # noqa: E402

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _timed(label: str, count: int, fn) -> None:
    started = time.perf_counter()
    fn()
    took = time.perf_counter() - started
    print(f"{label:<48} {count:>9,} records {took:>8.2f} s {count / took if took else 0:>10,.0f} records/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="Opportunities to generate")
    args = parser.parse_args()
    org = Org()
    org.set_clock(T0, freeze=True)
    counts = generate_org(org, args.size, 42)
    print(f"org: {counts}")
    store, obj = org.store, org.schema.get("Opportunity")
    user = org.user("admin").user_id
    victims = [r[0] for r in store.conn.execute('SELECT Id FROM "Opportunity" ORDER BY Id')][::5]

    def soft_delete() -> None:
        for i in range(0, len(victims), 200):
            with store.transaction():
                for rid in victims[i : i + 200]:
                    store.delete(obj, rid, user)

    _timed("soft delete (recycle bin + delete log)", len(victims), soft_delete)
    in_bin = store.conn.execute("SELECT count(*) FROM _delete_log").fetchone()[0]
    _timed("retention purge (clock passes 15 days)", in_bin, lambda: org.advance_clock(timedelta(days=15)))
    assert store.conn.execute('SELECT count(*) FROM "Opportunity" WHERE IsDeleted = 1').fetchone()[0] == 0
    started = time.perf_counter()
    for _ in range(100_000):
        org.purge_recycle_bin()
    print(f"{'retention check per API call (nothing due)':<48} {(time.perf_counter() - started) * 10:>8.2f} µs")
    result = []
    live = org.store.count(obj) + org.store.count(org.schema.get("Contact"))
    _timed(
        "mass-hard-delete (Bulk API 2.0 hardDelete jobs)",
        live // 4,
        lambda: result.append(run_scenario(org, "mass-hard-delete", fraction=0.25)),
    )
    print(
        f"   hard-deleted: {result[-1].details['hard_deleted']}, failed: "
        f"{ {k: len(v) for k, v in result[-1].details['failed'].items()} }"
    )
    accounts = org.store.count(org.schema.get("Account"))
    _timed(
        "mass-merge (SOAP merge path, 3 records per merge)",
        int(accounts * 0.3),
        lambda: result.append(run_scenario(org, "mass-merge", fraction=0.3)),
    )
    print(f"   merged: {result[-1].details['merged']}, reparented: {result[-1].details['reparented']}")


if __name__ == "__main__":
    main()
