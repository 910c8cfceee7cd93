"""PostgreSQL fixtures: every test gets its own throwaway database on the real server.

The server is taken from `SF_PIPELINE_TEST_PG_URL` (default `postgresql://postgres@127.0.0.1:5432/test`,
a database used only to issue CREATE/DROP DATABASE). Register with
`pytest_plugins = ["sf_pipeline_tests.pg_fixtures"]` in the top-level conftest.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def admin_url() -> str:
    """URL of the database used to create and drop the per-test databases."""
    return os.environ.get("SF_PIPELINE_TEST_PG_URL", DEFAULT_ADMIN_URL)


def url_for_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def create_database(prefix: str = "sfp_test", template: str | None = None) -> str:
    """Create a database with a random name and return its URL: empty, or a copy of the database at the URL
    `template` (PostgreSQL copies it file by file, far faster than rebuilding what a test put in it)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        if template is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            source = urlsplit(template).path.lstrip("/")
            # CREATE DATABASE ... TEMPLATE needs the source to have no other session, not even an idle one
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (source,),
            )
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
            )
    return url_for_database(admin_url(), name)


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, disconnecting anyone still using it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database (`sfp_test_<random>`), dropped after the test: empty; or, for a test that makes
    pipelines (`pipeline_factory`), the Dagster instance's tables already created, copied from the session's
    `dagster_storage_template` (creating them costs seconds per test on a busy machine, a copy a fraction)."""
    template = (
        request.getfixturevalue("dagster_storage_template") if "pipeline_factory" in request.fixturenames else None
    )
    url = create_database(template=template)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the test's fresh database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
