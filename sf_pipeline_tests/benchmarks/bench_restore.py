"""Benchmark the restore library (plan -> apply -> verify) against a devorg running in its own process.

Each part builds its org the way production would see it: devorg generates N Opportunities, the backup
code path (`extract_window` -> `load_window` -> `run_snapshot`, as the Dagster assets call them) takes
everything before the incident into a fresh PostgreSQL database, the `orphan-opportunities` scenario
nulls AccountId on a share of the Opportunities, and the incident's window is backed up the same way.
Only the restore is timed.

Parts (each can be skipped with --skip):
  restore  --records (100,000) Opportunities, all orphaned; `plan_restore` + `apply_plan` + `verify_plan`
           of AccountId, end to end (target < 60 s), with the API calls spent (target: at most one call
           per 200 records, Bulk API 2.0 jobs above the threshold);
  plan     --big (1,000,000) Opportunities, --big-fraction (0.1) of them orphaned; `plan_restore` alone
           (dry run; target < 30 s): history read, current values by one Bulk API 2.0 queryAll over
           `SystemModstamp >= damage start`, parents checked, plan stored.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore.py
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore.py --skip plan --records 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.restore import RestoreConfig, apply_plan, load_plan, plan_restore, verify_plan  # noqa: E402
from sf_pipeline_tests.benchmarks.org_fixtures import (  # noqa: E402
    EPOCH,
    Org,
    backup_windows,
    dbt_project,
    generated_org,
    org_instant,
)
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402


@contextmanager
def damaged_org(size: int, fraction: float) -> Iterator[tuple[Org, str, datetime, datetime, datetime]]:
    """(org, database URL, as_of, damage start, damage end): an org backed up before and after the incident."""
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as scratch:
        org = generated_org(Path(scratch) / "devorg", size)
        db_url = create_database("sfp_bench_restore")
        dbt_dir = dbt_project(Path(scratch) / "dbt_snapshots", ["Opportunity"])
        try:
            damage_start = (org.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
            started = time.perf_counter()
            before = backup_windows(org.client(), db_url, dbt_dir, ["Opportunity"], EPOCH, damage_start)
            print(f"  backup before the incident: {before:,} records in {time.perf_counter() - started:.1f} s")
            org.set_clock(damage_start)
            started = time.perf_counter()
            result = org.control(
                "scenario", {"name": "orphan-opportunities", "fraction": fraction, "at": damage_start.isoformat()}
            )
            damage_end = org_instant(result["finished_at"]) + timedelta(seconds=1)
            print(
                f"  orphan-opportunities: {result['counts']['Opportunity']:,} records in "
                f"{time.perf_counter() - started:.1f} s ({damage_start:%H:%M:%S}..{damage_end:%H:%M:%S} org time)"
            )
            started = time.perf_counter()
            after = backup_windows(org.client(), db_url, dbt_dir, ["Opportunity"], damage_start, damage_end)
            print(f"  backup of the incident: {after:,} records in {time.perf_counter() - started:.1f} s")
            org.set_clock(damage_end + timedelta(hours=1))
            yield org, db_url, damage_start - timedelta(seconds=1), damage_start, damage_end
        finally:
            org.stop()
            drop_database(db_url)


def restore_config(
    as_of: datetime, start: datetime, end: datetime, dry_run: bool, plan: str | None = None
) -> RestoreConfig:
    return RestoreConfig.from_dict(
        {
            "object": "Opportunity",
            "fields": ["AccountId"],
            "as_of": as_of.isoformat(),
            "changed_between": [start.isoformat(), end.isoformat()],
            "dry_run": dry_run,
            "target_org": "production",
            "plan": plan,
        }
    )


def part_restore(size: int) -> None:
    print(f"restore: plan + apply + verify of AccountId on {size:,} orphaned Opportunities")
    with damaged_org(size, 1.0) as (org, db_url, as_of, start, end):
        client = org.client()
        config = restore_config(as_of, start, end, dry_run=True)
        with psycopg.connect(db_url, autocommit=True) as conn:
            t0 = time.perf_counter()
            dry = plan_restore(conn, client, config, "bench-restore-dry", now=end + timedelta(hours=1))
            # the apply run writes the dry run's stored plan: loading it is part of planning's cost
            plan = load_plan(
                conn, restore_config(as_of, start, end, dry_run=False, plan="bench-restore-dry"), "bench-restore"
            )
            t1 = time.perf_counter()
            calls_plan = client.api_calls
            result = apply_plan(conn, client, plan)
            t2 = time.perf_counter()
            calls_apply = client.api_calls - calls_plan
            verified = verify_plan(client, plan, conn=conn)
            t3 = time.perf_counter()
        calls = client.api_calls
        counts = plan.counts
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in dry.timings.items())
        print(
            f"  plan:   {t1 - t0:6.1f} s ({phases}), {calls_plan} API calls, current values via {dry.fetch_mode}; "
            f"restore {counts['restore']:,}, noop {counts['noop']:,}, conflict {counts['conflict']:,}"
        )
        print(
            f"  apply:  {t2 - t1:6.1f} s, {calls_apply} API calls, writes via {result.mode}; "
            f"{result.values_written:,} values written"
        )
        print(f"  verify: {t3 - t2:6.1f} s, {verified.api_calls} API calls; {verified.checked:,} records checked")
        total = t3 - t0
        print(
            f"  total:  {total:6.1f} s (target < 60 s) -> {size / total:,.0f} records/s; {calls} API calls = "
            f"{calls / (size / 200):.3f} per 200 records (target <= 1)"
        )


def part_plan(size: int, fraction: float) -> None:
    print(f"plan: plan_restore alone on {size:,} Opportunities, {fraction:.0%} orphaned")
    with damaged_org(size, fraction) as (org, db_url, as_of, start, end):
        client = org.client()
        config = restore_config(as_of, start, end, dry_run=True)
        with psycopg.connect(db_url, autocommit=True) as conn:
            t0 = time.perf_counter()
            plan = plan_restore(conn, client, config, "bench-plan", now=end + timedelta(hours=1))
            elapsed = time.perf_counter() - t0
        counts = plan.counts
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in plan.timings.items())
        print(
            f"  plan_restore: {elapsed:6.1f} s (target < 30 s; {phases}), {client.api_calls} API calls, current values via "
            f"{plan.fetch_mode}; {len(plan.records):,} records planned (restore {counts['restore']:,}, "
            f"noop {counts['noop']:,}, conflict {counts['conflict']:,})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="Opportunities of the restore part")
    ap.add_argument("--big", type=int, default=1_000_000, help="Opportunities of the plan part")
    ap.add_argument("--big-fraction", type=float, default=0.1, help="share of them orphaned in the plan part")
    ap.add_argument("--skip", action="append", default=[], choices=["restore", "plan"])
    args = ap.parse_args()
    if "restore" not in args.skip:
        part_restore(args.records)
    if "plan" not in args.skip:
        part_plan(args.big, args.big_fraction)


if __name__ == "__main__":
    main()
