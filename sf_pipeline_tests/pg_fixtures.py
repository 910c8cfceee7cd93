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
import time
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


def create_database(prefix: str = "sfp_test", template: str | None = None, *, reused_name: bool = False) -> str:
    """Create a database with a random name and return its URL: empty, or a copy of the database at the URL
    `template` (PostgreSQL copies it file by file, far faster than rebuilding what a test put in it).

    `reused_name`: named instead from this process's few names that later databases take again once this one is
    given back with `release_database` (see `_ReusedNames`), for a database dbt runs on.

    Its sessions commit without waiting for the WAL flush (`synchronous_commit = off`): a throwaway database needs
    no crash durability, and what other sessions see is the same (a commit is visible at once either way,
    https://www.postgresql.org/docs/15/wal-async-commit.html); Dagster's event log commits once per event, each a
    disk flush otherwise. A per-database setting is not copied by TEMPLATE, so it is set on every database made.
    """
    name = _reused_names.take() if reused_name else f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        _create(name, template)
    except BaseException:
        _reused_names.give_back(name)
        raise
    return url_for_database(admin_url(), name)


def _create(name: str, template: str | None) -> None:
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


class _ReusedNames:
    """The database names this process hands out again and again (`create_database(reused_name=True)`).

    dbt parses its project again, in full, for every database *name* it has not parsed on: its partial-parse check
    hashes the connection settings, the database name among them (dbt-core's `ManifestLoader.is_partial_parsable`,
    "profile has changed"), and the parsed nodes name their database. A test's database is new, so every test's
    first dbt call parsed in full (about 2 s of CPU more than a reused parse). The databases dbt runs on are therefore
    named from a short list per process (`sfp_dbt_<process>_<n>`, the lowest n not in use), and `release_database`
    renames one away before it is dropped: the next test's new, empty database has the same name, and its first dbt
    call starts from the parse kept for that name (`reusing_parse`, pipeline_fixtures' `_hand_back_parse`).
    """

    def __init__(self) -> None:
        self.prefix = f"sfp_dbt_{uuid.uuid4().hex[:8]}"
        self._in_use: set[str] = set()
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            n = 0
            while f"{self.prefix}_{n}" in self._in_use:
                n += 1
            name = f"{self.prefix}_{n}"
            self._in_use.add(name)
            return name

    def holds(self, name: str) -> bool:
        with self._lock:
            return name in self._in_use

    def give_back(self, name: str) -> None:
        with self._lock:
            self._in_use.discard(name)


_reused_names = _ReusedNames()


def release_database(url: str) -> None:
    """Throw away a database made by `create_database`: dropped in the background (`drop_database_later`); one with
    a reused name first renamed to a random one, its sessions ended, so that its name is free at once for the next
    database and nothing of this one can be reached by it any more."""
    name = urlsplit(url).path.lstrip("/")
    if not _reused_names.holds(name):
        drop_database_later(url)
        return
    released = f"sfp_released_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        for _attempt in range(40):
            # RENAME needs the database to have no session; pg_terminate_backend only signals, so wait for them to go
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            try:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(released))
                )
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.05)
        else:
            # still in use after 2 s: drop it now under its own name (WITH (FORCE) ends its sessions itself)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            _reused_names.give_back(name)
            return
    _reused_names.give_back(name)
    drop_database_later(url_for_database(admin_url(), released))


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
    `dagster_storage_template` (creating them costs seconds per test on a busy machine, a copy a fraction), under
    one of this process's reused names (`_ReusedNames`)."""
    template = (
        request.getfixturevalue("dagster_storage_template") if "pipeline_factory" in request.fixturenames else None
    )
    # a pipeline's database is one dbt runs on: a reused name (`_ReusedNames`), so dbt's parse is reused too
    url = create_database(template=template, reused_name=template is not None)
    try:
        yield url
    finally:
        release_database(url)


@pytest.fixture
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit psycopg connection to the test's fresh database."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
