"""Benchmark `objects: all` on a wide devorg org: discovery (describe global + one describe per candidate object),
code location load from the stored state (with and without dbt parse), and the first full load of every object
(wall, API calls, peak memory), through real Dagster (`execute_in_process`), PostgreSQL and dbt.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py                      # 100 extra objects, 20,000 records
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py --extra-objects 20 --records 2000 --include 'A*'

Needs PostgreSQL at 127.0.0.1:5432 (as the tests). Prints each figure and ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extra-objects", type=int, default=100, help="generated custom objects (default 100)")
    p.add_argument("--records", type=int, default=20_000, help="records generated (default 20,000)")
    p.add_argument("--include", action="append", default=None, help="backup.include pattern (repeatable)")
    p.add_argument("--no-load", action="store_true", help="skip the first full load")
    args = p.parse_args(argv)

    import dagster as dg

    from sf_pipeline.backup.catalog_state import read_state, refresh_state_file, state_path
    from sf_pipeline.devorg.runner import DevOrgServer
    from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR
    from sf_pipeline_tests.pg_fixtures import create_database, drop_database

    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        server = DevOrgServer(root / "org", generate=args.records // 10, extra_objects=args.extra_objects)
        print(f"devorg generated in {time.perf_counter() - t:.1f} s: {len(server.org.schema.objects)} sObjects "
              f"({args.extra_objects} generated custom objects, {args.records // 10} Opportunities' worth of records)")
        db = create_database("sfp_bench_discovery")
        try:
            with server:
                server.org.set_clock(datetime(2026, 11, 20, 0, 5, tzinfo=UTC), freeze=True)
                os.environ.update(server.env("production"))
                os.environ["SF_PIPELINE_DATABASE_URL"] = db
                os.environ["SF_PIPELINE_STATE_DIR"] = str(root / "state")
                shutil.copytree(DBT_PROJECT_DIR, root / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
                os.environ["SF_PIPELINE_DBT_PROJECT_DIR"] = str(root / "dbt")
                settings_file = root / "sf_pipeline.yaml"
                backup = {"org": "production", "objects": "all", "exclude": ["*Share", "*Feed", "*ChangeEvent"],
                          "partitions": {"cron": "0 * * * *", "start": "2026-11-20T00:00:00Z"}}
                if args.include:
                    backup["include"] = args.include
                settings_file.write_text(yaml.safe_dump({"orgs": {"production": {}}, "backup": backup}))
                os.environ["SF_PIPELINE_SETTINGS"] = str(settings_file)
                from sf_pipeline.settings import load_settings

                settings = load_settings(settings_file)
                calls0 = server.org.api_usage()
                t = time.perf_counter()
                refresh_state_file(settings)
                discovery_s = time.perf_counter() - t
                discovery_calls = server.org.api_usage() - calls0
                [catalog] = read_state(state_path(settings).read_text()).values()
                strategies = Counter(o.strategy.value for o in catalog.objects)
                print(f"discovery: {discovery_s:.2f} s, {discovery_calls} API calls; {len(catalog.objects)} objects "
                      f"backed up {dict(strategies)}, {len(catalog.skipped)} skipped; "
                      f"{sum(o.field_count for o in catalog.objects)} fields; state "
                      f"{state_path(settings).stat().st_size / 1e6:.1f} MB")

                from sf_pipeline.definitions import build_definitions

                before = server.org.api_usage()
                t = time.perf_counter()
                defs = build_definitions(str(settings_file))
                first_load_s = time.perf_counter() - t
                t = time.perf_counter()
                defs = build_definitions(str(settings_file))
                load_s = time.perf_counter() - t
                t = time.perf_counter()
                graph = defs.resolve_asset_graph()
                graph_s = time.perf_counter() - t
                assets = len(graph.get_all_asset_keys())
                print(f"code location load from state: {first_load_s:.1f} s the first time (dbt parse of "
                      f"{len(catalog.objects)} snapshots), {load_s:.1f} s after (+{graph_s:.1f} s asset graph); "
                      f"{assets} assets; Salesforce API calls during loads: {server.org.api_usage() - before}")
                if args.no_load:
                    return 0
                job = defs.resolve_job_def("backup")
                calls0 = server.org.api_usage()
                t = time.perf_counter()
                with dg.DagsterInstance.ephemeral() as instance:
                    result = job.execute_in_process(partition_key="2026-11-20-00:00", instance=instance,
                                                    raise_on_error=False)
                wall = time.perf_counter() - t
                calls = server.org.api_usage() - calls0
                mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
                extracted = sum(int(m.metadata["records_extracted"].value) for m in mats
                                if "records_extracted" in m.metadata)
                failed = [e.step_key for e in result.all_events if e.is_step_failure]
                print(f"first full load: {'ok' if result.success else 'FAILED ' + str(failed[:5])}; {wall:.1f} s wall, "
                      f"{calls} API calls ({calls / max(len(catalog.objects), 1):.2f} per object), "
                      f"{extracted} records, {len(mats)} materializations; peak RSS {rss_mb():.0f} MB "
                      f"(this process, in-process executor), {rss_mb(resource.RUSAGE_CHILDREN):.0f} MB (largest child: dbt)")
                server.org.set_clock(datetime(2026, 11, 20, 1, 5, tzinfo=UTC) + timedelta(minutes=0), freeze=True)
        finally:
            drop_database(db)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
