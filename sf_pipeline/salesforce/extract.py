"""Extract one time window of an object as a stream of pages for the loader.

A `COUNT()` decides the path: REST queryAll pages (as Arrow record batches) for small windows, Bulk
API 2.0 query jobs for large ones (their CSV pages passed on as received, see
`sf_pipeline.warehouse.csvpage`). Both use queryAll semantics, so deleted records arrive as versions
with IsDeleted true. Pages are fetched ahead in a background thread, so downloading overlaps with
loading, and memory holds at most a few pages whatever the object size.

A large window (more than `bulk_slice_records`) is read as several Bulk jobs over SystemModstamp
slices, newest slice first, each job started as soon as the previous one is complete: Salesforce
works on the next slice while this one is downloaded and loaded. Newest first is what keeps one
extraction from returning a record twice: a record changed meanwhile gets a newer SystemModstamp, so
it can only move into a slice that was already read (or out of the window), never into one still to
come.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from sf_pipeline.warehouse.csvpage import CsvPage, CsvPageError, read_text_csv

from . import soql
from .client import SalesforceClient, SalesforceExtractError

DEFAULT_BULK_THRESHOLD = 20_000
DEFAULT_BULK_SLICE_RECORDS = 250_000
MAX_BULK_SLICES = 16
BULK_JOBS_AHEAD = 2  # jobs running in the org while one is read


def soql_datetime(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_filter(start: datetime, end: datetime) -> str:
    """Half-open window on SystemModstamp: a record stamped exactly at `end` belongs to the next window."""
    return f"SystemModstamp >= {soql_datetime(start)} AND SystemModstamp < {soql_datetime(end)}"


def window_soql(sobject: str, fields: list[str], start: datetime, end: datetime) -> str:
    return (f"SELECT {', '.join(soql.field_names(fields))} FROM {soql.api_name(sobject, 'object')} "
            f"WHERE {window_filter(start, end)}")


@dataclass
class ExtractStats:
    sobject: str
    window_start: datetime
    window_end: datetime
    mode: str = "none"
    expected: int = 0
    extracted: int = 0
    seconds: float = 0.0
    api_calls_before: int = 0
    pages: int = 0
    bulk_jobs: int = 0
    notes: list[str] = field(default_factory=list)


def _prefetch(pages: Iterator, depth: int = 2) -> Iterator:
    """Iterate `pages` in a background thread, at most `depth` pages ahead; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        q.put(page, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, daemon=True, name="sf-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def records_to_batch(records: list[dict], fields: list[str]) -> pa.RecordBatch:
    """REST JSON records (attributes dropped) as one Arrow batch with the given column order."""
    columns = {name: [rec.get(name) for rec in records] for name in fields}
    return pa.RecordBatch.from_pydict({name: pa.array(values) for name, values in columns.items()})


def csv_to_batches(body: bytes, fields: list[str], expected: int) -> list[pa.RecordBatch]:
    """One Bulk API 2.0 result page: every column read as text, empty = null; checks the record count."""
    table = read_text_csv(body, fields)
    if table.num_rows != expected:
        raise SalesforceExtractError(f"Bulk result page announced {expected} records but holds {table.num_rows}")
    missing = [f for f in fields if f not in table.column_names]
    if missing:
        raise SalesforceExtractError(f"Bulk result page lacks columns {missing}")
    return table.select(fields).to_batches()


def bulk_slices(client: SalesforceClient, sobject: str, start: datetime, end: datetime, expected: int, *,
                slice_records: int = DEFAULT_BULK_SLICE_RECORDS,
                max_slices: int = MAX_BULK_SLICES) -> list[tuple[datetime, datetime, int]]:
    """Split [start, end) into SystemModstamp slices of at most about `slice_records` records each, by
    halving in time (one COUNT() per split); empty slices are dropped. Returns (start, end, count),
    oldest first; a window of `expected` <= `slice_records` stays whole."""
    todo = [(start, end, expected)]
    done: list[tuple[datetime, datetime, int]] = []
    while todo:
        a, b, n = todo.pop()
        mid = a + (b - a) / 2
        mid = mid.replace(microsecond=0)  # SOQL datetime literals are whole seconds
        if n <= slice_records or mid <= a or len(done) + len(todo) + 2 > max_slices:
            if n:
                done.append((a, b, n))
            continue
        left = client.count(window_filter(a, mid), sobject, include_deleted=True)
        todo.extend([(mid, b, max(n - left, 0)), (a, mid, left)])  # the older half is split first
    return sorted(done)


def _pipelined_bulk_pages(client: SalesforceClient, soqls: Sequence[str], page_size: int,
                          stats: ExtractStats, ahead: int = BULK_JOBS_AHEAD) -> Iterator[tuple[bytes, int]]:
    """One Bulk query job per SOQL, read in order. While job i is read, up to `ahead` later jobs are
    already running in the org (each created as soon as the one before it is complete). A job left
    behind by an error is deleted."""
    todo = iter(soqls)
    running: deque[str] = deque()

    def start_next() -> None:
        soql = next(todo, None)
        if soql is not None:
            running.append(client.bulk_query_start(soql))
            stats.bulk_jobs += 1

    start_next()
    try:
        while running:
            job = running[0]
            client.bulk_query_wait(job)
            running.popleft()
            for _ in range(ahead - len(running)):
                start_next()
            yield from client.bulk_query_results(job, page_size)
    finally:
        for job in running:
            client.bulk_query_delete(job)


def extract_window(client: SalesforceClient, sobject: str, fields: list[str], start: datetime, end: datetime,
                   *, bulk_threshold: int = DEFAULT_BULK_THRESHOLD, bulk_page_size: int = 50_000,
                   bulk_slice_records: int = DEFAULT_BULK_SLICE_RECORDS,
                   stats: ExtractStats | None = None,
                   expected: int | None = None) -> Iterator[pa.RecordBatch | CsvPage]:
    """Yield the window's records (every version currently stamped in it, deleted ones included):
    Arrow batches from the REST path, `CsvPage`s from the Bulk path. No record comes twice. `expected`: the
    window's COUNT() when already asked (the run's preflight), saving the call."""
    stats = stats or ExtractStats(sobject, start, end)
    window_soql(sobject, fields, start, end)  # names from describe are checked before any call
    started = time.monotonic()
    stats.expected = expected if expected is not None else client.count(window_filter(start, end), sobject,
                                                                         include_deleted=True)
    if stats.expected == 0:
        stats.mode = "empty"
        stats.seconds = time.monotonic() - started
        return
    if stats.expected <= bulk_threshold:
        stats.mode = "rest"
        soql = window_soql(sobject, fields, start, end)
        for records in _prefetch(client.query_pages(soql, include_deleted=True)):
            stats.pages += 1
            if records:
                stats.extracted += len(records)
                yield records_to_batch(records, fields)
    else:
        stats.mode = "bulk"
        slices = bulk_slices(client, sobject, start, end, stats.expected, slice_records=bulk_slice_records)
        if len(slices) > 1:
            stats.notes.append(f"{len(slices)} Bulk jobs over SystemModstamp slices, newest first")
        soqls = [window_soql(sobject, fields, a, b) for a, b, _ in reversed(slices)]
        for body, n in _prefetch(_pipelined_bulk_pages(client, soqls, bulk_page_size, stats), depth=3):
            stats.pages += 1
            try:
                page = CsvPage.parse(body, n, fields)
            except CsvPageError as exc:
                raise SalesforceExtractError(f"{sobject}: Bulk result page {stats.pages}: {exc}") from exc
            stats.extracted += n
            if n:
                yield page
    stats.seconds = time.monotonic() - started
