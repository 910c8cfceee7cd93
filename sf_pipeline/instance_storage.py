"""Dagster's PostgreSQL storage holding a connection open, instead of opening one for every event it writes.

Outside the webserver, dagster-postgres gives its storages a SQLAlchemy `NullPool` ("to prevent accumulating
connections per DagsterInstance", `PostgresEventLogStorage.__init__`): every statement opens a PostgreSQL
connection, about 6 ms of start-up on this machine, and a run writes one event (two connections for a
materialization: the event, then its asset index) for each log line, step output, materialization and planned
materialization. For a window of a few hundred objects that is most of the wall (BENCHMARKS.md, window-wall).
Upstream: dagster-io/dagster#20325 ("Dagster uses an implausible number of postgresql connections") and #33935
(pool settings are not configurable in dagster.yaml).

Two settings remove that cost, both in deploy/dagster.yaml (and `instance_storage_config` for the tests):

- `PooledPostgresStorage`, below: dagster-postgres' own storage (same config as `storage: postgres:`, same
  tables) whose event log and run storages keep a small pool per process, as the webserver's do
  (`optimize_for_webserver`, which still replaces them there): one connection held open while the instance
  lives, up to `MAX_OVERFLOW` more when threads write at once (closed when returned), recycled hourly. A
  connection that sat idle in the pool for more than `PING_AFTER_IDLE_SECONDS` is pinged before it is handed
  out (one short round trip; a dead one is replaced), so a database restart while a process waits costs a
  reconnect, not a failed event. One used within the last seconds is handed out as it is: pinging every
  checkout (`pool_pre_ping`) cost a round trip per event, 12 % of an unchanged 300-object window (BENCHMARKS.md,
  "Session 8"), and a restart in those seconds fails the run's own database work (the mirror load) anyway.
  The schedule storage keeps Dagster's default.
- `synchronous_commit=off` for Dagster's own sessions (libpq `options`, `postgres_db: params:`): a commit
  returns before its WAL is flushed to disk, instead of waiting for an fsync per event (about 6 ms here). A
  PostgreSQL crash can lose the last fraction of a second of events, never corrupt them (PostgreSQL
  documentation, "Asynchronous Commit": https://www.postgresql.org/docs/current/wal-async-commit.html); a
  lost materialization only makes the schedule ask for that window again (it asks for every window not
  backed up), a lost run end is found by run monitoring. The backup's own tables keep synchronous commits:
  this applies to Dagster's storage sessions only.

And one more, here: a run's planned materializations written together. Creating a run writes one
ASSET_MATERIALIZATION_PLANNED event per asset it will materialize (864 for issue 14's org, 4 s of a 5-minute
window: BENCHMARKS.md, "Session 8"). Dagster hands them to `store_event_batch` as one batch when
`DAGSTER_EVENT_BATCH_SIZE` is set in the process creating the run (the daemon, the webserver, or a test), and
dagster-postgres then stores them one by one anyway (its batch path takes materializations and observations of
one asset only). `PooledPostgresEventLogStorage.store_event_batch` writes such a batch in two statements: the
events in one multi-row INSERT, each asset's index row (`asset_keys`: last run, last event time, as
dagster-postgres' `_store_asset_event` writes them) in one multi-row upsert. Importing this module (the
instance does, to build this storage) sets `DAGSTER_EVENT_BATCH_SIZE` to `EVENT_BATCH_SIZE` unless the
environment says otherwise; it batches nothing else that a run writes one at a time.
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sqlalchemy
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.migration import ASSET_KEY_INDEX_COLS
from dagster._core.storage.event_log.schema import AssetKeyTable, SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

ASYNC_COMMIT = {"options": "-c synchronous_commit=off"}  # libpq connection parameters (postgres_db: params:)
POOL_SIZE = 1  # connections kept open per storage and process
MAX_OVERFLOW = 20  # more at once when threads write together (the webserver's default too); closed when returned
POOL_RECYCLE_SECONDS = 3600
PING_AFTER_IDLE_SECONDS = 5.0

EVENT_BATCH_SIZE = "1000"  # events Dagster buffers before writing a batch (its default, 0, writes each alone)
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

_engines: weakref.WeakSet[sqlalchemy.engine.Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    # A forked process must not use its parent's sockets: it drops the inherited pool without closing the
    # parent's connections and opens its own (SQLAlchemy, "Using Connection Pools with Multiprocessing or
    # os.fork()": https://docs.sqlalchemy.org/en/20/core/pooling.html#pooling-multiprocessing).
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def pooled_engine(postgres_url: str, token_provider: Any) -> sqlalchemy.engine.Engine:
    """An engine like dagster-postgres' (autocommit, its token hook) with a small pool instead of `NullPool`."""
    engine = create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
    )
    sqlalchemy.event.listen(engine, "checkin", _note_checkin)
    sqlalchemy.event.listen(engine, "checkout", _ping_if_idle)
    _engines.add(engine)
    return engine


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Ping a connection that sat idle in the pool; a dead one makes the pool connect again (SQLAlchemy's "custom
    pessimistic ping": raising DisconnectionError in the checkout event discards the connection and retries,
    https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic)."""
    checked_in = record.info.get("checked_in")
    if checked_in is None or time.monotonic() - checked_in < PING_AFTER_IDLE_SECONDS:
        return  # a new connection, or one used a moment ago
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure of the ping means a connection not to use
        raise sqlalchemy.exc.DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def _storage_args(inst_data: ConfigurableClassData | None, config_value: Any) -> dict[str, Any]:
    """What dagster-postgres' `from_config_value` passes its storages, from the same config."""
    return {
        "inst_data": inst_data,
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class _Pooled:
    """What the pooled event log and run storages add to dagster-postgres' own: the pooled engine in place of its
    `NullPool` one (see the module's docstring), disposed with the storage, and the same config."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)  # type: ignore[call-arg]
        self._engine.dispose()
        self._engine = pooled_engine(self.postgres_url, self._token_provider)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any):
        return cls(**_storage_args(inst_data, config_value))


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    """dagster-postgres' event log with a connection pool, writing a run's planned materializations together."""

    def has_table(self, table_name: str) -> bool:
        """dagster-postgres asks whether the asset event tags table exists for every materialization that carries
        tags (data versions do), from inside the transaction writing it: with one pooled connection that is a new
        PostgreSQL connection each time (the pool's overflow, closed when returned), 4-6 ms per materialization.
        A table found stays (Dagster's migrations add tables, never drop them): remembered for the storage's life."""
        seen = self.__dict__.setdefault("_tables_seen", set())
        if table_name in seen:
            return True
        found = super().has_table(table_name)
        if found:
            seen.add(table_name)
        return found

    def store_event_batch(self, events: Any) -> None:
        planned = _planned_asset_keys(events)
        if planned is None:
            super().store_event_batch(events)
            return
        from sqlalchemy.dialects import postgresql

        with self._connect() as conn:
            ids = [
                row[0]
                for row in conn.execute(self.prepare_insert_event_batch(events).returning(SqlEventLogStorageTable.c.id))
            ]
        with_timestamp = self.has_secondary_index(ASSET_KEY_INDEX_COLS)
        rows = [
            {"asset_key": key, **self._get_asset_entry_values(event, event_id, with_timestamp)}
            for key, event, event_id in zip(planned, events, ids, strict=True)
        ]
        upsert = postgresql.insert(AssetKeyTable).values(rows)
        upsert = upsert.on_conflict_do_update(
            index_elements=[AssetKeyTable.c.asset_key],
            set_={column: upsert.excluded[column] for column in rows[0] if column != "asset_key"},
        )
        with self.index_transaction() as conn:
            conn.execute(upsert)


def _planned_asset_keys(events: Any) -> list[str] | None:
    """The asset keys of a batch made only of planned materializations, each of another asset (what a run's
    creation writes); None for any other batch, which dagster-postgres stores as it always does."""
    if len(events) < 2:
        return None
    keys = []
    for event in events:
        dagster_event = event.dagster_event
        if (
            dagster_event is None
            or dagster_event.event_type != DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            or dagster_event.asset_key is None
        ):
            return None
        keys.append(dagster_event.asset_key.to_string())
    return keys if len(set(keys)) == len(keys) else None


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    """dagster-postgres' run storage with a connection pool."""


class PooledPostgresStorage(DagsterPostgresStorage):
    """`storage: postgres:` with pooled event log and run storages; the same config, tables and behaviour."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ):
        # DagsterPostgresStorage.__init__ with the pooled storages (not after it: each storage checks its tables)
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PooledPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._schedule_storage = PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresStorage:
        return cls(**_storage_args(inst_data, config_value))


def instance_storage_config(postgres_url: str) -> dict[str, Any]:
    """The `storage:` block of a dagster.yaml storing runs and events in `postgres_url` as deploy/dagster.yaml does
    (pooled, asynchronous commits)."""
    parts = urlsplit(postgres_url)
    query = urlencode([*parse_qsl(parts.query), *ASYNC_COMMIT.items()], quote_via=quote)
    return {
        "custom": {
            "module": __name__,
            "class": PooledPostgresStorage.__name__,
            "config": {"postgres_url": urlunsplit(parts._replace(query=query))},
        }
    }
