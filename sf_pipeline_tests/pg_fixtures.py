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


def create_database(prefix: str = "sfp_test") -> str:
    """Create an empty database with a random name and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url_for_database(admin_url(), name)


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, disconnecting anyone still using it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty database (`sfp_test_<random>`), dropped after the test."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the test's fresh database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
