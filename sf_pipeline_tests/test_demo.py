"""The README's first command: `sf-pipeline demo` tells the 2 am story end to end (small size), for real.

It is also the suite's one run of the whole rehearsal (incident → seed the sandbox from the incident → the
incident's restore config dry-run and applied on the sandbox → the very same config applied to production),
so the rehearsal's own checks are made here, on the demo's orgs, database and Dagster instance.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from rich.console import Console

from sf_pipeline.demo import connect_org, run_demo
from sf_pipeline.warehouse.database_url import database_name
from sf_pipeline_tests.pg_fixtures import drop_database, url_for_database

ENV = ["SF_PIPELINE_DATABASE_URL", "SF_PIPELINE_DBT_PROJECT_DIR", "SF_PIPELINE_SETTINGS", "DAGSTER_HOME"] + [
    f"SALESFORCE_{alias}_{name}"
    for alias in ("PRODUCTION", "SANDBOX")
    for name in (
        "INSTANCE_URL",
        "LOGIN_URL",
        "USERNAME",
        "PASSWORD",
        "SECURITY_TOKEN",
        "CLIENT_ID",
        "CLIENT_SECRET",
        "CA_BUNDLE",
        "PRIVATE_KEY_FILE",
    )
]


def _step_output_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """The metadata of a run's step outputs, as the launchpad's run page shows it."""
    return {
        k: v.value
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT)
        for k, v in entry.dagster_event.event_specific_data.metadata.items()
    }


@pytest.mark.e2e
def test_demo_detects_the_damage_rehearses_in_the_sandbox_and_restores_production(
    tmp_path, pg_url, monkeypatch, capsys
):
    for name in ENV:  # the demo sets these for its Dagster runs; restore them afterwards
        monkeypatch.setenv(name, "")
    # a password the local server (trust) ignores: the demo must never show it
    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url.replace("postgres@", "postgres:s3cret-pw@", 1))
    demo_db = f"{database_name(pg_url)}_demo"  # the demo's own database, beside the configured one
    console = Console(record=True, width=140)
    try:
        result, orgs = run_demo(
            size=300, data_dir=tmp_path / "demo", console=console, keep_devorg=True, database=demo_db
        )
    except BaseException:
        drop_database(url_for_database(pg_url, demo_db))
        raise
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    try:
        output = console.export_text()
        # the demo speaks to its user: its own lines only, not dbt's log lines that the runs write to stdout
        printed = capsys.readouterr().out
        assert "incident" in printed and "Running with dbt" not in printed and "START snapshot" not in printed
        labels = [label.split(":")[0] for label, _, _ in result.timeline]
        assert labels == ["damage", "detected", "rehearsed", "restored"]
        damage, detected, rehearsed, restored = (at for _, at, _ in result.timeline)
        # detected by the first backup after the damage: one 15-minute window plus the 5-minute lag
        assert timedelta(minutes=15) < detected - damage < timedelta(minutes=22)
        assert detected <= rehearsed <= restored
        assert result.damaged >= 300 and f"incident {result.incident_id}" in output
        # the suggested restore is `incident: <id>`: no pasted ids (it once printed 20,000 lines of them)
        assert f"incident: {result.incident_id}" in output
        assert len(re.findall(r"\b006[A-Za-z0-9]{15}\b", output)) < 10

        # the final state of both orgs: no Opportunity left without its account, each back to its own
        production, sandbox = connect_org("production"), connect_org("sandbox")
        assert result.orphaned_after == {"sandbox": 0, "production": 0}
        assert production.query("SELECT COUNT() FROM Opportunity WHERE AccountId = null")["totalSize"] == 0
        assert sandbox.query("SELECT COUNT() FROM Opportunity")["totalSize"] == result.damaged
        assert database_name(result.database_url) == demo_db
        with psycopg.connect(pg_url) as conn:  # the database SF_PIPELINE_DATABASE_URL names is left alone
            assert (
                conn.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                ).fetchone()[0]
                == 0
            )
        with psycopg.connect(result.database_url) as conn:
            plans = dict(conn.execute("SELECT run_id, status FROM sf_pipeline.restore_plans").fetchall())
            before_damage = dict(
                conn.execute(
                    "SELECT id, accountid FROM salesforce_history.opportunity WHERE dbt_valid_to IS NOT NULL "
                    "AND accountid IS NOT NULL"
                ).fetchall()
            )
            id_map = dict(
                conn.execute(
                    "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE source_alias = "
                    "'production' AND target_alias = 'sandbox'"
                ).fetchall()
            )
            rehearsal = conn.execute(
                "SELECT record_id, before, after FROM sf_pipeline.restore_audit WHERE run_id = %s "
                "AND field = 'AccountId'",
                (result.restore_runs["sandbox"],),
            ).fetchall()
        assert plans[result.restore_runs["sandbox"]] == "verified"
        assert plans[result.restore_runs["production"]] == "verified"
        # each write applied the plan its own dry run stored, on an org that says what it is
        assert (
            plans[result.restore_runs["sandbox dry run"]]
            == plans[result.restore_runs["production dry run"]]
            == "planned"
        )
        assert sandbox.is_sandbox() is True and production.is_sandbox() is False
        now = {
            r["Id"]: r["AccountId"] for r in production.query_all("SELECT Id, AccountId FROM Opportunity")["records"]
        }
        assert {i: now[i] for i in before_damage} == before_damage
        # every Opportunity of production is exactly as before the damage (all of them had been orphaned)
        assert len(before_damage) == result.damaged and now == before_damage

        # The rehearsal on the seeded sandbox. Its dry run reads the incident's production ids through the id map
        # and would write exactly the damaged records ...
        instance = dg.DagsterInstance.from_config(str(tmp_path / "demo" / "dagster_home"))
        try:
            dry_run = _step_output_metadata(instance, result.restore_runs["sandbox dry run"])
            applied_plans = {
                step: _step_output_metadata(instance, result.restore_runs[step])["plan_of"]
                for step in ("sandbox", "production")
            }
        finally:
            instance.dispose()
        assert "through sf_pipeline.id_map" in dry_run["notes"] and dry_run["records_to_write"] == result.damaged
        assert applied_plans == {step: result.restore_runs[f"{step} dry run"] for step in ("sandbox", "production")}
        # ... the seeding had reproduced the damage (every copy without its account), and the rehearsal gave each
        # copy the sandbox's copy of its production account
        assert {rid: (before, after) for rid, before, after in rehearsal} == {
            id_map[o]: (None, id_map[account]) for o, account in before_damage.items()
        }
        in_sandbox = {
            r["Id"]: r["AccountId"] for r in sandbox.query_all("SELECT Id, AccountId FROM Opportunity")["records"]
        }
        assert in_sandbox == {id_map[o]: id_map[account] for o, account in before_damage.items()}

        html = result.report_path.read_text()
        assert "Mass nulling on Opportunity.AccountId" in html and "Restore applied to production" in html
        assert html.count("verified") >= 2
        assert "s3cret-pw" not in html and "s3cret-pw" not in output
    finally:
        for org in orgs:
            org.stop()
        drop_database(result.database_url)
