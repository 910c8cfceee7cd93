"""What an org can still tell about records it no longer holds: the delete log, hard-delete jobs, id counts.

Three sources, cheapest first (reference/salesforce-platform-facts.md, "Completeness"):
- the delete log, `GET /sobjects/<X>/deleted/?start&end` (getDeleted(): ids deleted in the window, including
  those purged from the recycle bin since, whose rows queryAll no longer returns; `earliestDateAvailable` says
  from when the log is complete, and a start before it is answered `INVALID_REPLICATION_DATE`:
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm);
- Bulk API 2.0 ingest jobs with operation `hardDelete` (`GET /jobs/ingest`, then each job's
  `successfulResults/`): the ids a hard delete removed, who ran it and when
  (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_all_jobs.htm,
  https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/get_job_successful_results.htm);
- `SELECT COUNT() ... WHERE Id >= a AND Id < b` over queryAll (recycle bin included) and the ids of a range,
  for the id reconciliation that finds what no API reports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from simple_salesforce.exceptions import SalesforceMalformedRequest

from sf_pipeline.instants import parse_instant

from .client import SalesforceClient, soql_fits_url

# getDeleted()/getUpdated(): start must precede end by more than one minute.
_MIN_LOG_SPAN = timedelta(minutes=2)


def _sf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_sf_time(text: str) -> datetime:
    """A Salesforce timestamp (`2026-11-20T10:00:00.000+0000`) as an aware datetime."""
    return parse_instant(text, "Salesforce timestamp")


@dataclass(frozen=True)
class DeleteLog:
    """The delete log's answer for one window. `covered` is False when the log no longer reaches back to the
    window's start (`INVALID_REPLICATION_DATE`): deletions before `earliest_available` may be unknown."""

    deleted: dict[str, datetime]  # id -> deletedDate
    earliest_available: datetime | None
    covered: bool


def delete_log(client: SalesforceClient, sobject: str, start: datetime, end: datetime) -> DeleteLog:
    """The ids the delete log lists for [start, end), and whether the log still covers `start`."""
    end = min(end, datetime.now(UTC))
    if end - start < _MIN_LOG_SPAN:
        start = end - _MIN_LOG_SPAN
    path = f"sobjects/{sobject}/deleted/"
    try:
        answer = client.restful(path, params={"start": _sf_time(start), "end": _sf_time(end)})
    except SalesforceMalformedRequest as exc:
        if not _replication_date_error(exc):
            raise
        # The log starts after `start`: ask for its newest minutes only, to learn where it starts now.
        try:
            probe = client.restful(path, params={"start": _sf_time(end - _MIN_LOG_SPAN), "end": _sf_time(end)})
        except SalesforceMalformedRequest as again:
            if not _replication_date_error(again):
                raise
            return DeleteLog({}, None, covered=False)
        earliest = probe.get("earliestDateAvailable")
        return DeleteLog(
            {r["id"]: parse_sf_time(r["deletedDate"]) for r in probe.get("deletedRecords", [])},
            parse_sf_time(earliest) if earliest else None,
            covered=False,
        )
    earliest = answer.get("earliestDateAvailable")
    return DeleteLog(
        {r["id"]: parse_sf_time(r["deletedDate"]) for r in answer.get("deletedRecords", [])},
        parse_sf_time(earliest) if earliest else None,
        covered=True,
    )


def _replication_date_error(exc: SalesforceMalformedRequest) -> bool:
    content = exc.content if isinstance(exc.content, list) else []
    return any(isinstance(e, dict) and e.get("errorCode") == "INVALID_REPLICATION_DATE" for e in content)


@dataclass(frozen=True)
class HardDeleteJob:
    """A Bulk API 2.0 `hardDelete` job: its id, who created it, when it last changed, and the ids it removed."""

    job_id: str
    created_by: str
    finished_at: datetime
    record_ids: frozenset[str] = field(default_factory=frozenset)


def hard_delete_jobs(client: SalesforceClient, sobject: str) -> list[HardDeleteJob]:
    """Every completed Bulk API 2.0 hardDelete job the org still lists for `sobject`, with its removed ids.

    Salesforce keeps ingest jobs seven days; older hard deletes are found by the id reconciliation only.
    """
    jobs: list[HardDeleteJob] = []
    listing = client._bulk_request("GET", "ingest", params={"jobType": "V2Ingest"}).json()  # noqa: SLF001
    records = list(listing.get("records", []))
    while not listing.get("done", True) and listing.get("nextRecordsUrl"):
        locator = listing["nextRecordsUrl"].split("/jobs/", 1)[-1]
        listing = client._bulk_request("GET", locator).json()  # noqa: SLF001
        records += listing.get("records", [])
    for info in records:
        if info.get("operation") != "hardDelete" or info.get("object", "").lower() != sobject.lower():
            continue
        if info.get("state") != "JobComplete":
            continue
        text = client._bulk_request(
            "GET",
            f"ingest/{info['id']}/successfulResults/",  # noqa: SLF001
            headers={"Accept": "text/csv"},
        ).text
        ids = frozenset(row["sf__Id"] for row in csv.DictReader(io.StringIO(text)) if row.get("sf__Id"))
        jobs.append(
            HardDeleteJob(
                info["id"],
                info.get("createdById", ""),
                parse_sf_time(info.get("systemModstamp") or info["createdDate"]),
                ids,
            )
        )
    return jobs


def _range_filter(low: str | None, high: str | None, created_before: datetime | None) -> str:
    parts = []
    if low is not None:
        parts.append(f"Id >= '{low}'")
    if high is not None:
        parts.append(f"Id < '{high}'")
    if created_before is not None:
        parts.append(f"CreatedDate < {_sf_time(created_before).replace('+00:00', 'Z')}")
    return " AND ".join(parts)


def count_ids(
    client: SalesforceClient, sobject: str, low: str | None, high: str | None, created_before: datetime | None
) -> int:
    """How many records (recycle bin included) have an id in [low, high) and were created before the bound."""
    return client.count(_range_filter(low, high, created_before), sobject, include_deleted=True)


def ids_in_ranges(
    client: SalesforceClient,
    sobject: str,
    ranges: Sequence[tuple[str | None, str | None]],
    created_before: datetime | None,
    *,
    bulk_above: int = 10_000,
    expected: int = 0,
) -> set[str]:
    """The ids (recycle bin included) in any of the ranges: REST below `bulk_above` expected rows, else one
    Bulk API 2.0 query job (a handful of calls for hundreds of thousands of ids)."""
    if not ranges:
        return set()
    where = " OR ".join(f"({_range_filter(lo, hi, None) or 'Id != null'})" for lo, hi in ranges)
    created = _range_filter(None, None, created_before)
    soql = f"SELECT Id FROM {sobject} WHERE ({where})" + (f" AND {created}" if created else "")
    found: set[str] = set()
    if expected > bulk_above or not soql_fits_url(soql):  # many ranges: the query goes in a Bulk job's body
        for body, _count in client.bulk_query_pages(soql, include_deleted=True):
            reader = csv.reader(io.StringIO(body.decode("utf-8")))
            next(reader, None)
            found.update(row[0] for row in reader if row)
        return found
    for page in client.query_pages(soql, include_deleted=True):
        found.update(r["Id"] for r in page)
    return found
