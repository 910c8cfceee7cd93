"""Benchmark: what Dagster itself costs per object of a window's shared step, on the deployed storage.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_events.py --objects 425
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_events.py --objects 425 --profile /tmp/events.prof

One subsettable multi-asset of N hourly-partitioned assets yields a `MaterializeResult` with 35 metadata entries
for each (as the small objects' step does for an unchanged window: a step output and a materialization each),
run in-process on a Dagster instance on PostgreSQL configured as deploy/dagster.yaml (`PooledPostgresStorage`,
asynchronous commits) in a fresh database. No Salesforce, no warehouse: only the events. The first run warms the
tables; the second is timed. `--plain-keys` skips `output_keys_once` (Dagster's per-output listing of the step's
output keys). Run it from another checkout's tree (PYTHONPATH) to compare storages side by side.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
import tempfile
import time
from pathlib import Path

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg  # noqa: E402


def shared_step(n: int, plain_keys: bool) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(f"object_{i}", skippable=True) for i in range(n)]

    @dg.multi_asset(specs=specs, partitions_def=dg.HourlyPartitionsDefinition("2026-11-30-00:00"), can_subset=True)
    def objects(context):
        if not plain_keys:
            try:
                from sf_pipeline.backup.assets import output_keys_once
            except ImportError:  # a checkout without it
                pass
            else:
                output_keys_once(context)
        for spec in specs:
            yield dg.MaterializeResult(
                asset_key=spec.key, metadata={f"figure_{j}": j if j % 2 else f"value {j}" for j in range(35)}
            )

    return objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=425)
    parser.add_argument("--plain-keys", action="store_true", help="without output_keys_once")
    parser.add_argument("--profile", default=None, help="write the timed run's cProfile here")
    args = parser.parse_args()
    from sf_pipeline_tests.pg_fixtures import create_database, drop_database
    from sf_pipeline_tests.pipeline_fixtures import dagster_home

    db = create_database("sfp_bench_events")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
            os.environ["DAGSTER_HOME"] = str(dagster_home(Path(tmp) / "home", db))
            step = shared_step(args.objects, args.plain_keys)
            with dg.DagsterInstance.get() as instance:
                assert dg.materialize([step], instance=instance, partition_key="2026-11-30-00:00").success
                profiler = cProfile.Profile() if args.profile else None
                began = time.perf_counter()
                if profiler:
                    profiler.enable()
                result = dg.materialize([step], instance=instance, partition_key="2026-11-30-01:00")
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                wall = time.perf_counter() - began
                assert result.success
                events = len(instance.all_logs(result.run_id))
        print(
            f"{args.objects} objects: {wall:.2f} s, {wall / args.objects * 1000:.1f} ms per object; {events} events "
            f"in the run; storage {type(instance.event_log_storage).__module__}; load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    finally:
        drop_database(db)


if __name__ == "__main__":
    main()
