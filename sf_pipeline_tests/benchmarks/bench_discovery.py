"""Benchmark `objects: all` on a wide devorg org: discovery (describe global + one describe per candidate object),
code location load from the stored state (with and without dbt parse), and the first full load of every object
(wall, API calls, peak memory), through real Dagster (`execute_in_process`), PostgreSQL and dbt. devorg serves the
org in its own process (`sf-pipeline devorg serve`), so the peak memory of this process is the pipeline's.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py                      # 100 extra objects, 20,000 records
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py --extra-objects 20 --records 2000 --include 'A*'
    # issue 14's org: ~2,000,000 records, most in a few big standard objects, ~2,800 in each of 100 custom ones
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py --opportunities 850000 --data-dir /tmp/disc-org-2m
    # the same, then the windows after the first load: unchanged (in-process, then as a launched run), 5 changed
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_discovery.py --opportunities 850000 --data-dir /tmp/disc-org-2m \
        --window-minutes 5 --windows

`--opportunities N` is devorg's generator size: Account N/10, Contact N/5, Opportunity N, Lead N/20, Case N/5,
OpportunityContactRole N/10, Invoice__c N/5 (1.85 N records), and about 0.33 N records spread evenly over the
generated custom objects with their history rows (about 0.5 N backed up); `--records R` is the older spelling,
N = R/10. `--data-dir` keeps the generated org for the next run (generation is skipped when it holds one).

`--windows` then backs up the windows that follow the first load on the same PostgreSQL-backed Dagster instance
(deploy/dagster.yaml's storage): a catch-up window (records the generator stamped after the first window), an
unchanged window run in-process, an unchanged window through the job's multiprocess executor (a process per step,
as a launched run), and a window in which one record of each of 5 objects changed (3 large objects with their own
steps, 2 small ones in the shared step). devorg's clock is real time, so each window is run once it has closed;
`--window-minutes 5` keeps the waits short.

Needs PostgreSQL at 127.0.0.1:5432 (as the tests). Prints each figure and ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_devorg(data_dir: Path, generate: int, extra_objects: int, log_path: Path):
    """`sf-pipeline devorg serve --generate N --extra-objects E` in its own process (bench_backup's launcher)."""
    from sf_pipeline_tests.benchmarks.bench_backup import DevOrgProcess

    class WideDevOrgProcess(DevOrgProcess):
        def start(self, timeout: float = 3600) -> DevOrgProcess:
            real_popen = subprocess.Popen

            def popen(command, *a, **kw):
                return real_popen([*command, "--extra-objects", str(extra_objects)], *a, **kw)

            subprocess.Popen = popen  # only for the launch below, in this single-threaded script
            try:
                return super().start(timeout)
            finally:
                subprocess.Popen = real_popen

    return WideDevOrgProcess(data_dir, generate, log_path).start()


class ChildSampler:
    """Peak RSS of this process's descendants other than devorg (dbt), sampled every `interval` s with psutil
    (`RUSAGE_CHILDREN` would also count a child's forked copy of this process before its exec)."""

    def __init__(self, skip_pid: int | None, interval: float = 0.2):
        import threading

        self.skip_pid = skip_pid
        self.interval = interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.interval):
            for child in me.children(recursive=True):
                if child.pid == self.skip_pid:
                    continue
                try:
                    name = "dbt" if any("dbt" in part for part in child.cmdline()[:3]) else child.name()
                    mb = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    def __enter__(self) -> ChildSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step of a run, from the event log (STEP_START to STEP_SUCCESS/FAILURE)."""
    started: dict[str, float] = {}
    spent: dict[str, float] = defaultdict(float)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            started[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in started:
            spent[entry.step_key] += entry.timestamp - started.pop(entry.step_key)
    return dict(spent)


def run_phases(instance, run_id: str, began: float) -> str:
    """Where a run's wall went, from its event log: creating it (planned materializations), its start, each step
    (for a step process: launch -> process up -> step started -> done), and its end. `began`: time.time() when
    the run was asked for."""
    logs = instance.all_logs(run_id)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    for entry in logs:
        event = entry.dagster_event
        kind = event.event_type_value if event is not None else "LOG"
        first.setdefault(kind, entry.timestamp)
        last[kind] = entry.timestamp
        if entry.step_key and kind in ("STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START", "STEP_SUCCESS"):
            steps[entry.step_key].setdefault(kind, entry.timestamp)
    end = max(e.timestamp for e in logs)
    parts = []
    if "ASSET_MATERIALIZATION_PLANNED" in first:
        parts.append(
            f"plan events {last['ASSET_MATERIALIZATION_PLANNED'] - began:.1f} s after asking "
            f"({first['ASSET_MATERIALIZATION_PLANNED'] - began:.1f} s to the first)"
        )
    if "RUN_START" in first:
        parts.append(f"RUN_START at {first['RUN_START'] - began:.1f} s")
    for key, t in sorted(steps.items(), key=lambda kv: min(kv[1].values())):
        launch = t.get("STEP_WORKER_STARTING", t.get("STEP_START", 0.0))
        up = t.get("STEP_WORKER_STARTED")
        start, done = t.get("STEP_START"), t.get("STEP_SUCCESS")
        text = f"{key[:32]} @{launch - began:.1f}"
        if up is not None and start is not None:
            text += f" proc {up - launch:.1f} + init {start - up:.1f}"
        if start is not None and done is not None:
            text += f" + work {done - start:.1f}"
        parts.append(text)
    if "RUN_SUCCESS" in first:
        parts.append(f"RUN_SUCCESS at {first['RUN_SUCCESS'] - began:.1f} s")
    parts.append(f"{len(logs)} events, last at {end - began:.1f} s")
    return "; ".join(parts)


def backup_job() -> Any:
    """The `backup` job of the code location (`workspace.yaml`'s module), as a launched run's step finds it: the
    backup executor's forkserver preloads `sf_pipeline.definitions`, whose `defs` are built once at its import
    from the settings in the environment, so each step process forked from it starts with them built."""
    from sf_pipeline.definitions import defs

    return defs.resolve_job_def("backup")


def run_window(devorg, defs, instance, start: datetime, step: timedelta, api_usage, multiprocess: bool) -> dict:
    """Back up the window at `start` once devorg's clock has passed its end; what it cost."""
    import dagster as dg

    while (wait := (start + step - devorg.now()).total_seconds() + 2) > 0:
        time.sleep(min(wait, 30))
    partition = start.strftime("%Y-%m-%d-%H:%M")
    calls0 = api_usage()
    t = time.perf_counter()
    began = time.time()
    if multiprocess:
        with dg.execute_job(
            dg.reconstructable(backup_job), instance=instance, tags={"dagster/partition": partition}
        ) as result:
            ok, events = result.success, result.get_asset_materialization_events()
            all_events, run_id = result.all_events, result.run_id
    else:
        result = defs.resolve_job_def("backup").execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False
        )
        ok, events, all_events = result.success, result.get_asset_materialization_events(), result.all_events
        run_id = result.run_id
    wall = time.perf_counter() - t
    http = changed = snapshots = skipped = 0
    for event in events:
        mat = event.event_specific_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        if mat.asset_key.path[0] == "salesforce":
            http += int(meta.get("api_calls", 0))
            changed += int(meta.get("records_extracted", 0) or 0) > 0
        elif str(meta.get("snapshot", "")).startswith("skipped"):
            skipped += 1
        else:
            snapshots += 1
    steps = {e.step_key for e in all_events if e.event_type_value == "STEP_START"}
    return {
        "phases": run_phases(instance, run_id, began),
        "partition": partition,
        "ok": ok,
        "wall": wall,
        "api_usage": api_usage() - calls0,
        "http": http,
        "objects_with_records": changed,
        "snapshots": snapshots,
        "skipped": skipped,
        "steps": len(steps),
    }


def following_windows(devorg, defs, instance, first: datetime, step: timedelta, api_usage) -> None:
    """The windows after the first load: catch-up, unchanged in-process, unchanged launched, 5 objects changed."""
    from sf_pipeline.salesforce import connect

    def report(label: str, f: dict) -> None:
        print(
            f"{label:<44} window {f['partition']}: {'ok' if f['ok'] else 'FAILED'}; {f['wall']:.1f} s wall; org API "
            f"usage {f['api_usage']}, HTTP requests {f['http']} (the materializations' api_calls; + one login per "
            f"mirror step); {f['objects_with_records']} objects with records in the window; history snapshots "
            f"run {f['snapshots']}, skipped {f['skipped']}; {f['steps']} steps; {load_average()}",
            flush=True,
        )
        print(f"    phases: {f['phases']}", flush=True)

    report(
        "catch-up window (generator's late stamps)", run_window(devorg, defs, instance, first, step, api_usage, False)
    )
    report("unchanged window, in-process", run_window(devorg, defs, instance, first + step, step, api_usage, False))
    report(
        "unchanged window, multiprocess executor",
        run_window(devorg, defs, instance, first + 2 * step, step, api_usage, True),
    )
    now = devorg.now()  # the next window to open: its changes land in it whatever the runs above took
    changed_window = first + step * (int((now - first) / step) + 1)
    while (wait := (changed_window - devorg.now()).total_seconds() + 1) > 0:
        time.sleep(min(wait, 30))
    sf = connect(devorg.credentials())
    from sf_pipeline.backup.catalog_state import read_state, state_path
    from sf_pipeline.settings import load_settings

    [catalog] = read_state(state_path(load_settings()).read_text()).values()
    shared = sorted(o.name for o in catalog.objects if o.name.endswith("__c") and o.name != "Invoice__c")[:2]
    for name, field in [("Account", "Name"), ("Opportunity", "Name"), ("Contact", "LastName")] + [
        (n, "Name") for n in shared
    ]:
        record = sf.query(f"SELECT Id FROM {name} LIMIT 1")["records"][0]["Id"]
        getattr(sf, name).update(record, {field: "changed by bench_discovery"})
    print(f"changed one record in each of Account, Opportunity, Contact, {', '.join(shared)}", flush=True)
    report(
        "window with changes in 5 objects, in-process",
        run_window(devorg, defs, instance, changed_window, step, api_usage, False),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extra-objects", type=int, default=100, help="generated custom objects (default 100)")
    p.add_argument("--records", type=int, default=20_000, help="devorg generates N = records/10 (default 20,000)")
    p.add_argument(
        "--opportunities",
        type=int,
        default=None,
        help="devorg's generator size N directly (about 2.35 N records; see above)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="keep the generated org here (reused when present)")
    p.add_argument("--include", action="append", default=None, help="backup.include pattern (repeatable)")
    p.add_argument("--no-load", action="store_true", help="skip the first full load")
    p.add_argument("--window-minutes", type=int, default=60, help="the partitions' window (divides 60; default 60)")
    p.add_argument("--windows", action="store_true", help="after the first load, the windows that follow (above)")
    args = p.parse_args(argv)

    import dagster as dg

    from sf_pipeline.backup.catalog_state import read_state, refresh_state_file, state_path
    from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR
    from sf_pipeline_tests.pg_fixtures import create_database, drop_database

    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        root = Path(tmp)
        size = args.opportunities if args.opportunities is not None else args.records // 10
        data_dir = args.data_dir or root / "org"
        print(f"[{datetime.now(UTC):%H:%M:%S} UTC, {load_average()}]", flush=True)
        t = time.perf_counter()
        devorg = start_devorg(data_dir, size, args.extra_objects, root / "devorg.log")
        print(
            f"devorg ready in {time.perf_counter() - t:.1f} s (generator size {size:,}, {args.extra_objects} "
            f"generated custom objects; generation skipped when {data_dir} already held the org), pid {devorg.pid}, "
            f"generation peak RSS {devorg.generation_peak_mb or 0:,.0f} MB",
            flush=True,
        )
        db = create_database("sfp_bench_discovery")
        try:
            now = devorg.now()
            step = timedelta(minutes=args.window_minutes)
            if 60 % args.window_minutes:
                p.error("--window-minutes must divide 60")
            current = now.replace(minute=now.minute - now.minute % args.window_minutes, second=0, microsecond=0)
            window_start = current - step  # the last complete window: the first window loads everything
            cron = "0 * * * *" if args.window_minutes == 60 else f"*/{args.window_minutes} * * * *"
            os.environ.update(devorg.env)
            os.environ["SF_PIPELINE_DATABASE_URL"] = db
            os.environ["SF_PIPELINE_STATE_DIR"] = str(root / "state")
            shutil.copytree(DBT_PROJECT_DIR, root / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
            os.environ["SF_PIPELINE_DBT_PROJECT_DIR"] = str(root / "dbt")
            settings_file = root / "sf_pipeline.yaml"
            backup = {
                "org": "production",
                "objects": "all",
                "exclude": ["*Share", "*Feed", "*ChangeEvent"],
                "partitions": {"cron": cron, "start": window_start.strftime("%Y-%m-%dT%H:%M:%SZ")},
            }
            if args.include:
                backup["include"] = args.include
            settings_file.write_text(yaml.safe_dump({"orgs": {"production": {}}, "backup": backup}))
            os.environ["SF_PIPELINE_SETTINGS"] = str(settings_file)
            from sf_pipeline.settings import load_settings

            def api_usage() -> int:
                return int(devorg.control("limits", method="GET")["api_usage"])

            settings = load_settings(settings_file)
            calls0 = api_usage()
            t = time.perf_counter()
            refresh_state_file(settings)
            discovery_s = time.perf_counter() - t
            discovery_calls = api_usage() - calls0  # control calls are not API usage
            [catalog] = read_state(state_path(settings).read_text()).values()
            strategies = Counter(o.strategy.value for o in catalog.objects)
            print(
                f"discovery: {discovery_s:.2f} s, {discovery_calls} API calls; {len(catalog.objects)} objects "
                f"backed up {dict(strategies)}, {len(catalog.skipped)} skipped; "
                f"{sum(o.field_count for o in catalog.objects)} fields; state "
                f"{state_path(settings).stat().st_size / 1e6:.1f} MB",
                flush=True,
            )

            from sf_pipeline.definitions import build_definitions

            before = api_usage()
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
            print(
                f"code location load from state: {first_load_s:.1f} s the first time (dbt parse of "
                f"{len(catalog.objects)} snapshots), {load_s:.1f} s after (+{graph_s:.1f} s asset graph); "
                f"{assets} assets; Salesforce API calls during loads: {api_usage() - before}",
                flush=True,
            )
            if args.no_load:
                return 0
            job = defs.resolve_job_def("backup")
            partition = window_start.strftime("%Y-%m-%d-%H:%M")
            print(
                f"[first full load of window {partition}; {datetime.now(UTC):%H:%M:%S} UTC, {load_average()}]",
                flush=True,
            )
            calls0 = api_usage()
            t = time.perf_counter()
            from sf_pipeline_tests.pipeline_fixtures import dagster_home

            os.environ["DAGSTER_HOME"] = str(dagster_home(root / "dagster_home", db))
            instance = dg.DagsterInstance.get()
            with ChildSampler(devorg.pid) as children:
                result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
                wall = time.perf_counter() - t
                steps = step_seconds(instance, result.run_id)
            calls = api_usage() - calls0
            load_after = load_average()
            self_mb = rss_mb()
            from sf_pipeline_tests.benchmarks.bench_backup import proc_status_mb

            devorg_mb = proc_status_mb(devorg.pid, "VmHWM") or 0.0
            mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
            per_object = {
                m.asset_key.path[-1]: int(m.metadata["records_extracted"].value)
                for m in mats
                if "records_extracted" in m.metadata
            }
            extracted = sum(per_object.values())
            failed = [e.step_key for e in result.all_events if e.is_step_failure]
            print(
                f"first full load: {'ok' if result.success else 'FAILED ' + str(failed[:5])}; {wall:.1f} s wall, "
                f"{calls} API calls ({calls / max(len(catalog.objects), 1):.2f} per object), "
                f"{extracted:,} records ({extracted / wall:,.0f}/s), {len(mats)} materializations; peak RSS "
                f"{self_mb:,.0f} MB (this process: in-process executor, every extraction step), "
                f"children (sampled every 0.2 s): {', '.join(f'{k} {v:,.0f} MB' for k, v in children.peak.items())}; devorg {devorg_mb:,.0f} MB (VmHWM, own process); "
                f"{load_after}",
                flush=True,
            )
            big = sorted(per_object.items(), key=lambda kv: -kv[1])
            print("records per object, largest: " + ", ".join(f"{k} {v:,}" for k, v in big[:10]))
            small = [v for _, v in big if v < 10_000]
            print(
                f"objects under 10,000 records: {len(small)} holding {sum(small):,} records; empty: "
                f"{sum(1 for v in small if v == 0)}"
            )
            by_kind: dict[str, list[float]] = defaultdict(list)
            for key, seconds in steps.items():
                by_kind["dbt" if key.startswith("history") else "other"].append(seconds)
            top = sorted(steps.items(), key=lambda kv: -kv[1])[:8]
            print(
                f"steps: {len(steps)}; summed {sum(steps.values()):.1f} s; dbt-like steps "
                f"{sum(by_kind['dbt']):.1f} s (the dbt snapshot step); slowest: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in top)
            )
            if args.windows and result.success:
                following_windows(devorg, defs, instance, window_start + step, step, api_usage)
            instance.dispose()
        finally:
            devorg.stop()
            drop_database(db)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
