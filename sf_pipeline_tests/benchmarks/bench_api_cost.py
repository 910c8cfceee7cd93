"""Benchmark: what an unchanged window costs the org, for N objects (API calls, HTTP requests, wall).

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_api_cost.py --objects 20,50
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_api_cost.py --objects 300 --executor multiprocess
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_api_cost.py --objects 300 --profile /tmp/api_cost

A devorg over HTTPS with N generated custom objects (`extra_objects`, a few records each), a fresh PostgreSQL
database, a Dagster instance on it and the real `backup` job (extract + dbt snapshot), run in-process
(`execute_in_process`: the steps one after another in this process, no step process started), or with
`--executor multiprocess` through the job's own executor (a process per step, forked from a forkserver, as a
launched run). The catalog state is refreshed first (as on deploy): it counts each object's records, and the
objects under `backup.shared_step_below_records` share one step. Per N:
1. the first window (the full load of every object);
2. an unchanged window: nothing stamped in it, nothing vanished;
3. a window with changes in 5 objects: how many snapshots dbt ran.
`--profile PREFIX` runs each in-process window under cProfile and writes `PREFIX-<window>.prof` (read it with
`python -m pstats`; what the run spends on each Dagster event shows under `store_event`). Prints per window: the
org's API usage (what Salesforce counts: each Composite Batch subrequest is one call),
the HTTP requests the pipeline sent (the client's count, without the logins), the logins (one per mirror step),
the mirror steps, the history snapshots run and skipped, the wall time, and how dbt came by its manifest (`reused`:
nothing parsed; `full: <reason>`: the whole project parsed again).
"""

from __future__ import annotations

import argparse
import cProfile
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.devorg.generator import generate_org  # noqa: E402
from sf_pipeline.devorg.runner import DevOrgServer  # noqa: E402
from sf_pipeline.devorg.wide_generator import generate_wide, generated_extras  # noqa: E402
from sf_pipeline.warehouse.dbt_project import (
    DBT_PROJECT_DIR,  # noqa: E402
    prepare_manifest,
)
from sf_pipeline_tests.devorg_fixtures import connect  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402
from sf_pipeline_tests.pipeline_fixtures import _not_generated_or_built, dagster_home, write_settings  # noqa: E402

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
FMT = "%Y-%m-%d-%H:%M"


def backup_job() -> dg.JobDefinition:
    """The `backup` job of the code location (`workspace.yaml`'s module, built from the settings in the
    environment), as a launched run's step process finds it: already built and resolved in the backup
    executor's forkserver, which preloads it (`sf_pipeline.backup.preload`). The forkserver lives as long as
    this process: with `--executor multiprocess`, give one object count per invocation."""
    from sf_pipeline.definitions import defs

    return defs.resolve_job_def("backup")


def window(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    org,
    start: datetime,
    executor: str = "in-process",
    profile: str | None = None,
) -> dict[str, Any]:
    """Back up the window starting at `start`; what it cost. `profile`: a file for the in-process run's cProfile."""
    usage = org.api_usage()
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    if executor == "multiprocess":
        with dg.execute_job(
            dg.reconstructable(backup_job), instance=instance, tags={"dagster/partition": start.strftime(FMT)}
        ) as result:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            events = result.get_asset_materialization_events()
            all_events = result.all_events
    else:
        result = defs.resolve_job_def("backup").execute_in_process(partition_key=start.strftime(FMT), instance=instance)
        assert result.success
        events, all_events = result.get_asset_materialization_events(), result.all_events
    wall = time.perf_counter() - began
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    http = snapshots = skipped = 0
    for event in events:
        mat = event.event_specific_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        if mat.asset_key.path[0] == "salesforce":
            http += int(meta["api_calls"])
        elif str(meta.get("snapshot", "")).startswith("skipped"):
            skipped += 1
        else:
            snapshots += 1
    steps = len(
        {
            e.step_key
            for e in all_events
            if e.event_type_value == "STEP_START" and not str(e.step_key).startswith(("history", "backup_complete"))
        }
    )
    # how the history step's dbt call came by its manifest (its log line; none when dbt did not run)
    parse = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith("dbt parse:")]
    return {
        "parse": "; ".join(m.removeprefix("dbt parse: ") for m in parse) or "dbt not run",
        "api_usage": org.api_usage() - usage,
        "http": http,
        "logins": steps,
        "snapshots": snapshots,
        "skipped": skipped,
        "wall": wall,
    }


def bench(n: int, root: Path, executor: str = "in-process", profile: str | None = None) -> None:
    db_url = create_database("sfp_bench_api_cost")
    try:
        with (
            DevOrgServer(root / "devorg", extra_objects=max(n, 1)) as server,
            pytest.MonkeyPatch.context() as monkeypatch,
        ):
            org = server.org
            org.set_clock(T0 - timedelta(minutes=5), freeze=True)
            names = sorted(o.name for o in generated_extras(org) if o.has_field("SystemModstamp"))[:n]
            assert len(names) == n, f"devorg generated {len(names)} objects with SystemModstamp, wanted {n}"
            generate_org(org, 50)  # the standard parents the custom objects point at
            generate_wide(org, 60 * n)
            for key, value in server.env("production").items():
                monkeypatch.setenv(key, value)
            monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", db_url)
            project = root / "dbt_snapshots"
            shutil.copytree(DBT_PROJECT_DIR, project, ignore=_not_generated_or_built)
            prepare_manifest(project, names)
            monkeypatch.setenv("SF_PIPELINE_DBT_PROJECT_DIR", str(project))
            settings = write_settings(
                root / "sf_pipeline.yaml", names, partitions={"cron": "0 * * * *", "start": T0.isoformat()}
            )
            monkeypatch.setenv("SF_PIPELINE_SETTINGS", str(settings))
            monkeypatch.setenv("SF_PIPELINE_STATE_DIR", str(root / "state"))
            from sf_pipeline.backup.catalog_state import refresh_state_file
            from sf_pipeline.settings import load_settings

            refresh_state_file(load_settings(settings))  # on deploy: the describes and each object's COUNT()
            home = dagster_home(root / "dagster_home", db_url)
            monkeypatch.setenv("DAGSTER_HOME", str(home))
            from sf_pipeline.definitions import build_definitions

            defs = build_definitions(str(settings))
            with dg.DagsterInstance.from_config(str(home)) as instance:
                org.set_clock(T0 + timedelta(hours=1, minutes=10), freeze=True)
                prof = (lambda label: f"{profile}-{n}-{label}.prof") if profile else (lambda label: None)
                full = window(defs, instance, org, T0, executor, prof("first"))
                org.set_clock(T0 + timedelta(hours=2, minutes=10), freeze=True)
                quiet = window(defs, instance, org, T0 + timedelta(hours=1), executor, prof("unchanged"))
                sf = connect(server)
                org.set_clock(T0 + timedelta(hours=2, minutes=20), freeze=True)
                for name in names[:5]:
                    record = sf.query(f"SELECT Id FROM {name} LIMIT 1")["records"][0]["Id"]
                    getattr(sf, name).update(record, {"Name": "changed"})
                org.set_clock(T0 + timedelta(hours=3, minutes=10), freeze=True)
                five = window(defs, instance, org, T0 + timedelta(hours=2), executor, prof("five"))
        for label, figures in (
            ("first window (full load)", full),
            ("unchanged window", quiet),
            ("window with changes in 5 objects", five),
        ):
            print(
                f"N={n:>3} [{executor}] {label:<34} org API usage {figures['api_usage']:>5.0f}  HTTP requests "
                f"{figures['http']:>4.0f} (+ {figures['logins']:.0f} logins, one per mirror step)  snapshots run {figures['snapshots']:.0f}, "
                f"skipped {figures['skipped']:.0f}  wall {figures['wall']:6.1f} s  dbt parse: {figures['parse']}"
            )
        print(
            f"N={n:>3} unchanged window per object: {quiet['api_usage'] / n:.2f} API calls, "
            f"{quiet['http'] / n:.2f} HTTP requests, {quiet['logins'] / n:.2f} logins, {quiet['wall'] / n:.2f} s"
        )
    finally:
        drop_database(db_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="20,50", help="comma-separated object counts (default 20,50)")
    parser.add_argument(
        "--executor",
        default="in-process",
        choices=["in-process", "multiprocess"],
        help="execute_in_process (default), or the job's multiprocess executor as a launched run",
    )
    parser.add_argument(
        "--profile", default=None, help="write each in-process window's cProfile to PREFIX-<N>-<window>.prof"
    )
    args = parser.parse_args()
    for n in (int(x) for x in args.objects.split(",")):
        root = Path(tempfile.mkdtemp(prefix=f"bench_api_cost_{n}_"))
        try:
            bench(n, root, args.executor, args.profile)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
