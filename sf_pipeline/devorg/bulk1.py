"""Bulk API 1.0 for devorg: `/services/async/<version>/job/...`, jobs and batches.

Follows the "Bulk API Developer Guide" (api_asynch, Bulk API 1.0 sections) and what its public clients
read (simple-salesforce `bulk.py`, heroku salesforce-bulk as used by CumulusCI, jsforce `api/bulk`):

- Auth: the `X-SFDC-Session` header ("Set a Session Header"); an `Authorization: Bearer` header is
  accepted too. A bad session is HTTP 400 `InvalidSessionId` (jsforce's `isSessionExpired` tests
  exactly 400 + that exceptionCode), errors are `<error><exceptionCode/><exceptionMessage/></error>` in
  the dataload namespace, or `{"exceptionCode", "exceptionMessage"}` for JSON requests ("HTTP Status
  Codes and Errors"; codes: ClientInputError, FeatureNotEnabled, InvalidBatch, InvalidJob,
  InvalidJobState, InvalidOperation, InvalidSessionId, InvalidUrl, InvalidXML, ...).
- `POST job` (jobInfo in XML by default, or JSON with `Content-Type: application/json`): operation
  insert | update | upsert | delete | hardDelete | query | queryAll, object, contentType XML (the
  default) | CSV | JSON, concurrencyMode Parallel | Serial (simple-salesforce sends 0/1), and
  externalIdFieldName for upsert. 201 with the jobInfo. `GET job/<id>`; `POST job/<id>` with state
  Closed or Aborted.
- `POST job/<id>/batch`: records as CSV, XML `<sObjects>` or a JSON array (per the job's content type),
  or the SOQL text for query jobs; 201 with the batchInfo (Queued). Batches run in the background, one at
  a time per job, through Bulk API 2.0's row machinery in bulk.py (`_column_plan`, `_IngestRun`: the
  same validation, relationship columns `Rel.ExtId__c`, `#N/A` = null, per-row savepoints, lock faults).
  States Queued -> InProgress -> Completed | Failed (a batch-level problem: `stateMessage`), and
  NotProcessed when the job is aborted first. `GET job/<id>/batch`, `.../batch/<id>`,
  `.../batch/<id>/request`.
- `GET .../batch/<id>/result`: DML results in request order, as CSV `"Id","Success","Created","Error"`,
  XML `<results><result><id/><success/><created/><errors/></result>` or a JSON array of
  `{"success","created","id","errors":[{"statusCode","message","fields"}]}`; for a query batch the list of
  result ids (`752...`), then `.../result/<resultId>` gives the records: CSV (every value quoted, the
  text `Records not found for this query` when nothing matched), XML `<queryResult>` records, or JSON
  records with `attributes` and datetimes as epoch milliseconds (simple-salesforce#290).
- Bulk API needs the org feature: an org without it answers every call with 400 `FeatureNotEnabled`
  (`set_bulk_api_enabled`, e.g. a Professional Edition org without API access).

Not emulated: PK chunking (`Sforce-Enable-PKChunking`), ZIP content types, binary attachments, the
per-batch limits of 10,000 records / 10 MB are enforced but their exact failure text is UNVERIFIED.
Jobs live in memory like Bulk 2.0's.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from . import ids
from .bulk import INGEST_CHUNK, _column_plan, _CsvSource, _IngestRun, _JobFailure, registry
from .bulk import Job as Bulk2Job
from .clock import format_datetime, parse_datetime
from .errors import SalesforceError

if TYPE_CHECKING:
    from .org import Org
    from .schema import ObjectDef
    from .server import DevOrgApp

NS = "http://www.force.com/2009/06/asyncapi/dataload"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete", "query", "queryAll")
CONTENT_TYPES = ("XML", "CSV", "JSON")
MAX_BATCH_RECORDS = 10_000
MAX_BATCH_BYTES = 10_000_000
_META_FEATURE = "bulk_api_1_enabled"
_REST_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


class Bulk1Error(Exception):
    """An async API error: exceptionCode + exceptionMessage (HTTP 400 unless said otherwise)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


# ====================================================================== org feature switch
def bulk_api_enabled(org: Org) -> bool:
    value = org.store.get_meta(_META_FEATURE)
    return True if value is None else bool(value)


def set_bulk_api_enabled(org: Org, enabled: bool) -> None:
    """Turn the org's Bulk API feature on or off (off: every Bulk API 1.0 call is FeatureNotEnabled)."""
    org.store.set_meta(_META_FEATURE, bool(enabled))


# ====================================================================== jobs and batches
def _stamp(org: Org) -> datetime:
    return org.clock.now().astimezone(UTC).replace(microsecond=0)


class Batch:
    def __init__(self, job: Bulk1Job, batch_id: str, data: bytes, request_type: str):
        self.job = job
        self.id = batch_id
        self.data = data
        self.request_type = request_type  # media type the batch was posted with
        self.state = "Queued"
        self.state_message: str | None = None
        self.created = _stamp(job.org)
        self.modstamp = self.created
        self.processed = 0
        self.failed = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.results: list[tuple[str, bool, bool, str | None]] = []  # DML: (id, success, created, error)
        self.result_ids: list[str] = []
        self.result_files: dict[str, str] = {}  # query: result id -> file path

    def processing_ms(self) -> int:
        if self.started is None:
            return 0
        return int(((self.finished or time.monotonic()) - self.started) * 1000)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "jobId": self.job.id, "state": self.state}
        if self.state_message:
            out["stateMessage"] = self.state_message
        out.update(
            {
                "createdDate": self.created,
                "systemModstamp": self.modstamp,
                "numberRecordsProcessed": self.processed,
                "numberRecordsFailed": self.failed,
                "totalProcessingTime": self.processing_ms(),
                "apiActiveProcessingTime": self.processing_ms(),
                "apexProcessingTime": 0,
            }
        )
        return out


class Bulk1Job:
    def __init__(
        self,
        registry: Bulk1Jobs,
        job_id: str,
        operation: str,
        obj: ObjectDef,
        content_type: str,
        concurrency: str,
        external_id: str | None,
        user_id: str,
        api_version: str,
    ):
        self.registry = registry
        self.org = registry.org
        self.id = job_id
        self.operation = operation
        self.object = obj.name
        self.content_type = content_type
        self.concurrency = concurrency
        self.external_id = external_id
        self.created_by = user_id
        self.api_version = api_version
        self.created = _stamp(self.org)
        self.modstamp = self.created
        self.state = "Open"
        self.batches: dict[str, Batch] = {}
        self.queue: list[Batch] = []
        self.lock = threading.Lock()
        self.worker: threading.Thread | None = None

    @property
    def is_query(self) -> bool:
        return self.operation in ("query", "queryAll")

    def info(self) -> dict[str, Any]:
        with self.lock:
            batches = list(self.batches.values())
            out: dict[str, Any] = {
                "id": self.id,
                "operation": self.operation,
                "object": self.object,
                "createdById": self.created_by,
                "createdDate": self.created,
                "systemModstamp": self.modstamp,
                "state": self.state,
            }
            if self.external_id:
                out["externalIdFieldName"] = self.external_id
            count = {
                s: sum(1 for b in batches if b.state == s) for s in ("Queued", "InProgress", "Completed", "Failed")
            }
            out.update(
                {
                    "concurrencyMode": self.concurrency,
                    "contentType": self.content_type,
                    "numberBatchesQueued": count["Queued"],
                    "numberBatchesInProgress": count["InProgress"],
                    "numberBatchesCompleted": count["Completed"],
                    "numberBatchesFailed": count["Failed"],
                    "numberBatchesTotal": len(batches),
                    "numberRecordsProcessed": sum(b.processed for b in batches),
                    "numberRetries": 0,
                    "apiVersion": float(self.api_version),
                    "numberRecordsFailed": sum(b.failed for b in batches),
                    "totalProcessingTime": sum(b.processing_ms() for b in batches),
                    "apiActiveProcessingTime": sum(b.processing_ms() for b in batches),
                    "apexProcessingTime": 0,
                }
            )
            return out


class Bulk1Jobs:
    """The Bulk API 1.0 jobs of one org (memory only). Ids: jobs 750, batches 751, results 752."""

    def __init__(self, org: Org):
        self.org = org
        self.jobs: dict[str, Bulk1Job] = {}
        self.lock = threading.Lock()
        self.bulk2 = registry(org)  # its files folder and stamps are shared

    def new_id(self, prefix: str) -> str:
        store = self.org.store
        key = "bulk_job_counter" if prefix == "750" else f"bulk1_{prefix}_counter"
        with store.lock:
            n = int(store.get_meta(key) or 0) + 1
            store.set_meta(key, n)
        return ids.make_id(prefix, n)

    def get(self, job_id: str) -> Bulk1Job:
        rid = ids.normalize(job_id)
        with self.lock:
            job = self.jobs.get(rid or "")
        if job is None:
            raise Bulk1Error("InvalidJob", f"Unable to find job: {job_id}")
        return job


def jobs_of(org: Org) -> Bulk1Jobs:
    reg = getattr(org, "_bulk1_jobs", None)
    if reg is None:
        reg = Bulk1Jobs(org)
        org._bulk1_jobs = reg  # type: ignore[attr-defined]
    return reg


# ====================================================================== HTTP
def _is_json(request: Request) -> bool:
    return "json" in request.headers.get("content-type", "").lower()


def _answer_json(request: Request, job: Bulk1Job) -> bool:
    """Job and batch info come back in the request's format (XML or JSON; heroku salesforce-bulk creates
    JSON-content jobs in XML and parses XML answers), else in the job's: JSON for JSON jobs, XML for
    XML and CSV jobs (guide: "Work with Batches", CSV examples answer XML batchInfo)."""
    ct = request.headers.get("content-type", "").lower()
    if "json" in ct:
        return True
    if "xml" in ct:
        return False
    return job.content_type == "JSON"


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return escape(str(value))


def _render(root: str, body: dict[str, Any], as_json: bool, status: int = 200) -> Response:
    if as_json:
        out = {k: (v.strftime("%Y-%m-%dT%H:%M:%S.000+0000") if isinstance(v, datetime) else v) for k, v in body.items()}
        return Response(orjson.dumps(out), status_code=status, media_type="application/json")
    inner = "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in body.items())
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>',
        status_code=status,
        media_type="application/xml",
    )


def _error(err: Bulk1Error, as_json: bool) -> Response:
    if as_json:
        return Response(
            orjson.dumps({"exceptionCode": err.code, "exceptionMessage": err.message}),
            status_code=err.status,
            media_type="application/json",
        )
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><error xmlns="{NS}"><exceptionCode>{err.code}'
        f"</exceptionCode><exceptionMessage>{escape(err.message)}</exceptionMessage></error>",
        status_code=err.status,
        media_type="application/xml",
    )


async def handle_bulk1(app: DevOrgApp, request: Request) -> Response:
    """Everything under /services/async/<version>/."""
    org = app.org
    as_json = _is_json(request)
    version = request.path_params["version"]
    parts = [p for p in request.path_params.get("rest", "").split("/") if p]
    try:
        try:
            version = f"{float(version):.1f}"
        except ValueError:
            raise Bulk1Error("InvalidUrl", f"Invalid API version: {request.path_params['version']}") from None
        token = request.headers.get("x-sfdc-session", "")
        auth = request.headers.get("authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:]
        try:
            session = org.session(token.strip())
            org.count_request()
        except SalesforceError as err:
            if err.error_code == "INVALID_SESSION_ID":
                raise Bulk1Error("InvalidSessionId", "Invalid session id") from None
            # the daily API request limit; exceptionCode and status UNVERIFIED against a capture
            raise Bulk1Error("ExceededQuota", err.message, status=403) from None
        if not bulk_api_enabled(org):
            raise Bulk1Error("FeatureNotEnabled", "Bulk API is not enabled for this Organization or Partner")
        reg = jobs_of(org)
        method = request.method
        if parts == ["job"] and method == "POST":
            return await _create_job(reg, request, session.user_id, version)
        if len(parts) < 2 or parts[0] != "job":
            raise Bulk1Error("InvalidUrl", f"unknown resource: {request.url.path}", status=404)
        job = reg.get(parts[1])
        as_json = _answer_json(request, job)
        rest = parts[2:]
        if not rest:
            if method == "GET":
                return _render("jobInfo", job.info(), as_json)
            return await _update_job(job, request, as_json)
        if rest[0] != "batch":
            raise Bulk1Error("InvalidUrl", f"unknown resource: {request.url.path}", status=404)
        if len(rest) == 1:
            if method == "POST":
                return await _add_batch(reg, job, request, as_json)
            with job.lock:
                infos = [b.info() for b in job.batches.values()]
            return _batch_list(infos, as_json)
        batch = job.batches.get(ids.normalize(rest[1]) or "")
        if batch is None:
            raise Bulk1Error("InvalidBatch", f"Unable to find batch for id: {rest[1]}")
        if len(rest) == 2:
            with job.lock:
                return _render("batchInfo", batch.info(), as_json)
        if rest[2] == "request" and len(rest) == 3:
            return _bare(batch.data, _media_type(job.content_type))
        if rest[2] == "result":
            return await asyncio.to_thread(_result, job, batch, rest[3] if len(rest) > 3 else None)
        raise Bulk1Error("InvalidUrl", f"unknown resource: {request.url.path}", status=404)
    except Bulk1Error as err:
        return _error(err, as_json)


def _media_type(content_type: str) -> str:
    return {"CSV": "text/csv", "JSON": "application/json"}.get(content_type, "application/xml")


def _bare(body: bytes | str, media_type: str) -> Response:
    """A response whose Content-Type is exactly `media_type` (Starlette would add `; charset=utf-8` to text
    types, and heroku salesforce-bulk compares `text/csv` exactly)."""
    return Response(body, headers={"content-type": media_type})


def _batch_list(infos: list[dict[str, Any]], as_json: bool) -> Response:
    if as_json:
        return Response(
            orjson.dumps({"batchInfo": [_render_json_dates(i) for i in infos]}), media_type="application/json"
        )
    inner = "".join(
        "<batchInfo>" + "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in i.items()) + "</batchInfo>" for i in infos
    )
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><batchInfoList xmlns="{NS}">{inner}</batchInfoList>',
        media_type="application/xml",
    )


def _render_json_dates(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.strftime("%Y-%m-%dT%H:%M:%S.000+0000") if isinstance(v, datetime) else v) for k, v in info.items()}


def _parse_info(raw: bytes, as_json: bool) -> dict[str, str]:
    if as_json:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Bulk1Error("InvalidJob", f"Unable to parse job: {exc}") from None
        if not isinstance(body, dict):
            raise Bulk1Error("InvalidJob", "Unable to parse job: a JSON object is required")
        return {k: v for k, v in body.items()}
    try:
        root = ElementTree.fromstring(raw.strip())
    except ElementTree.ParseError as exc:
        raise Bulk1Error("InvalidXML", f"Unable to parse XML: {exc}") from None
    return {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root}


_CONCURRENCY = {
    "parallel": "Parallel",
    "serial": "Serial",
    "0": "Parallel",
    "1": "Serial",
    "false": "Parallel",
    "true": "Serial",
}


async def _create_job(reg: Bulk1Jobs, request: Request, user_id: str, version: str) -> Response:
    as_json = _is_json(request)
    info = _parse_info(await request.body(), as_json)
    operation = info.get("operation")
    if operation not in OPERATIONS:
        raise Bulk1Error("InvalidJob", f"Invalid operation: {operation}" if operation else "Operation is required")
    object_name = info.get("object")
    if not object_name:
        raise Bulk1Error("InvalidJob", "Object is required")
    obj = reg.org.schema.find(str(object_name))
    if obj is None:
        raise Bulk1Error("InvalidJob", f"Unable to find object: {object_name}")
    content_type = str(info.get("contentType") or "XML")
    if content_type not in CONTENT_TYPES:
        note = " (devorg does not emulate the ZIP content types)" if content_type.startswith("ZIP") else ""
        raise Bulk1Error("InvalidJob", f"Invalid content type: {content_type}{note}")
    concurrency = _CONCURRENCY.get(str(info.get("concurrencyMode", "Parallel")).lower())
    if concurrency is None:
        raise Bulk1Error("InvalidJob", f"Invalid concurrency mode: {info.get('concurrencyMode')}")
    external_id = info.get("externalIdFieldName") or None
    if operation == "upsert":
        if not external_id:
            raise Bulk1Error("InvalidJob", "External ID field name is required for upsert")
        f = obj.by_lower.get(str(external_id).lower())
        if f is None or not (f.external_id or f.name == "Id"):
            raise Bulk1Error("InvalidJob", f"Invalid external ID field: {external_id} on {obj.name}")
        external_id = f.name
    if operation in ("query", "queryAll") and not obj.global_entry("59.0").get("queryable", True):
        raise Bulk1Error("InvalidJob", f"Entity '{obj.name}' is not supported by the Bulk API.")
    job = Bulk1Job(
        reg,
        reg.new_id("750"),
        operation,
        obj,
        content_type,
        concurrency,
        str(external_id) if external_id else None,
        user_id,
        version,
    )
    with reg.lock:
        reg.jobs[job.id] = job
    return _render("jobInfo", job.info(), as_json, status=201)


async def _update_job(job: Bulk1Job, request: Request, as_json: bool) -> Response:
    info = _parse_info(await request.body(), _is_json(request))
    wanted = info.get("state")
    with job.lock:
        if wanted == "Closed":
            if job.state != "Open":
                raise Bulk1Error("InvalidJobState", f"Job is not open: {job.state}")
            job.state = "Closed"
        elif wanted == "Aborted":
            if job.state not in ("Open", "Closed"):
                raise Bulk1Error("InvalidJobState", f"Job is already {job.state}")
            job.state = "Aborted"
            for b in job.queue:
                b.state = "NotProcessed"
                b.modstamp = _stamp(job.org)
            job.queue.clear()
        else:
            raise Bulk1Error("InvalidJob", f"Invalid state: {wanted}")
        job.modstamp = _stamp(job.org)
    return _render("jobInfo", job.info(), as_json)


async def _add_batch(reg: Bulk1Jobs, job: Bulk1Job, request: Request, as_json: bool) -> Response:
    data = await request.body()
    with job.lock:
        if job.state != "Open":
            raise Bulk1Error("InvalidJobState", f"Unable to add batch to job in state {job.state}: the job is not open")
    if len(data) > MAX_BATCH_BYTES:
        raise Bulk1Error("ExceededQuota", f"Batch size exceeds the limit of {MAX_BATCH_BYTES} bytes")
    batch = Batch(job, reg.new_id("751"), data, request.headers.get("content-type", ""))
    with job.lock:
        job.batches[batch.id] = batch
        job.queue.append(batch)
        if job.worker is None or not job.worker.is_alive():
            job.worker = threading.Thread(target=_work, args=(reg, job), name=f"bulk1-{job.id}", daemon=True)
            job.worker.start()
        info = batch.info()
    return _render("batchInfo", info, as_json, status=201)


# ====================================================================== processing
def _work(reg: Bulk1Jobs, job: Bulk1Job) -> None:
    while True:
        with job.lock:
            if not job.queue:
                job.worker = None
                return
            batch = job.queue.pop(0)
            batch.state = "InProgress"
            batch.started = time.monotonic()
            batch.modstamp = _stamp(job.org)
        try:
            if job.is_query:
                _run_query(reg, job, batch)
            else:
                _run_dml(reg, job, batch)
            final, message = "Completed", None
        except Bulk1Error as err:
            final, message = "Failed", f"{err.code} : {err.message}"
        except _JobFailure as failure:
            final, message = "Failed", str(failure)
        except SalesforceError as err:
            final, message = "Failed", f"InvalidBatch : Failed to process query: {err.error_code}: {err.message}"
        except Exception as exc:  # noqa: BLE001 - a batch fails, the server goes on
            final, message = "Failed", f"Unknown : {exc}"
        with job.lock:
            batch.state = final
            batch.state_message = message
            batch.finished = time.monotonic()
            batch.modstamp = _stamp(job.org)


# ----------------------------------------------------------------- records in, as CSV rows
def _records(job: Bulk1Job, obj: ObjectDef, data: bytes) -> tuple[list[str], list[list[str]]]:
    """The batch's records as a header and rows of Bulk CSV strings, whatever format they came in."""
    if job.content_type == "CSV":
        try:
            text = data.decode("utf-8-sig")
            rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise Bulk1Error("InvalidBatch", f"Failed to parse CSV: {exc}") from None
        if not rows:
            raise Bulk1Error("InvalidBatch", "Records not processed: no header row")
        return rows[0], rows[1:]
    if job.content_type == "JSON":
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Bulk1Error("InvalidBatch", f"Failed to parse JSON: {exc}") from None
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            raise Bulk1Error("InvalidBatch", "Records not processed: a JSON array of records is required")
        flat = [_flatten_json(obj, r) for r in body]
    else:
        try:
            root = ElementTree.fromstring(data.strip())
        except ElementTree.ParseError as exc:
            raise Bulk1Error("InvalidBatch", f"Failed to parse XML: {exc}") from None
        flat = [_flatten_xml(s) for s in root if s.tag.rsplit("}", 1)[-1] == "sObject"]
    header: list[str] = []
    seen: set[str] = set()
    for rec in flat:
        for k in rec:
            if k.lower() not in seen:
                seen.add(k.lower())
                header.append(k)
    return header, [[rec.get(h, "") for h in header] for rec in flat]


def _json_scalar(obj: ObjectDef | None, name: str, value: Any) -> str:
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    f = obj.by_lower.get(name.lower()) if obj is not None else None
    if isinstance(value, int | float) and f is not None and f.type in ("datetime", "date"):
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)  # JSON dates may be epoch milliseconds
        return format_datetime(moment) if f.type == "datetime" else moment.date().isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if f is not None and f.type == "int" else repr(value)
    return str(value)


def _flatten_json(obj: ObjectDef, rec: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in rec.items():
        if k == "attributes":
            continue
        if isinstance(v, dict):
            for sub, subv in v.items():
                if sub != "attributes":
                    out[f"{k}.{sub}"] = _json_scalar(None, sub, subv)
            continue
        out[k] = _json_scalar(obj, k, v)
    return out


def _flatten_xml(el: ElementTree.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for child in el:
        name = child.tag.rsplit("}", 1)[-1]
        if len(child):
            for sub in child:
                out[f"{name}.{sub.tag.rsplit('}', 1)[-1]}"] = sub.text or ""
            continue
        nil = child.get(f"{{{XSI}}}nil") == "true"
        out[name] = "#N/A" if nil else (child.text or "")
    return out


def _run_dml(reg: Bulk1Jobs, job: Bulk1Job, batch: Batch) -> None:
    org = reg.org
    obj = org.schema.get(job.object)
    header, rows = _records(job, obj, batch.data)
    if len(rows) > MAX_BATCH_RECORDS:
        raise Bulk1Error("InvalidBatch", f"Records not processed: exceeded {MAX_BATCH_RECORDS} records in a batch")
    # The Bulk 2.0 row machinery works on a Job; this one is never registered as a 2.0 job.
    carrier = Bulk2Job(
        reg.bulk2,
        batch.id,
        "ingest",
        job.operation,
        obj.name,
        job.created_by,
        job.api_version,
        "COMMA",
        "LF",
        external_id_field=job.external_id,
        faults=org.faults,
    )
    try:
        plan = _column_plan(org, obj, header)
        run = _IngestRun(reg.bulk2, carrier, obj, plan)
        store = org.store
        for start in range(0, len(rows), INGEST_CHUNK):
            with job.lock:
                if job.state == "Aborted":
                    return
            chunk = rows[start : start + INGEST_CHUNK]
            with store.lock, store.transaction():
                results = [run.apply(row) for row in chunk]
            with job.lock:
                for res in results:
                    batch.results.append((res.rid, res.error is None, res.created, res.error))
                batch.processed += len(results)
                batch.failed += sum(1 for r in results if r.error is not None)
    finally:
        carrier.remove_files()


def _split_error(text: str) -> dict[str, Any]:
    """`CODE:message:field field --` (the Bulk CSV error text) as a save error."""
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    return {"statusCode": code, "message": message, "fields": [f for f in fields.replace("--", " ").split() if f]}


def _run_query(reg: Bulk1Jobs, job: Bulk1Job, batch: Batch) -> None:
    org = reg.org
    try:
        text = batch.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Bulk1Error("InvalidBatch", "the query is not UTF-8 text") from None
    include_deleted = job.operation == "queryAll"
    try:
        cq = org.queries.compile(text, include_deleted=include_deleted)
    except SalesforceError as err:
        raise Bulk1Error("InvalidBatch", f"Failed to process query: {err.error_code}: {err.message}") from None
    if cq.obj.name != job.object:
        raise Bulk1Error(
            "InvalidBatch",
            f"Failed to process query: the query's object {cq.obj.name} is not the job's object {job.object}",
        )
    result_id = reg.new_id("752")
    # The Bulk 2.0 query machinery writes the CSV (same validation, same value formats, every value quoted);
    # its carrier job is never registered as a 2.0 job, and its folder holds this batch's result files.
    carrier = Bulk2Job(
        reg.bulk2,
        batch.id,
        "query",
        job.operation,
        job.object,
        job.created_by,
        job.api_version,
        "COMMA",
        "LF",
        query=text,
    )
    path = carrier.dir / f"{result_id}.{job.content_type.lower()}"
    count = 0
    try:
        source = _CsvSource.open(org, carrier)  # Bulk query rules (no aggregates, OFFSET, compound fields)
    except SalesforceError as err:
        raise Bulk1Error("InvalidBatch", f"Failed to process query: {err.error_code}: {err.message}") from None
    try:
        if job.content_type == "CSV":
            with open(path, "wb") as out:
                out.write(source.header_bytes)
                for data, lens in source.chunks():
                    out.write(data)
                    count += len(lens)
    finally:
        source.close()
    if job.content_type != "CSV":
        with open(path, "w", encoding="utf-8") as out:
            count = _write_records(org, job, text, include_deleted, out)
    if count == 0 and job.content_type == "CSV":
        path.write_text("Records not found for this query", encoding="utf-8")
    with job.lock:
        batch.result_ids = [result_id]
        batch.result_files[result_id] = str(path)
        batch.processed = count


def _write_records(org: Org, job: Bulk1Job, text: str, include_deleted: bool, out: Any) -> int:
    """JSON (an array) or XML (`<queryResult>`) records, read page by page from the REST query engine."""
    page = org.queries.run(
        text, include_deleted=include_deleted, batch_size=2000, api_version=job.api_version, user_id=job.created_by
    )
    count = 0
    if job.content_type == "JSON":
        out.write("[")
    else:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?><queryResult xmlns="{NS}" xmlns:xsi="{XSI}">')
    while True:
        for rec in page["records"]:
            if job.content_type == "JSON":
                out.write(("," if count else "") + orjson.dumps(_epoch_dates(org, rec)).decode())
            else:
                out.write(_xml_record("records", rec))
            count += 1
        if page.get("done", True):
            break
        page = org.queries.more(page["nextRecordsUrl"], job.api_version)
    out.write("]" if job.content_type == "JSON" else "</queryResult>")
    return count


def _epoch_dates(org: Org, rec: dict[str, Any]) -> dict[str, Any]:
    """Bulk API 1.0 JSON query results give datetime (and date, UNVERIFIED) fields as epoch ms."""
    obj = org.schema.find(rec.get("attributes", {}).get("type", ""))
    out: dict[str, Any] = {}
    for k, v in rec.items():
        f = obj.by_lower.get(k.lower()) if obj is not None else None
        if isinstance(v, dict) and k != "attributes" and "attributes" in v:
            out[k] = _epoch_dates(org, v)
        elif f is not None and isinstance(v, str) and f.type in ("datetime", "date"):
            moment = parse_datetime(v if f.type == "datetime" else v + "T00:00:00Z")
            out[k] = int(moment.timestamp() * 1000)
        else:
            out[k] = v
    return out


def _xml_record(tag: str, rec: dict[str, Any]) -> str:
    attrs = rec.get("attributes") or {}
    parts = [f'<{tag} xsi:type="sObject"><type>{escape(str(attrs.get("type", "")))}</type>']
    for k, v in rec.items():
        if k == "attributes":
            continue
        if isinstance(v, dict) and "attributes" in v:
            parts.append(_xml_record(k, v))
        elif v is None:
            parts.append(f'<{k} xsi:nil="true"/>')
        elif isinstance(v, dict):  # compound values are not selectable in Bulk queries
            continue
        else:
            if isinstance(v, str) and _REST_DATETIME.match(v):
                v = v[:-5] + "Z"  # XML gives datetimes in UTC as ...000Z
            parts.append(f"<{k}>{_xml_value(v)}</{k}>")
    parts.append(f"</{tag}>")
    return "".join(parts)


# ----------------------------------------------------------------- results
def _result(job: Bulk1Job, batch: Batch, result_id: str | None) -> Response:
    with job.lock:
        state = batch.state
    if state in ("Queued", "InProgress"):
        raise Bulk1Error("InvalidBatch", f"Batch not completed: {state}")
    if state in ("Failed", "NotProcessed") and not batch.results and not batch.result_ids:
        raise Bulk1Error("InvalidBatch", f"Batch {state}: {batch.state_message or 'not processed'}")
    ct = job.content_type
    if job.is_query:
        if result_id is None:
            if ct == "JSON":
                return Response(orjson.dumps(batch.result_ids), media_type="application/json")
            inner = "".join(f"<result>{r}</result>" for r in batch.result_ids)
            # XML for XML and CSV jobs alike (guide: "Get Results for a Batch", query example)
            return Response(
                f'<?xml version="1.0" encoding="UTF-8"?><result-list xmlns="{NS}">{inner}</result-list>',
                media_type="application/xml",
            )
        path = batch.result_files.get(ids.normalize(result_id) or "")
        if path is None:
            raise Bulk1Error("InvalidBatch", f"Unable to find result for id: {result_id}")
        response = FileResponse(path)
        response.headers["content-type"] = _media_type(ct)
        return response
    if result_id is not None:
        raise Bulk1Error("InvalidUrl", "DML batches have one result", status=404)
    if ct == "CSV":
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(["Id", "Success", "Created", "Error"])
        for rid, ok, created, error in batch.results:
            w.writerow([rid, "true" if ok else "false", "true" if created else "false", error or ""])
        return _bare(buf.getvalue(), "text/csv")
    if ct == "JSON":
        return Response(
            orjson.dumps(
                [
                    {
                        "success": ok,
                        "created": created,
                        "id": rid or None,
                        "errors": [] if ok else [_split_error(error or "")],
                    }
                    for rid, ok, created, error in batch.results
                ]
            ),
            media_type="application/json",
        )
    parts = []
    for rid, ok, created, error in batch.results:
        errs = ""
        if not ok:
            e = _split_error(error or "")
            errs = (
                "<errors>"
                + "".join(f"<fields>{escape(f)}</fields>" for f in e["fields"])
                + f"<message>{escape(e['message'])}</message><statusCode>{e['statusCode']}</statusCode></errors>"
            )
        id_part = f"<id>{rid}</id>" if rid else '<id xsi:nil="true"/>'
        parts.append(
            f"<result>{errs}{id_part}<success>{'true' if ok else 'false'}</success>"
            f"<created>{'true' if created else 'false'}</created></result>"
        )
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><results xmlns="{NS}" xmlns:xsi="{XSI}">'
        + "".join(parts)
        + "</results>",
        media_type="application/xml",
    )
