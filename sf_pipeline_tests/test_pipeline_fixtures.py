"""The shared pipeline fixtures: a test's first dbt call reuses dbt's parse, and every test still has a new database."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sf_pipeline.warehouse.dbt_project import dbt_env_from_url, partial_parse_for
from sf_pipeline_tests.pg_fixtures import create_database, release_database
from sf_pipeline_tests.pipeline_fixtures import Pipeline, _hand_back_parse, pipelines

OBJECTS = ["Lead"]  # this module's own object list: its parsed project has no parse kept when the test starts


def _backup_a_lead(p: Pipeline, name: str) -> tuple[str, list[str]]:
    """Back up one window holding a new Lead; the Lead's id and how the run's dbt call came by its manifest."""
    p.set_clock(datetime(2026, 11, 20, 0, 30, tzinfo=UTC))
    lead = p.sf().Lead.create({"LastName": name, "Company": "Acme"})["id"]
    result = p.backup("2026-11-20-00:00")
    return lead, [e.user_message for e in p.instance.all_logs(result.run_id) if e.user_message.startswith("dbt parse:")]


@pytest.mark.e2e
def test_the_next_pipelines_database_is_new_under_the_same_name_and_dbt_reuses_its_parse(
    tmp_path: Path, parsed_dbt_project, dagster_storage_template: str
) -> None:
    first_url = create_database(template=dagster_storage_template, reused_name=True)
    try:
        with pytest.MonkeyPatch.context() as env, pipelines(tmp_path / "1", first_url, env, parsed_dbt_project) as make:
            _, parse = _backup_a_lead(make(OBJECTS), "First")
            assert parse == ["dbt parse: full: profile has changed"]  # a database name dbt had not parsed on
    finally:
        release_database(first_url)

    second_url = create_database(template=dagster_storage_template, reused_name=True)
    try:
        assert urlsplit(second_url).path == urlsplit(first_url).path  # the name again...
        with (
            pytest.MonkeyPatch.context() as env,
            pipelines(tmp_path / "2", second_url, env, parsed_dbt_project) as make,
        ):
            second = make(OBJECTS)
            with second.conn() as conn:  # ...of a new database: nothing of the first pipeline's backup
                tables = "SELECT to_regclass('salesforce.lead'), to_regclass('salesforce_history.lead')"
                assert conn.execute(tables).fetchone() == (None, None)
            lead, parse = _backup_a_lead(second, "Second")
            assert parse == ["dbt parse: reused"]  # the parse the first pipeline's dbt call kept for this name
            with second.conn() as conn:
                history = conn.execute('SELECT id, lastname FROM salesforce_history."lead"').fetchall()
            assert history == [(lead, "Second")]
    finally:
        release_database(second_url)


def test_a_parse_is_handed_back_only_from_a_copy_whose_dbt_inputs_are_the_parsed_projects(
    tmp_path: Path, parsed_dbt_project
) -> None:
    parsed = tmp_path / "parsed"  # a private copy: the run's shared parsed project is left alone
    shutil.copytree(parsed_dbt_project(["Account"]), parsed)
    url = "postgresql://postgres@127.0.0.1:5432/sfp_dbt_example_0"
    shared = partial_parse_for(parsed, dbt_env_from_url(url))

    def copy_with_kept_parse(name: str, content: bytes) -> Path:
        project = tmp_path / name
        shutil.copytree(parsed, project)
        kept = partial_parse_for(project, dbt_env_from_url(url))
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(content)
        return project

    edited = copy_with_kept_parse("edited", b"parse of edited definitions")
    macro = edited / "macros" / "generate_schema_name.sql"
    macro.write_text(macro.read_text() + "\n")
    _hand_back_parse(edited, parsed, url)
    assert not shared.exists()

    unchanged = copy_with_kept_parse("unchanged", b"parse of the same definitions")
    _hand_back_parse(unchanged, parsed, url)
    assert shared.read_bytes() == b"parse of the same definitions"
    assert shared.stat().st_mtime == partial_parse_for(unchanged, dbt_env_from_url(url)).stat().st_mtime
    assert not [n for n in os.listdir(parsed.parent) if n.endswith(".tmp")]
