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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.restore import RestoreConfig, apply_plan, load_plan, plan_restore, verify_plan  # noqa: E402
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect  # noqa: E402
from sf_pipeline.salesforce.connection import TrustingSession  # noqa: E402
from sf_pipeline.salesforce.extract import extract_window  # noqa: E402
from sf_pipeline.warehouse import (  # noqa: E402
    DBT_PROJECT_DIR,
    backup_fields,
    ensure_mirror_table,
    load_window,
    run_snapshot,
    write_snapshot_definitions,
)
from sf_pipeline_tests.benchmarks.bench_bulk_query import start_devorg  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Org:
    """A devorg process with `size` generated Opportunities, and what the benchmark needs to drive it."""

    def __init__(self, data_dir: Path, size: int):
        started = time.perf_counter()
        self.proc, info = start_devorg(data_dir, size)
        self.env = info["env"]
        self.control_url = info["instance_url"] + "/_devorg"
        self.control_token = info["control_token"]
        self.ca_bundle = info["ca_bundle"]
        print(f"  devorg with {size:,} Opportunities ready in {time.perf_counter() - started:.1f} s")

    def control(self, action: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
        session = TrustingSession(self.ca_bundle)
        try:
            resp = session.request(
                method,
                f"{self.control_url}/{action}",
                json=body,
                timeout=3600,
                headers={"Authorization": f"Bearer {self.control_token}"},
            )
        finally:
            session.close()
        resp.raise_for_status()
        return resp.json()

    def client(self, **options: Any) -> SalesforceClient:
        creds = OrgCredentials.from_env("production", self.env)
        return SalesforceClient(connect(creds), alias="production", **options)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def backup(org: Org, db_url: str, dbt_dir: Path, start: datetime, end: datetime) -> int:
    """Back up Opportunity's window [start, end) exactly as the backup assets do; returns records loaded."""
    client = org.client()
    describe = client.describe("Opportunity")
    names = [f["name"] for f in backup_fields(describe["fields"])]
    with psycopg.connect(db_url) as conn:
        table = ensure_mirror_table(conn, "Opportunity", describe["fields"])
        loaded = load_window(conn, table, extract_window(client, "Opportunity", names, start, end), start, end)
    run_snapshot(dbt_dir, db_url, ["Opportunity"], start, end)
    return loaded.extracted


@contextmanager
def damaged_org(size: int, fraction: float) -> Iterator[tuple[Org, str, datetime, datetime, datetime]]:
    """(org, database URL, as_of, damage start, damage end): an org backed up before and after the incident."""
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as scratch:
        org = Org(Path(scratch) / "devorg", size)
        db_url = create_database("sfp_bench_restore")
        dbt_dir = Path(scratch) / "dbt_snapshots"
        shutil.copytree(DBT_PROJECT_DIR, dbt_dir, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
        write_snapshot_definitions(dbt_dir, ["Opportunity"])
        try:
            now = datetime.fromisoformat(org.control("clock", method="GET")["now"].replace("+0000", "+00:00"))
            damage_start = (now + timedelta(minutes=5)).replace(second=0, microsecond=0)
            started = time.perf_counter()
            before = backup(org, db_url, dbt_dir, EPOCH, damage_start)
            print(f"  backup before the incident: {before:,} records in {time.perf_counter() - started:.1f} s")
            org.control("clock", {"set": damage_start.isoformat(), "freeze": True})
            started = time.perf_counter()
            result = org.control(
                "scenario", {"name": "orphan-opportunities", "fraction": fraction, "at": damage_start.isoformat()}
            )
            damage_end = datetime.fromisoformat(result["finished_at"].replace("+0000", "+00:00")) + timedelta(seconds=1)
            print(
                f"  orphan-opportunities: {result['counts']['Opportunity']:,} records in "
                f"{time.perf_counter() - started:.1f} s ({damage_start:%H:%M:%S}..{damage_end:%H:%M:%S} org time)"
            )
            started = time.perf_counter()
            after = backup(org, db_url, dbt_dir, damage_start, damage_end)
            print(f"  backup of the incident: {after:,} records in {time.perf_counter() - started:.1f} s")
            org.control("clock", {"set": (damage_end + timedelta(hours=1)).isoformat(), "freeze": True})
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
