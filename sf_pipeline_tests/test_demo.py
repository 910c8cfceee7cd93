"""The README's first command: `sf-pipeline demo` runs end to end (small size) and leaves a real backup."""

from __future__ import annotations

import psycopg
import pytest
from rich.console import Console

from sf_pipeline.demo import run_demo

ENV = ["SF_PIPELINE_DATABASE_URL", "SF_PIPELINE_DBT_PROJECT_DIR", "SF_PIPELINE_SETTINGS", "DAGSTER_HOME",
       "SALESFORCE_PRODUCTION_INSTANCE_URL", "SALESFORCE_PRODUCTION_LOGIN_URL", "SALESFORCE_PRODUCTION_USERNAME",
       "SALESFORCE_PRODUCTION_PASSWORD", "SALESFORCE_PRODUCTION_SECURITY_TOKEN", "SALESFORCE_PRODUCTION_CLIENT_ID",
       "SALESFORCE_PRODUCTION_CLIENT_SECRET", "SALESFORCE_PRODUCTION_CA_BUNDLE",
       "SALESFORCE_PRODUCTION_PRIVATE_KEY_FILE"]


@pytest.mark.e2e
def test_demo_backs_up_the_generated_org_and_its_working_day(tmp_path, pg_url, monkeypatch):
    for name in ENV:  # the demo sets these for its Dagster run; restore them afterwards
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url)
    console = Console(record=True, width=120)
    result, _ = run_demo(size=300, data_dir=tmp_path / "demo", console=console)
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
    output = console.export_text()
    assert [label for label, _, _ in result.timeline] == ["first window (full load)",
                                                          "the working day (backfill of 9 windows)"]
    with psycopg.connect(pg_url) as conn:
        opportunities = conn.execute("SELECT count(*) FROM salesforce.opportunity").fetchone()[0]
        changed = conn.execute("SELECT count(DISTINCT id) FROM salesforce_history.opportunity "
                               "WHERE dbt_valid_to IS NOT NULL").fetchone()[0]
    assert opportunities >= 300  # the generated ones, plus any created during the working day
    assert changed > 0  # the working day's updates are versions in history
    assert result.sample_record and f"history Opportunity {result.sample_record}" in output.replace("\n", "")
    assert "version 2:" in output
