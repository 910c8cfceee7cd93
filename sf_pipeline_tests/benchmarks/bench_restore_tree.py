"""Benchmark a whole-hierarchy restore: a mass delete of Accounts with their children, the recycle bin purged,
brought back in one run (re-created under new ids, every lookup re-pointed) and verified.

devorg generates `--size` Opportunities (and Accounts = size/10, Contacts = size/5, contact roles = size/10,
Invoices = size/5, see devorg/generator.py `planned_counts`). The org is backed up as the backup assets do
(`extract_window` -> `load_window` -> `run_snapshot`) for Account, Contact, Opportunity,
OpportunityContactRole and Invoice__c; then `--accounts` Accounts are deleted through sObject Collections
(Salesforce deletes their Contacts, Opportunities and contact roles with them and clears the Invoices' and
child Accounts' lookups), the deletion window is backed up, and `recycle-bin-purge` moves the clock past the
bin's 15 days. Cases are deleted before the first backup: an Account with Cases cannot be deleted (Salesforce
refuses, as devorg does), and a real mass delete would have taken them first.

Only the restore is timed: the dry run (`plan_restore`), then apply and verify of its stored plan.
Targets (issue 16): apply + verify < 2 min, <= 1 API call per 150 records brought back, peak memory < 500 MB.
Memory (Linux): the process's peak resident set through the backup steps (dbt and the loads run in this process),
then the peak is reset (`/proc/self/clear_refs`) and the restore's own peak measured, per phase (dry run, apply,
verify: reset before each), from the resident set it started with (printed too). The process's peak is the
largest of them.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_tree.py                 # 2,000 Accounts
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_tree.py --size 5000     # scaled down
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_tree.py --size 200000   # 20,000 Accounts (issue 16)
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_tree.py --insert-chunk 10000  # records a Bulk insert job
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.restore import RestoreConfig, apply_plan, load_plan, plan_restore, verify_plan  # noqa: E402
from sf_pipeline.salesforce.writes import delete_records  # noqa: E402
from sf_pipeline_tests.benchmarks.org_fixtures import EPOCH, Org, backup_windows, dbt_project, generated_org  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

OBJECTS = ["Account", "Contact", "Opportunity", "OpportunityContactRole", "Invoice__c"]
DELETE_CHUNK = 50


def _status_mb(key: str) -> float:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def peak_mb() -> float:
    """The peak resident set of this process (Linux: VmHWM) since it started or since `reset_peak`, in MB."""
    return _status_mb("VmHWM")


def reset_peak() -> float:
    """Reset the peak resident set to the current one (`5` to /proc/self/clear_refs); returns it, in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def backup(org: Org, db_url: str, dbt_dir: Path, start: datetime, end: datetime) -> int:
    """Back up every object's window [start, end) as the backup assets do; returns records loaded."""
    return backup_windows(org.client(), db_url, dbt_dir, OBJECTS, start, end)


def live_counts(org: Org) -> dict[str, int]:
    client = org.client()
    return {o: client.count("IsDeleted = false", o, include_deleted=False) for o in OBJECTS}


def config(as_of: datetime, start: datetime, end: datetime, dry_run: bool, plan: str | None = None) -> RestoreConfig:
    return RestoreConfig.from_dict(
        {
            "object": "Account",
            "fields": [],
            "restore_deleted": True,
            "as_of": as_of.isoformat(),
            "changed_between": [start.isoformat(), end.isoformat()],
            "dry_run": dry_run,
            "plan": plan,
            "target_org": "production",
        }
    )


def run(size: int, accounts: int | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-restore-tree-") as scratch:
        org = generated_org(Path(scratch) / "devorg", size)
        db_url = create_database("sfp_bench_restore_tree")
        dbt_dir = dbt_project(Path(scratch) / "dbt_snapshots", OBJECTS)
        try:
            client = org.client()
            cases = [r["Id"] for page in client.query_pages("SELECT Id FROM Case", include_deleted=False) for r in page]
            delete_records(client, cases)
            start = (org.now() + timedelta(minutes=5)).replace(second=0, microsecond=0)
            t = time.perf_counter()
            loaded = backup(org, db_url, dbt_dir, EPOCH, start)
            print(f"  backup before the incident: {loaded:,} records in {time.perf_counter() - t:.1f} s")
            before = live_counts(org)
            org.control("clock", {"set": start.isoformat(), "freeze": True})
            ids = [
                r["Id"]
                for page in client.query_pages("SELECT Id FROM Account ORDER BY Id", include_deleted=False)
                for r in page
            ][:accounts]
            t = time.perf_counter()
            # 50 Accounts a call: each takes its cascade (~16 records an Account) in one transaction, and a call
            # held past the client's read timeout would be repeated (its records then already deleted)
            failed = [
                r
                for i in range(0, len(ids), DELETE_CHUNK)
                for r in delete_records(client, ids[i : i + DELETE_CHUNK])
                if not r.success
            ]
            assert not failed, failed[:5]
            end = org.now() + timedelta(seconds=1)
            damaged = live_counts(org)
            gone = {o: before[o] - damaged[o] for o in OBJECTS}
            print(
                f"  mass delete of {len(ids):,} Accounts in {time.perf_counter() - t:.1f} s: deleted with them {gone}"
            )
            t = time.perf_counter()
            loaded = backup(org, db_url, dbt_dir, start, end)
            print(f"  backup of the incident: {loaded:,} records in {time.perf_counter() - t:.1f} s")
            purge = org.control("scenario", {"name": "recycle-bin-purge"})
            print(f"  recycle-bin-purge: {purge['details']['purged']}")
            as_of = start - timedelta(seconds=1)
            now = org.now() + timedelta(hours=1)
            client = org.client()
            backup_peak = peak_mb()
            start_rss = reset_peak()
            with psycopg.connect(db_url, autocommit=True) as conn:
                t0 = time.perf_counter()
                dry = plan_restore(conn, client, config(as_of, start, end, True), "tree-dry", now=now)
                t1 = time.perf_counter()
                tree = dry.summary()["tree"]
                del dry  # the dry run and the apply are two runs (two processes) in the restore job
                peaks = {"dry run": peak_mb()}
                reset_peak()
                calls_plan = client.api_calls
                plan = load_plan(conn, config(as_of, start, end, False, "tree-dry"), "tree")
                result = apply_plan(conn, client, plan)
                t2 = time.perf_counter()
                calls_apply = client.api_calls - calls_plan
                peaks["apply"] = peak_mb()
                reset_peak()
                verified = verify_plan(client, plan, conn=conn)
                t3 = time.perf_counter()
            restored = live_counts(org)
            assert restored == before, (restored, before)
            brought = sum(gone.values())
            calls = client.api_calls - calls_plan
            peaks["verify"] = peak_mb()
            restore_peak = max(peaks.values())
            print(f"  plan (dry run): {t1 - t0:6.1f} s, {calls_plan} API calls; tree {tree}")
            print(f"  apply:          {t2 - t1:6.1f} s, {calls_apply} API calls; {result.outcomes}")
            print(f"  verify:         {t3 - t2:6.1f} s, {verified.api_calls} API calls; {verified.checked:,} checked")
            print(f"  apply + verify: {t3 - t1:6.1f} s (target < 120 s); with the dry run {t3 - t0:.1f} s")
            print(
                f"  API calls: {calls} for {brought:,} records brought back and {result.repointed:,} lookups "
                f"re-pointed = 1 per {brought / calls:,.0f} records (target: 1 per 150 or better); with the dry "
                f"run {calls + calls_plan} = 1 per {brought / (calls + calls_plan):,.0f}"
            )
            print(
                f"  peak memory of this process (devorg runs apart): {max(backup_peak, restore_peak):,.0f} MB (target "
                f"< 500 MB); the backup steps {backup_peak:,.0f} MB; the restore (dry run, apply, verify) "
                f"{restore_peak:,.0f} MB, from {start_rss:,.0f} MB resident when it started; per phase "
                + ", ".join(f"{k} {v:,.0f} MB" for k, v in peaks.items())
            )
            print(f"  every object back to its count before the delete: {restored}")
            with psycopg.connect(db_url, autocommit=True) as conn:
                jobs = dict(
                    conn.execute(
                        "SELECT object, count(DISTINCT job_id) FROM sf_pipeline.restore_audit WHERE run_id = 'tree' "
                        "AND operation = 'create' AND job_id IS NOT NULL GROUP BY 1 ORDER BY 1"
                    ).fetchall()
                )
            print(f"  Bulk insert jobs per object: {jobs}")
        finally:
            org.stop()
            drop_database(db_url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000, help="generated Opportunities (Accounts = size / 10)")
    ap.add_argument("--accounts", type=int, default=None, help="Accounts to delete (default: all of them)")
    ap.add_argument("--insert-chunk", type=int, default=None, help="records a Bulk insert job (hierarchy.INSERT_CHUNK)")
    args = ap.parse_args()
    from sf_pipeline.restore import hierarchy

    if args.insert_chunk:
        hierarchy.INSERT_CHUNK = args.insert_chunk
    print(f"insert chunk: {getattr(hierarchy, 'INSERT_CHUNK', 'tables.CHUNK_RECORDS')} records")
    print(f"restore tree: {args.size:,} generated Opportunities, {args.accounts or args.size // 10:,} Accounts deleted")
    run(args.size, args.accounts)


if __name__ == "__main__":
    main()
