"""Peak memory of a restore (plan -> apply -> verify) against the incident's size: 10,000 vs 100,000 records.

For each size, devorg generates the Opportunities (in its own process), the backup code path takes them before
and after an `orphan-opportunities` incident (as bench_restore.py does), then a fresh Python process runs only
the restore of AccountId (dry run, stored plan loaded, apply through Bulk API 2.0 above 10,000 records, verify)
and reports its peak resident memory (VmHWM, reset after the imports) and its resident memory then. The ratio of the growth
between sizes is the figure to watch: the org is read page by page (50,000 rows a page) and only the selected
records are kept, so what grows is the plan itself (one item per selected record).

`--id-map-pairs N` first writes N pairs unrelated to the incident into `sf_pipeline.id_map` for the restore's own
orgs (production -> production: records earlier restores re-created, or a seeded sandbox's pairs), as a map grown
by every seeding and re-creation would hold them: a restore that reads the pairs of its chunks only keeps the same
peak, one that loads the whole map between its orgs grows with N.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_memory.py
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_memory.py --sizes 10000 100000
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_restore_memory.py --sizes 10000 --id-map-pairs 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """The peak resident memory since the last `reset_peak` (VmHWM)."""
    return _status("VmHWM")


def reset_peak() -> float:
    """Reset the peak (Linux: 5 > /proc/self/clear_refs) so importing does not hide the restore's; returns the
    resident memory now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def child(spec: dict) -> None:
    """The restore alone, in this process: prints a JSON line with its memory and timings."""
    import gc

    import psycopg

    from sf_pipeline.restore import apply_plan, load_plan, plan_restore, verify_plan
    from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
    from sf_pipeline_tests.benchmarks.bench_restore import restore_config

    gc.collect()
    baseline = reset_peak()
    as_of, start, end = (datetime.fromisoformat(spec[k]) for k in ("as_of", "start", "end"))
    client = SalesforceClient(connect(OrgCredentials.from_env("production", spec["env"])), alias="production")
    t0 = time.perf_counter()
    with psycopg.connect(spec["db_url"], autocommit=True) as conn:
        plan_restore(
            conn, client, restore_config(as_of, start, end, dry_run=True), "mem-dry", now=end + timedelta(hours=1)
        )
        after_plan = rss_mb()
        plan = load_plan(conn, restore_config(as_of, start, end, dry_run=False, plan="mem-dry"), "mem")
        result = apply_plan(conn, client, plan)
        after_apply = rss_mb()
        verified = verify_plan(client, plan, conn=conn)
    print(
        json.dumps(
            {
                "baseline_mb": baseline,
                "plan_peak_mb": after_plan,
                "apply_peak_mb": after_apply,
                "peak_mb": rss_mb(),
                "seconds": time.perf_counter() - t0,
                "written": result.values_written,
                "verified": verified.checked,
                "mode": result.mode,
                "api_calls": client.api_calls,
            }
        )
    )


def unrelated_pairs(db_url: str, count: int, alias: str = "production") -> None:
    """`count` pairs `alias -> alias` of Account ids no org here holds (prefix 001, then `Zz` and a serial number:
    devorg's ids never carry it), as re-creations and seedings leave them, with fresh statistics."""
    import psycopg

    from sf_pipeline.restore import ensure_restore_tables

    started = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as conn:
        ensure_restore_tables(conn)
        conn.execute(
            "INSERT INTO sf_pipeline.id_map (source_alias, target_alias, object, source_id, target_id) "
            "SELECT %s, %s, 'Account', '001Zz' || lpad(i::text, 10, '0') || 'AAA', "
            "'001Zy' || lpad(i::text, 10, '0') || 'AAA' FROM generate_series(1, %s) AS i",
            (alias, alias, count),
        )
        conn.execute("ANALYZE sf_pipeline.id_map")
        held = conn.execute(
            "SELECT count(*) FROM sf_pipeline.id_map WHERE source_alias = %s AND target_alias = %s", (alias, alias)
        ).fetchone()[0]
    print(f"  id map: {held:,} unrelated {alias} -> {alias} pairs written in {time.perf_counter() - started:.1f} s")


def restore_in_child(script: str, size: int, id_map_pairs: int = 0) -> dict:
    """Build a devorg org with `size` orphaned Opportunities, backed up (and `id_map_pairs` unrelated pairs in the
    id map), and run `script --child SPEC` (the restore, in a fresh process so its memory is its own); returns the
    figures it printed last, as JSON."""
    from sf_pipeline_tests.benchmarks.bench_restore import damaged_org

    with damaged_org(size, 1.0) as (org, db_url, as_of, start, end):
        if id_map_pairs:
            unrelated_pairs(db_url, id_map_pairs)
        spec = {
            "env": org.env,
            "db_url": db_url,
            "as_of": as_of.isoformat(),
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
        done = subprocess.run(
            [sys.executable, script, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=3600,
        )
    if done.returncode != 0:
        raise SystemExit(f"the restore failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(size: int, id_map_pairs: int = 0) -> dict:
    print(f"{size:,} orphaned Opportunities" + (f", {id_map_pairs:,} unrelated id map pairs" if id_map_pairs else ""))
    figures = restore_in_child(__file__, size, id_map_pairs)
    growth = figures["peak_mb"] - figures["baseline_mb"]
    print(
        f"  restore: {figures['seconds']:.1f} s, {figures['written']:,} values written via {figures['mode']}, "
        f"{figures['verified']:,} verified, {figures['api_calls']} API calls"
    )
    print(
        f"  memory: baseline {figures['baseline_mb']:.0f} MB after imports, peak {figures['peak_mb']:.0f} MB "
        f"(after plan {figures['plan_peak_mb']:.0f}, after apply {figures['apply_peak_mb']:.0f}): "
        f"+{growth:.0f} MB for the restore = {growth * 1024 / size:.1f} KB per record"
    )
    return {**figures, "growth_mb": growth}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument(
        "--id-map-pairs",
        type=int,
        default=0,
        help="pairs unrelated to the incident written into sf_pipeline.id_map (production -> production) first",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.id_map_pairs < 0:
        ap.error(f"--id-map-pairs must be 0 or more, not {args.id_map_pairs}")
    results = {size: measure(size, args.id_map_pairs) for size in args.sizes}
    if len(results) >= 2:
        small, big = min(results), max(results)
        ratio = results[big]["growth_mb"] / max(results[small]["growth_mb"], 1)
        print(
            f"growth {big:,} vs {small:,} records: x{ratio:.1f} for x{big / small:.0f} the records; "
            f"peak {results[big]['peak_mb']:.0f} MB vs {results[small]['peak_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
