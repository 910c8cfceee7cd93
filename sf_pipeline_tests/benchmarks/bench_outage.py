"""Benchmark: the daemon is down for 3 hours with 15-minute windows; how long until every missed window is backed up?

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_outage.py [--hours 3] [--objects Account,Opportunity]

A devorg over HTTPS, a fresh PostgreSQL database, a Dagster instance on it and the real `backup` job (extract +
dbt snapshot). The real `backup_schedule` function is evaluated tick by tick (`build_schedule_context` with the
tick's time) and the runs it asks for are executed in-process one after the other, as the daemon would launch
them (the daemon would run up to 3 at a time per org: dagster.yaml's tag limit, so its wall time is lower).
Accounts are created in every window, the outage's included; at the end each must be in mirror and history.
Prints: requests on the first tick back, ticks until the schedule asks for nothing, wall time of the runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.devorg.generator import generate_org  # noqa: E402
from sf_pipeline.warehouse.dbt_project import (
    DBT_PROJECT_DIR,  # noqa: E402
    prepare_manifest,
)
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402
from sf_pipeline_tests.pipeline_fixtures import Pipeline, _not_generated_or_built, pipelines  # noqa: E402

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
LAG = timedelta(minutes=5)
FMT = "%Y-%m-%d-%H:%M"


def run(p: Pipeline, request: dg.RunRequest) -> float:
    job = p.defs().resolve_job_def("backup")
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=request.partition_key,
        tags=dict(request.tags),
        instance=p.instance,
        run_config={"resources": {"salesforce": {"config": {"retry_backoff": 0.01}}}},
    )
    assert result.success
    return time.perf_counter() - started


def tick(p: Pipeline, at: datetime) -> list[dg.RunRequest]:
    schedule = p.defs().get_schedule_def("backup_schedule")
    started = time.perf_counter()
    result = schedule(dg.build_schedule_context(instance=p.instance, scheduled_execution_time=at))
    tick.seconds.append(time.perf_counter() - started)
    return [] if isinstance(result, dg.SkipReason) else list(result)


tick.seconds = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0, help="how long the daemon was down")
    parser.add_argument("--before", type=int, default=2, help="windows backed up normally before the outage")
    parser.add_argument("--objects", default="Account,Opportunity")
    args = parser.parse_args()
    objects = args.objects.split(",")
    root = Path(tempfile.mkdtemp(prefix="bench_outage_"))
    db_url = create_database("sfp_bench_outage")
    parsed = root / "parsed" / "dbt_snapshots"
    shutil.copytree(DBT_PROJECT_DIR, parsed, ignore=_not_generated_or_built)
    prepare_manifest(parsed, objects)
    try:
        with (
            pytest.MonkeyPatch.context() as monkeypatch,
            pipelines(root / "pipeline", db_url, monkeypatch, lambda _objects: parsed) as make,
        ):
            p = make(
                objects,
                partitions={"cron": "*/15 * * * *", "start": T0.isoformat()},
                schedule_lag_minutes=int(LAG.total_seconds() // 60),
            )
            p.set_clock(T0 - timedelta(minutes=1))
            generate_org(p.devorg.org, 200)
            sf = p.sf()
            created: list[str] = []

            def create_in(window_start: datetime) -> None:
                p.set_clock(window_start + timedelta(minutes=3))
                created.append(sf.Account.create({"Name": f"Window {window_start:%H:%M}"})["id"])

            # Normal operation: each window backed up on the first tick after it closed + lag.
            for i in range(args.before):
                create_in(T0 + i * WINDOW)
                for request in tick(p, T0 + (i + 1) * WINDOW + LAG):
                    run(p, request)
            down = T0 + args.before * WINDOW + LAG + timedelta(minutes=1)
            missed = int(timedelta(hours=args.hours) / WINDOW)
            for i in range(args.before, args.before + missed):
                create_in(T0 + i * WINDOW)
            back = down + timedelta(hours=args.hours)
            p.set_clock(back)
            # The daemon returns: ticks every minute until the schedule has nothing left to ask for.
            ticks, durations, first = 0, [], None
            now = back
            began = time.perf_counter()
            while True:
                requests = tick(p, now)
                ticks += 1
                if first is None:
                    first = [r.tags["sf_pipeline/window"] for r in requests]
                if not requests:
                    break
                durations += [run(p, r) for r in requests]
                now += timedelta(minutes=1)
            healed = time.perf_counter() - began
            done = p.instance.get_materialized_partitions(dg.AssetKey(["history", "Account"]))
            expected = {(T0 + i * WINDOW).strftime(FMT) for i in range(args.before + missed)}
            assert expected <= done, sorted(expected - done)
            with p.conn() as conn:
                mirrored = conn.execute(
                    "SELECT count(*) FROM salesforce.account WHERE id = ANY(%s)", (created,)
                ).fetchone()[0]
                historic = conn.execute(
                    "SELECT count(DISTINCT id) FROM salesforce_history.account WHERE id = ANY(%s)", (created,)
                ).fetchone()[0]
            assert mirrored == historic == len(created), (mirrored, historic, len(created))
            print(
                f"objects: {', '.join(objects)}; daemon down {args.hours:g} h = {missed} windows of 15 minutes missed"
            )
            print(f"first tick back: {len(first)} run requests, oldest first: {first[0]} .. {first[-1]}")
            print(f"ticks until nothing is left to ask for: {ticks} (the last one asks for nothing)")
            print(
                f"every missed window requested within 1 schedule interval (1 minute) of the daemon's return: "
                f"{len(first) >= missed}"
            )
            print(
                f"runs: {len(durations)}, executed one after another in-process: {sum(durations):.1f} s, "
                f"median {statistics.median(durations):.1f} s per run; wall until healed {healed:.1f} s"
            )
            print(f"schedule evaluation: median {statistics.median(tick.seconds) * 1000:.0f} ms per tick")
            print(f"created accounts in mirror and history: {mirrored}/{len(created)}")
    finally:
        drop_database(db_url)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
