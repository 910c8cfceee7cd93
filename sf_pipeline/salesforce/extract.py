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
from .client import SalesforceClient, soql_fits_url
from .errors import SalesforceExtractError

DEFAULT_BULK_THRESHOLD = 20_000
DEFAULT_BULK_SLICE_RECORDS = 250_000
MAX_BULK_SLICES = 16
BULK_JOBS_AHEAD = 2  # jobs running in the org while one is read


def soql_datetime(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_filter(start: datetime, end: datetime, stamp: str = "SystemModstamp") -> str:
    """Half-open window on SystemModstamp (or `stamp`, e.g. CreatedDate of an append-only object): a record
    stamped exactly at `end` belongs to the next window."""
    return f"{stamp} >= {soql_datetime(start)} AND {stamp} < {soql_datetime(end)}"


def window_soql(sobject: str, fields: list[str], start: datetime, end: datetime, stamp: str = "SystemModstamp") -> str:
    return (
        f"SELECT {', '.join(soql.field_names(fields))} FROM {soql.api_name(sobject, 'object')} "
        f"WHERE {window_filter(start, end, stamp)}"
    )


def bulk_refused(exc: BaseException) -> bool:
    """Bulk API refused the object itself ("Entity '<name>' is not supported by the Bulk API.", INVALIDENTITY:
    Bulk API 2.0 Developer Guide, "General Limits"), not a transient failure: read it through REST instead."""
    return isinstance(exc, SalesforceExtractError) and "INVALIDENTITY" in str(exc)


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


def bulk_slices(
    client: SalesforceClient,
    sobject: str,
    start: datetime,
    end: datetime,
    expected: int,
    *,
    slice_records: int = DEFAULT_BULK_SLICE_RECORDS,
    max_slices: int = MAX_BULK_SLICES,
    stamp: str = "SystemModstamp",
) -> list[tuple[datetime, datetime, int]]:
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
        left = client.count(window_filter(a, mid, stamp), sobject, include_deleted=True)
        todo.extend([(mid, b, max(n - left, 0)), (a, mid, left)])  # the older half is split first
    return sorted(done)


def _pipelined_bulk_pages(
    client: SalesforceClient, soqls: Sequence[str], page_size: int, stats: ExtractStats, ahead: int = BULK_JOBS_AHEAD
) -> Iterator[tuple[bytes, int]]:
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


def extract_window(
    client: SalesforceClient,
    sobject: str,
    fields: list[str],
    start: datetime,
    end: datetime,
    *,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    bulk_page_size: int = 50_000,
    bulk_slice_records: int = DEFAULT_BULK_SLICE_RECORDS,
    stats: ExtractStats | None = None,
    stamp: str = "SystemModstamp",
    use_bulk: bool = True,
    expected: int | None = None,
) -> Iterator[pa.RecordBatch | CsvPage]:
    """Yield the window's records (every version currently stamped in it, deleted ones included):
    Arrow batches from the REST path, `CsvPage`s from the Bulk path. No record comes twice.

    `stamp` is the field windows are read on: SystemModstamp, or CreatedDate for append-only objects (whose
    batches then carry it as `SystemModstamp` too, the column the mirror orders versions by). `use_bulk`
    false (the describe shows Bulk cannot read the object) keeps every window on REST; an object Bulk refuses
    at run time (INVALIDENTITY) is read through REST as well, noted in `stats.notes`. `expected`: the
    window's COUNT() when already asked (the run's preflight), saving the call."""
    stats = stats or ExtractStats(sobject, start, end)
    synthetic = stamp != "SystemModstamp"
    selected = [f for f in fields if not (synthetic and f == "SystemModstamp")]
    window_soql(sobject, selected, start, end, stamp)  # names from describe are checked before any call
    started = time.monotonic()
    stats.expected = (
        expected
        if expected is not None
        else client.count(window_filter(start, end, stamp), sobject, include_deleted=True)
    )
    if stats.expected == 0:
        stats.mode = "empty"
        stats.seconds = time.monotonic() - started
        return
    pages: Iterator[pa.RecordBatch | CsvPage]
    fits = soql_fits_url(window_soql(sobject, selected, start, end, stamp))
    if (stats.expected <= bulk_threshold and fits) or not use_bulk:
        pages = _rest_pages(client, sobject, selected, start, end, stamp, stats)
    else:
        if stats.expected <= bulk_threshold:  # 700+ fields: the REST query would not fit in a URL
            stats.notes.append("Bulk API 2.0: the field list is too long for a REST query URL")
        pages = _bulk_or_rest_pages(
            client, sobject, selected, start, end, stamp, stats, bulk_page_size, bulk_slice_records
        )
    for page in pages:
        yield _with_stamp_column(page, stamp) if synthetic else page
    stats.seconds = time.monotonic() - started


def _with_stamp_column(page: pa.RecordBatch | CsvPage, stamp: str) -> pa.RecordBatch:
    """An append-only object's page with `SystemModstamp` = its `stamp` field (a row never changes after it)."""
    if isinstance(page, CsvPage):
        batch = read_text_csv(page.data, list(page.columns)).combine_chunks().to_batches()
        page = batch[0] if batch else pa.RecordBatch.from_pydict({c: pa.array([], pa.string()) for c in page.columns})
    return page.append_column("SystemModstamp", page.column(page.schema.get_field_index(stamp)))


def _rest_pages(
    client: SalesforceClient,
    sobject: str,
    fields: list[str],
    start: datetime,
    end: datetime,
    stamp: str,
    stats: ExtractStats,
) -> Iterator[pa.RecordBatch]:
    stats.mode = "rest"
    for records in _prefetch(client.query_pages(window_soql(sobject, fields, start, end, stamp), include_deleted=True)):
        stats.pages += 1
        if records:
            stats.extracted += len(records)
            yield records_to_batch(records, fields)


def _bulk_or_rest_pages(
    client: SalesforceClient,
    sobject: str,
    fields: list[str],
    start: datetime,
    end: datetime,
    stamp: str,
    stats: ExtractStats,
    bulk_page_size: int,
    bulk_slice_records: int,
) -> Iterator[pa.RecordBatch | CsvPage]:
    stats.mode = "bulk"
    slices = bulk_slices(client, sobject, start, end, stats.expected, slice_records=bulk_slice_records, stamp=stamp)
    if len(slices) > 1:
        stats.notes.append(f"{len(slices)} Bulk jobs over {stamp} slices, newest first")
    soqls = [window_soql(sobject, fields, a, b, stamp) for a, b, _ in reversed(slices)]
    try:
        for body, n in _prefetch(_pipelined_bulk_pages(client, soqls, bulk_page_size, stats), depth=3):
            stats.pages += 1
            try:
                page = CsvPage.parse(body, n, fields)
            except CsvPageError as exc:
                raise SalesforceExtractError(f"{sobject}: Bulk result page {stats.pages}: {exc}") from exc
            stats.extracted += n
            if n:
                yield page
    except SalesforceExtractError as exc:
        if not bulk_refused(exc) or stats.pages:
            raise
        stats.notes.append(f"Bulk API refused {sobject} ({str(exc)[:160]}): read through REST")
        yield from _rest_pages(client, sobject, fields, start, end, stamp, stats)


def extract_all(
    client: SalesforceClient,
    sobject: str,
    fields: list[str],
    *,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    bulk_page_size: int = 50_000,
    stats: ExtractStats | None = None,
    use_bulk: bool = True,
) -> Iterator[pa.RecordBatch | CsvPage]:
    """Every record of an object with no timestamp to read windows on (the full-read strategy): REST, or one
    Bulk API 2.0 job above `bulk_threshold` records (REST again if Bulk refuses the object)."""
    stats = stats or ExtractStats(sobject, datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    query = f"SELECT {', '.join(soql.field_names(fields))} FROM {soql.api_name(sobject, 'object')}"
    started = time.monotonic()
    stats.expected = client.count("", sobject, include_deleted=True)

    def rest() -> Iterator[pa.RecordBatch]:
        stats.mode = "rest (whole object)"
        for records in _prefetch(client.query_pages(query, include_deleted=True)):
            stats.pages += 1
            if records:
                stats.extracted += len(records)
                yield records_to_batch(records, fields)

    if (stats.expected <= bulk_threshold and soql_fits_url(query)) or not use_bulk:
        yield from rest()
    else:
        stats.mode = "bulk (whole object)"
        try:
            for body, n in _prefetch(_pipelined_bulk_pages(client, [query], bulk_page_size, stats), depth=3):
                stats.pages += 1
                stats.extracted += n
                if n:
                    yield CsvPage.parse(body, n, fields)
        except SalesforceExtractError as exc:
            if not bulk_refused(exc) or stats.pages:
                raise
            stats.notes.append(f"Bulk API refused {sobject}: read through REST")
            yield from rest()
    stats.seconds = time.monotonic() - started
