"""Reading records by id and writing them back: sObject Collections, Bulk API 2.0 ingest, SOAP undelete.

Every write function returns one `WriteResult` per input record, in input order, and never raises for
a record that failed alone (only for a call that failed as a whole after `SalesforceClient.call`'s
retries). Records refused with UNABLE_TO_LOCK_ROW are retried in a later call, after the others, since
the lock is usually held by automation working on the same parent for a moment. Callers that must log
what was written as it happens pass `on_written`, called after each call with its successes.

Serial writes (`client.serial_writes`, for orgs whose automation locks shared parents): Bulk API 2.0 ingest has
no serial mode: it splits a job into batches that Salesforce processes in parallel (Bulk API 2.0 and Bulk API
Developer Guide, "What's the Difference Between Bulk API 2.0 and Bulk API?": "Support for parallel processing";
its job info reports `concurrencyMode: Parallel` only), and parallel batches updating records under the same
parent contend for its lock ("General Guidelines for Data Loads": "Parallel processing ... has the potential to
cause lock contention on records"; serial mode "minimizes" it at the cost of time). Only Bulk API 1.0 offers
`concurrencyMode: Serial`. With serial writes, `bulk_update` and `bulk_create` send the records instead through
sObject Collections, 200 a call, one call after the other: each call is one transaction, and the next starts
only once it has committed, so no two of the restore's transactions ever wait for each other's locks (Data
Loader's "Enable serial mode for Bulk API" gives the same guarantee). It costs one API call per 200 records
instead of a few per job.

A caller that keeps a write-ahead journal passes a `WriteJournal`: `before` runs (and must commit) before
each call with the records that call sends, `job` as soon as a Bulk job has an id, `after` once the call
answered, with every record's result. A create is never sent twice blindly: when its answer is lost
(dropped connection, timeout, 5xx: the org may have created the records anyway; REST API writes take no
idempotency key, only UI API does), its records come back `outcome_unknown` and the caller must find what
the call created before sending them again (restore/journal.py does).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote_plus
from xml.etree import ElementTree

import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceResourceNotFound
from simple_salesforce.util import exception_handler

from . import soql
from .client import URL_BUDGET, SalesforceClient
from .errors import InvalidSession, SalesforceWriteError

log = logging.getLogger(__name__)

COLLECTION_SIZE = 200  # sObject Collections: at most 200 records a call
RETRIEVE_SIZE = 2000  # sObject Collections retrieve (POST): at most 2000 ids a call
SOQL_ID_CHUNK = 300  # ids per `WHERE Id IN (...)` at most; fewer when the field list is long (ids_per_query)
UNDELETE_SIZE = 200  # SOAP undelete: at most 200 ids a call
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})
TERMINAL_JOB_STATES = ("JobComplete", "Failed", "Aborted")

OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # the call's answer was lost: the org may or may not have written

OnWritten = Callable[[list[tuple[Mapping[str, Any], "WriteResult"]]], None]


class WriteJournal(Protocol):
    """A write-ahead log of the calls a write function makes (see the module docstring)."""

    def before(self, records: Sequence[Mapping[str, Any]]) -> Any:
        """Log the records one call is about to send (committed on return); returns the call's token."""

    def job(self, token: Any, job_id: str) -> None:
        """The Bulk job that carries the call's records (committed on return)."""

    def after(self, token: Any, pairs: Sequence[tuple[Mapping[str, Any], WriteResult]]) -> None:
        """Every record of the call with the org's answer (an `outcome_unknown` one stays pending)."""


@dataclass(frozen=True)
class WriteResult:
    """The org's answer for one record: its id, success, and errors as `{statusCode, message, fields}`."""

    id: str | None
    success: bool
    errors: tuple[Mapping[str, Any], ...] = ()
    created: bool = False

    @property
    def codes(self) -> list[str]:
        return [str(e.get("statusCode") or e.get("errorCode") or "") for e in self.errors]

    @property
    def outcome_unknown(self) -> bool:
        """The call's answer was lost: the org may have written this record (check before writing again)."""
        return OUTCOME_UNKNOWN in self.codes

    @property
    def retryable(self) -> bool:
        return not self.success and any(code in RETRYABLE_CODES for code in self.codes)

    @property
    def message(self) -> str:
        parts = []
        for e in self.errors:
            fields = e.get("fields") or []
            code = e.get("statusCode") or e.get("errorCode") or "ERROR"
            parts.append(f"{code}: {e.get('message', '')}" + (f" ({', '.join(fields)})" if fields else ""))
        return "; ".join(parts) or ("ok" if self.success else "failed without an error message")


def failure(record_id: str | None, code: str, message: str) -> WriteResult:
    return WriteResult(record_id, False, ({"statusCode": code, "message": message, "fields": []},))


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ===================================================================== reads
def fetch_records(
    client: SalesforceClient, sobject: str, ids: Sequence[str], fields: Sequence[str]
) -> dict[str, dict[str, Any] | None]:
    """Current values of records by id via sObject Collections retrieve, ids and fields in the request body
    (POST, 2000 ids a call): the GET form puts them in the URL, which Salesforce refuses past 16,384 bytes
    (414 URI Too Long, about 800 ids; REST API guide, "Get Records Using sObject Collections").

    Deleted, missing and inaccessible records come back as None (use `query_by_ids` with queryAll to
    tell the recycle bin from a record that is gone).
    """
    sobject = soql.api_name(sobject, "object")
    wanted = soql.field_names(["Id", *fields])
    ids = soql.record_ids(ids)
    out: dict[str, dict[str, Any] | None] = {}
    for chunk in _chunks(ids, RETRIEVE_SIZE):
        body = {"ids": list(chunk), "fields": wanted}
        answer = client.restful(f"composite/sobjects/{sobject}", method="POST", json=body) or []
        for rid, rec in zip(chunk, answer, strict=False):
            if rec is not None:
                rec.pop("attributes", None)
            out[rid] = rec
        for rid in chunk[len(answer) :]:
            out[rid] = None
    return out


def ids_per_query(head: str) -> int:
    """How many ids a `WHERE Id IN (...)` query starting with `head` may carry so that its GET URL stays
    within Salesforce's 16,384-byte URI limit (414 URI Too Long past it; API Request Limits and Allocations),
    at most SOQL_ID_CHUNK. A field list too long for even one id is an error that names the problem."""
    room = URL_BUDGET - len(quote_plus(head))
    per_id = len(quote_plus("'001000000000000AAA', "))
    if room < per_id:
        raise SalesforceWriteError(
            f"the field list of `{head[:80]}...` alone makes a query URL longer than "
            f"Salesforce accepts ({URL_BUDGET:,} bytes here); read fewer fields at a time"
        )
    return max(1, min(SOQL_ID_CHUNK, room // per_id))


def query_by_ids(
    client: SalesforceClient, sobject: str, ids: Sequence[str], fields: Sequence[str], include_deleted: bool = True
) -> dict[str, dict[str, Any]]:
    """Records by id through SOQL (queryAll by default, so records in the recycle bin come with IsDeleted).

    When the field list alone is too long for a query URL (objects of 700+ fields), through Bulk API 2.0 jobs
    of 2000 ids each (the query is POSTed in the body), whose values are CSV text (None for empty)."""
    sobject = soql.api_name(sobject, "object")
    wanted = soql.field_names(["Id", *fields])
    head = f"SELECT {', '.join(wanted)} FROM {sobject} WHERE Id IN ("
    out: dict[str, dict[str, Any]] = {}
    if len(quote_plus(head)) + 2 * len(quote_plus("'001000000000000AAA', ")) > URL_BUDGET:
        for chunk in _chunks(soql.record_ids(ids), RETRIEVE_SIZE):
            for rec in client.records_by_soql(f"{head}{soql.id_list(chunk)})", include_deleted=include_deleted):
                out[rec["Id"]] = rec
        return out
    for chunk in _chunks(soql.record_ids(ids), ids_per_query(head)):
        query = f"{head}{soql.id_list(chunk)})"
        for page in client.query_pages(query, include_deleted=include_deleted):
            for rec in page:
                out[rec["Id"]] = rec
    return out


def current_user_id(client: SalesforceClient) -> str | None:
    """The id of the user the client acts as (OAuth userinfo, which also accepts a SOAP session id)."""
    try:
        resp = _send(client, "GET", lambda: f"https://{client.sf.sf_instance}/services/oauth2/userinfo", "userinfo")
        return resp.json().get("user_id")
    except Exception as exc:  # noqa: BLE001 - the audit then records the alias only
        log.warning("could not read the acting user of org %s: %s", client.alias, exc)
        return None


def _write_in_rounds(
    records: Sequence[Mapping[str, Any]],
    chunk_size: int,
    send: Callable[[Sequence[int], Any], list[WriteResult]],
    on_written: OnWritten | None,
    lock_rounds: int,
    wait: float,
    what: str,
    journal: WriteJournal | None = None,
) -> list[WriteResult]:
    """Send records in chunks; rows refused with UNABLE_TO_LOCK_ROW go again in later rounds, with backoff.

    `send(chunk, token)` answers one WriteResult per index of its chunk, in order (`token`: the journal's, for
    `journal.job`); `on_written` sees each chunk's successes, `journal.after` every answer.
    """
    results: list[WriteResult | None] = [None] * len(records)
    pending: Sequence[int] = list(range(len(records)))
    for round_no in range(lock_rounds + 1):
        retry: list[int] = []
        for chunk in _chunks(pending, chunk_size):
            written = []
            token = journal.before([records[i] for i in chunk]) if journal is not None else None
            answers = send(chunk, token)
            if journal is not None:
                journal.after(token, [(records[i], r) for i, r in zip(chunk, answers, strict=True)])
            for i, result in zip(chunk, answers, strict=True):
                if result.retryable and round_no < lock_rounds:
                    retry.append(i)
                    continue
                results[i] = result
                if result.success:
                    written.append((records[i], result))
            if on_written and written:
                on_written(written)
        if not retry:
            break
        log.info("%d %s locked, retrying them (round %d)", len(retry), what, round_no + 1)
        time.sleep(wait * (2**round_no))
        pending = retry
    return [r if r is not None else failure(None, "NOT_ATTEMPTED", "not attempted") for r in results]


# ===================================================================== sObject Collections
def update_records(
    client: SalesforceClient,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    *,
    on_written: OnWritten | None = None,
    lock_rounds: int = 4,
    lock_wait: float | None = None,
    journal: WriteJournal | None = None,
) -> list[WriteResult]:
    """Update records (each a dict with `Id`) via sObject Collections PATCH, 200 a call, allOrNone false.

    An update sets values, so repeating it after a lost answer writes the same values again: it is retried."""
    client.ensure_session()
    return _collections(client, "PATCH", sobject, records, on_written, lock_rounds, lock_wait, journal)


def create_records(
    client: SalesforceClient,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    *,
    on_written: OnWritten | None = None,
    journal: WriteJournal | None = None,
) -> list[WriteResult]:
    """Create records via sObject Collections POST, 200 a call; results carry the new ids.

    A create is never repeated after a lost answer (dropped connection, timeout, 5xx): the org may have
    created the records. Those records come back with OUTCOME_UNKNOWN, so the caller finds what the call
    created before sending the rest again.
    """
    client.ensure_session()
    return _collections(client, "POST", sobject, records, on_written, 4, None, journal)


def _collections(
    client: SalesforceClient,
    method: str,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    on_written: OnWritten | None,
    lock_rounds: int,
    lock_wait: float | None,
    journal: WriteJournal | None,
) -> list[WriteResult]:
    def send(chunk: Sequence[int], _token: Any) -> list[WriteResult]:
        body = {"allOrNone": False, "records": [{"attributes": {"type": sobject}, **records[i]} for i in chunk]}
        try:
            answer = _collection_call(client, method, body)
        except _OutcomeUnknown as exc:
            return [failure(None, OUTCOME_UNKNOWN, f"{exc}; find what it created before creating again") for _ in chunk]
        return [
            WriteResult(
                raw.get("id"),
                bool(raw.get("success")),
                tuple(raw.get("errors") or ()),
                bool(raw.get("created", method == "POST")),
            )
            for raw in answer
        ]

    wait = client.backoff if lock_wait is None else lock_wait
    return _write_in_rounds(
        records, COLLECTION_SIZE, send, on_written, lock_rounds, wait, f"{sobject} records", journal
    )


class _OutcomeUnknown(RuntimeError):
    """A create call whose answer was lost: not retried, since the org may have created the records."""


def _collection_call(client: SalesforceClient, method: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    if method == "PATCH":
        return client.restful("composite/sobjects", method="PATCH", json=body)

    def create() -> list[dict[str, Any]]:
        try:
            return client.sf.restful("composite/sobjects", method="POST", json=body)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
            # a read timeout too: the org got the records and may have created them
            raise _OutcomeUnknown(f"connection lost while creating {len(body['records'])} records: {exc}") from exc
        except SalesforceGeneralError as exc:
            if getattr(exc, "status", 0) >= 500:  # the org (or a proxy) may have committed before failing
                raise _OutcomeUnknown(
                    f"the org answered {exc.status} to a create of {len(body['records'])} records"
                ) from exc
            raise

    return client.call(create, "POST composite/sobjects")


# ===================================================================== SOAP undelete
def undelete(client: SalesforceClient, ids: Sequence[str], *, journal: WriteJournal | None = None) -> list[WriteResult]:
    """Undelete records from the recycle bin with the SOAP partner `undelete` call, 200 ids a call.

    With a `journal`, each call's records (`{"Id": id}`) are logged before it and completed after it."""
    client.ensure_session()
    results: list[WriteResult] = []
    for chunk in _chunks(soql.record_ids(ids), UNDELETE_SIZE):
        token = journal.before([{"Id": rid} for rid in chunk]) if journal is not None else None

        def envelope(chunk: Sequence[str] = chunk) -> bytes:  # per attempt: a re-login brings a new session id
            return (
                '<?xml version="1.0" encoding="utf-8"?>'
                '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:urn="urn:partner.soap.sforce.com"><soapenv:Header><urn:SessionHeader>'
                f"<urn:sessionId>{_xml_text(client.sf.session_id)}</urn:sessionId></urn:SessionHeader>"
                "</soapenv:Header><soapenv:Body><urn:undelete>"
                + "".join(f"<urn:ids>{_xml_text(rid)}</urn:ids>" for rid in chunk)
                + "</urn:undelete></soapenv:Body></soapenv:Envelope>"
            ).encode("utf-8")

        resp = _send(
            client,
            "POST",
            lambda: f"https://{client.sf.sf_instance}/services/Soap/u/{client.sf.sf_version}",
            "SOAP undelete",
            body=envelope,
            soap=True,
            headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "undelete"},
        )
        answers = _soap_results(resp.content)
        if len(answers) != len(chunk):
            raise SalesforceWriteError(f"SOAP undelete answered {len(answers)} results for {len(chunk)} ids")
        answered = [WriteResult(a.id or rid, a.success, a.errors) for rid, a in zip(chunk, answers, strict=True)]
        if journal is not None:
            journal.after(token, [({"Id": rid}, a) for rid, a in zip(chunk, answered, strict=True)])
        results.extend(answered)
    return results


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _soap_results(body: bytes) -> list[WriteResult]:
    root = ElementTree.fromstring(body)
    out = []
    for el in root.iter():
        if _local(el.tag) != "result":
            continue
        values = {_local(c.tag): c for c in el}
        success = (values["success"].text or "").strip() == "true" if "success" in values else False
        errors = []
        for err in (c for c in el if _local(c.tag) == "errors"):
            parts = {_local(c.tag): (c.text or "") for c in err}
            errors.append(
                {
                    "statusCode": parts.get("statusCode", ""),
                    "message": parts.get("message", ""),
                    "fields": [c.text for c in err if _local(c.tag) == "fields" and c.text],
                }
            )
        rid = values["id"].text if "id" in values and values["id"].text else None
        out.append(WriteResult(rid, success, tuple(errors)))
    return out


def _soap_fault(resp: requests.Response) -> tuple[str, str] | None:
    try:
        root = ElementTree.fromstring(resp.content)
    except ElementTree.ParseError:
        return None
    texts = {_local(el.tag): el.text for el in root.iter()}
    if "faultcode" not in texts:
        return None
    return texts.get("faultcode") or "", texts.get("faultstring") or ""


def _send(
    client: SalesforceClient,
    method: str,
    url: str | Callable[[], str],
    what: str,
    *,
    soap: bool = False,
    headers: Mapping[str, str] | None = None,
    body: Callable[[], bytes] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One HTTP call outside simple-salesforce's REST helpers, through the client's budget and retries.

    `url` and `body` may be functions: they are called per attempt, so a repeat after a re-login carries
    the new instance and session id.
    """

    def do() -> requests.Response:
        sent = {
            "Authorization": f"Bearer {client.sf.session_id}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        extra = {"data": body()} if body is not None else {}
        resp = client.sf.session.request(method, url() if callable(url) else url, headers=sent, **kwargs, **extra)
        client._note_usage(resp.headers.get("Sforce-Limit-Info"))  # noqa: SLF001 - same package
        if soap and resp.status_code == 500:
            fault = _soap_fault(resp)
            # SOAP reports an expired session as a fault (sf:INVALID_SESSION_ID), REST as 401
            if fault is not None and fault[0].rsplit(":", 1)[-1] == "INVALID_SESSION_ID":
                raise InvalidSession(f"{what}: {fault[1]}")
            if fault is not None:  # a SOAP fault is the org's answer, not a transient failure
                raise SalesforceWriteError(f"{what} failed: {fault[0]}: {fault[1]}")
        if resp.status_code >= 300:
            exception_handler(resp, what)
        return resp

    return client.call(do, what)


# ===================================================================== Bulk API 2.0 ingest
def bulk_update(
    client: SalesforceClient,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    to_csv: Callable[[Any], str],
    *,
    on_written: OnWritten | None = None,
    lock_rounds: int = 4,
    poll: float = 0.2,
    timeout: float = 3600,
    job_size: int = 150_000,
    journal: WriteJournal | None = None,
) -> list[WriteResult]:
    """Update records through Bulk API 2.0 ingest jobs (update), with per-record results.

    `to_csv` turns a value into its CSV cell (`#N/A` for null; an empty cell leaves a field unchanged,
    so records with fewer fields share a job with the others). Rows that failed with UNABLE_TO_LOCK_ROW
    go into a follow-up job. With a `journal`, each job's id is logged as soon as the org gave it, and the job
    is deleted only after `journal.after`: a run that dies meanwhile leaves a job whose results a rerun reads
    (`ingest_job_outcome`).
    """
    if client.serial_writes:  # no parallel Bulk batches: one sObject Collections call at a time
        return update_records(client, sobject, records, on_written=on_written, lock_rounds=lock_rounds, journal=journal)
    client.ensure_session()
    if journal is not None:
        journal = _DeleteJobAfter(journal, client)

    def send(chunk: Sequence[int], token: Any) -> list[WriteResult]:
        on_job = (lambda job_id: journal.job(token, job_id)) if journal is not None else None
        return _ingest_job(client, sobject, [records[i] for i in chunk], to_csv, poll, timeout, on_job)

    return _write_in_rounds(
        records, job_size, send, on_written, lock_rounds, client.backoff, f"{sobject} rows (in a new job)", journal
    )


class _DeleteJobAfter:
    """A journal's calls, and each ingest job deleted once the journal completed its records (not before: a run
    that dies between the two leaves the job, whose results the next run reads)."""

    def __init__(self, journal: WriteJournal, client: SalesforceClient):
        self.journal, self.client, self.jobs = journal, client, {}

    def before(self, records: Sequence[Mapping[str, Any]]) -> Any:
        return self.journal.before(records)

    def job(self, token: Any, job_id: str) -> None:
        self.jobs[token] = job_id
        self.journal.job(token, job_id)

    def after(self, token: Any, pairs: Sequence[tuple[Mapping[str, Any], WriteResult]]) -> None:
        self.journal.after(token, pairs)
        if token in self.jobs:
            delete_ingest_job(self.client, self.jobs.pop(token))


def _jobs_url(client: SalesforceClient, path: str) -> Callable[[], str]:
    """The URL of an ingest resource, resolved per attempt (a re-login may move the instance)."""
    return lambda: f"https://{client.sf.sf_instance}/services/data/v{client.sf.sf_version}/jobs/ingest{path}"


def _ingest_job(
    client: SalesforceClient,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    to_csv: Callable[[Any], str],
    poll: float,
    timeout: float,
    on_job: Callable[[str], None] | None = None,
) -> list[WriteResult]:
    sobject = soql.api_name(sobject, "object")
    columns = soql.field_names(k for rec in records for k in rec if k != "Id")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Id", *columns])
    for rec in records:
        writer.writerow([rec["Id"], *(to_csv(rec[c]) if c in rec else "" for c in columns)])
    job = _send(
        client,
        "POST",
        _jobs_url(client, ""),
        "bulk ingest create",
        json={
            "object": sobject,
            "operation": "update",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    ).json()
    job_id = job["id"]
    if on_job is not None:
        on_job(job_id)
    _send(
        client,
        "PUT",
        _jobs_url(client, f"/{job_id}/batches"),
        "bulk ingest upload",
        data=buf.getvalue().encode("utf-8"),
        headers={"Content-Type": "text/csv"},
    )
    _send(client, "PATCH", _jobs_url(client, f"/{job_id}"), "bulk ingest close", json={"state": "UploadComplete"})
    try:
        results = _ingest_results(client, sobject, job_id, records, poll, timeout)
        if on_job is None:
            delete_ingest_job(client, job_id)
        return results
    except SalesforceWriteError:
        raise
    except Exception as exc:
        # The job runs on without us: rows it applies are written but reach no caller (nor an audit).
        raise SalesforceWriteError(
            f"Bulk ingest job {job_id} for {sobject} was submitted but its outcome could not be read ({exc}); "
            "it may have updated records: see the job's successfulResults in the org"
        ) from exc


def _wait_for_job(
    client: SalesforceClient, sobject: str, job_id: str, poll: float, timeout: float, longest: float = 2.0
) -> dict[str, Any]:
    """Poll an ingest job until it ends; its job info once JobComplete, else SalesforceWriteError."""
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        state = _send(client, "GET", _jobs_url(client, f"/{job_id}"), "bulk ingest poll").json()
        if state["state"] in TERMINAL_JOB_STATES:
            break
        if time.monotonic() > deadline:
            raise SalesforceWriteError(f"Bulk ingest job {job_id} still {state['state']} after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 1.5, longest)
    if state["state"] != "JobComplete":
        raise SalesforceWriteError(
            f"Bulk ingest job {job_id} for {sobject} ended {state['state']}: "
            f"{state.get('errorMessage') or 'no error message'}"
        )
    return state


def _result_kinds(state: Mapping[str, Any]) -> tuple[str, ...]:
    """The result lists of a finished ingest job worth a call: its failedResults only when the job info does not
    say that no record failed (`numberRecordsFailed`, Bulk API 2.0 Developer Guide, "Get Information About a
    Job": "The number of records that were not processed successfully in this job"). One call less per job."""
    if state.get("numberRecordsFailed") == 0:
        return ("successfulResults",)
    return ("successfulResults", "failedResults")


def _ingest_results(
    client: SalesforceClient,
    sobject: str,
    job_id: str,
    records: Sequence[Mapping[str, Any]],
    poll: float,
    timeout: float,
) -> list[WriteResult]:
    state = _wait_for_job(client, sobject, job_id, poll, timeout)
    by_id = _ingest_outcomes(client, job_id, _result_kinds(state))
    return [
        by_id.get(rec["Id"]) or failure(rec["Id"], "NOT_PROCESSED", f"Bulk job {job_id} returned no result")
        for rec in records
    ]


def _ingest_outcomes(
    client: SalesforceClient, job_id: str, kinds: Sequence[str] = ("successfulResults", "failedResults")
) -> dict[str, WriteResult]:
    by_id: dict[str, WriteResult] = {}
    for row, result in _ingest_rows(client, job_id, kinds):
        by_id[row.get("Id") or row.get("sf__Id") or ""] = result
    return by_id


def _ingest_rows(
    client: SalesforceClient, job_id: str, kinds: Sequence[str] = ("successfulResults", "failedResults")
) -> list[tuple[dict[str, str], WriteResult]]:
    """Every row of a finished ingest job's results (successful, then failed) as uploaded, with its result."""
    out = []
    for kind in kinds:
        body = _send(
            client, "GET", _jobs_url(client, f"/{job_id}/{kind}"), f"bulk ingest {kind}", headers={"Accept": "text/csv"}
        ).text
        for row in csv.DictReader(io.StringIO(body)):
            rid = row.get("Id") or row.get("sf__Id") or ""
            if kind == "successfulResults":
                out.append((row, WriteResult(row.get("sf__Id") or rid, True, (), row.get("sf__Created") == "true")))
            else:
                out.append((row, WriteResult(rid or None, False, (_bulk_error(row.get("sf__Error", "")),))))
    return out


def delete_ingest_job(client: SalesforceClient, job_id: str) -> None:
    """Delete an ingest job and its results (best effort: Salesforce removes old jobs itself)."""
    try:
        _send(client, "DELETE", _jobs_url(client, f"/{job_id}"), "bulk ingest delete")
    except Exception as exc:  # noqa: BLE001 - a leftover job costs nothing but a listing entry
        log.info("could not delete bulk ingest job %s: %s", job_id, exc)


def ingest_job_outcome(
    client: SalesforceClient, job_id: str, *, poll: float = 0.2, timeout: float = 3600
) -> dict[str, WriteResult] | None:
    """The per-record results of an ingest job submitted earlier (by a run that died before reading them),
    keyed by record id, once the job has finished; None when the org no longer has the job (deleted, or past
    Salesforce's 7-day retention of job results: then read the records themselves). A job that was never
    closed (still Open) is aborted first: its rows were never processed.
    """
    rows = ingest_job_rows(client, job_id, poll=poll, timeout=timeout)
    if rows is None:
        return None
    return {row.get("Id") or row.get("sf__Id") or "": result for row, result in rows}


def ingest_job_rows(
    client: SalesforceClient, job_id: str, *, poll: float = 0.2, timeout: float = 3600
) -> list[tuple[dict[str, str], WriteResult]] | None:
    """`ingest_job_outcome` as the result rows themselves (each row's cells as uploaded, with its result): an
    insert job's rows carry no Id of the records they were made from, only their values and the new id
    (`sf__Id`), so a caller matches them back by their cells. None when the org no longer has the job."""
    url = _jobs_url(client, f"/{job_id}")
    try:
        state = _send(client, "GET", url, "bulk ingest poll").json()
        if state["state"] == "Open":  # never closed: Salesforce processes no row of it; abort it
            _send(client, "PATCH", url, "bulk ingest abort", json={"state": "Aborted"})
            return []
        deadline = time.monotonic() + timeout
        while state["state"] not in TERMINAL_JOB_STATES:
            if time.monotonic() > deadline:
                raise SalesforceWriteError(f"Bulk ingest job {job_id} still {state['state']} after {timeout}s")
            time.sleep(poll)
            state = _send(client, "GET", url, "bulk ingest poll").json()
        rows = _ingest_rows(client, job_id)
    except SalesforceResourceNotFound:
        return None
    return rows


def _bulk_error(text: str) -> dict[str, Any]:
    """`CODE:message:FIELD1 FIELD2 --` (Bulk API 2.0 failedResults) as a collections-style error."""
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":") if rest.rstrip().endswith("--") else (rest, "", "")
    return {
        "statusCode": code,
        "message": message or rest,
        "fields": [f for f in fields.replace("--", "").split() if f],
    }


# ===================================================================== Bulk API 2.0 insert, collections delete
def bulk_create(
    client: SalesforceClient,
    sobject: str,
    records: Sequence[Mapping[str, Any]],
    to_csv: Callable[[Any], str],
    *,
    poll: float = 0.5,
    timeout: float = 3600,
    journal: WriteJournal | None = None,
) -> list[WriteResult]:
    """Create records through one Bulk API 2.0 ingest job (insert); one WriteResult per record, in input order.

    The results of a job carry the new id (`sf__Id`) and the row as uploaded, but not necessarily in upload
    order (Bulk API 2.0 Developer Guide, "Get Job Successful Record Results"): each result is matched back
    to its record by the row's cells. Rows with identical cells are interchangeable, so any pairing of them
    is right. A job whose results cannot be read raises SalesforceWriteError naming the job: it may have
    created records, which must be looked for before creating them again. With a `journal`, the records are
    logged before the job is created, its id as soon as the org gave it, and the job is deleted only after
    `journal.after`: a run that dies meanwhile leaves a job whose result rows a rerun reads (`ingest_job_rows`).
    """
    if client.serial_writes:  # no parallel Bulk batches: one sObject Collections call at a time
        return create_records(client, sobject, records)
    client.ensure_session()
    if not records:
        return []
    sobject = soql.api_name(sobject, "object")
    columns = soql.field_names(dict.fromkeys(k for rec in records for k in rec))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    # each record's row as uploaded -> the records with that row, in input order (results are matched by it)
    waiting: dict[tuple[str, ...], list[int]] = {}
    for i, rec in enumerate(records):
        row = tuple(to_csv(rec[c]) if c in rec and rec[c] is not None else "" for c in columns)
        waiting.setdefault(row, []).append(i)
        writer.writerow(row)
    token = journal.before(records) if journal is not None else None
    job = _send(
        client,
        "POST",
        _jobs_url(client, ""),
        "bulk insert create",
        json={
            "object": sobject,
            "operation": "insert",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    ).json()
    job_id = job["id"]
    if journal is not None:
        journal.job(token, job_id)
    _send(
        client,
        "PUT",
        _jobs_url(client, f"/{job_id}/batches"),
        "bulk insert upload",
        data=buf.getvalue().encode("utf-8"),
        headers={"Content-Type": "text/csv"},
    )
    del buf
    _send(client, "PATCH", _jobs_url(client, f"/{job_id}"), "bulk insert close", json={"state": "UploadComplete"})
    try:
        state = _wait_for_job(client, sobject, job_id, poll, timeout, longest=3.0)
        results: list[WriteResult | None] = [None] * len(records)
        for kind in _result_kinds(state):
            body = _send(
                client,
                "GET",
                _jobs_url(client, f"/{job_id}/{kind}"),
                f"bulk insert {kind}",
                headers={"Accept": "text/csv"},
            ).text
            for row in csv.DictReader(io.StringIO(body)):
                queue = waiting.get(tuple(row.get(c) or "" for c in columns))
                if not queue:
                    continue
                i = queue.pop(0)
                if kind == "successfulResults":
                    results[i] = WriteResult(row.get("sf__Id"), True, (), True)
                else:
                    results[i] = WriteResult(None, False, (_bulk_error(row.get("sf__Error", "")),))
    except SalesforceWriteError:
        raise
    except Exception as exc:
        raise SalesforceWriteError(
            f"Bulk insert job {job_id} for {sobject} was submitted but its outcome could not be read ({exc}); it may "
            "have created records: see the job's successfulResults in the org before creating them again"
        ) from exc
    answers = [
        r if r is not None else failure(None, "NOT_PROCESSED", f"Bulk job {job_id} returned no result for it")
        for r in results
    ]
    if journal is not None:
        journal.after(token, list(zip(records, answers, strict=True)))
    try:
        _send(client, "DELETE", _jobs_url(client, f"/{job_id}"), "bulk insert delete")
    except Exception as exc:  # noqa: BLE001 - a leftover job costs nothing but a listing entry
        log.info("could not delete bulk ingest job %s: %s", job_id, exc)
    return answers


def delete_records(client: SalesforceClient, ids: Sequence[str]) -> list[WriteResult]:
    """Delete records (to the recycle bin) via sObject Collections DELETE, 200 ids a call, allOrNone false.
    Ids go in the URL: 200 ids are about 4 KB, well within the 16,384-byte limit."""
    client.ensure_session()
    out: list[WriteResult] = []
    for chunk in _chunks(soql.record_ids(ids), COLLECTION_SIZE):
        answer = client.restful(f"composite/sobjects?ids={','.join(chunk)}&allOrNone=false", method="DELETE")
        out.extend(
            WriteResult(raw.get("id") or rid, bool(raw.get("success")), tuple(raw.get("errors") or ()))
            for rid, raw in zip(chunk, answer, strict=True)
        )
    return out


__all__ = [
    "COLLECTION_SIZE",
    "OUTCOME_UNKNOWN",
    "RETRIEVE_SIZE",
    "SalesforceWriteError",
    "WriteJournal",
    "WriteResult",
    "bulk_create",
    "bulk_update",
    "create_records",
    "current_user_id",
    "delete_ingest_job",
    "delete_records",
    "failure",
    "fetch_records",
    "ingest_job_outcome",
    "ingest_job_rows",
    "query_by_ids",
    "undelete",
    "update_records",
]
