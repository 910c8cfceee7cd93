"""PostgreSQL fixtures: every test gets its own throwaway database on the real server.

The server is taken from `SF_PIPELINE_TEST_PG_URL` (default `postgresql://postgres@127.0.0.1:5432/test`,
a database used only to issue CREATE/DROP DATABASE). Register with
`pytest_plugins = ["sf_pipeline_tests.pg_fixtures"]` in the top-level conftest.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
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
    `template` (PostgreSQL copies it file by file, far faster than rebuilding what a test put in it).

    Its sessions commit without waiting for the WAL flush (`synchronous_commit = off`): a throwaway database needs
    no crash durability, and what other sessions see is the same (a commit is visible at once either way,
    https://www.postgresql.org/docs/15/wal-async-commit.html); Dagster's event log commits once per event, each a
    disk flush otherwise. A per-database setting is not copied by TEMPLATE, so it is set on every database made.
    """
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
        admin.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name)))
    return url_for_database(admin_url(), name)


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, disconnecting anyone still using it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class _Dropper:
    """Drops databases made by `create_database` in background threads, so that no test waits for it.

    PostgreSQL 15's DROP DATABASE requests an immediate checkpoint and waits for it (src/backend/commands/
    dbcommands.c, dropdb): every dirty buffer of the server written and flushed, 0.3 to 3.6 s each here while other
    tests write. Several drops at once share one checkpoint (a request made while one runs is served by the next),
    hence a few threads. Only databases with random names go here (never reused); `wait` at the end of the session
    (and at exit) drops whatever is still queued.
    """

    THREADS = 4

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def put(self, url: str) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.THREADS:
                thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._queue.put(url)

    def _run(self) -> None:
        while True:
            url = self._queue.get()
            try:
                drop_database(url)
            except Exception as exc:  # reported by `wait`, never lost
                self.errors.append(f"{urlsplit(url).path.lstrip('/')}: {exc}")
            finally:
                self._queue.task_done()

    def wait(self) -> list[str]:
        """Block until every queued database is dropped; the drops that failed."""
        self._queue.join()
        errors, self.errors = self.errors, []
        return errors


_dropper = _Dropper()
atexit.register(_dropper.wait)


def drop_database_later(url: str) -> None:
    """`drop_database` in the background (see `_Dropper`), for a database whose name is never used again."""
    _dropper.put(url)


def pytest_sessionfinish(session: pytest.Session) -> None:
    for error in _dropper.wait():
        print(f"test database not dropped: {error}", file=sys.stderr)


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
        drop_database_later(url)


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the test's fresh database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
