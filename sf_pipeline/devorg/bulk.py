"""Bulk API 2.0 for devorg: query and ingest jobs under `/services/data/vNN.0/jobs/...`.

Behaviour follows real orgs (salesforce-api-fidelity.md sections 1.5 and 3) as seen by simple-salesforce,
jsforce and raw HTTP clients:

Query jobs
  `POST jobs/query` validates the SOQL at creation (a bad query is a 400 with the SOQL error) and answers
  `UploadComplete`; a background thread then runs the query (`InProgress`) and writes the Bulk CSV to a
  file under `<data_dir>/bulk/<job id>/` (a temp dir for in-memory orgs), keeping only a compact index
  of row byte offsets (`array('q')`). `GET .../results?maxRecords=N&locator=X` serves a page by seeking
  in that file and streaming it: every page starts with its own header row, `Sforce-NumberOfRecords` is
  the page's record count and `Sforce-Locator` the next page's locator (base64 of the row number, like
  the real `MTAwMDA`; the literal `null` on the last page). Locators are stable, so a page can be
  re-fetched. Results are the snapshot taken when the job ran (rows matched at creation, read right
  after); the CSV lines are formatted by SQLite on read-only connections, see `_CsvSource`.

Ingest jobs
  `POST jobs/ingest` -> `Open`; one `PUT .../batches` with the CSV (201, no body; the file is kept on
  disk); `PATCH {"state": "UploadComplete"}` starts a background thread that applies the rows in chunks.
  Each chunk holds `store.lock` (so REST calls interleave between chunks) inside one SQLite transaction,
  and each row runs in its own savepoint through the store's validated insert/update/delete as the
  job's creator: a bad row fails alone (`failedResults`, `sf__Error` = `CODE:message:fields --`), the
  job still ends `JobComplete`. Job-level problems (unknown header field, wrong line ending, no data)
  end in `Failed` with an `errorMessage` like the real org's; a second PUT makes the close fail
  (INVALIDJOB "Found multipe contents for job"). CSV values: empty = leave unchanged (update) / unset
  (insert), `#N/A` = null, booleans/numbers/dates in Salesforce input formats, `Rel.ExtId` columns
  resolve parents by external id. Result CSVs quote every value and use the job's delimiter and line
  ending. `hardDelete` deletes permanently: the records skip the recycle bin, queryAll no longer returns
  them and undelete fails (see recycle_bin.py).

Error codes marked UNVERIFIED in the code (job-state conflicts, invalid locator, the body of the 412
for results requested before JobComplete) follow the real org's style but have no recorded capture.

Fault injection: a `lock` rule of the server's FaultInjector fails ingest rows with
`UNABLE_TO_LOCK_ROW`. Rows are matched against the rule's `path` as
`/services/data/vNN.0/sobjects/<Object>/<Id>`, the record's REST URL, so a rule scoped to
`sobjects/Opportunity` hits REST writes and Bulk rows on Opportunities alike.

Jobs live only in memory (per Org): a restarted devorg has no jobs, and its `bulk/` folder is wiped.
Result bodies are gzip-compressed when the client sends `Accept-Encoding: gzip` (limits.py), as the
guide's "Use Compression for Bulk API 2.0 Query Responses" describes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import csv
import io
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from array import array
from bisect import bisect_right
from datetime import date
from itertools import accumulate, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.responses import Response, StreamingResponse

from . import ids
from .clock import format_datetime, parse_datetime
from .context import JSON_TYPE, ApiContext
from .errors import SalesforceError, not_found
from .schema import NUMBER_TYPES

if TYPE_CHECKING:
    from .org import Org
    from .schema import FieldDef, ObjectDef

DELIMITERS = {"COMMA": ",", "BACKQUOTE": "`", "CARET": "^", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
QUERY_OPERATIONS = ("query", "queryAll")
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
RESULT_KINDS = {"successfulresults": "success", "failedresults": "failed", "unprocessedrecords": "unprocessed"}
TERMINAL = ("JobComplete", "Failed", "Aborted")

QUERY_WRITE_CHUNK = 5_000  # rows formatted by the csv module per write (generic path)
SQL_CHUNK = 20_000  # rows formatted by SQLite per statement (fast path)
SQL_FORMATTED_RESULTS = True  # False: query results through iter_csv_rows and the csv module (generic path)
INGEST_CHUNK = 2_000  # rows applied per store.lock hold / SQLite transaction
PAGE_BYTE_LIMIT = 256 * 1024 * 1024  # a results page never exceeds this (real orgs also cap by size)
STREAM_CHUNK = 1024 * 1024
MAX_UPLOAD_BYTES = 150 * 1024 * 1024  # the real limit (after base64 on their side; raw here)


# ====================================================================== registry of jobs (in memory)
class Job:
    """One Bulk API 2.0 job and its files; mutable state is guarded by `lock`."""

    def __init__(
        self,
        registry: BulkJobs,
        job_id: str,
        kind: str,
        operation: str,
        object_name: str,
        user_id: str,
        api_version: str,
        column_delimiter: str,
        line_ending: str,
        *,
        query: str | None = None,
        external_id_field: str | None = None,
        faults: Any = None,
    ):
        self.registry = registry
        self.id = job_id
        self.kind = kind  # "query" | "ingest"
        self.operation = operation
        self.object = object_name
        self.created_by = user_id
        self.created = registry.stamp()
        self.modstamp = self.created
        self.api_version = api_version
        self.column_delimiter = column_delimiter
        self.line_ending = line_ending
        self.query = query
        self.external_id_field = external_id_field
        self.faults = faults
        self.state = "UploadComplete" if kind == "query" else "Open"
        self.error_message: str | None = None
        self.processed = 0
        self.failed = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.active_ms = 0
        self.lock = threading.Lock()
        self.abort = threading.Event()
        self.deleted = False
        self.thread_done = True
        self.dir = registry.root / job_id
        self.dir.mkdir(parents=True, exist_ok=True)
        # query results
        self.header_bytes = b""
        self.offsets = array("q", [0])  # byte offset of each data row in results.csv, plus the end
        # ingest
        self.uploads = 0
        self.upload_header: list[str] | None = None
        self.rows_consumed = 0  # data rows of the upload handled (processed or skipped as blank)
        self.committed = {"success": 0, "failed": 0}  # bytes of each result file safe to serve

    # ----------------------------------------------------------------- files
    @property
    def results_path(self) -> Path:
        return self.dir / "results.csv"

    @property
    def upload_path(self) -> Path:
        return self.dir / "upload.csv"

    def result_path(self, kind: str) -> Path:
        return self.dir / f"{kind}.csv"

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def eol(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def writer(self, buf: io.StringIO) -> Any:
        return csv.writer(buf, delimiter=self.delimiter, lineterminator=self.eol, quoting=csv.QUOTE_ALL)

    # ----------------------------------------------------------------- state
    def set_state(self, state: str, error: str | None = None) -> bool:
        """Move to `state` unless the job already ended (an abort wins over a finishing thread)."""
        with self.lock:
            if self.state in TERMINAL:
                return False
            self.state = state
            if error is not None:
                self.error_message = error
            self.modstamp = self.registry.stamp()
            if state in TERMINAL and self.started is not None and self.finished is None:
                self.finished = time.monotonic()
            return True

    def processing_ms(self) -> int:
        if self.started is None:
            return 0
        end = self.finished if self.finished is not None else time.monotonic()
        return int((end - self.started) * 1000)

    # ----------------------------------------------------------------- JSON shapes
    def _base(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": self.created,
            "systemModstamp": self.modstamp,
            "state": self.state,
        }
        if self.external_id_field:
            info["externalIdFieldName"] = self.external_id_field
        info.update({"concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.api_version)})
        return info

    def created_info(self) -> dict[str, Any]:
        """The create response (docs: query_create_job, create_job)."""
        info = self._base()
        if self.kind == "ingest":
            info["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        info.update({"lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter})
        return info

    def state_info(self) -> dict[str, Any]:
        """The PATCH (close/abort) response."""
        return self._base()

    def list_info(self) -> dict[str, Any]:
        info = self._base()
        info.update(
            {"jobType": self.job_type, "lineEnding": self.line_ending, "columnDelimiter": self.column_delimiter}
        )
        return info

    @property
    def job_type(self) -> str:
        return "V2Query" if self.kind == "query" else "V2Ingest"

    def full_info(self) -> dict[str, Any]:
        """GET jobs/{query|ingest}/{id} (docs: query_get_one_job, get_job_info)."""
        with self.lock:
            info = self.list_info()
            if self.kind == "query":
                info.update(
                    {
                        "numberRecordsProcessed": self.processed,
                        "retries": 0,
                        "totalProcessingTime": self.processing_ms(),
                        "isPkChunkingSupported": True,
                    }
                )
            else:
                info.update(
                    {
                        "numberRecordsProcessed": self.processed,
                        "numberRecordsFailed": self.failed,
                        "retries": 0,
                        "totalProcessingTime": self.processing_ms(),
                        "apiActiveProcessingTime": self.active_ms,
                        "apexProcessingTime": 0,
                    }
                )
            if self.error_message:
                info["errorMessage"] = self.error_message
            return info

    # ----------------------------------------------------------------- cleanup
    def thread_finished(self) -> None:
        with self.lock:
            self.thread_done = True
            remove = self.deleted
        if remove:
            self.remove_files()

    def mark_deleted(self) -> None:
        self.abort.set()
        with self.lock:
            self.deleted = True
            remove = self.thread_done
        if remove:
            self.remove_files()

    def remove_files(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class BulkJobs:
    """The jobs of one org. Only in memory: they do not survive a restart (neither do their files)."""

    def __init__(self, org: Org):
        self.org = org
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        if org.data_dir is not None:
            self.root = Path(org.data_dir) / "bulk"
            shutil.rmtree(self.root, ignore_errors=True)  # files of jobs from a previous run
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = Path(tempfile.mkdtemp(prefix="devorg-bulk-"))
        weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def stamp(self) -> str:
        """Job timestamps: UTC, whole seconds, `.000+0000` (like the real job JSON)."""
        return format_datetime(self.org.clock.now())[:20] + "000+0000"

    def new_id(self) -> str:
        store = self.org.store
        with store.lock:
            n = int(store.get_meta("bulk_job_counter") or 0) + 1
            store.set_meta("bulk_job_counter", n)
        return ids.make_id("750", n)

    def add(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job

    def get(self, job_id: str, kind: str) -> Job:
        rid = ids.normalize(job_id)
        with self.lock:
            job = self.jobs.get(rid or "")
        if job is None or job.kind != kind:
            raise not_found()
        return job

    def remove(self, job: Job) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
        job.mark_deleted()

    def listing(self, kind: str) -> list[Job]:
        with self.lock:
            return [j for j in self.jobs.values() if j.kind == kind]


_REGISTRIES: weakref.WeakKeyDictionary[Any, BulkJobs] = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def registry(org: Org) -> BulkJobs:
    with _REGISTRIES_LOCK:
        reg = _REGISTRIES.get(org)
        if reg is None:
            reg = _REGISTRIES[org] = BulkJobs(org)
        return reg


def fault_injector(ctx: ApiContext) -> Any:
    """The server's FaultInjector: `ctx.faults` or `org.faults` when the server sets one, else the
    DevOrgApp that owns the endpoint serving this request (Starlette puts it in the ASGI scope)."""
    for holder in (ctx, ctx.org):
        faults = getattr(holder, "faults", None)
        if faults is not None:
            return faults
    endpoint = ctx.request.scope.get("endpoint")
    app = getattr(endpoint, "__self__", None)
    return getattr(app, "faults", None)


# ====================================================================== HTTP
def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_TYPE)


def _method_not_allowed(method: str, allowed: str) -> SalesforceError:
    return SalesforceError(
        "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}", status=405
    )


def _invalid_value(prop: str, value: Any) -> SalesforceError:
    shown = "" if value is None else value
    return SalesforceError("API_ERROR", f"Invalid value: '{shown}' supplied for property: '{prop}'")


def _invalid_state(message: str) -> SalesforceError:
    # errorCode for job-state conflicts: UNVERIFIED against a real capture.
    return SalesforceError("INVALIDJOBSTATE", message)


async def _read_body(ctx: ApiContext) -> dict[str, Any]:
    raw = await ctx.request.body()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise SalesforceError("JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from None
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


async def handle_jobs(ctx: ApiContext, parts: list[str]) -> Response:
    """Everything under /services/data/vNN.0/jobs/: `parts` are the path segments after `jobs`."""
    if not parts or parts[0].lower() not in ("query", "ingest"):
        raise not_found()
    kind = parts[0].lower()
    method = ctx.request.method
    reg = registry(ctx.org)
    if len(parts) == 1:
        if method == "POST":
            body = await _read_body(ctx)
            return await (_create_query(ctx, reg, body) if kind == "query" else _create_ingest(ctx, reg, body))
        if method == "GET":
            return _json(_list_jobs(ctx, reg, kind))
        raise _method_not_allowed(method, "GET, POST")
    job = reg.get(parts[1], kind)
    if len(parts) == 2:
        if method == "GET":
            return _json(job.full_info())
        if method == "PATCH":
            body = await _read_body(ctx)
            return _json(await _patch_state(reg, job, body))
        if method == "DELETE":
            _delete_job(reg, job)
            return Response(status_code=204)
        raise _method_not_allowed(method, "GET, PATCH, DELETE")
    if len(parts) != 3:
        raise not_found()
    sub = parts[2].lower()
    if kind == "query" and sub == "results":
        if method != "GET":
            raise _method_not_allowed(method, "GET")
        return _results_page(ctx, job)
    if kind == "ingest" and sub == "batches":
        if method != "PUT":
            raise _method_not_allowed(method, "PUT")
        await _upload(ctx, job)
        return Response(status_code=201)
    if kind == "ingest" and sub in RESULT_KINDS:
        if method != "GET":
            raise _method_not_allowed(method, "GET")
        return await _ingest_results(job, RESULT_KINDS[sub])
    raise not_found()


def _list_jobs(ctx: ApiContext, reg: BulkJobs, kind: str) -> dict[str, Any]:
    params = ctx.request.query_params
    jobs = reg.listing(kind)
    wanted_type = params.get("jobType")
    if wanted_type:
        jobs = [j for j in jobs if j.job_type == wanted_type]
    mode = params.get("concurrencyMode")
    if mode and mode != "Parallel":
        jobs = []
    records = []
    for j in jobs:
        with j.lock:
            records.append(j.list_info())
    return {"done": True, "records": records, "nextRecordsUrl": None}


def _common_options(body: dict[str, Any]) -> tuple[str, str]:
    content_type = body.get("contentType", "CSV")
    if content_type != "CSV":
        raise _invalid_value("contentType", content_type)
    delimiter = body.get("columnDelimiter", "COMMA")
    if delimiter not in DELIMITERS:
        raise _invalid_value("columnDelimiter", delimiter)
    line_ending = body.get("lineEnding", "LF")
    if line_ending not in LINE_ENDINGS:
        raise _invalid_value("lineEnding", line_ending)
    return delimiter, line_ending


async def _patch_state(reg: BulkJobs, job: Job, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("state")
    if wanted == "Aborted":
        with job.lock:
            state = job.state
        if state in TERMINAL:
            raise _invalid_state(f"Aborting already {'Completed' if state == 'JobComplete' else state} Job not allowed")
        job.abort.set()
        job.set_state("Aborted")
    elif wanted == "UploadComplete" and job.kind == "ingest":
        with job.lock:
            if job.state != "Open":
                raise _invalid_state(f"Closing a job in state {job.state} is not allowed")
            if job.uploads > 1:
                raise SalesforceError(
                    "INVALIDJOB",
                    f"Found multipe contents for job: <{job.id[:15]}>, please 'Close' / 'Abort' / 'Delete' the "
                    "current Job then create a new Job and make sure you only do 'PUT' once on a given Job.",
                )
            job.state = "UploadComplete"
            job.modstamp = reg.stamp()
            job.thread_done = False
            info = job.state_info()  # the answer shows UploadComplete, however fast the job then runs
        threading.Thread(target=_run_ingest, args=(reg, job), name=f"bulk-ingest-{job.id}", daemon=True).start()
        return info
    else:
        raise _invalid_value("state", wanted)
    with job.lock:
        return job.state_info()


def _delete_job(reg: BulkJobs, job: Job) -> None:
    with job.lock:
        state = job.state
    if state not in ("UploadComplete", "JobComplete", "Aborted", "Failed"):
        raise _invalid_state(f"Deleting a job in state {state} is not allowed")
    reg.remove(job)


# ====================================================================== query jobs
_STRINGS = re.compile(r"'(?:\\.|[^'\\])*'")
_FROM = re.compile(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)


async def _create_query(ctx: ApiContext, reg: BulkJobs, body: dict[str, Any]) -> Response:
    operation = body.get("operation")
    if operation not in QUERY_OPERATIONS:
        raise _invalid_value("operation", operation)
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise SalesforceError("INVALIDJOB", "InvalidJob : query is required for a query job")
    delimiter, line_ending = _common_options(body)
    _check_bulk_support(ctx, text, operation)
    job = Job(reg, reg.new_id(), "query", operation, "", ctx.user_id, ctx.version, delimiter, line_ending, query=text)
    job.thread_done = False
    ready: concurrent.futures.Future = concurrent.futures.Future()
    threading.Thread(target=_run_query, args=(reg, job, ready), name=f"bulk-query-{job.id}", daemon=True).start()
    try:
        info = await asyncio.wrap_future(ready)
    except BaseException:
        job.remove_files()
        raise
    return _json(info)


def _check_bulk_support(ctx: ApiContext, text: str, operation: str) -> None:
    """Objects and fields Bulk API refuses to query (see wide.check_bulk_query)."""
    from .wide import check_bulk_query

    try:
        cq = ctx.org.queries.compile(text, include_deleted=operation == "queryAll")
    except SalesforceError:
        return  # the job reports the query's own error as before
    check_bulk_query(ctx.org.schema, cq.obj, [c.field for c in cq.columns])


def _run_query(reg: BulkJobs, job: Job, ready: concurrent.futures.Future) -> None:
    """Validate and run the query, writing the Bulk CSV and its row index; all in this one thread."""
    source: _CsvSource | None = None
    try:
        try:
            source = _CsvSource.open(reg.org, job)
        except SalesforceError as err:
            _settle(ready, error=err)
            return
        except Exception as exc:  # noqa: BLE001 - report, never kill the server
            _settle(
                ready, error=SalesforceError("UNKNOWN_EXCEPTION", f"An unexpected error occurred: {exc}", status=500)
            )
            return
        job.object = source.object_name or job.object
        job.header_bytes = source.header_bytes
        reg.add(job)
        with job.lock:
            info = job.created_info()
        _settle(ready, result=info)
        job.started = time.monotonic()
        if not job.set_state("InProgress"):
            return
        try:
            _write_query_results(job, source.chunks())
        except SalesforceError as err:
            job.set_state("Failed", err.message)
            return
        except Exception as exc:  # noqa: BLE001
            job.set_state("Failed", f"InternalError : {exc}")
            return
        if not job.abort.is_set():
            job.set_state("JobComplete")
    finally:
        if source is not None:
            source.close()
        _settle(ready, error=SalesforceError("UNKNOWN_EXCEPTION", "query job could not start", status=500))
        job.thread_finished()


def _settle(future: concurrent.futures.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve the creating request's future once (it may have been cancelled by a client disconnect)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


# Types whose Bulk CSV text can never contain a double quote (no escaping needed).
_NO_QUOTES = {"id", "reference", "boolean", "int", "double", "currency", "percent", "date", "datetime", "time"}
_PRINTF_ARGS = 100  # SQLite functions take at most 127 arguments


class _CsvSource:
    """The rows of a query job as encoded CSV chunks `(bytes, [bytes per row])`.

    Fast path: QueryEngine validates the SOQL and snapshots the matching rowids (`csv_rows`), then
    each chunk of rowids is read with one SQL statement that formats whole CSV lines in SQLite
    (`csv_value_sql` values, quoted and escaped with printf/replace), so Python handles one string
    per row. For a file-backed org the chunks are read on read-only connections of their own by
    up to two threads (SQLite runs without the GIL); an in-memory org reads on the store's
    connection, holding `store.lock` per chunk. Generic path (if the engine lacks those pieces):
    `iter_csv_rows` rows through the csv module.
    """

    def __init__(self, org: Org, job: Job):
        self.org = org
        self.job = job
        self.object_name: str | None = None
        self.header_bytes = b""
        self._rowids: Any = None
        self._sql: str | None = None
        self._rows: Any = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._conns: list[Any] = []
        self._local = threading.local()
        self._db_file: str | None = None

    @classmethod
    def open(cls, org: Org, job: Job) -> _CsvSource:
        src = cls(org, job)
        include_deleted = job.operation == "queryAll"
        queries = org.queries
        buf = io.StringIO()
        try:
            if not SQL_FORMATTED_RESULTS:
                raise AttributeError("SQL-formatted results disabled")
            from .query import csv_value_sql

            result = queries.csv_rows(job.query, include_deleted=include_deleted, user_id=job.created_by)
            rowids = getattr(result, "rowids", None)
            if rowids is None:
                rowids = result._rowids
            cq = queries.compile(job.query, include_deleted=include_deleted, user_id=job.created_by)
            exprs = []
            for c in cq.columns:
                e = csv_value_sql(c.field, c.sql)
                exprs.append(e if c.field.type in _NO_QUOTES else f"replace({e}, '\"', '\"\"')")
            src._sql = cq.rows_by_rowid_sql([src._line_sql(exprs)])
            src._rowids = rowids
            src.object_name = cq.obj.name
            header = result.header
        except (AttributeError, ImportError, TypeError):
            header, src._rows = queries.iter_csv_rows(
                job.query, include_deleted=include_deleted, user_id=job.created_by
            )
            m = _FROM.search(_STRINGS.sub("''", job.query))
            found = org.schema.find(m.group(1)) if m else None
            src.object_name = found.name if found else None
        job.writer(buf).writerow(header)
        src.header_bytes = buf.getvalue().encode("utf-8")
        return src

    def _line_sql(self, exprs: list[str]) -> str:
        job = self.job
        eol = "char(10)" if job.line_ending == "LF" else "char(13, 10)"
        parts = []
        for i in range(0, len(exprs), _PRINTF_ARGS):
            group = exprs[i : i + _PRINTF_ARGS]
            fmt = job.delimiter.join(['"%s"'] * len(group))
            parts.append(f"printf('{fmt}', {', '.join(group)})")
        return f" || '{job.delimiter}' || ".join(parts) + f" || {eol}"

    # ----------------------------------------------------------------- reading
    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            conn = sqlite3.connect(f"file:{quote(self._db_file)}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA cache_size = -100000")
            self._local.conn = conn
            self._conns.append(conn)
        return conn

    def _read(self, start: int, end: int) -> tuple[bytes, list[int]]:
        arg = "[" + ",".join(map(str, self._rowids[start:end])) + "]"
        if self._db_file:
            rows = self._connection().execute(self._sql, (arg,)).fetchall()
        else:
            store = self.org.store
            with store.lock:
                rows = store.conn.execute(self._sql, (arg,)).fetchall()
        lines = [r[0] for r in rows]
        text = "".join(lines)
        data = text.encode("utf-8")
        if len(data) == len(text):
            return data, list(map(len, lines))
        return data, [len(line.encode("utf-8")) for line in lines]

    def chunks(self):
        if self._rows is not None:
            yield from _csv_chunks(self.job, self._rows)
            return
        store = self.org.store
        with store.lock:
            db = next((f for _, name, f in store.conn.execute("PRAGMA database_list") if name == "main"), "")
        self._db_file = db or None
        total = len(self._rowids)
        bounds = [(i, min(i + SQL_CHUNK, total)) for i in range(0, total, SQL_CHUNK)]
        workers = min(2, os.cpu_count() or 1) if self._db_file else 1
        if workers == 1 or len(bounds) <= 1:
            for a, b in bounds:
                if self.job.abort.is_set():
                    return
                yield self._read(a, b)
            return
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"bulk-{self.job.id}")
        pending: list[concurrent.futures.Future] = []
        todo = iter(bounds)
        for a, b in islice(todo, workers * 2):
            pending.append(self._pool.submit(self._read, a, b))
        while pending:
            if self.job.abort.is_set():
                return
            result = pending.pop(0).result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._read, *nxt))
            yield result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns:
            conn.close()
        self._conns.clear()


def _csv_chunks(job: Job, rows: Any):
    """Generic path: rows (lists of strings) through the csv module, QUERY_WRITE_CHUNK rows at a time."""
    buf = io.StringIO()
    writerow = job.writer(buf).writerow
    rows = iter(rows)
    while not job.abort.is_set():
        chunk = list(islice(rows, QUERY_WRITE_CHUNK))
        if not chunk:
            return
        buf.seek(0)
        buf.truncate()
        lens = [writerow(r) for r in chunk]  # characters written per row
        text = buf.getvalue()
        data = text.encode("utf-8")
        if len(data) != len(text):  # non-ASCII: row lengths in bytes differ from characters
            bounds = list(accumulate(lens, initial=0))
            lens = [len(text[a:b].encode("utf-8")) for a, b in zip(bounds, bounds[1:], strict=False)]
        yield data, lens


def _write_query_results(job: Job, chunks: Any) -> None:
    """Write the chunks to results.csv and index where each row starts (`job.offsets`)."""
    offsets = job.offsets
    pos = 0
    with open(job.results_path, "wb") as out:
        for data, lens in chunks:
            if job.abort.is_set():
                return
            out.write(data)
            ends = accumulate(lens, initial=pos)
            next(ends)  # `pos` (this chunk's first row start) is already the index's last entry
            offsets.extend(ends)  # one entry per row: where it ends, i.e. where the next row starts
            pos += len(data)
            with job.lock:
                job.processed = len(offsets) - 1


def _encode_locator(row: int) -> str:
    return base64.b64encode(str(row).encode()).decode().rstrip("=")


def _decode_locator(text: str) -> int:
    try:
        padded = text + "=" * (-len(text) % 4)
        value = int(base64.b64decode(padded.encode(), validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = -1
    if value < 0:
        raise SalesforceError("INVALIDLOCATOR", f"Invalid locator: {text}")  # errorCode UNVERIFIED
    return value


def _results_page(ctx: ApiContext, job: Job) -> Response:
    with job.lock:
        state = job.state
    if state != "JobComplete":
        # "The job must have the state JobComplete" (Get Results for a Query Job): otherwise 412 Precondition
        # Failed (REST API "Status Codes and Error Responses": 412, the request has an unmet precondition).
        # The errorCode and message of the body are UNVERIFIED (no recorded capture).
        err = _invalid_state(
            f"Job {job.id} is not complete: state is {state}. Results are available when the job state is JobComplete"
        )
        err.status = 412
        raise err
    if ctx.version != job.api_version:
        raise SalesforceError(
            "API_ERROR",
            f"The job was created with API version {job.api_version}: use the same version to get its results",
            status=409,
        )
    params = ctx.request.query_params
    total = len(job.offsets) - 1
    locator = params.get("locator")
    start = _decode_locator(locator) if locator else 0
    if start > total:
        raise SalesforceError("INVALIDLOCATOR", f"Invalid locator: {locator}")
    raw_max = params.get("maxRecords")
    if raw_max is not None:
        try:
            max_records = int(raw_max)
        except ValueError:
            max_records = 0
        if max_records <= 0:
            raise _invalid_value("maxRecords", raw_max)
    else:
        max_records = total or 1
    end = min(start + max_records, total)
    offsets = job.offsets
    if end > start + 1 and offsets[end] - offsets[start] > PAGE_BYTE_LIMIT:
        end = max(start + 1, bisect_right(offsets, offsets[start] + PAGE_BYTE_LIMIT, start, end) - 1)
    first, last = offsets[start], offsets[end]
    headers = {
        "content-type": "text/csv",
        "content-length": str(len(job.header_bytes) + last - first),
        "Sforce-NumberOfRecords": str(end - start),
        "Sforce-Locator": _encode_locator(end) if end < total else "null",
    }
    return StreamingResponse(_stream_file(job.results_path, job.header_bytes, first, last), headers=headers)


async def _stream_file(path: Path, head: bytes, first: int, last: int):
    yield head
    if last <= first:
        return
    with open(path, "rb") as fh:
        fh.seek(first)
        remaining = last - first
        while remaining > 0:
            data = await asyncio.to_thread(fh.read, min(STREAM_CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


# ====================================================================== ingest jobs
async def _create_ingest(ctx: ApiContext, reg: BulkJobs, body: dict[str, Any]) -> Response:
    operation = body.get("operation")
    if operation not in INGEST_OPERATIONS:
        raise _invalid_value("operation", operation)
    name = body.get("object")
    obj = ctx.org.schema.find(name) if isinstance(name, str) and name else None
    if obj is None:
        raise SalesforceError("INVALIDJOB", f"InvalidJob : Unable to find object: {name or ''}")
    delimiter, line_ending = _common_options(body)
    ext_name = body.get("externalIdFieldName")
    ext_field = None
    if operation == "upsert":
        ext = obj.by_lower.get(str(ext_name or "").lower())
        if ext is None or not (ext.name == "Id" or ext.external_id):
            raise SalesforceError(
                "INVALIDJOB",
                f"InvalidJob : Field name provided, {ext_name or ''} does not match an External ID for {obj.name}",
            )
        ext_field = ext.name
    job = Job(
        reg,
        reg.new_id(),
        "ingest",
        operation,
        obj.name,
        ctx.user_id,
        ctx.version,
        delimiter,
        line_ending,
        external_id_field=ext_field,
        faults=fault_injector(ctx),
    )
    reg.add(job)
    with job.lock:
        return _json(job.created_info())


async def _upload(ctx: ApiContext, job: Job) -> None:
    with job.lock:
        if job.state != "Open":
            raise _invalid_state(f"Job {job.id} is not open for data upload: state is {job.state}")
        job.uploads += 1
        first = job.uploads == 1
    size = 0
    target = job.upload_path if first else job.dir / f"upload-{job.uploads}.csv"
    with open(target, "wb") as fh:
        async for chunk in ctx.request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise SalesforceError(
                    "API_ERROR", "Request size exceeds the maximum of 150 MB for an upload", status=413
                )
            fh.write(chunk)


class _JobFailure(Exception):
    """A job-level failure: the job ends `Failed` with this errorMessage."""


class _Column:
    __slots__ = ("index", "kind", "field", "target", "target_field")

    def __init__(
        self,
        index: int,
        kind: str,
        field: FieldDef | None = None,
        target: ObjectDef | None = None,
        target_field: FieldDef | None = None,
    ):
        self.index = index
        self.kind = kind  # id | field | rel
        self.field = field
        self.target = target
        self.target_field = target_field


def _column_plan(org: Org, obj: ObjectDef, header: list[str]) -> list[_Column]:
    plan: list[_Column] = []
    seen: set[str] = set()
    for i, name in enumerate(header):
        key = name.lower()
        if key in seen:
            raise _JobFailure(f"InvalidBatch : Duplicate field name: {name}")
        seen.add(key)
        f = obj.by_lower.get(key)
        if f is not None:
            plan.append(_Column(i, "id" if f.name == "Id" else "field", f))
            continue
        if "." in name:
            rel_name, _, target_name = name.partition(".")
            ref = obj.by_relationship.get(rel_name.split(":")[-1].lower())
            if ref is not None and ref.reference_to:
                target = org.schema.find(rel_name.split(":")[0] if ":" in rel_name else ref.reference_to[0])
                tf = target.by_lower.get(target_name.lower()) if target else None
                if (
                    target is not None
                    and tf is not None
                    and (tf.name == "Id" or tf.external_id or (target.name == "User" and tf.name == "Username"))
                ):
                    plan.append(_Column(i, "rel", ref, target, tf))
                    continue
        raise _JobFailure(f"InvalidBatch : Field name not found : {name}")
    return plan


def _deserialize_error(raw: str, col: int, f: FieldDef) -> SalesforceError:
    return SalesforceError(
        "INVALID_FIELD",
        f"Failed to deserialize field at col {col}. Due to, '{raw}' is not a valid value for the type {f.soap_type}",
    )


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "y": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "n": False,
    "off": False,
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _csv_value(f: FieldDef, raw: str, col: int) -> Any:
    """A CSV string as the JSON-ish value the store's `coerce` expects."""
    t = f.type
    if t == "boolean":
        value = _BOOLEANS.get(raw.lower())
        if value is None:
            raise _deserialize_error(raw, col, f)
        return value
    if t == "int":
        try:
            return int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                raise _deserialize_error(raw, col, f) from None
            if not number.is_integer():
                raise _deserialize_error(raw, col, f) from None
            return int(number)
    if t in NUMBER_TYPES:
        try:
            number = float(raw)
        except ValueError:
            raise _deserialize_error(raw, col, f) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise _deserialize_error(raw, col, f)
        return number
    if t == "date":
        if _DATE.match(raw):
            try:
                if len(raw) == 10:
                    return date.fromisoformat(raw).isoformat()
                return parse_datetime(raw).date().isoformat()
            except ValueError:
                pass
        raise _deserialize_error(raw, col, f)
    if t == "datetime":
        try:
            return format_datetime(parse_datetime(raw))
        except ValueError:
            raise _deserialize_error(raw, col, f) from None
    return raw


def _sf_error(err: SalesforceError) -> str:
    fields = " ".join(err.fields or [])
    return f"{err.error_code}:{err.message}:{fields + ' ' if fields else ''}--"


class _RowResult:
    __slots__ = ("rid", "created", "error")

    def __init__(self, rid: str = "", created: bool = False, error: str | None = None):
        self.rid = rid
        self.created = created
        self.error = error


def _row_values(org: Org, plan: list[_Column], row: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    store = org.store
    for c in plan:
        if c.kind == "id":
            continue
        raw = row[c.index]
        if raw == "":
            continue  # empty: unset on insert, left unchanged on update
        f = c.field
        if raw == "#N/A":
            values[f.name] = None
            continue
        if c.kind == "field":
            values[f.name] = _csv_value(f, raw, c.index + 1)
            continue
        tf = c.target_field
        if tf.name == "Id":
            values[f.name] = raw
            continue
        matches = store.find_by_external_id(c.target, tf, raw)
        if not matches:
            raise SalesforceError(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw} not found for field {tf.name} in entity {c.target.name}",
            )
        if len(matches) > 1:
            raise SalesforceError(
                "INVALID_FIELD",
                f"Foreign key external ID: {raw} matched more than one record "
                f"for field {tf.name} in entity {c.target.name}",
            )
        values[f.name] = matches[0]
    return values


class _IngestRun:
    """Applies one job's rows; everything here runs in the job's background thread."""

    def __init__(self, reg: BulkJobs, job: Job, obj: ObjectDef, plan: list[_Column]):
        self.org = reg.org
        self.store = reg.org.store
        self.job = job
        self.obj = obj
        self.plan = plan
        self.id_col = next((c.index for c in plan if c.kind == "id"), None)
        ext = job.external_id_field
        self.ext_field = obj.field(ext) if ext else None
        self.ext_col = next(
            (
                c.index
                for c in plan
                if c.field is not None
                and c.kind != "rel"
                and self.ext_field is not None
                and c.field.name == self.ext_field.name
            ),
            None,
        )
        self.ncols = len(plan)
        self.faults = job.faults
        self.lock_path = f"/services/data/v{job.api_version}/sobjects/{obj.name}/"

    def _row_id(self, row: list[str]) -> str:
        return row[self.id_col] if self.id_col is not None else ""

    def _lock_fault(self, row: list[str]) -> SalesforceError | None:
        faults = self.faults
        if faults is None or not faults.rules:
            return None
        rid = self._row_id(row)
        if self.ext_col is not None and not rid:
            rid = row[self.ext_col]
        if faults.take(self.lock_path + rid, kinds=("lock",)) is None:
            return None
        target = ids.normalize(rid) or rid
        return SalesforceError(
            "UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records: {target}"
        )

    def apply(self, row: list[str]) -> _RowResult:
        op = self.job.operation
        if len(row) != self.ncols:
            return _RowResult(
                self._row_id(row) if self.id_col is not None and len(row) > self.id_col else "",
                error=_sf_error(
                    SalesforceError("INVALID_FIELD", f"Row has {len(row)} columns, the header has {self.ncols}")
                ),
            )
        given_id = self._row_id(row)
        try:
            fault = self._lock_fault(row)
            if fault is not None:
                raise fault
            with self.store.transaction():
                return self._apply(op, row, given_id)
        except SalesforceError as err:
            if err.error_code == "NOT_FOUND":  # a well-formed id of no record: what DML calls answer
                err = SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            return _RowResult(given_id, error=_sf_error(err))
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the job
            return _RowResult(given_id, error=f"UNKNOWN_EXCEPTION:{exc}:--")

    def _apply(self, op: str, row: list[str], given_id: str) -> _RowResult:
        store, obj, user = self.store, self.obj, self.job.created_by
        if op in ("delete", "hardDelete"):
            if not given_id:
                raise SalesforceError("MISSING_ARGUMENT", "Id not specified in a delete call")
            if op == "hardDelete":  # skips the recycle bin: gone from queryAll, not undeletable (recycle_bin.py)
                return _RowResult(store.hard_delete(obj, given_id, user))
            return _RowResult(store.delete(obj, given_id, user))
        values = _row_values(self.org, self.plan, row)
        if op == "insert":
            if given_id:
                raise SalesforceError("INVALID_FIELD", "The Id field should not be specified in the sobject data.")
            return _RowResult(store.insert(obj, values, user), created=True)
        if op == "update":
            if not given_id:
                raise SalesforceError("MISSING_ARGUMENT", "Id not specified in an update call")
            return _RowResult(store.update(obj, given_id, values, user))
        # upsert
        ext = self.ext_field
        if ext is None or ext.name == "Id":
            if not given_id:
                return _RowResult(store.insert(obj, values, user), created=True)
            return _RowResult(store.update(obj, given_id, values, user))
        key = row[self.ext_col] if self.ext_col is not None else ""
        if key == "":
            raise SalesforceError("MISSING_ARGUMENT", f"{ext.name} not specified", fields=[ext.name])
        matches = store.find_by_external_id(obj, ext, values.get(ext.name, key))
        if len(matches) > 1:
            raise SalesforceError(
                "DUPLICATE_EXTERNAL_ID",
                f"{ext.name}: more than one record found for external id field: {matches}",
                fields=[ext.name],
            )
        if matches:
            values.pop(ext.name, None)
            return _RowResult(store.update(obj, matches[0], values, user))
        return _RowResult(store.insert(obj, values, user), created=True)


def _check_line_ending(job: Job) -> None:
    with open(job.upload_path, "rb") as fh:
        head = fh.read(1 << 16)
    nl = head.find(b"\n")
    if nl < 0:
        return
    has_cr = nl > 0 and head[nl - 1 : nl] == b"\r"
    if has_cr != (job.line_ending == "CRLF"):
        raise _JobFailure(
            f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {job.line_ending}"
        )


def _run_ingest(reg: BulkJobs, job: Job) -> None:
    try:
        job.started = time.monotonic()
        if not job.set_state("InProgress"):
            return
        try:
            _ingest(reg, job)
        except _JobFailure as failure:
            job.set_state("Failed", str(failure))
            return
        except csv.Error as err:
            job.set_state("Failed", f"ClientInputError : {err}")
            return
        except Exception as exc:  # noqa: BLE001
            job.set_state("Failed", f"InternalError : {exc}")
            return
        if not job.abort.is_set():
            job.set_state("JobComplete")
    finally:
        with job.lock:
            job.active_ms = job.processing_ms()
        job.thread_finished()


def _ingest(reg: BulkJobs, job: Job) -> None:
    org = reg.org
    obj = org.schema.get(job.object)
    if job.uploads == 0 or not job.upload_path.exists() or job.upload_path.stat().st_size == 0:
        raise _JobFailure("InvalidBatch : Records not processed: no job data was uploaded")
    _check_line_ending(job)
    with open(job.upload_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=job.delimiter)
        header = next(reader, None)
        if not header:
            raise _JobFailure("InvalidBatch : Records not processed: no header row")
        job.upload_header = header
        plan = _column_plan(org, obj, header)
        run = _IngestRun(reg, job, obj, plan)
        store = org.store
        buf = io.StringIO()
        out = job.writer(buf)
        with open(job.result_path("success"), "wb") as ok_file, open(job.result_path("failed"), "wb") as bad_file:
            for fh_out, first in ((ok_file, ["sf__Id", "sf__Created"]), (bad_file, ["sf__Id", "sf__Error"])):
                buf.seek(0)
                buf.truncate()
                out.writerow(first + header)
                fh_out.write(buf.getvalue().encode("utf-8"))
                fh_out.flush()
                job.committed["success" if fh_out is ok_file else "failed"] = fh_out.tell()
            while not job.abort.is_set():
                chunk = list(islice(reader, INGEST_CHUNK))
                if not chunk:
                    break
                rows = [r for r in chunk if r]  # csv gives [] for blank lines: they are not records
                results: list[tuple[list[str], _RowResult]] = []
                with store.lock, store.transaction():
                    for row in rows:
                        results.append((row, run.apply(row)))
                ok_lines, bad_lines = io.StringIO(), io.StringIO()
                ok_writer, bad_writer = job.writer(ok_lines), job.writer(bad_lines)
                failed = 0
                for row, res in results:
                    if res.error is None:
                        ok_writer.writerow([res.rid, "true" if res.created else "false", *row])
                    else:
                        failed += 1
                        bad_writer.writerow([res.rid, res.error, *row])
                ok_file.write(ok_lines.getvalue().encode("utf-8"))
                bad_file.write(bad_lines.getvalue().encode("utf-8"))
                ok_file.flush()
                bad_file.flush()
                with job.lock:
                    job.committed["success"] = ok_file.tell()
                    job.committed["failed"] = bad_file.tell()
                    job.rows_consumed += len(chunk)
                    job.processed += len(rows)
                    job.failed += failed


async def _ingest_results(job: Job, kind: str) -> Response:
    headers = {"content-type": "text/csv"}
    if kind == "unprocessed":
        body = await asyncio.to_thread(_unprocessed_csv, job)
        return Response(body, headers=headers)
    with job.lock:
        size = job.committed[kind]
        header = job.upload_header
        state = job.state
    path = job.result_path(kind)
    if size == 0 or not path.exists():
        # Not processed yet (or failed before processing): a header-only CSV.
        if header is None and state not in ("Open", "UploadComplete", "InProgress"):
            header = await asyncio.to_thread(_upload_header, job)
        buf = io.StringIO()
        job.writer(buf).writerow(["sf__Id", "sf__Created" if kind == "success" else "sf__Error", *(header or [])])
        return Response(buf.getvalue().encode("utf-8"), headers=headers)
    headers["content-length"] = str(size)
    return StreamingResponse(_stream_file(path, b"", 0, size), headers=headers)


def _upload_header(job: Job) -> list[str] | None:
    if not job.upload_path.exists():
        return None
    try:
        with open(job.upload_path, encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader(fh, delimiter=job.delimiter), None)
    except (csv.Error, UnicodeDecodeError):
        return None


def _unprocessed_csv(job: Job) -> bytes:
    """Rows of the upload that the job did not process (all of them if it never ran), as uploaded."""
    with job.lock:
        state = job.state
        consumed = job.rows_consumed
    buf = io.StringIO()
    out = job.writer(buf)
    if not job.upload_path.exists():
        return b""
    try:
        with open(job.upload_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=job.delimiter)
            header = next(reader, None)
            if header is None:
                return b""
            out.writerow(header)
            if state in ("JobComplete", "InProgress", "UploadComplete"):
                return buf.getvalue().encode("utf-8")
            for row in islice(reader, consumed, None):
                if row:
                    out.writerow(row)
    except (csv.Error, UnicodeDecodeError):
        pass
    return buf.getvalue().encode("utf-8")


def run_ingest_job(
    org: Org, object_name: str, operation: str, csv_text: str, user_id: str, api_version: str = "59.0"
) -> Job:
    """Create, upload, close and run one ingest job in this thread: the path an HTTP client's job takes
    (scenarios use it to act like an integration user's Bulk API 2.0 job). Read the results from the Job."""
    reg = registry(org)
    if operation not in INGEST_OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(INGEST_OPERATIONS)}, not {operation!r}")
    job = Job(
        reg, reg.new_id(), "ingest", operation, org.schema.get(object_name).name, user_id, api_version, "COMMA", "LF"
    )
    reg.add(job)
    job.upload_path.write_text(csv_text, encoding="utf-8")
    job.uploads = 1
    job.state = "UploadComplete"
    job.thread_done = False
    _run_ingest(reg, job)
    return job


def result_rows(job: Job, kind: str) -> list[dict[str, str]]:
    """A finished ingest job's successfulResults ("success") or failedResults ("failed") as dicts."""
    with job.lock:
        size = job.committed[kind]
    with open(job.result_path(kind), "rb") as fh:
        text = fh.read(size).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter=job.delimiter))
