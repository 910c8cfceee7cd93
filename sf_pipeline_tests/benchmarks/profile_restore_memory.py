"""Which objects hold a restore's memory: tracemalloc snapshots at its fullest moments, biggest holders first.

The same org and restore as bench_restore_memory.py (N orphaned Opportunities, AccountId restored); a fresh
process traces allocations (tracemalloc, 6 frames) and snapshots them when planning holds the most (the first
record classified: the backup's evidence and the org's values of every selected record) and when applying does
(the first write call: the stored plan loaded, the org's fresh values, the payloads). Tracing costs time and
memory of its own: read the ranking and the sizes relative to each other, not as the untraced peak.

    .venv/bin/python sf_pipeline_tests/benchmarks/profile_restore_memory.py --size 20000
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(ROOT))


def child(spec: dict) -> None:
    import tracemalloc

    import psycopg

    from sf_pipeline.restore import apply as apply_module
    from sf_pipeline.restore import apply_plan, load_plan, plan_restore
    from sf_pipeline.restore import plan as plan_module
    from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
    from sf_pipeline_tests.benchmarks.bench_restore import restore_config

    snaps: dict[str, tuple[tracemalloc.Snapshot, int]] = {}

    def snapshot_on_first(module, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            if label not in snaps:
                snaps[label] = (tracemalloc.take_snapshot(), tracemalloc.get_traced_memory()[0])
            return original(*args, **kwargs)

        setattr(module, name, wrapped)

    from sf_pipeline.restore import journal as journal_module

    snapshot_on_first(plan_module, "classify_record", "plan: first record classified")
    snapshot_on_first(apply_module, "update_records", "apply: first write call")
    snapshot_on_first(apply_module, "bulk_update", "apply: first write call")
    snapshot_on_first(journal_module.CallLog, "after", "apply: first call answered")
    as_of, start, end = (datetime.fromisoformat(spec[k]) for k in ("as_of", "start", "end"))
    client = SalesforceClient(connect(OrgCredentials.from_env("production", spec["env"])), alias="production")
    tracemalloc.start(6)
    with psycopg.connect(spec["db_url"], autocommit=True) as conn:
        plan_restore(
            conn, client, restore_config(as_of, start, end, dry_run=True), "mem-dry", now=end + timedelta(hours=1)
        )
        plan_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        plan = load_plan(conn, restore_config(as_of, start, end, dry_run=False, plan="mem-dry"), "mem")
        apply_plan(conn, client, plan)
        apply_peak = tracemalloc.get_traced_memory()[1]
    out = {"plan_peak_mb": plan_peak / 2**20, "apply_peak_mb": apply_peak / 2**20, "moments": {}}
    for label, (snap, current) in snaps.items():
        snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        top = []
        for stat in snap.statistics("traceback")[:14]:
            # the allocating frame, then the project's frames that led to it (most recent first)
            ours = [f for f in reversed(stat.traceback) if "sf_pipeline" in f.filename and f.filename != __file__]
            frames = [stat.traceback[-1], *[f for f in ours if f is not stat.traceback[-1]][:3]]
            top.append(
                (
                    round(stat.size / 2**20, 1),
                    stat.count,
                    " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames),
                )
            )
        out["moments"][label] = {"traced_mb": current / 2**20, "top": top}
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    from sf_pipeline_tests.benchmarks.bench_restore_memory import restore_in_child

    figures = restore_in_child(__file__, args.size)
    print(
        f"{args.size:,} records: traced peak plan {figures['plan_peak_mb']:.0f} MB, apply "
        f"{figures['apply_peak_mb']:.0f} MB"
    )
    for label, moment in figures["moments"].items():
        print(f"  {label}: {moment['traced_mb']:.0f} MB traced")
        for size, count, where in moment["top"]:
            print(f"    {size:7.1f} MB {count:9,} blocks  {where}")


if __name__ == "__main__":
    main()
