"""Benchmark finding vanished records (issue 14): the id reconciliation, and the mass-hard-delete incident.

Against a devorg running in its own process (`sf-pipeline devorg serve --generate N`), over HTTPS:

  reconcile  a `--records` (1,000,000) Opportunity org is fully loaded into a fresh mirror exactly as the
             `salesforce/Opportunity` asset does; `--gone` (10) random Opportunities are then removed with
             a Bulk API 2.0 hardDelete job; `learn_vanished` (what the asset runs after each window) is
             timed with the reconciliation forced: wall seconds, API calls (the client's, which is what the
             org counts), ids read, and that exactly the hard-deleted records were found and flagged.
  incident   a `--small-records` org (20,000 Opportunities) backed up and snapshotted (dbt); devorg's
             `mass-hard-delete` scenario removes `--hard-deleted` (5,000) Opportunities in the next window;
             that window is backed up (load, learn_vanished, dbt snapshot) and the detectors run: whether the
             mass-vanishing incident is raised, with how many records, and the seconds from the window's
             backup start to the finding.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_reconcile.py
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_reconcile.py --data-dir /tmp/devorg-1m  # reuse the org
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.anomalies import run_detectors  # noqa: E402
from sf_pipeline.backup.reconciliation import ReconcileSettings, learn_vanished  # noqa: E402
from sf_pipeline.salesforce.client import SalesforceClient  # noqa: E402
from sf_pipeline.salesforce.connection import connect  # noqa: E402
from sf_pipeline.warehouse import (  # noqa: E402
    DBT_PROJECT_DIR,
    get_mirror_table,
    run_snapshot,
    write_snapshot_definitions,
)
from sf_pipeline_tests.benchmarks.bench_backup import (  # noqa: E402
    DevOrgProcess,
    floor_second,
    load_average,
    our_backup,
    stamp_range,
)
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALWAYS = ReconcileSettings(every_window_below=10**9)


def part_reconcile(tmp: Path, data_dir: Path, records: int, gone: int, databases: list[str], stack: ExitStack) -> None:
    t = time.perf_counter()
    devorg = DevOrgProcess(data_dir, records, tmp / "devorg-big.log").start()
    stack.callback(devorg.stop)
    creds = devorg.credentials()
    sf = connect(creds)
    print(f"devorg ready in {time.perf_counter() - t:,.1f} s [{load_average()}]")
    first, last = stamp_range(sf, "Opportunity")
    end = floor_second(last) + timedelta(seconds=1)
    db = create_database("sfp_bench_reconcile")
    databases.append(db)
    loaded = our_backup(creds, db, "Opportunity", EPOCH, end)
    print(
        f"full load: {loaded['records']:,} Opportunities in {loaded['seconds']:.1f} s ({loaded['api_calls']} API calls)"
    )

    ids = [r["Id"] for r in sf.query("SELECT Id FROM Opportunity LIMIT 50000")["records"]]
    chosen = random.Random(7).sample(ids, gone)
    job = sf.bulk2.Opportunity.hard_delete(records=[{"Id": i} for i in chosen], wait=0.2)
    assert job[0]["numberRecordsFailed"] == 0, job
    now = devorg.now() + timedelta(minutes=5)
    devorg.control("clock", {"set": now.isoformat(), "freeze": True})

    client = SalesforceClient(connect(creds), alias=creds.alias)
    with psycopg.connect(db) as conn:
        table = get_mirror_table(conn, "Opportunity")
        started = time.perf_counter()
        report = learn_vanished(
            client, conn, table, "Opportunity", now - timedelta(hours=1), now, ALWAYS, first_load=False
        )
        wall = time.perf_counter() - started
        flagged = {
            r[0] for r in conn.execute("SELECT id FROM salesforce.opportunity WHERE _sfp_vanished = 'hard-deleted'")
        }
    assert flagged == set(chosen), (sorted(flagged), sorted(chosen))
    print(f"\nreconciliation of {loaded['records']:,} Opportunities with {gone} hard-deleted [{load_average()}]:")
    print(f"  found and flagged exactly the {gone} hard-deleted records: {flagged == set(chosen)}")
    print(
        f"  whole step (delete log + reconciliation + hardDelete jobs + flags): {wall:.2f} s wall, "
        f"{client.api_calls} API calls"
    )
    print(
        f"  reconciliation alone: {report.reconcile_seconds:.2f} s, {report.reconcile_calls} API calls "
        f"(reason: {report.reconcile_reason})"
    )


def part_incident(tmp: Path, records: int, hard_deleted: int, databases: list[str], stack: ExitStack) -> None:
    devorg = DevOrgProcess(tmp / "devorg-small", records, tmp / "devorg-small.log").start()
    stack.callback(devorg.stop)
    creds = devorg.credentials()
    sf = connect(creds)
    project = tmp / "dbt_snapshots"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    write_snapshot_definitions(project, ["Opportunity"])
    db = create_database("sfp_bench_incident")
    databases.append(db)
    _first, last = stamp_range(sf, "Opportunity")
    t0 = floor_second(last).replace(minute=0, second=0) + timedelta(hours=1)
    devorg.control("clock", {"set": (t0 + timedelta(minutes=10)).isoformat(), "freeze": True})
    our_backup(creds, db, "Opportunity", EPOCH, t0)
    with psycopg.connect(db) as conn:
        learn_vanished(
            SalesforceClient(connect(creds)),
            conn,
            get_mirror_table(conn, "Opportunity"),
            "Opportunity",
            EPOCH,
            t0,
            ReconcileSettings(),
            first_load=True,
        )
    run_snapshot(project, db, ["Opportunity"], EPOCH, t0)
    live = int(sf.query("SELECT COUNT() FROM Opportunity")["totalSize"])
    result = devorg.control(
        "scenario",
        {"name": "mass-hard-delete", "at": (t0 + timedelta(minutes=5)).isoformat(), "fraction": hard_deleted / live},
    )
    removed = result["counts"].get("Opportunity", 0)
    end = t0 + timedelta(hours=1)
    devorg.control("clock", {"set": (end + timedelta(minutes=10)).isoformat(), "freeze": True})
    started = time.perf_counter()
    window = our_backup(creds, db, "Opportunity", t0, end)
    client = SalesforceClient(connect(creds))
    with psycopg.connect(db) as conn:
        report = learn_vanished(
            client,
            conn,
            get_mirror_table(conn, "Opportunity"),
            "Opportunity",
            t0,
            end,
            ReconcileSettings(),
            first_load=False,
        )
    run_snapshot(project, db, ["Opportunity"], t0, end)
    with psycopg.connect(db) as conn:
        findings = run_detectors(conn, "Opportunity", t0, end)
    seconds = time.perf_counter() - started
    vanishing = [f for f in findings if f.detector == "mass_vanishing"]
    print(f"\nmass-hard-delete of {removed:,} of {live:,} Opportunities [{load_average()}]:")
    print(
        f"  next window backed up, reconciled ({report.reconcile_calls} API calls, {report.reconcile_seconds:.2f} s),"
        f" snapshotted and checked in {seconds:.1f} s ({window['api_calls'] + client.api_calls} API calls)"
    )
    if vanishing:
        f = vanishing[0]
        print(
            f"  incident raised: {f.severity} mass_vanishing, {f.affected_count:,} records "
            f"({f.details['how_learnt']}) by {f.user_id}, {f.first_change:%H:%M:%S}..{f.last_change:%H:%M:%S}"
        )
    else:
        print(f"  NO mass_vanishing incident; findings: {[(f.detector, f.affected_count) for f in findings]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="Opportunities in the big org")
    ap.add_argument("--gone", type=int, default=10, help="Opportunities hard-deleted before the reconciliation")
    ap.add_argument("--data-dir", type=Path, help="keep/reuse the big org here (default: a temp dir)")
    ap.add_argument("--small-records", type=int, default=20_000, help="Opportunities of the incident's org")
    ap.add_argument("--hard-deleted", type=int, default=5_000, help="Opportunities the scenario hard-deletes")
    ap.add_argument("--skip", action="append", default=[], choices=("reconcile", "incident"))
    args = ap.parse_args()
    databases: list[str] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-reconcile-") as scratch:
        stack.callback(lambda: [drop_database(u) for u in databases])
        tmp = Path(scratch)
        if "reconcile" not in args.skip:
            part_reconcile(tmp, args.data_dir or tmp / "devorg-big", args.records, args.gone, databases, stack)
        if "incident" not in args.skip:
            part_incident(tmp, args.small_records, args.hard_deleted, databases, stack)


if __name__ == "__main__":
    main()
