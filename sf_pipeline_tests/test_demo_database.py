"""The demo writes its generated org into a database of its own, and never shows the database password."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from rich.console import Console

from sf_pipeline.demo import DEMO_MARK, DemoDatabaseError, prepare_demo_database, resolve_database
from sf_pipeline.warehouse.database_url import database_name, redact_url
from sf_pipeline.warehouse.dbt_project import dbt_env_from_url
from sf_pipeline_tests.pg_fixtures import admin_url, drop_database, url_for_database


@pytest.fixture
def demo_name():
    name = f"sfp_test_demo_{uuid.uuid4().hex[:12]}"
    yield name
    drop_database(url_for_database(admin_url(), name))


def with_password(url: str, password: str) -> str:
    """The URL with a password (the local server trusts its clients, so any password connects)."""
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, parts.netloc.replace("@", f":{password}@", 1), parts.path, parts.query, parts.fragment)
    )


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname "
                "NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            )
        ]


def test_the_demo_refuses_a_database_of_its_name_that_holds_other_data(demo_name):
    url = url_for_database(admin_url(), demo_name)
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{demo_name}"')
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE customers (id int)")
        conn.execute("INSERT INTO customers VALUES (1)")
    with pytest.raises(DemoDatabaseError, match=rf"database '{demo_name}' .* holds 1 tables .* will not touch it"):
        prepare_demo_database(admin_url(), demo_name)
    assert tables(url) == ["public.customers"]


def test_the_demo_replaces_a_previous_demos_database_and_marks_its_own(demo_name):
    url = prepare_demo_database(admin_url(), demo_name)
    assert database_name(url) == demo_name
    with psycopg.connect(url) as conn:
        conn.execute("CREATE SCHEMA salesforce")
        conn.execute("CREATE TABLE salesforce.account (id text)")
        mark = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (demo_name,)
        ).fetchone()[0]
    assert mark == DEMO_MARK
    assert prepare_demo_database(admin_url(), demo_name) == url
    assert tables(url) == []  # a fresh database for the new demo


def test_the_demo_uses_its_own_database_on_the_configured_server_and_hides_the_password(
    demo_name, pg_url, monkeypatch, tmp_path
):
    configured = with_password(pg_url, "s3cret-pw")
    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", configured)
    console = Console(record=True, width=200)
    url = resolve_database(tmp_path, console, demo_name)
    assert database_name(url) == demo_name and tables(pg_url) == []  # the configured database is left alone
    shown = console.export_text()
    assert demo_name in shown and "s3cret-pw" not in shown and ":***@" in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://backup:s3cret-pw@db.internal:5432/crm?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "postgresql+psycopg2://backup:s3cret-pw@db.internal/crm",
        "postgresql://backup@db.internal/crm?password=s3cret-pw&sslmode=require",
        "host=db.internal user=backup password=s3cret-pw dbname=crm sslmode=require",
    ],
)
def test_a_database_url_is_shown_without_its_password_and_keeps_sslmode(url):
    shown = redact_url(url)
    assert "s3cret-pw" not in shown and "***" in shown and "db.internal" in shown
    if "sslmode" in url:
        assert "sslmode" in shown
        assert dbt_env_from_url(url)["SF_PIPELINE_PG_SSLMODE"] in ("verify-full", "require")  # passed on to dbt


def test_a_malformed_database_url_error_does_not_show_the_password():
    with pytest.raises(ValueError) as err:
        dbt_env_from_url("postgresql://backup:s3cret-pw@db.internal/crm?sslmod=require")  # a typo
    assert "s3cret-pw" not in str(err.value)
