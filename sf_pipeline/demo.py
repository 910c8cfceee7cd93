"""`sf-pipeline demo`: a local production org, backed up through Dagster into PostgreSQL, for real.

The demo starts devorg (the local org emulator) with a generated org, finds a PostgreSQL server (the
configured one, the local one, else an embedded one), backs the org up through the real Dagster job,
lets the org's users work for a simulated day, backs that up too, and shows the history it captured.
It is the only place besides the tests where devorg and the pipeline meet.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import yaml
from psycopg import sql
from rich.console import Console
from rich.table import Table

from sf_pipeline.settings import REPO_ROOT

DEMO_DB = "sf_pipeline_demo"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class DemoResult:
    database_url: str
    data_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[str, datetime, float]] = field(default_factory=list)
    history_rows: int = 0
    sample_record: str | None = None


def resolve_database(data_dir: Path, console: Console) -> str:
    """SF_PIPELINE_DATABASE_URL if set; else a fresh database on the local server; else embedded PostgreSQL."""
    configured = os.environ.get("SF_PIPELINE_DATABASE_URL")
    if configured:
        console.print(f"[dim]database: {configured.split('@')[-1]} (SF_PIPELINE_DATABASE_URL)[/]")
        return configured
    try:
        with psycopg.connect(LOCAL_SERVER, autocommit=True, connect_timeout=3) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
        console.print(f"[dim]database: {DEMO_DB} on the local PostgreSQL server (127.0.0.1:5432)[/]")
        return LOCAL_SERVER.rsplit("/", 1)[0] + "/" + DEMO_DB
    except psycopg.OperationalError:
        import pgserver

        server = pgserver.get_server(data_dir / "pgdata", cleanup_mode=None)
        url = server.get_uri("postgres")
        console.print(f"[dim]database: embedded PostgreSQL in {data_dir / 'pgdata'}[/]")
        return url


def _write_settings(path: Path, start: datetime) -> Path:
    path.write_text(yaml.safe_dump({
        "orgs": {"production": {}, "sandbox": {}},
        "backup": {
            "org": "production",
            "objects": ["Account", "Contact", "Opportunity", "Case", "Lead", "OpportunityContactRole", "Invoice__c"],
            "partitions": {"cron": "0 * * * *", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "schedule_lag_minutes": 10, "bulk_threshold": 20_000,
            "api_budget": {"max_share_of_daily_limit": 0.5},
        },
    }))
    return path


def _dagster_home(path: Path, db_url: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(yaml.safe_dump({
        "storage": {"postgres": {"postgres_url": db_url.replace("postgresql://", "postgresql+psycopg2://", 1)}},
        "telemetry": {"enabled": False},
    }))
    return path


def run_demo(size: int = 10_000, data_dir: str | Path = ".demo", console: Console | None = None,
             keep_devorg: bool = False):
    """Run the demo; returns (DemoResult, the running DevOrgServer if keep_devorg else None)."""
    from sf_pipeline.devorg.generator import generate_org
    from sf_pipeline.devorg.runner import DevOrgServer
    from sf_pipeline.devorg.scenarios import run_scenario

    console = console or Console()
    data = Path(data_dir).resolve()
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    started = time.monotonic()
    db_url = resolve_database(data, console)
    result = DemoResult(db_url, data)

    # The org's clock: the demo's "today" starts at midnight UTC yesterday, so the story is last night's.
    t0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    with console.status("starting the production org (devorg) and generating its data..."):
        devorg = DevOrgServer(data / "devorg-production", name="production")
        devorg.start()
        devorg.org.set_clock(t0 - timedelta(minutes=1), freeze=True)
        counts = generate_org(devorg.org, size)
        devorg.org.set_clock(t0, freeze=True)
    console.print(f"[green]✓[/] production org at {devorg.instance_url}: "
                  + ", ".join(f"{n:,} {k}" for k, n in counts.items()))

    os.environ.update(devorg.env("production"))
    os.environ["SF_PIPELINE_DATABASE_URL"] = db_url
    project = data / "dbt_snapshots"
    shutil.copytree(REPO_ROOT / "dbt_snapshots", project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    os.environ["SF_PIPELINE_DBT_PROJECT_DIR"] = str(project)
    os.environ["SF_PIPELINE_SETTINGS"] = str(_write_settings(data / "sf_pipeline.yaml", t0))
    os.environ["DAGSTER_HOME"] = str(_dagster_home(data / "dagster_home", db_url))

    import dagster as dg

    from sf_pipeline.definitions import build_definitions

    with console.status("loading the Dagster definitions (dbt parse)..."):
        defs = build_definitions(os.environ["SF_PIPELINE_SETTINGS"])
        job = defs.resolve_job_def("backup")
        instance = dg.DagsterInstance.get()

    def backup(start_key: str, end_key: str | None, label: str) -> dg.ExecuteInProcessResult:
        with console.status(f"backing up {label} through Dagster..."):
            began = time.monotonic()
            tags = {"dagster/asset_partition_range_start": start_key,
                    "dagster/asset_partition_range_end": end_key} if end_key else {}
            run = job.execute_in_process(instance=instance, tags=tags,
                                         partition_key=None if end_key else start_key)
            seconds = time.monotonic() - began
        table = Table(title=f"backup run {run.run_id[:8]}: {label} ({seconds:.1f} s)")
        for col in ("object", "extracted", "inserted", "updated", "deleted", "API calls", "via"):
            table.add_column(col, justify="right" if col != "object" else "left")
        seen = set()
        for event in run.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            key = mat.asset_key.path
            if key[0] != "salesforce" or key[1] in seen:
                continue
            seen.add(key[1])
            m = {k: v.value for k, v in mat.metadata.items()}
            table.add_row(key[1], f"{m['records_extracted']:,}", f"{m['records_inserted']:,}",
                          f"{m['records_updated']:,}", f"{m['records_deleted']:,}", str(m["api_calls"]),
                          m["extract_mode"])
        console.print(table)
        result.timeline.append((label, devorg.org.clock.now(), seconds))
        return run

    # 1. The first window holds everything older: the full load.
    devorg.org.set_clock(t0 + timedelta(hours=1, minutes=10), freeze=True)
    backup(t0.strftime("%Y-%m-%d-%H:%M"), None, "first window (full load)")

    # 2. A working day in the org, then its windows backed up as one backfill run.
    with console.status("the org's users work through a simulated day..."):
        day = run_scenario(devorg.org, "business-day", at=t0 + timedelta(hours=1))
    changed = sum(len(v) for v in day.changed.values())
    console.print(f"[green]✓[/] business day: {changed} changes by {len(day.details.get('per_user', {})) or 'several'} users "
                  f"from {day.started_at:%H:%M} to {day.finished_at:%H:%M} (org clock)")
    devorg.org.set_clock(t0 + timedelta(hours=10, minutes=10), freeze=True)
    last_key = (t0 + timedelta(hours=9)).strftime("%Y-%m-%d-%H:%M")
    backup((t0 + timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M"), last_key, "the working day (backfill of 9 windows)")

    with psycopg.connect(db_url) as conn:
        for sobject in ("Account", "Opportunity", "Case"):
            result.counts[sobject] = conn.execute(
                sql.SQL("SELECT count(*) FROM salesforce.{}").format(sql.Identifier(sobject.lower()))).fetchone()[0]
        result.history_rows = conn.execute("SELECT count(*) FROM salesforce_history.opportunity").fetchone()[0]
        row = conn.execute("SELECT id FROM salesforce_history.opportunity GROUP BY id HAVING count(*) > 1 "
                           "ORDER BY id LIMIT 1").fetchone()
        result.sample_record = row[0] if row else None

    console.print(f"[green]✓[/] mirror: {result.counts} records; history: {result.history_rows:,} Opportunity versions")
    if result.sample_record:
        console.print(f"\n[bold]Every version of one Opportunity[/] (sf-pipeline history Opportunity {result.sample_record}):")
        from click.testing import CliRunner

        from sf_pipeline.history_cli import history

        console.print(CliRunner().invoke(history, ["Opportunity", result.sample_record]).output)
    console.print(f"[bold]Done in {time.monotonic() - started:.0f} s.[/] Query the backup yourself:\n"
                  f"  export SF_PIPELINE_DATABASE_URL={db_url}\n"
                  "  psql \"$SF_PIPELINE_DATABASE_URL\" -c \"SELECT stagename, count(*) FROM salesforce.opportunity "
                  "GROUP BY 1\"\n"
                  f"  .venv/bin/sf-pipeline as-of Opportunity {(t0 + timedelta(hours=2)).isoformat()} --fields id,stagename,amount | head")
    if keep_devorg:
        return result, devorg
    devorg.stop()
    instance.dispose()
    return result, None
