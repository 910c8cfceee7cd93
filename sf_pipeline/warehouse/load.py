"""Loading one extracted time window into a mirror table.

Why it is shaped like this:
- Arrow batches are written as CSV by pyarrow and streamed with COPY into a temporary all-text
  staging table: no per-row Python work, memory bounded by one batch, and any value Salesforce can
  send gets into PostgreSQL before we judge it.
- One `INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE ... WHERE mirror.systemmodstamp <
  EXCLUDED.systemmodstamp` then applies the window (with `DISTINCT ON (id)`, newest first, when a
  record came more than once). A row is only ever replaced by a strictly newer version, so windows
  can be loaded in any order, any number of times (DESIGN.md: overlaps are harmless), and a re-read
  of old data never overwrites newer data.
- Into an empty table (the first full load) with `unique_ids=True`, the pages are COPYed straight into
  the mirror while they still arrive, with its primary key and indexes dropped and rebuilt at the end,
  inside the same transaction (building an index once is cheaper than maintaining it row by row).
- Pages come as Arrow batches (REST extraction) or as `CsvPage`s (Bulk API 2.0 CSV, sent to COPY as
  received); both kinds are checked for their columns, and CSV pages for their record count.
- Everything happens in one transaction: a failure anywhere (the extractor raising mid-stream, a bad
  value, a lost connection) leaves the mirror exactly as before, so a window is either fully loaded
  or not at all.

Columns: a window load carries every extracted column in every batch. The first batch fixes the
column set; later batches must carry the same columns (any order). Columns the batches do not carry
are left untouched on existing rows (not set to null), so loading a narrower extract cannot erase
data.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.copy import LibpqWriter

from sf_pipeline.warehouse.csvpage import CsvPage, read_text_csv
from sf_pipeline.warehouse.errors import WarehouseLoadError
from sf_pipeline.warehouse.names import ident, idents
from sf_pipeline.warehouse.schema import REQUIRED_FIELDS, MirrorTable

# pyarrow writes every string quoted and nulls as an empty unquoted field. COPY reads the latter as
# NULL; FORCE_NULL makes a quoted empty string NULL too, which is what Salesforce means by an empty
# value (it stores no empty strings; Bulk API CSV writes nulls as empty fields).
_CSV_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False)

# The sort behind DISTINCT ON runs in memory up to this size instead of spilling to disk.
_LOAD_WORK_MEM = "256MB"

_TEXT_TYPES = frozenset({"text"})
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
# The value part of PostgreSQL's input errors: `invalid input syntax for type numeric: "abc"`.
_QUOTED_VALUE = re.compile(r'"(.*)"')

_SQL_CASTABLE_FUNCTION = sql.SQL(
    """
    CREATE OR REPLACE FUNCTION pg_temp.sf_pipeline_castable(value text, target text)
    RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        EXECUTE format('SELECT CAST(%L AS %s)', value, target);
        RETURN true;
    EXCEPTION WHEN others THEN
        RETURN false;
    END $$
    """
)


@dataclass(frozen=True)
class LoadResult:
    """What one window load did; the counts go into run metadata (a sync that "succeeded" with
    0 rows must be visible).

    `extracted` = `inserted` + `updated` + `unchanged`. `unchanged` counts rows not applied because
    the mirror already held the same or a newer version (including older duplicates of a record
    within the window). `deleted` counts received rows flagged IsDeleted; `outside_window` counts
    received rows whose SystemModstamp is not in [window_start, window_end) (they are still applied:
    the upsert makes overlaps harmless, but many of them point at an extraction bug).
    """

    object_name: str
    window_start: datetime
    window_end: datetime
    extracted: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    outside_window: int = 0
    bytes: int = 0
    seconds: float = 0.0
    into_empty_table: bool = False

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata or logs."""
        return {
            "object": self.object_name,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "extracted": self.extracted,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "outside_window": self.outside_window,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "into_empty_table": self.into_empty_table,
        }


class _BackgroundCopyWriter(LibpqWriter):
    """Sends COPY data from a worker thread while the caller reads and formats the next batch.

    pyarrow and libpq both release the GIL, so extraction/CSV formatting and the network overlap
    (about 20% faster COPY here). Unlike psycopg's QueuedLibpqWriter, whose queue holds up to 1024
    chunks (128 MB), at most `depth` batches wait here, so memory stays bounded by the batch size.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], depth: int = 1) -> None:
        super().__init__(cursor)
        self._pending: queue.Queue[Buffer | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _send(self) -> None:
        try:
            while (data := self._pending.get()) is not None:
                super().write(data)
        except BaseException as exc:  # handed to the caller's thread by write()/finish()
            self._error = exc
            while self._pending.get() is not None:  # keep write() from blocking on a full queue
                pass

    def write(self, data: Buffer) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send, name="sf-pipeline-copy", daemon=True)
            self._thread.start()
        if self._error is not None:
            raise self._error
        self._pending.put(data)

    def finish(self, exc: BaseException | None = None) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        super().finish(exc)


@dataclass(frozen=True)
class _Staging:
    """The temporary all-text table a window is copied into, and the mirror type of each column."""

    identifier: sql.Identifier
    columns: tuple[str, ...]  # mirror column names, in COPY order
    casts: tuple[str, ...]  # mirror column types, same order


def _window_sql(table: MirrorTable, staging: _Staging, *, into_empty_table: bool, deduplicate: bool) -> sql.Composed:
    """The statement applying the staged window to the mirror, returning (inserted, updated)."""
    selected = []
    for name, pg_type in zip(staging.columns, staging.casts, strict=True):
        if pg_type in _TEXT_TYPES or _VARCHAR.match(pg_type):
            # No explicit cast: an explicit ::varchar(18) would silently truncate, while the
            # assignment cast of INSERT rejects a too-long id.
            selected.append(sql.Identifier("s", name))
        else:
            selected.append(sql.SQL("{}::{}").format(sql.Identifier("s", name), sql.SQL(pg_type)))
    if deduplicate:
        # Only when a record came twice: sorting whole rows costs more than the rest of the upsert.
        source = sql.SQL("SELECT DISTINCT ON (s.id) {} FROM {} AS s ORDER BY s.id, {} DESC").format(
            sql.SQL(", ").join(selected),
            staging.identifier,
            sql.Literal(staging.columns.index("systemmodstamp") + 1),
        )
    else:
        source = sql.SQL("SELECT {} FROM {} AS s").format(sql.SQL(", ").join(selected), staging.identifier)
    insert = sql.SQL("INSERT INTO {} AS m ({}) {}").format(table.identifier, idents(staging.columns), source)
    if into_empty_table:
        # Nothing to conflict with (the table is locked and empty): skip the speculative insertion
        # of ON CONFLICT, which costs about half as much again as the insert itself.
        applied = sql.SQL("{} RETURNING true AS inserted").format(insert)
    else:
        applied = sql.SQL(
            "{insert} ON CONFLICT (id) DO UPDATE SET {assignments} "
            "WHERE m.systemmodstamp < EXCLUDED.systemmodstamp "
            # xmax is 0 on a freshly inserted tuple and set on the new version of an updated one.
            "RETURNING (m.xmax = 0) AS inserted"
        ).format(
            insert=insert,
            assignments=sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in staging.columns if c != "id"
            ),
        )
    return sql.SQL(
        "WITH applied AS ({}) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM applied"
    ).format(applied)


def _tally_sql(staging: _Staging) -> sql.Composed:
    """(deleted, outside the window, repeated ids) of the staged rows, in one cheap scan."""
    deleted = (
        sql.SQL("count(*) FILTER (WHERE s.isdeleted::boolean)") if "isdeleted" in staging.columns else sql.SQL("0")
    )
    return sql.SQL(
        "SELECT {deleted}, "
        "count(*) FILTER (WHERE s.systemmodstamp::timestamptz < %(start)s "
        "OR s.systemmodstamp::timestamptz >= %(end)s), "
        "count(*) - count(DISTINCT s.id) "
        "FROM {staging} AS s"
    ).format(deleted=deleted, staging=staging.identifier)


Page = pa.RecordBatch | CsvPage


def _page_names(page: Page) -> Sequence[str]:
    return page.columns if isinstance(page, CsvPage) else page.schema.names


def _batch_columns(object_name: str, table: MirrorTable, page: Page) -> dict[str, str]:
    """Map each mirror column a page carries to the page's own column name."""
    types = table.column_types
    mapping: dict[str, str] = {}
    for name in _page_names(page):
        column = name.lower()
        if column in mapping:
            raise WarehouseLoadError(
                f"{object_name}: the extracted batch has the column {name!r} twice "
                f"({mapping[column]!r} and {name!r}, names are compared ignoring case)",
                object_name=object_name,
                column=name,
            )
        if column not in types:
            raise WarehouseLoadError(
                f"{object_name}: extracted column {name!r} has no column in "
                f"{table.schema}.{table.name}; call ensure_mirror_table with the describe used for "
                "the extraction before loading",
                object_name=object_name,
                column=name,
            )
        mapping[column] = name
    for required in REQUIRED_FIELDS:
        if required not in mapping:
            raise WarehouseLoadError(
                f"{object_name}: the extracted batches have no {required!r} column; a window load "
                "needs Id and SystemModstamp in every batch",
                object_name=object_name,
                column=required,
            )
    return mapping


def _create_staging(conn: psycopg.Connection[Any], table: MirrorTable, columns: Sequence[str]) -> _Staging:
    identifier = sql.Identifier("pg_temp", f"sf_stage_{table.name[:40]}_{uuid.uuid4().hex[:8]}")
    definitions = [
        # The "C" collation makes the sort of DISTINCT ON (id) a plain byte comparison.
        sql.SQL('{} text COLLATE "C"').format(ident(c)) if c == "id" else sql.SQL("{} text").format(ident(c))
        for c in columns
    ]
    conn.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(identifier, sql.SQL(", ").join(definitions))
    )
    types = table.column_types
    return _Staging(identifier, tuple(columns), tuple(types[c] for c in columns))


def _non_empty(pages: Iterable[Page]) -> Iterator[Page]:
    for page in pages:
        if page.num_rows:
            yield page


def _copy_pages(
    conn: psycopg.Connection[Any],
    target: sql.Composable,
    table: MirrorTable,
    first: Page,
    rest: Iterator[Page],
    mapping: dict[str, str],
) -> tuple[int, int]:
    """COPY `first` and then every page of `rest` into `target` (columns of `mapping`, in its order);
    returns (rows, bytes). CSV pages whose columns are in that order go as they are; others (Arrow
    batches, or a CSV page in another column order) are written as CSV by pyarrow. The rows COPY
    counted must equal what the pages announced."""
    columns = list(mapping)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, FORCE_NULL ({}))").format(
        target, idents(columns), idents(columns)
    )
    rows = size = 0
    with conn.cursor() as cursor:
        with cursor.copy(copy_sql, writer=_BackgroundCopyWriter(cursor)) as copy:
            page: Page | None = first
            while page is not None:
                names = _batch_columns(table.object_name, table, page)
                if names.keys() != mapping.keys():
                    missing = sorted(set(mapping) - set(names))
                    extra = sorted(set(names) - set(mapping))
                    raise WarehouseLoadError(
                        f"{table.object_name}: batches of one window must carry the same columns; after "
                        f"{rows} rows a batch came without {missing} and with {extra}",
                        object_name=table.object_name,
                    )
                wanted = [names[c] for c in columns]
                if isinstance(page, CsvPage) and list(page.columns) == wanted:
                    copy.write(page.rows)  # as received: no parsing, no copy
                    size += page.nbytes
                else:
                    if isinstance(page, CsvPage):
                        page = read_text_csv(page.data, page.columns)
                    sink = pa.BufferOutputStream()
                    pa_csv.write_csv(page.select(wanted), sink, _CSV_WRITE_OPTIONS)
                    data = sink.getvalue()
                    copy.write(memoryview(data))  # the buffer is handed over, not copied
                    size += data.size
                    del data, sink
                rows += page.num_rows
                page = next(rest, None)
        copied = cursor.rowcount
    if copied != rows:
        raise WarehouseLoadError(
            f"{table.object_name}: the extracted pages announced {rows} records but held {copied}; nothing was loaded",
            object_name=table.object_name,
        )
    return rows, size


def _copy_into_staging(
    conn: psycopg.Connection[Any], table: MirrorTable, pages: Iterable[Page]
) -> tuple[_Staging | None, int, int]:
    """COPY every page into a new staging table; returns (staging, rows, csv bytes)."""
    stream = _non_empty(pages)
    first = next(stream, None)
    if first is None:
        return None, 0, 0
    mapping = _batch_columns(table.object_name, table, first)
    staging = _create_staging(conn, table, list(mapping))
    rows, size = _copy_pages(conn, staging.identifier, table, first, stream, mapping)
    return staging, rows, size


def _shorten(value: str | None, limit: int = 120) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + f"... ({len(value)} characters)"


def _find_bad_value(
    conn: psycopg.Connection[Any], table: MirrorTable, staging: _Staging, error: psycopg.Error
) -> WarehouseLoadError:
    """Name the first column/record/value the mirror rejected, for an error a user can act on."""
    # Runs only after a failure, inside the still-open load transaction (the savepoint around the
    # failed statement was rolled back), so scanning the staging table column by column is fine.
    conn.execute(_SQL_CASTABLE_FUNCTION)
    for column, pg_type in zip(staging.columns, staging.casts, strict=True):
        value = sql.Identifier("s", column)
        varchar = _VARCHAR.match(pg_type)
        rejected = []
        if column in REQUIRED_FIELDS:
            rejected.append(sql.SQL("{} IS NULL").format(value))
        if varchar:
            rejected.append(sql.SQL("char_length({}) > {}").format(value, sql.Literal(int(varchar.group(1)))))
        elif pg_type not in _TEXT_TYPES:
            rejected.append(sql.SQL("NOT pg_temp.sf_pipeline_castable({}, {})").format(value, sql.Literal(pg_type)))
        if not rejected:
            continue
        found = conn.execute(
            sql.SQL("SELECT s.id, {} FROM {} AS s WHERE {} LIMIT 1").format(
                value, staging.identifier, sql.SQL(" OR ").join(rejected)
            )
        ).fetchone()
        if found is None:
            continue
        record_id, bad = found
        if bad is None:
            problem = "is empty, but every record needs one"
        elif varchar:
            problem = f"is longer than {varchar.group(1)} characters"
        else:
            problem = f"cannot be stored as {pg_type}"
        return WarehouseLoadError(
            f"{table.object_name}.{column}: value {_shorten(bad)!r} of record {record_id} {problem}; "
            f"nothing was loaded (PostgreSQL said: {error.diag.message_primary or error})",
            object_name=table.object_name,
            column=column,
            value=bad,
            record_id=record_id,
        )
    quoted = _QUOTED_VALUE.search(str(error.diag.message_primary or ""))
    return WarehouseLoadError(
        f"{table.object_name}: the window was rejected by PostgreSQL and nothing was loaded: "
        f"{error.diag.message_primary or error}",
        object_name=table.object_name,
        column=error.diag.column_name,
        value=quoted.group(1) if quoted else None,
    )


_KEYS_AND_INDEXES = """
    SELECT c.conname, pg_get_constraintdef(c.oid), NULL
    FROM pg_constraint c WHERE c.conrelid = (quote_ident(%(schema)s) || '.' || quote_ident(%(name)s))::regclass AND c.contype IN ('p', 'u')
    UNION ALL
    SELECT i.relname, NULL, pg_get_indexdef(i.oid)
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    WHERE x.indrelid = (quote_ident(%(schema)s) || '.' || quote_ident(%(name)s))::regclass
      AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid)
"""


def _copy_into_empty_mirror(
    conn: psycopg.Connection[Any],
    table: MirrorTable,
    pages: Iterable[Page],
    window_start: datetime,
    window_end: datetime,
    started: float,
) -> LoadResult:
    """First load: COPY straight into the (locked, empty) typed mirror while the pages still arrive.

    Skips the staging table and the INSERT ... SELECT after the last page, so loading overlaps with
    extraction; the primary key and indexes are dropped first and built once at the end, in this same
    transaction (a failure puts them back with everything else). Only for windows whose ids are unique
    (one extraction never repeats a record; a repeat fails the key and nothing is loaded).
    """
    stream = _non_empty(pages)
    first = next(stream, None)
    if first is None:
        return LoadResult(
            table.object_name, window_start, window_end, seconds=time.perf_counter() - started, into_empty_table=True
        )
    mapping = _batch_columns(table.object_name, table, first)
    columns = list(mapping)
    try:
        with conn.transaction():
            kept = conn.execute(_KEYS_AND_INDEXES, {"schema": table.schema, "name": table.name}).fetchall()
            for name, constraint, _ in kept:
                if constraint is not None:
                    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table.identifier, ident(name)))
                else:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(table.schema, name)))
            rows, size = _copy_pages(conn, table.identifier, table, first, stream, mapping)
            for name, constraint, index in kept:
                if constraint is not None:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                            table.identifier, ident(name), sql.SQL(constraint)
                        )
                    )
                else:
                    conn.execute(sql.SQL(index))
    except psycopg.errors.UniqueViolation as exc:
        raise WarehouseLoadError(
            f"{table.object_name}: a record appears twice in one window ({exc.diag.message_detail}); nothing "
            "was loaded",
            object_name=table.object_name,
        ) from exc
    except psycopg.DataError as exc:
        # COPY's context names the column and the value, e.g. `COPY opportunity, line 3, column amount: "x"`.
        raise WarehouseLoadError(
            f"{table.object_name}: a value does not fit its column and nothing was loaded: "
            f"{exc.diag.message_primary} ({exc.diag.context or ''})",
            object_name=table.object_name,
        ) from exc
    except psycopg.errors.NotNullViolation as exc:
        raise WarehouseLoadError(
            f"{table.object_name}: a record has no {exc.diag.column_name}, which every record needs; nothing was "
            f"loaded ({exc.diag.context or ''})",
            object_name=table.object_name,
            column=exc.diag.column_name,
        ) from exc
    deleted_sql = sql.SQL("count(*) FILTER (WHERE isdeleted)") if "isdeleted" in columns else sql.SQL("0")
    deleted, outside = conn.execute(
        sql.SQL(
            "SELECT {}, count(*) FILTER (WHERE systemmodstamp < %(start)s OR systemmodstamp >= %(end)s) FROM {}"
        ).format(deleted_sql, table.identifier),
        {"start": window_start, "end": window_end},
    ).fetchone()
    return LoadResult(
        object_name=table.object_name,
        window_start=window_start,
        window_end=window_end,
        extracted=rows,
        inserted=rows,
        updated=0,
        unchanged=0,
        deleted=deleted,
        outside_window=outside,
        bytes=size,
        seconds=time.perf_counter() - started,
        into_empty_table=True,
    )


def load_window(
    conn: psycopg.Connection[Any],
    table: MirrorTable,
    batches: Iterable[pa.RecordBatch | CsvPage],
    window_start: datetime,
    window_end: datetime,
    *,
    unique_ids: bool = False,
) -> LoadResult:
    """Apply one extracted window to the mirror table, all or nothing, keeping the newest versions.

    `batches` is consumed once, one batch at a time. `table` comes from `ensure_mirror_table`.
    `unique_ids=True` (the extraction never repeats a record within a window) lets a first load into an
    empty mirror COPY straight into it, overlapping the load with extraction.
    Concurrent loads of the same object wait for each other at the final upsert (their COPY runs in
    parallel); loads of different objects never wait.
    """
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("window_start and window_end must be timezone-aware datetimes (UTC)")
    if window_start >= window_end:
        raise ValueError(f"empty window: window_start {window_start} is not before window_end {window_end}")

    started = time.perf_counter()
    stream = _non_empty(batches)
    first = next(stream, None)
    if first is None:
        # Nothing extracted (an unchanged window): no savepoint, lock or staging table, one query (BENCHMARKS.md,
        # launch-window). "Into an empty table" as the paths below would say: only with unique ids.
        empty = bool(
            unique_ids
            and conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(table.identifier)).fetchone()[0]
        )
        return LoadResult(
            table.object_name, window_start, window_end, seconds=time.perf_counter() - started, into_empty_table=empty
        )
    batches = itertools.chain([first], stream)
    with conn.transaction():
        # Naive Arrow timestamps are written without an offset; Salesforce times are UTC.
        conn.execute("SELECT set_config('timezone', 'UTC', true), set_config('work_mem', %s, true)", (_LOAD_WORK_MEM,))
        if unique_ids:
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.identifier))
            if conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(table.identifier)).fetchone()[0]:
                return _copy_into_empty_mirror(conn, table, batches, window_start, window_end, started)
        try:
            staging, extracted, size = _copy_into_staging(conn, table, batches)
        except psycopg.DataError as exc:
            # COPY into text columns only rejects what is not text at all (e.g. a NUL character).
            raise WarehouseLoadError(
                f"{table.object_name}: the extracted data could not be copied into PostgreSQL and "
                f"nothing was loaded: {exc.diag.message_primary or exc} ({exc.diag.context or ''})",
                object_name=table.object_name,
            ) from exc
        if staging is None:
            return LoadResult(table.object_name, window_start, window_end, seconds=time.perf_counter() - started)

        # SHARE ROW EXCLUSIVE conflicts with itself and with plain writes, not with reads: one
        # window at a time applies to an object, and "the table is empty" stays true until we commit.
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.identifier))
        empty = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(table.identifier)).fetchone()[0]
        try:
            with conn.transaction():  # a savepoint, so the staging table survives for the diagnosis
                deleted, outside, repeated = conn.execute(
                    _tally_sql(staging), {"start": window_start, "end": window_end}
                ).fetchone()
                window = _window_sql(table, staging, into_empty_table=empty, deduplicate=repeated > 0)
                inserted, updated = conn.execute(window).fetchone()
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            raise _find_bad_value(conn, table, staging, exc) from exc
        conn.execute(sql.SQL("DROP TABLE {}").format(staging.identifier))

    return LoadResult(
        object_name=table.object_name,
        window_start=window_start,
        window_end=window_end,
        extracted=extracted,
        inserted=inserted,
        updated=updated,
        unchanged=extracted - inserted - updated,
        deleted=deleted,
        outside_window=outside,
        bytes=size,
        seconds=time.perf_counter() - started,
        into_empty_table=empty,
    )
