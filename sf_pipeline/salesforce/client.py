"""A budget-aware, retrying wrapper over simple-salesforce for what the pipeline needs.

Every call is counted; the org's usage is read from `Sforce-Limit-Info` after each response, and a
call that would take usage past the configured share of the daily limit is refused up front with
`ApiBudgetExceeded`. Transient failures (5xx, dropped connections, timeouts, UNABLE_TO_LOCK_ROW) are
retried with exponential backoff; anything else surfaces at once. A call the org refuses with
`INVALID_SESSION_ID` (the session expired or was revoked) logs in again once and is repeated, on every
path (REST, Bulk API 2.0, SOAP); a bare access token cannot log in again, so it stops with
`SalesforceSessionError`.

No SOQL goes into a URL longer than Salesforce accepts (16,384 bytes for URI and headers; 414 URI Too Long
past it, "API Request Limits and Allocations"): `query_pages` refuses such a query with `SoqlTooLongError`
before any call, and its callers take the Bulk API 2.0 path instead, whose query is POSTed in a body
(`records_by_soql` does it for them).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote_plus, urlencode

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
)

from . import soql
from .errors import (
    ApiBudgetExceeded,
    InvalidSession,
    SalesforceExtractError,
    SalesforceSessionError,
    SalesforceTimeoutError,
    SoqlTooLongError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_LIMIT = re.compile(r"api-usage=(\d+)/(\d+)")
BATCH_SUBREQUESTS = 25  # Composite Batch's documented maximum
# Composite Batch requests of one call sent at once. Salesforce serves an org's API requests concurrently and
# caps only the long-running ones (more than 20 s: 25 at a time in production; "API Request Limits and
# Allocations", Salesforce Developer Limits and Allocations Quick Reference); a count batch takes well under that.
BATCH_CONCURRENCY = 4


URL_BUDGET = 15_000  # bytes of URL-encoded SOQL per GET: Salesforce refuses URIs over 16,384 bytes (414)


def soql_fits_url(soql_text: str) -> bool:
    """True when a REST query of this SOQL stays within Salesforce's URI limit (with room for the path)."""
    return len(quote_plus(soql_text)) <= URL_BUDGET


def _session_refused(exc: BaseException) -> bool:
    return isinstance(exc, (InvalidSession, SalesforceExpiredSession))


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return True
    if isinstance(exc, SalesforceGeneralError) and getattr(exc, "status", 0) >= 500:
        return True
    if isinstance(exc, SalesforceMalformedRequest):
        content = exc.content if isinstance(exc.content, list) else []
        return any(isinstance(e, dict) and e.get("errorCode") == "UNABLE_TO_LOCK_ROW" for e in content)
    return False


class SalesforceClient:
    """One org alias: describe cache, API accounting and budget, retries, query and Bulk API 2.0 reads."""

    def __init__(
        self,
        sf: Salesforce,
        *,
        alias: str = "production",
        budget_share: float = 1.0,
        max_attempts: int = 6,
        backoff: float = 0.5,
    ):
        self.sf = sf
        self.alias = alias
        self.budget_share = budget_share
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.api_calls = 0
        self.retries = 0
        self.bytes_received = 0
        self.usage: tuple[int, int] | None = None
        self.session_renewals = 0
        # Serial writes (settings `orgs: <alias>: restore: serial: true`): writes.py sends no Bulk API 2.0 job
        # (whose batches Salesforce processes in parallel) but one sObject Collections call at a time.
        self.serial_writes = False
        self._describes: dict[str, dict[str, Any]] = {}
        self._counting = threading.Lock()

    # ----------------------------------------------------------------- accounting
    def _note_usage(self, header: str | None) -> None:
        m = _LIMIT.search(header or "")
        if m:
            self.usage = (int(m.group(1)), int(m.group(2)))

    def check_budget(self, cost: int = 1) -> None:
        """Refuse a call costing `cost` API requests (a Composite Batch costs one per subrequest) that would take
        usage past the budget."""
        if self.usage is None:
            return
        used, limit = self.usage
        allowed = int(limit * self.budget_share)
        if used + cost > allowed:
            raise ApiBudgetExceeded(
                f"org '{self.alias}' has used {used:,} of its {limit:,} daily API requests; sf-pipeline may use "
                f"at most {self.budget_share:.0%} ({allowed:,}). Stopping before the next call. Raise "
                "api_budget.max_share_of_daily_limit in the settings or wait for the 24-hour window to roll."
            )

    def call(self, fn: Callable[[], T], what: str) -> T:
        """Run one API call with budget check, accounting and retries on transient failures.

        A call refused with INVALID_SESSION_ID logs in again once and is repeated (not counted as a failed
        attempt); a timeout on the last attempt becomes a `SalesforceTimeoutError` that says what to change.
        """
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            self.check_budget()
            with self._counting:  # composite batches may be sent from several threads at once
                self.api_calls += 1
            try:
                result = fn()
                usage = self.sf.api_usage.get("api-usage") if self.sf.api_usage else None
                # simple-salesforce's figure is from its own last call; the pipeline's raw requests (Bulk,
                # describes) note theirs directly: keep the newer (usage only grows within the 24 hours)
                if usage is not None and (self.usage is None or usage.used >= self.usage[0]):
                    self.usage = (usage.used, usage.total)
                return result
            except Exception as exc:  # noqa: BLE001 - classified below
                if _session_refused(exc):
                    if renewed:
                        raise SalesforceSessionError(
                            f"org '{self.alias}' refused a fresh session on {what} (INVALID_SESSION_ID): check "
                            f"that the user behind SALESFORCE_{self.alias.upper()}_* may use the API"
                        ) from exc
                    self.renew_session(what)
                    renewed = True
                    attempt -= 1
                    continue
                if not _transient(exc):
                    raise
                if attempt >= self.max_attempts:
                    if isinstance(exc, requests.Timeout):
                        raise SalesforceTimeoutError(
                            f"org '{self.alias}' did not answer {what} in time on {attempt} attempts ({exc}); "
                            "if the org is only slow, raise salesforce.read_timeout_seconds (or "
                            "connect_timeout_seconds) in the settings file"
                        ) from exc
                    raise
                with self._counting:
                    self.retries += 1
                delay = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning(
                    "transient Salesforce failure on %s (attempt %d/%d), retrying in %.1fs: %s",
                    what,
                    attempt,
                    self.max_attempts,
                    delay,
                    str(exc)[:200],
                )
                time.sleep(delay)

    # ----------------------------------------------------------------- session
    @property
    def can_renew_session(self) -> bool:
        """True when the client can log in again (a username, client credentials or JWT key, not a bare token)."""
        return getattr(self.sf, "_salesforce_login_partial", None) is not None

    def renew_session(self, what: str = "a call") -> None:
        """Log in again after the org refused the session; a bare access token cannot, and says what to set."""
        if not self.can_renew_session:
            prefix = f"SALESFORCE_{self.alias.upper()}_"
            raise SalesforceSessionError(
                f"org '{self.alias}' refused the session on {what} (INVALID_SESSION_ID: the access token expired "
                f"or was revoked), and an access token alone cannot log in again. Set {prefix}USERNAME and "
                f"{prefix}PASSWORD (+ {prefix}SECURITY_TOKEN), {prefix}CLIENT_ID and {prefix}CLIENT_SECRET, or "
                f"{prefix}CLIENT_ID with {prefix}PRIVATE_KEY_FILE so sf-pipeline can log in again, or a fresh "
                f"{prefix}ACCESS_TOKEN"
            )
        log.info("org %s refused the session on %s (INVALID_SESSION_ID); logging in again", self.alias, what)
        self.sf._refresh_session()  # noqa: SLF001 - simple-salesforce's own re-login with the same credentials
        self.session_renewals += 1

    def ensure_session(self) -> None:
        """Before writing: make sure the org accepts the session when it cannot be renewed mid-write.

        A session that can log in again is renewed on any refused call; a bare access token cannot, and a write
        refused half-way (a Bulk job written but its results unreadable) could not be audited: stop before it.
        """
        if not self.can_renew_session:
            self.call(lambda: self.sf.restful("limits"), "session check before writing")

    # ----------------------------------------------------------------- REST
    def describe(self, sobject: str) -> dict[str, Any]:
        if sobject not in self._describes:
            self._describes[sobject] = self.call(lambda: getattr(self.sf, sobject).describe(), f"describe {sobject}")
        return self._describes[sobject]

    def describe_global(self) -> dict[str, Any]:
        """Every object of the org with its capabilities (queryable, replicateable, ...): one call."""
        return self.call(lambda: self.sf.describe(), "describe global")

    def forget_describe(self, sobject: str) -> None:
        self._describes.pop(sobject, None)

    def get_if_modified(self, path: str, since: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """GET a describe (`sobjects/`, `sobjects/<X>/describe/`) sending `If-Modified-Since: since`: (None, since)
        when the org answers 304 Not Modified, else (the body, its `Last-Modified`). REST API Developer Guide,
        "sObject Describe" / "Describe Global", header If-Modified-Since:
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm"""

        def do() -> requests.Response:
            url = f"https://{self.sf.sf_instance}/services/data/v{self.sf.sf_version}/{path}"
            headers = {"Authorization": f"Bearer {self.sf.session_id}", "Accept": "application/json"}
            if since:
                headers["If-Modified-Since"] = since
            resp = self.sf.session.request("GET", url, headers=headers)
            self._note_usage(resp.headers.get("Sforce-Limit-Info"))
            if resp.status_code == 401:
                raise InvalidSession(f"GET {path}: {resp.text[:300]}")
            if resp.status_code >= 500:
                raise SalesforceGeneralError(url, resp.status_code, path, resp.text[:500])
            if resp.status_code >= 400:
                raise SalesforceExtractError(f"GET {path} failed ({resp.status_code}): {resp.text[:500]}")
            return resp

        resp = self.call(do, f"GET {path} (If-Modified-Since)")
        if resp.status_code == 304:
            return None, since
        self.bytes_received += len(resp.content)
        return resp.json(), resp.headers.get("Last-Modified")

    def composite_batch(self, subrequests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run GET subrequests (`{"method": "GET", "url": "v59.0/query?q=..."}`) through Composite Batch, 25 per
        call, and return each one's `{"statusCode", "result"}` in order. One HTTP request per 25; Salesforce counts
        each subrequest against the API limit (REST API Developer Guide, "Composite Batch":
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_batch.htm)."""
        chunks = [
            [dict(s) for s in subrequests[i : i + BATCH_SUBREQUESTS]]
            for i in range(0, len(subrequests), BATCH_SUBREQUESTS)
        ]

        def send(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
            self.check_budget(len(chunk))
            answer = self.call(
                lambda: self.sf.restful(
                    "composite/batch", method="POST", json={"batchRequests": chunk, "haltOnError": False}
                ),
                f"composite batch of {len(chunk)}",
            )
            got = answer.get("results") or []
            if len(got) != len(chunk):
                raise SalesforceExtractError(
                    f"composite batch answered {len(got)} results for {len(chunk)} subrequests"
                )
            return got

        if len(chunks) < 2:
            return [r for chunk in chunks for r in send(chunk)]
        self.check_budget(len(subrequests))  # all of them, before any is sent: they go several at a time
        # hundreds of objects' counts: BATCH_CONCURRENCY requests at a time, the answers in the subrequests' order
        with ThreadPoolExecutor(max_workers=min(BATCH_CONCURRENCY, len(chunks)), thread_name_prefix="sf-batch") as pool:
            return [r for got in pool.map(send, chunks) for r in got]

    def batch_url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """A subrequest URL relative to /services/data (`v59.0/query?q=...`)."""
        query = f"?{urlencode(params)}" if params else ""
        return f"v{self.sf.sf_version}/{path}{query}"

    def counts(self, queries: Sequence[tuple[str, bool]]) -> list[int]:
        """`SELECT COUNT() ...` queries, (SOQL, include_deleted) each, answered 25 per HTTP request."""
        subrequests = [
            {"method": "GET", "url": self.batch_url("queryAll" if deleted else "query", {"q": q})}
            for q, deleted in queries
        ]
        out: list[int] = []
        for (q, _), result in zip(queries, self.composite_batch(subrequests), strict=True):
            if result["statusCode"] >= 400:
                raise SalesforceExtractError(
                    f"`{q}` failed in a composite batch ({result['statusCode']}): {str(result.get('result'))[:300]}"
                )
            out.append(int(result["result"]["totalSize"]))
        return out

    def count(self, soql_where: str, sobject: str, include_deleted: bool = True) -> int:
        query = f"SELECT COUNT() FROM {soql.api_name(sobject, 'object')}" + (
            f" WHERE {soql_where}" if soql_where else ""
        )
        return int(self.call(lambda: self.sf.query(query, include_deleted=include_deleted), "count")["totalSize"])

    def query_pages(self, soql: str, include_deleted: bool = True) -> Iterator[list[dict[str, Any]]]:
        """REST query/queryAll, one list of records per page (attributes dropped).

        The SOQL travels in the URL: a query longer than Salesforce accepts there is refused before any call."""
        if not soql_fits_url(soql):
            raise SoqlTooLongError(
                f"a SOQL query of {len(soql):,} characters ({soql[:60]}...) would make a REST query URL longer than "
                f"Salesforce accepts (16,384 bytes, 414 URI Too Long); read it through the Bulk API 2.0 instead"
            )
        page = self.call(lambda: self.sf.query(soql, include_deleted=include_deleted), "query")
        while True:
            records = page.get("records", [])
            for rec in records:
                rec.pop("attributes", None)
            yield records
            if page.get("done", True):
                return
            next_url = page["nextRecordsUrl"]
            page = self.call(lambda u=next_url: self.sf.query_more(u, identifier_is_url=True), "queryMore")

    def restful(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        return self.call(lambda: self.sf.restful(path, method=method, **kwargs), f"{method} {path}")

    # ----------------------------------------------------------------- Bulk API 2.0
    def _bulk_request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        extra_headers = kwargs.pop("headers", {})  # popped once: every attempt sends them

        def do() -> requests.Response:
            # built per attempt: a re-login changes the instance and the session id
            url = f"https://{self.sf.sf_instance}/services/data/v{self.sf.sf_version}/jobs/{path}"
            headers = {
                "Authorization": f"Bearer {self.sf.session_id}",
                "Content-Type": "application/json",
                **extra_headers,
            }
            resp = self.sf.session.request(method, url, headers=headers, **kwargs)
            self._note_usage(resp.headers.get("Sforce-Limit-Info"))
            if resp.status_code == 401:
                raise InvalidSession(f"Bulk API 2.0 {method} {path}: {resp.text[:300]}")
            if resp.status_code >= 500:
                raise SalesforceGeneralError(url, resp.status_code, "bulk", resp.text[:500])
            if resp.status_code >= 400:
                raise SalesforceExtractError(
                    f"Bulk API 2.0 {method} {path} failed ({resp.status_code}): {resp.text[:500]}"
                )
            return resp

        return self.call(do, f"bulk {method} {path}")

    def bulk_query_start(self, soql: str, include_deleted: bool = True) -> str:
        """Create a Bulk API 2.0 query job (CSV, comma, LF); returns its id. Salesforce runs it asynchronously."""
        job = self._bulk_request(
            "POST",
            "query",
            json={
                "operation": "queryAll" if include_deleted else "query",
                "query": soql,
                "contentType": "CSV",
                "columnDelimiter": "COMMA",
                "lineEnding": "LF",
            },
        ).json()
        return job["id"]

    def bulk_query_wait(self, job_id: str, poll: float = 0.2, timeout: float = 3600) -> None:
        """Poll the job until JobComplete. Polling starts fast and slows down: at most one call a second
        in the first 30 s (a small job's result is waited for briefly), then up to one every 10 s
        (a long job does not eat the API budget)."""
        started = time.monotonic()
        delay = poll
        while True:
            state = self._bulk_request("GET", f"query/{job_id}").json()
            if state["state"] == "JobComplete":
                return
            if state["state"] in ("Failed", "Aborted"):
                raise SalesforceExtractError(
                    f"Bulk query job {job_id} ended {state['state']}: {state.get('errorMessage') or state}"
                )
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                raise SalesforceExtractError(f"Bulk query job {job_id} still {state['state']} after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0 if elapsed < 30 else 10.0)

    def bulk_query_results(self, job_id: str, max_records: int = 50_000) -> Iterator[tuple[bytes, int]]:
        """A complete job's result pages as (CSV bytes with header, record count); deletes the job after."""
        locator = ""
        while True:
            params: dict[str, Any] = {"maxRecords": max_records}
            if locator:
                params["locator"] = locator
            resp = self._bulk_request("GET", f"query/{job_id}/results", params=params, headers={"Accept": "text/csv"})
            body = resp.content
            self.bytes_received += len(body)
            yield body, int(resp.headers["Sforce-NumberOfRecords"])
            locator = resp.headers.get("Sforce-Locator", "null")
            if not locator or locator == "null":
                break
        self.bulk_query_delete(job_id)

    def bulk_query_delete(self, job_id: str) -> None:
        """Delete a query job and its results (best effort: Salesforce also removes old jobs itself)."""
        try:
            self._bulk_request("DELETE", f"query/{job_id}")
        except (SalesforceError, SalesforceExtractError) as exc:
            log.info("could not delete bulk job %s: %s", job_id, exc)

    def records_by_soql(self, soql: str, include_deleted: bool = True) -> Iterator[dict[str, Any]]:
        """The records of a query, one by one: by REST when its URL fits, else by one Bulk API 2.0 job (its query
        POSTed in the body), whose values are CSV text ("" for null): callers compare them canonically."""
        if soql_fits_url(soql):
            for page in self.query_pages(soql, include_deleted=include_deleted):
                yield from page
            return
        import csv
        import io

        for body, _n in self.bulk_query_pages(soql, include_deleted=include_deleted):
            for row in csv.DictReader(io.StringIO(body.decode("utf-8"))):
                yield {k: (v if v != "" else None) for k, v in row.items()}

    def bulk_query_pages(
        self,
        soql: str,
        include_deleted: bool = True,
        max_records: int = 50_000,
        poll: float = 0.1,
        timeout: float = 3600,
    ) -> Iterator[tuple[bytes, int]]:
        """Run one Bulk API 2.0 query job; yield each result page as (CSV bytes with header, record count)."""
        job_id = self.bulk_query_start(soql, include_deleted)
        self.bulk_query_wait(job_id, poll, timeout)
        yield from self.bulk_query_results(job_id, max_records)
