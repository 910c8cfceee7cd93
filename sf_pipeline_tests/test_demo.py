"""The README's first command: `sf-pipeline demo` tells the 2 am story end to end (small size), for real."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from rich.console import Console

from sf_pipeline.demo import connect_org, run_demo

ENV = ["SF_PIPELINE_DATABASE_URL", "SF_PIPELINE_DBT_PROJECT_DIR", "SF_PIPELINE_SETTINGS", "DAGSTER_HOME"] + [
    f"SALESFORCE_{alias}_{name}" for alias in ("PRODUCTION", "SANDBOX")
    for name in ("INSTANCE_URL", "LOGIN_URL", "USERNAME", "PASSWORD", "SECURITY_TOKEN", "CLIENT_ID", "CLIENT_SECRET",
                 "CA_BUNDLE", "PRIVATE_KEY_FILE")]


@pytest.mark.e2e
def test_demo_detects_the_damage_rehearses_in_the_sandbox_and_restores_production(tmp_path, pg_url, monkeypatch):
    for name in ENV:  # the demo sets these for its Dagster runs; restore them afterwards
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url)
    console = Console(record=True, width=140)
    result, orgs = run_demo(size=300, data_dir=tmp_path / "demo", console=console, keep_devorg=True)
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    try:
        output = console.export_text()
        labels = [label.split(":")[0] for label, _, _ in result.timeline]
        assert labels == ["damage", "detected", "rehearsed", "restored"]
        damage, detected, rehearsed, restored = (at for _, at, _ in result.timeline)
        # detected by the first backup after the damage: one 15-minute window plus the 5-minute lag
        assert timedelta(minutes=15) < detected - damage < timedelta(minutes=22)
        assert detected <= rehearsed <= restored
        assert result.damaged >= 300 and f"incident {result.incident_id}" in output

        # the final state of both orgs: no Opportunity left without its account, each back to its own
        production, sandbox = connect_org("production"), connect_org("sandbox")
        assert result.orphaned_after == {"sandbox": 0, "production": 0}
        assert production.query("SELECT COUNT() FROM Opportunity WHERE AccountId = null")["totalSize"] == 0
        assert sandbox.query("SELECT COUNT() FROM Opportunity")["totalSize"] == result.damaged
        with psycopg.connect(pg_url) as conn:
            plans = dict(conn.execute("SELECT run_id, status FROM sf_pipeline.restore_plans").fetchall())
            before_damage = dict(conn.execute(
                "SELECT id, accountid FROM salesforce_history.opportunity WHERE dbt_valid_to IS NOT NULL "
                "AND accountid IS NOT NULL").fetchall())
        assert plans[result.restore_runs["sandbox"]] == "verified"
        assert plans[result.restore_runs["production"]] == "verified"
        now = {r["Id"]: r["AccountId"] for r in production.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
        assert {i: now[i] for i in before_damage} == before_damage

        html = result.report_path.read_text()
        assert "Mass nulling on Opportunity.AccountId" in html and "Restore applied to production" in html
        assert html.count("verified") >= 2
    finally:
        for org in orgs:
            org.stop()
