"""`sf-pipeline demo`: the 2 am story, end to end, for real, in about a minute.

Two local orgs (devorg): production, generated, and an empty developer sandbox (Organization.IsSandbox
true, which seeding checks). PostgreSQL: the configured server, else the local one, else an embedded one; on
it, the demo's own database (`sf_pipeline_demo`), never the one SF_PIPELINE_DATABASE_URL names. Then the
product does what it does for
real users, through the real Dagster jobs, schedule and sensor:

1. back up production: the schedule's 01:50 tick takes the first window with everything older (full load);
2. at 02:00 on the org's clock the marketing integration nulls AccountId on every Opportunity;
3. the schedule backs up the next window; the sensor launches the anomaly checks; the incident prints;
4. the sandbox is seeded with the damaged records as they are after the damage (the damage reproduced);
5. the incident's restore config is dry-run on the sandbox, and that reviewed plan applied and verified
   there (the rehearsal);
6. the very same config, target_org production: a dry run, then its plan applied and verified on production;
7. a timeline, and an HTML report of the incident and the restores.

It is the only place besides the tests where devorg and the pipeline meet.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from rich.console import Console
from rich.table import Table

from sf_pipeline.privacy.masking import DEMO_KEY as DEMO_MASKING_KEY
from sf_pipeline.privacy.masking import KEY_ENV as MASKING_KEY_ENV
from sf_pipeline.settings import REPO_ROOT
from sf_pipeline.warehouse.database_url import database_name, redact_url, with_database

DEMO_DB = "sf_pipeline_demo"
DEMO_MARK = "sf-pipeline demo: generated data, dropped and re-created by each `sf-pipeline demo`"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
KEY = "%Y-%m-%d-%H:%M"
# The demo prints its own progress and the incident: the runs' console log shows only what stops a run (a failed
# step raises, and the demo says which). The Dagster UI (--ui) has every log line.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
WINDOW = timedelta(minutes=15)
LAG = timedelta(minutes=5)
OBJECTS = ["Account", "Contact", "Opportunity", "Case", "Lead", "OpportunityContactRole", "Invoice__c"]


@dataclass
class DemoResult:
    database_url: str
    data_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[str, datetime, float]] = field(default_factory=list)  # (event, org clock, wall seconds)
    history_rows: int = 0
    incident_id: int | None = None
    damaged: int = 0
    orphaned_after: dict[str, int] = field(default_factory=dict)  # org alias -> Opportunities left without account
    restore_runs: dict[str, str] = field(default_factory=dict)  # step -> restore run id
    report_path: Path | None = None
    seconds: float = 0.0


class DemoDatabaseError(RuntimeError):
    """The demo's database name is taken by a database that is not a previous demo's."""


def resolve_database(data_dir: Path, console: Console, name: str = DEMO_DB) -> str:
    """The demo's own database `name`, (re-)created on the server of SF_PIPELINE_DATABASE_URL if set, else on the
    local server, else on an embedded PostgreSQL; the database SF_PIPELINE_DATABASE_URL names is never written."""
    configured = os.environ.get("SF_PIPELINE_DATABASE_URL")
    if configured:
        url = prepare_demo_database(configured, name)
        console.print(
            f"[dim]database: {redact_url(url)} (the demo's own, on the server of SF_PIPELINE_DATABASE_URL)[/]"
        )
        return url
    try:
        url = prepare_demo_database(LOCAL_SERVER, name)
        console.print(f"[dim]database: {name} on the local PostgreSQL server (127.0.0.1:5432)[/]")
        return url
    except psycopg.OperationalError:
        try:
            import pgserver
        except ImportError:
            raise DemoDatabaseError(
                "no PostgreSQL server at 127.0.0.1:5432 and no embedded one (pgserver): start a server, set "
                "SF_PIPELINE_DATABASE_URL, or pip install 'sf-pipeline[devorg]'"
            ) from None

        server = pgserver.get_server(data_dir / "pgdata", cleanup_mode=None)
        url = prepare_demo_database(server.get_uri("postgres"), name)
        console.print(f"[dim]database: embedded PostgreSQL in {data_dir / 'pgdata'}[/]")
        return url


def _admin_connection(server_url: str, name: str) -> psycopg.Connection:
    """A connection to the server for CREATE/DROP DATABASE: its `postgres` database, else the URL's own (never
    the demo's, which could not be dropped while connected to)."""
    candidates = [with_database(server_url, "postgres")]
    if database_name(server_url) not in ("postgres", name):
        candidates.append(server_url)
    for i, url in enumerate(candidates):
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if i == len(candidates) - 1:
                raise
    raise AssertionError("unreachable")


def prepare_demo_database(server_url: str, name: str = DEMO_DB) -> str:
    """Create the demo's database `name` on the server of `server_url`, marked as the demo's (a comment on the
    database), and return its URL. A previous demo's database is dropped first; a database of that name holding
    anything else is refused with `DemoDatabaseError`, untouched."""
    url = with_database(server_url, name)
    with _admin_connection(server_url, name) as admin:
        found = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if found is not None and found[0] != DEMO_MARK:
            with psycopg.connect(url, connect_timeout=3) as existing:
                tables = existing.execute(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind "
                    "IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%%'"
                ).fetchone()[0]
            if tables:
                raise DemoDatabaseError(
                    f"database {name!r} on {redact_url(server_url)} already exists and holds {tables} tables that a "
                    "previous demo did not make: the demo will not touch it. Drop it yourself, or give the demo "
                    "another database name (sf-pipeline demo --database NAME)"
                )
        if found is not None:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(DEMO_MARK)))
    return url


def _requested_windows(request) -> tuple[str, str]:
    """The first and last window (partition keys) a schedule run request backs up: one, or a range."""
    tags = request.tags or {}
    if "dagster/asset_partition_range_start" in tags:
        return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    return request.partition_key, request.partition_key


def _write_settings(path: Path, start: datetime) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "orgs": {"production": {}, "sandbox": {}},
                "backup": {
                    "org": "production",
                    "objects": OBJECTS,
                    "partitions": {"cron": "*/15 * * * *", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
                    "schedule_lag_minutes": int(LAG.total_seconds() // 60),
                    "bulk_threshold": 20_000,
                    "api_budget": {"max_share_of_daily_limit": 0.5},
                },
            }
        )
    )
    return path


def _dagster_home(path: Path, db_url: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {"postgres": {"postgres_url": db_url.replace("postgresql://", "postgresql+psycopg2://", 1)}},
                "telemetry": {"enabled": False},
            }
        )
    )
    return path


@contextlib.contextmanager
def _runs_output_hidden() -> Iterator[None]:
    """Hide what a Dagster run writes to stdout: dbt's log lines, which dagster-dbt copies there for the run's
    compute log. The run keeps them (the Dagster UI shows them); the demo prints its own summary of each run."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _counts(counts: dict[str, int]) -> str:
    """A dry run's counts for people: `300 restore, 0 conflict, ...`."""
    return ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in counts.items())


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


class _Story:
    """The demo's state: both orgs, the database, the Dagster definitions and instance, the timeline."""

    def __init__(self, console: Console, result: DemoResult, production: Any, sandbox: Any):
        import dagster as dg

        from sf_pipeline.definitions import build_definitions

        self.console, self.result = console, result
        self.production, self.sandbox = production, sandbox
        self.defs = build_definitions(os.environ["SF_PIPELINE_SETTINGS"])
        self.instance = dg.DagsterInstance.get()
        self.sensor_cursor: str | None = None

    def now(self) -> datetime:
        return self.production.org.clock.now()

    def mark(self, label: str, began: float) -> None:
        self.result.timeline.append((label, self.now(), time.monotonic() - began))

    # --------------------------------------------------------------------------- backup
    def backup(self, label: str, start: datetime, end: datetime | None = None):
        job = self.defs.resolve_job_def("backup")
        began = time.monotonic()
        with self.console.status(f"backing up {label} through Dagster..."):
            tags = (
                {
                    "dagster/asset_partition_range_start": start.strftime(KEY),
                    "dagster/asset_partition_range_end": end.strftime(KEY),
                }
                if end
                else {}
            )
            with _runs_output_hidden():
                run = job.execute_in_process(
                    instance=self.instance,
                    tags=tags,
                    run_config=QUIET,
                    partition_key=None if end else start.strftime(KEY),
                )
        seconds = time.monotonic() - began
        table = Table(title=f"backup run {run.run_id[:8]}: {label} ({seconds:.1f} s)", title_justify="left")
        for col in ("object", "extracted", "inserted", "updated", "deleted", "API calls", "via"):
            table.add_column(col, justify="left" if col == "object" else "right")
        totals: dict[str, dict[str, Any]] = {}
        for event in run.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            if mat.asset_key.path[0] != "salesforce":
                continue
            m = {k: v.value for k, v in mat.metadata.items()}
            t = totals.setdefault(mat.asset_key.path[1], {"mode": m["extract_mode"], "seen": set()})
            if m.get("window") in t["seen"]:
                continue  # a range run reports its totals on each partition's materialization
            t["seen"].add(m.get("window"))
            for k in ("records_extracted", "records_inserted", "records_updated", "records_deleted", "api_calls"):
                t[k] = m[k] if k not in t else max(t[k], m[k])
        for name, t in totals.items():
            table.add_row(
                name,
                f"{t['records_extracted']:,}",
                f"{t['records_inserted']:,}",
                f"{t['records_updated']:,}",
                f"{t['records_deleted']:,}",
                str(t["api_calls"]),
                t["mode"],
            )
        self.console.print(table)
        return run

    # --------------------------------------------------------------------------- detection
    def sensor_tick(self) -> list[Any]:
        import dagster as dg

        sensor = self.defs.resolve_sensor_def("history_materialized_checks")
        ctx = dg.build_sensor_context(
            instance=self.instance, repository_def=self.defs.get_repository_def(), cursor=self.sensor_cursor
        )
        tick = sensor.evaluate_tick(ctx)
        self.sensor_cursor = tick.cursor
        return list(tick.run_requests)

    def run_checks(self, request: Any):
        job = self.defs.resolve_job_def("anomaly_checks")
        subset = job.get_subset(asset_selection=set(), asset_check_selection=set(request.asset_check_keys))
        with _runs_output_hidden():
            return subset.execute_in_process(
                partition_key=request.partition_key, instance=self.instance, tags=request.tags, run_config=QUIET
            )

    # --------------------------------------------------------------------------- seed and restore
    def seed(self, config: dict[str, Any]):
        job = self.defs.resolve_job_def("seed_sandbox")
        with _runs_output_hidden():
            return job.execute_in_process(
                instance=self.instance,
                raise_on_error=False,
                run_config={"ops": {"seed_sandbox": {"config": config}}, **QUIET},
            )

    def restore(self, launchpad: dict[str, Any], step: str, what: str, **overrides: Any) -> dict[str, Any]:
        """Run the restore job with the launchpad config (plus overrides); returns its metadata, raises if it failed.

        With `plan=<step>`, the run applies the plan that step's dry run stored (dry_run: false, plan: <its id>).
        """
        if "plan" in overrides:
            overrides = {**overrides, "dry_run": False, "plan": self.result.restore_runs[overrides["plan"]]}
        config = launchpad["ops"]["restore"]["config"] | overrides
        job = self.defs.resolve_job_def("restore")
        with _runs_output_hidden():
            run = job.execute_in_process(
                instance=self.instance,
                raise_on_error=False,
                run_config={"ops": {"restore": {"config": config}}, **QUIET},
            )
        if not run.success:
            raise RuntimeError(f"{what} failed: {_failure(run)}")
        self.result.restore_runs[step] = run.run_id
        return _step_metadata(run)


def _step_metadata(run: Any) -> dict[str, Any]:
    return {
        k: v.value
        for e in run.all_events
        if e.event_type_value in ("STEP_OUTPUT", "STEP_FAILURE")
        for k, v in (
            (e.event_specific_data.metadata or {}).items()
            if e.event_type_value == "STEP_OUTPUT"
            else (
                e.event_specific_data.user_failure_data.metadata.items()
                if e.event_specific_data.user_failure_data
                else ()
            )
        )
    }


def _failure(run: Any) -> str:
    for e in run.all_events:
        if e.event_type_value == "STEP_FAILURE":
            return e.event_specific_data.error.message if e.event_specific_data.error else "step failed"
    return "run failed"


def _print_incident(console: Console, incident: Any) -> None:
    """The incident as an admin reads it first: what, when, who, a sample, and the restore to paste."""
    report = incident.report
    console.rule(f"[bold red]incident {incident.id}: {report.title}")
    console.print(
        f"[bold]What[/]: {report.what}; {report.affected_count:,} records"
        + (f" ({report.share:.0%} of the live {report.object} records)" if report.share is not None else "")
    )
    if report.first_change and report.last_change:
        console.print(
            f"[bold]When[/]: {report.first_change:%Y-%m-%d %H:%M:%S} to {report.last_change:%H:%M:%S} UTC "
            f"(SystemModstamp)   [bold]By[/]: {report.user_label}"
        )
    for item in report.sample[:3]:
        console.print(f"  {item['id']} {item.get('name') or ''}: {item['before']} -> {item['after']}")
    console.print(f"[dim]change volume, 24 h: {report.chart_sparkline(60)}[/]")
    console.print("[bold]Suggested restore[/] (the launchpad config of the restore job):")
    # `incident: <id>`: the restore reads the records from the stored incident, so no id is printed
    console.print(
        "\n".join(f"  {line}" for line in incident.restore_config_yaml().splitlines()), markup=False, highlight=False
    )


def connect_org(alias: str) -> Any:
    """A simple-salesforce connection to an org alias, from its SALESFORCE_<ALIAS>_* variables."""
    from sf_pipeline.salesforce import OrgCredentials, connect

    return connect(OrgCredentials.from_env(alias))


def _orphaned(sf: Any) -> int:
    return sf.query("SELECT COUNT() FROM Opportunity WHERE AccountId = null")["totalSize"]


def run_demo(
    size: int = 10_000,
    data_dir: str | Path = ".demo",
    console: Console | None = None,
    keep_devorg: bool = False,
    database: str = DEMO_DB,
):
    """Run the demo; returns (DemoResult, the running orgs (production, sandbox) if keep_devorg else None)."""
    from sf_pipeline.anomalies.incidents import list_incidents
    from sf_pipeline.devorg.generator import generate_org
    from sf_pipeline.devorg.runner import DevOrgServer
    from sf_pipeline.devorg.scenarios import run_scenario
    from sf_pipeline.report import TimelineEntry, write_incident_report

    console = console or Console(file=sys.stdout)  # bound now: the runs' own stdout is hidden (_runs_output_hidden)
    data = Path(data_dir).resolve()
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    started = time.monotonic()
    db_url = resolve_database(data, console, database)
    result = DemoResult(db_url, data)

    # The org's clock: last night. Dagster's partitions end at the real present, so the story is in the past.
    night = (datetime.now(UTC) - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    start = night - 2 * WINDOW  # the first window, 01:30-01:45, takes everything older: the full load
    with console.status("starting two orgs (devorg): production, generated, and an empty developer sandbox..."):
        production = DevOrgServer(data / "devorg-production", name="production").start()
        sandbox = DevOrgServer(data / "devorg-sandbox", name="sandbox", sandbox=True).start()
        production.org.set_clock(start - timedelta(minutes=1), freeze=True)
        counts = generate_org(production.org, size)
    console.print(
        f"[green]✓[/] production org at {production.instance_url}: "
        + ", ".join(f"{n:,} {k}" for k, n in counts.items())
        + f" ({time.monotonic() - started:.1f} s)"
    )
    console.print(f"[green]✓[/] sandbox org at {sandbox.instance_url}: empty but for its users")

    os.environ.update(production.env("production"))
    os.environ.update(sandbox.env("sandbox"))
    os.environ["SF_PIPELINE_DATABASE_URL"] = db_url
    # The demo's orgs are devorg's generated ones: a known masking key is fine here, and only here.
    os.environ.setdefault(MASKING_KEY_ENV, DEMO_MASKING_KEY)
    project = data / "dbt_snapshots"
    shutil.copytree(REPO_ROOT / "dbt_snapshots", project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    os.environ["SF_PIPELINE_DBT_PROJECT_DIR"] = str(project)
    os.environ["SF_PIPELINE_SETTINGS"] = str(_write_settings(data / "sf_pipeline.yaml", start))
    os.environ["DAGSTER_HOME"] = str(_dagster_home(data / "dagster_home", db_url))

    loading = time.monotonic()
    with console.status("loading the Dagster definitions (dbt parse)..."):
        story = _Story(console, result, production, sandbox)
    console.print(
        f"[green]✓[/] Dagster definitions loaded: jobs backup, anomaly_checks, seed_sandbox, restore "
        f"({time.monotonic() - loading:.1f} s)"
    )
    org = production.org

    # 1. The schedule's 01:50 tick: the first window, with everything older (the full load).
    org.set_clock(start + WINDOW + LAG, freeze=True)
    story.backup(f"the first window {start:%H:%M}-{start + WINDOW:%H:%M} with everything older (the full load)", start)
    story.sensor_tick()  # a full load has no earlier versions to compare with: its checks are skipped here

    # 2. 02:00: the marketing integration's sync nulls AccountId on every Opportunity.
    sf_production = connect_org("production")
    before = {
        r["Id"]: r["AccountId"] for r in sf_production.query_all("SELECT Id, AccountId FROM Opportunity")["records"]
    }
    began = time.monotonic()
    with console.status("02:00: the marketing integration syncs..."):
        damage = run_scenario(org, "orphan-opportunities", at=night)
    result.damaged = len(damage.changed.get("Opportunity", []))
    result.timeline.append(
        ("damage: AccountId nulled on every Opportunity", damage.started_at, time.monotonic() - began)
    )
    console.print(
        f"[red]✗[/] {_fmt(damage.started_at)}-{_fmt(damage.finished_at)} (org clock): the integration user "
        f"nulled AccountId on {result.damaged:,} Opportunities; {_orphaned(sf_production):,} now have no account"
    )

    # 3. The schedule's next tick backs up the 02:00 window; the sensor launches the checks.
    import dagster as dg

    tick = night + WINDOW + LAG
    org.set_clock(tick, freeze=True)
    schedule_ctx = dg.build_schedule_context(
        instance=story.instance, scheduled_execution_time=tick, repository_def=story.defs.get_repository_def()
    )
    requests = story.defs.resolve_schedule_def("backup_schedule").evaluate_tick(schedule_ctx).run_requests
    began = time.monotonic()
    for request in requests:  # every closed window not backed up yet, oldest first; the 02:00 window last
        first, last = _requested_windows(request)
        story.backup(
            f"window {first}{'' if first == last else ' to ' + last} (the schedule's {_fmt(tick)} tick)",
            datetime.strptime(first, KEY).replace(tzinfo=UTC),
            None if first == last else datetime.strptime(last, KEY).replace(tzinfo=UTC),
        )
    org.set_clock(tick + timedelta(seconds=time.monotonic() - began))  # from here the org's clock runs
    with console.status("the sensor launches the anomaly checks of the window..."):
        checks = [story.run_checks(r) for r in story.sensor_tick()]
    failed = [e for run in checks for e in run.get_asset_check_evaluations() if not e.passed]
    window_start = datetime.strptime(_requested_windows(requests[-1])[1], KEY).replace(tzinfo=UTC)
    with psycopg.connect(db_url) as conn:
        incident = (
            next(
                (
                    i
                    for i in list_incidents(conn, object="Opportunity")
                    if i.report.detector == "mass_nulling" and i.report.window_start == window_start
                ),
                None,
            )
            if failed
            else None
        )
    if incident is None:
        raise RuntimeError(
            "the anomaly checks did not report the mass nulling: the demo cannot go on "
            f"(failed checks: {[e.asset_key.to_user_string() for e in failed]})"
        )
    result.incident_id = incident.id
    story.mark("detected: anomaly check failed, incident stored", began)
    _print_incident(console, incident)
    launchpad = yaml.safe_load(incident.report.launchpad_yaml(incident.id))

    # 4. Reproduce the damage in the sandbox: the incident's records as they are now, with their parents.
    began = time.monotonic()
    seed_config = {"as_of": tick.strftime("%Y-%m-%dT%H:%M:%SZ"), "incident": incident.id, "target_org": "sandbox"}
    with console.status("seeding the sandbox with the damaged records and their parents (seed_sandbox)..."):
        seeded = story.seed(seed_config)
    if not seeded.success:
        raise RuntimeError(f"seeding the sandbox failed: {_failure(seeded)}")
    summary = seeded.output_for_node("seed_sandbox")
    sf_sandbox = connect_org("sandbox")
    copied = ", ".join(f"{o} {v['inserted'] + v['updated']:,}" for o, v in summary["objects"].items())
    console.print(
        f"[green]✓[/] sandbox seeded in {time.monotonic() - began:.1f} s: {summary['copied']:,} records "
        f"({copied}), "
        f"insert order {' → '.join(summary['order'])}; "
        f"{_orphaned(sf_sandbox):,} sandbox Opportunities without account: the damage, reproduced"
    )

    # 5. Rehearse: dry run on the sandbox, then apply that reviewed plan and verify.
    meta = story.restore(
        launchpad, "sandbox dry run", "the restore dry run on the sandbox", target_org="sandbox", dry_run=True
    )
    console.print(
        f"[green]✓[/] dry run on the sandbox: {meta['records_to_write']:,} records to write "
        f"({_counts(meta['counts'])}); {meta['notes']}"
    )
    with console.status("rehearsing: the restore applied and verified on the sandbox..."):
        meta = story.restore(
            launchpad, "sandbox", "the rehearsal on the sandbox", target_org="sandbox", plan="sandbox dry run"
        )
    result.orphaned_after["sandbox"] = _orphaned(sf_sandbox)
    story.mark("rehearsed: restore verified on the sandbox", began)
    console.print(
        f"[green]✓[/] rehearsal: {meta['values_written']:,} values written, {meta['verified_records']:,} "
        f"records verified on the sandbox; {result.orphaned_after['sandbox']:,} left without account"
    )

    # 6. The very same config against production: its dry run, then that plan applied.
    began = time.monotonic()
    meta = story.restore(
        launchpad, "production dry run", "the restore dry run on production", target_org="production", dry_run=True
    )
    console.print(
        f"[green]✓[/] dry run on production: {meta['records_to_write']:,} records to write ({_counts(meta['counts'])})"
    )
    with console.status("restoring production: the reviewed plan applied, then verified..."):
        meta = story.restore(
            launchpad, "production", "the restore of production", target_org="production", plan="production dry run"
        )
    after = {
        r["Id"]: r["AccountId"] for r in sf_production.query_all("SELECT Id, AccountId FROM Opportunity")["records"]
    }
    result.orphaned_after["production"] = _orphaned(sf_production)
    story.mark("restored: production verified", began)
    back = sum(1 for i, a in before.items() if a and after.get(i) == a)
    console.print(
        f"[green]✓[/] production: {meta['values_written']:,} values written, {meta['verified_records']:,} "
        f"records verified; {back:,} of {sum(1 for a in before.values() if a):,} Opportunities have their "
        "account back"
    )

    # 7. Timeline and report.
    damage_at = damage.started_at
    table = Table(title="timeline (org clock, UTC)", title_justify="left")
    for col in ("event", "at", "since the damage", "took (wall)"):
        table.add_column(col, justify="left" if col == "event" else "right")
    for label, at, seconds in result.timeline:
        table.add_row(label, _fmt(at), str(at - damage_at).split(".")[0], f"{seconds:.1f} s")
    console.print(table)
    with psycopg.connect(db_url) as conn:
        result.history_rows = conn.execute("SELECT count(*) FROM salesforce_history.opportunity").fetchone()[0]
        for sobject in ("Account", "Opportunity"):
            result.counts[sobject] = conn.execute(
                sql.SQL("SELECT count(*) FROM salesforce.{}").format(sql.Identifier(sobject.lower()))
            ).fetchone()[0]
        result.report_path = write_incident_report(
            data / "incident-report.html",
            conn,
            incident,
            timeline=[TimelineEntry(label, at) for label, at, _ in result.timeline],
            seed=summary,
            restores=[
                ("Rehearsal: dry run on the sandbox", result.restore_runs["sandbox dry run"]),
                ("Rehearsal: restore applied to the sandbox", result.restore_runs["sandbox"]),
                ("Dry run on production", result.restore_runs["production dry run"]),
                ("Restore applied to production", result.restore_runs["production"]),
            ],
            database_hint=f"psql {redact_url(db_url)}",
        )
    result.seconds = time.monotonic() - started
    console.print(
        f"[bold]Done in {result.seconds:.0f} s.[/] Report: {result.report_path}\n"
        f"Query the backup yourself:  psql {redact_url(db_url)}\n"
        "  SELECT * FROM sf_pipeline.restore_audit LIMIT 10;\n"
        f"  .venv/bin/sf-pipeline history Opportunity {next(iter(damage.changed['Opportunity']), '')}"
    )
    if keep_devorg:
        return result, (production, sandbox)
    production.stop()
    sandbox.stop()
    story.instance.dispose()
    return result, None
