"""What the target org holds now, fetched fresh (never taken from the backup), in canonical form.

Few records: sObject Collections retrieve, 2000 ids a call, then one queryAll `WHERE Id IN (...)` for those
it did not return, to tell the recycle bin from a record that is gone. Many records (or one chunk of a large
restore): one Bulk API 2.0 queryAll job over `SystemModstamp >= since` and the records' id range, where `since`
is the oldest latest-backed-up SystemModstamp of the records. A record's SystemModstamp only grows, so that
window holds every one of them the org still has, and it reads only what changed since the damage instead of a
million ids; the id range keeps each chunk's job to its own records (Bulk API 2.0 and Bulk API Developer Guide,
"PK Chunking": a large extract is split into `Id >= ... AND Id < ...` ranges the same way).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sf_pipeline.restore.decisions import LIVE, MISSING, RECYCLE_BIN
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.errors import SalesforceExtractError
from sf_pipeline.salesforce.extract import soql_datetime
from sf_pipeline.salesforce.soql import api_name, field_names, record_ids
from sf_pipeline.salesforce.values import canonical, converter, parse_datetime
from sf_pipeline.salesforce.writes import fetch_records, query_by_ids

DEFAULT_BULK_THRESHOLD = 10_000
BULK_PAGE_RECORDS = 50_000  # rows per Bulk API 2.0 result page: what one page costs in memory, whatever the size


@dataclass(frozen=True, slots=True)
class OrgRecord:
    """One record as the org holds it: where it is, its SystemModstamp, and canonical field values."""

    state: str  # live | recycle_bin | missing
    modstamp: datetime | None
    values: Mapping[str, Any]


GONE = OrgRecord(MISSING, None, {})


def describe(client: SalesforceClient, sobject: str) -> dict[str, Any]:
    """The object's describe, or a RestoreConfigError naming the org when it has no such object."""
    try:
        return client.describe(sobject)
    except (SalesforceResourceNotFound, SalesforceMalformedRequest) as exc:
        # An unknown object is a 404 NOT_FOUND or a 400 INVALID_TYPE, depending on the endpoint and version.
        codes = (
            {e.get("errorCode") for e in exc.content if isinstance(e, dict)} if isinstance(exc.content, list) else set()
        )
        if isinstance(exc, SalesforceMalformedRequest) and "INVALID_TYPE" not in codes:
            raise
        raise RestoreConfigError(
            f"object {sobject!r} does not exist in org {client.alias!r} (describe found no "
            "such object; check the API name, e.g. Opportunity or Invoice__c)"
        ) from None


def field_types(describe_fields: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    return {f["name"]: str(f["type"]) for f in describe_fields}


def _records(
    rows: Iterable[Mapping[str, Any]], types: Mapping[str, str], fields: Sequence[str]
) -> Iterator[tuple[str, OrgRecord]]:
    convert = [(f, converter(types.get(f, "string"))) for f in fields]
    flag = converter("boolean")
    for raw in rows:
        stamp = raw.get("SystemModstamp")
        yield (
            raw["Id"],
            OrgRecord(
                RECYCLE_BIN if flag(raw.get("IsDeleted")) else LIVE,
                parse_datetime(stamp) if stamp else None,
                {f: conv(raw.get(f)) for f, conv in convert},
            ),
        )


def _bulk_rows(client: SalesforceClient, soql: str, columns: Sequence[str]) -> Iterator[list[str]]:
    """The rows of a Bulk API 2.0 queryAll as lists of CSV text in the order of `columns` ("" for null), read a
    page (BULK_PAGE_RECORDS rows) at a time and a row at a time within it.

    Python's csv module, not Arrow: a restore reads a chunk of records per job, and Arrow's first CSV page costs
    the process some 70 MB that stay (its compute kernels and thread pool, and the pages its mimalloc pool keeps),
    which made a large restore peak well above a small one (BENCHMARKS.md, restore-memory)."""
    for body, n in client.bulk_query_pages(soql, include_deleted=True, max_records=BULK_PAGE_RECORDS, poll=0.05):
        reader = csv.reader(io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline=""))
        header = next(reader, [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise SalesforceExtractError(f"Bulk result page lacks columns {missing}")
        at = [header.index(c) for c in columns]
        seen = 0
        for row in reader:
            seen += 1
            yield [row[i] for i in at]
        if seen != n:
            raise SalesforceExtractError(f"Bulk result page announced {n} records but holds {seen}")


def changed_since(
    client: SalesforceClient,
    sobject: str,
    fields: Sequence[str],
    types: Mapping[str, str],
    since: datetime,
    wanted: Collection[str] | None = None,
    ids_between: tuple[str, str] | None = None,
) -> dict[str, OrgRecord]:
    """Every record (recycle bin included) whose SystemModstamp is at or after `since`, by one Bulk API 2.0 job;
    only those among `wanted` when given, so what is kept grows with the selection, not with everything the
    org changed since.

    Read page by page (BULK_PAGE_RECORDS rows), row by row; rows not wanted are dropped before any of their
    values is converted. `ids_between` (lowest, highest id) narrows the job to the ids of one chunk of a large
    restore.
    """
    soql = (
        f"SELECT {', '.join(field_names(['Id', 'IsDeleted', 'SystemModstamp', *fields]))} "
        f"FROM {api_name(sobject, 'object')} WHERE SystemModstamp >= {soql_datetime(since)}"
    )
    if ids_between is not None:
        low, high = record_ids(list(ids_between))
        soql += f" AND Id >= '{low}' AND Id <= '{high}'"
    # Bulk API 2.0 writes null as an empty cell: every converter reads "" as null (values.canonical).
    convert = [(f, converter(types.get(f, "string"))) for f in fields]
    keep = wanted if wanted is None or isinstance(wanted, (set, frozenset, dict)) else set(wanted)
    out: dict[str, OrgRecord] = {}
    for rid, deleted, stamp, *values in _bulk_rows(
        client, soql, field_names(["Id", "IsDeleted", "SystemModstamp", *fields])
    ):
        if keep is not None and rid not in keep:
            continue
        out[rid] = OrgRecord(
            RECYCLE_BIN if deleted.lower() == "true" else LIVE,
            parse_datetime(stamp) if stamp else None,
            {f: conv(v) for (f, conv), v in zip(convert, values, strict=True)},
        )
    return out


def fetch_current(
    client: SalesforceClient,
    sobject: str,
    ids: Sequence[str],
    fields: Sequence[str],
    types: Mapping[str, str],
    *,
    since: datetime | None = None,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
    bulk: bool = False,
) -> tuple[dict[str, OrgRecord], str]:
    """Current state of `ids` in the org, and how it was read (`collections`, `bulk`, `none`).

    Through one Bulk API 2.0 job (over `since` and the ids' range) above `bulk_threshold` ids, or with `bulk`
    (one chunk of a larger read), when `since` is known; the records it did not return by sObject Collections.
    """
    if not ids:
        return {}, "none"
    wanted = list(dict.fromkeys(["Id", "IsDeleted", "SystemModstamp", *fields]))
    found: dict[str, OrgRecord] = {}
    mode = "collections"
    if (bulk or len(ids) > bulk_threshold) and since is not None:
        mode = "bulk"
        found = changed_since(client, sobject, fields, types, since, wanted=set(ids), ids_between=(min(ids), max(ids)))
    rest = [rid for rid in ids if rid not in found]
    if rest:
        fetched = fetch_records(client, sobject, rest, wanted[1:])
        gone = [rid for rid, raw in fetched.items() if raw is None]
        found.update(_records((raw for raw in fetched.values() if raw is not None), types, fields))
        if gone:
            in_bin = query_by_ids(client, sobject, gone, wanted[1:], include_deleted=True)
            found.update(_records(in_bin.values(), types, fields))
            found.update((rid, GONE) for rid in gone if rid not in in_bin)
    return found, mode


def parent_states(
    client: SalesforceClient,
    parent_ids: Iterable[str],
    prefixes: Mapping[str, str],
    *,
    bulk_threshold: int = DEFAULT_BULK_THRESHOLD,
) -> tuple[set[str], set[str]]:
    """(live ids, ids in the recycle bin) among `parent_ids`; the others do not exist (or are not visible).

    Many parents of one object are read with one Bulk API 2.0 queryAll of that object's ids instead of
    a GET per 2000 ids.
    """
    by_object: dict[str, list[str]] = {}
    for pid in parent_ids:
        obj = prefixes.get(pid[:3])
        if obj is not None:
            by_object.setdefault(obj, []).append(pid)
    live: set[str] = set()
    deleted: set[str] = set()
    for obj, ids in by_object.items():
        has_bin = any(f["name"] == "IsDeleted" for f in describe(client, obj)["fields"])
        if len(ids) > bulk_threshold and has_bin:
            wanted = set(ids)
            for rid, flag in _bulk_rows(
                client, f"SELECT Id, IsDeleted FROM {api_name(obj, 'object')}", ["Id", "IsDeleted"]
            ):
                if rid in wanted:
                    (deleted if canonical("boolean", flag) else live).add(rid)
            continue
        fetched = fetch_records(client, obj, ids, [])
        live.update(rid for rid, rec in fetched.items() if rec is not None)
        gone = [rid for rid, rec in fetched.items() if rec is None]
        if gone and has_bin:
            found = query_by_ids(client, obj, gone, ["IsDeleted"], include_deleted=True)
            deleted.update(rid for rid, rec in found.items() if canonical("boolean", rec.get("IsDeleted")))
    return live, deleted
