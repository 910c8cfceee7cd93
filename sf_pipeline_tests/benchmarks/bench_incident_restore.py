"""Benchmark a restore launched from `incident: <id>` on --records (100,000) damaged records (issue 16).

The org and its backup are bench_restore's (`damaged_org`: devorg generates N Opportunities, the backup code
path takes everything before the incident, `orphan-opportunities` nulls AccountId on all of them, the incident's
window is backed up). Then, as the anomaly check does: the detectors over the window, the incident report with
describe's writable fields, stored (`save_incident`: every id in sf_pipeline.incident_records). Measured:

- the launchpad config the incident suggests (`ops: restore: config: {incident, target_org, dry_run}`), in
  bytes (target < 1 KB), against the same selection written out as pasted `record_ids`;
- the wall of resolving `incident:` (reading the ids back), the dry run (`plan_restore`), loading its plan,
  apply and verify, and the API calls.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_incident_restore.py --records 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(ROOT))

from sf_pipeline.anomalies import get_incident, report_incident, run_detectors, save_incident  # noqa: E402
from sf_pipeline.anomalies.incidents import incident_restore_selection, writable_columns  # noqa: E402
from sf_pipeline.restore import RestoreConfig, apply_plan, load_plan, plan_restore, verify_plan  # noqa: E402
from sf_pipeline_tests.benchmarks.bench_restore import damaged_org  # noqa: E402


def launchpad_bytes(config: dict) -> int:
    return len(yaml.safe_dump({"ops": {"restore": {"config": config}}}, sort_keys=False).encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="Opportunities, all damaged")
    ap.add_argument("--skip-apply", action="store_true", help="dry run only")
    args = ap.parse_args()
    print(f"restore from incident: of {args.records:,} orphaned Opportunities")
    with damaged_org(args.records, 1.0) as (org, db_url, _as_of, start, end):
        client = org.client()
        with psycopg.connect(db_url, autocommit=True) as conn:
            t0 = time.perf_counter()
            findings = run_detectors(conn, "Opportunity", start, end)
            finding = next(f for f in findings if f.detector == "mass_nulling")
            describe = client.describe("Opportunity")["fields"]
            report = report_incident(
                conn,
                finding,
                field_names={f["name"].lower(): f["name"] for f in describe},
                writable=writable_columns(describe),
            )
            number = save_incident(conn, report)
            t1 = time.perf_counter()
            stored = get_incident(conn, number)
            launchpad = stored.launchpad_config()
            size = launchpad_bytes(launchpad)
            pasted = launchpad_bytes({**report.restore_config, "record_ids": sorted(report.restore_ids)})
            print(f"  detect + store the incident: {t1 - t0:6.1f} s; {len(report.restore_ids):,} ids stored")
            print(
                f"  launchpad config: {size:,} bytes (target < 1,024) with incident: {number}; the same selection "
                f"as pasted record_ids: {pasted:,} bytes ({pasted / size:,.0f}x)"
            )
            calls = client.api_calls
            t2 = time.perf_counter()
            config = RestoreConfig.from_dict(
                launchpad, orgs=("production",), incidents=lambda n: incident_restore_selection(conn, n)
            )
            t3 = time.perf_counter()
            dry = plan_restore(conn, client, config, "bench-incident-dry", now=end + timedelta(hours=1))
            t4 = time.perf_counter()
            print(
                f"  incident: resolved in {t3 - t2:.2f} s ({len(config.record_ids):,} ids); dry run "
                f"{t4 - t3:.1f} s, {client.api_calls - calls} API calls via {dry.fetch_mode}; counts {dry.counts}"
            )
            if args.skip_apply:
                return
            apply_cfg = RestoreConfig.from_dict(
                {**launchpad, "dry_run": False, "plan": "bench-incident-dry"},
                orgs=("production",),
                incidents=lambda n: incident_restore_selection(conn, n),
            )
            plan = load_plan(conn, apply_cfg, "bench-incident")
            t5 = time.perf_counter()
            result = apply_plan(conn, client, plan)
            t6 = time.perf_counter()
            verified = verify_plan(client, plan, conn=conn)
            t7 = time.perf_counter()
            print(
                f"  load plan {t5 - t4:.1f} s; apply {t6 - t5:.1f} s ({result.values_written:,} values via "
                f"{result.mode}); verify {t7 - t6:.1f} s ({verified.checked:,} records)"
            )
            print(f"  total from launchpad config to verified: {t7 - t2:.1f} s; {client.api_calls - calls} API calls")


if __name__ == "__main__":
    main()
