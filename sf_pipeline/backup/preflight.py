"""What a backup run asks the org once for all its objects, instead of once per object.

The first `salesforce/<Object>` step of a run (the others wait on a PostgreSQL advisory lock) checks which org
the alias reaches (Organization: once per run), refreshes the describes only if the org says they changed
(`If-Modified-Since` on the global describe, then on the changed objects' describes), and asks for every
object of the run, through Composite Batch (25 subrequests per call), the records stamped in the window and
the records created before its end: one aggregate query per object (`COUNT(Id)` and `MAX(SystemModstamp)` of
the records created before the window's end), then the window's `COUNT()` only where the newest stamp reaches
into the window. The results go to `sf_pipeline.run_preflight`; every step of the run reads its object's there.
When no describe changed, the Organization query is a subrequest of the first batch (Composite Batch takes
Query subrequests: REST API Developer Guide, "Composite Batch"), checked before anything is stored; otherwise it
is asked on its own before the changed describes are kept. An unchanged window of N objects thus costs
1 + ceil((N + 1) / 25) HTTP requests to the org (the global describe, then the batches), plus one login per
step (one for all the small objects, which share a step). No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.salesforce import SalesforceClient
from sf_pipeline.salesforce import soql as soql_names
from sf_pipeline.salesforce.catalog import ObjectPlan, plan_object
from sf_pipeline.salesforce.extract import soql_datetime, window_filter
from sf_pipeline.salesforce.organization import ORGANIZATION_SOQL, organization_from_answer
from sf_pipeline.warehouse.ddl import commit
from sf_pipeline.warehouse.org_identity import check_org_identity, verify_org
from sf_pipeline.warehouse.run_state import (
    GLOBAL,
    WindowCounts,
    cached_describes,
    ensure_run_state,
    forget_old_preflights,
    keep_describe,
    store_counts,
    stored_counts,
)


@dataclass
class Preflight:
    """One object's share of the run's preflight: its describe, the org's counts, and what the step paid."""

    describe: dict[str, Any]
    counts: WindowCounts
    first_step: bool = False  # this step asked the org for the whole run
    describes_refreshed: list[str] = field(default_factory=list)
    api_calls: int = 0


def refresh_describes(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    objects: Sequence[str],
    before_keeping: Callable[[], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The describes of `objects`, re-read only where the org says they changed; (describes, re-read ones).
    `before_keeping`: called once before the first describe (or new global stamp) is kept, when one is (the
    org's identity check: another org's describes must never stand for this org's in the cache)."""
    cached = cached_describes(conn, client.alias, objects)
    kept_global = cached.get(GLOBAL)
    global_body, global_stamp = client.get_if_modified("sobjects/", kept_global.last_modified if kept_global else None)
    anything_changed = global_body is not None
    describes: dict[str, dict[str, Any]] = {}
    refreshed: list[str] = []
    pending = [before_keeping] if before_keeping is not None else []

    def keep(sobject: str, stamp: str | None, body: dict[str, Any] | None) -> None:
        while pending:
            pending.pop()()
        keep_describe(conn, client.alias, sobject, stamp, body)

    for sobject in objects:
        mine = cached.get(sobject)
        if not anything_changed and mine is not None and mine.describe is not None:
            describes[sobject] = mine.describe
            continue
        since = mine.last_modified if mine is not None and mine.describe is not None else None
        body, stamp = client.get_if_modified(f"sobjects/{soql_names.api_name(sobject, 'object')}/describe/", since)
        if body is None:
            assert mine is not None and mine.describe is not None
            describes[sobject] = mine.describe
            continue
        describes[sobject] = body
        refreshed.append(sobject)
        keep(sobject, stamp, body)
    # recorded last: a failure above leaves the old stamp, so the next run asks again (unchanged: nothing to write)
    if kept_global is None or global_stamp != kept_global.last_modified:
        keep(GLOBAL, global_stamp, None)
    commit(conn)
    for sobject, body in describes.items():
        client._describes[sobject] = body  # noqa: SLF001 - the client's in-memory cache, for later calls
    return describes, refreshed


def window_stamp(describe: dict[str, Any]) -> str | None:
    """The field the object's windows are read on, as the catalog plans it (None: read whole, no window)."""
    plan = plan_object(describe, describe)
    if isinstance(plan, ObjectPlan):
        return plan.stamp_field
    return "SystemModstamp" if any(f["name"] == "SystemModstamp" for f in describe["fields"]) else None


def count_queries(describe: dict[str, Any], sobject: str, start: datetime, end: datetime) -> list[tuple[str, bool]]:
    """The window's COUNT() (queryAll), and the COUNT() of records created before its end (queryAll). An object
    read whole (no timestamp) has no window: its whole COUNT() stands for it."""
    name = soql_names.api_name(sobject, "object")
    stamp = window_stamp(describe)
    where = f" WHERE {window_filter(start, end, stamp)}" if stamp is not None else ""
    queries = [(f"SELECT COUNT() FROM {name}{where}", True)]
    if any(f["name"] == "CreatedDate" for f in describe["fields"]):
        queries.append((f"SELECT COUNT() FROM {name} WHERE CreatedDate < {soql_datetime(end)}", True))
    return queries


def combined_query(describe: dict[str, Any], sobject: str, end: datetime) -> str | None:
    """One aggregate query answering both counts of an unchanged window: the records created before the window's
    end and the newest stamp among them (`SELECT COUNT(Id) n, MAX(SystemModstamp) m ... WHERE CreatedDate < end`,
    queryAll; SOQL and SOSL Reference, "Aggregate Functions"). A newest stamp before the window's start means
    nothing is stamped in the window (a record created at or after its end is stamped after it too), so the
    window's own COUNT() is asked only for the objects where it may not be 0. None: the object has no window
    stamp or no CreatedDate (its counts are asked as before)."""
    stamp = window_stamp(describe)
    if stamp is None or not any(f["name"] == "CreatedDate" for f in describe["fields"]):
        return None
    name = soql_names.api_name(sobject, "object")
    return f"SELECT COUNT(Id) n, MAX({stamp}) m FROM {name} WHERE CreatedDate < {soql_datetime(end)}"


def parse_stamp(value: str) -> datetime:
    """A REST datetime (`2026-11-30T00:00:00.000+0000`) as an aware datetime."""
    return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def ask_counts(
    client: SalesforceClient,
    describes: dict[str, dict[str, Any]],
    objects: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    organization: bool = False,
) -> tuple[dict[str, WindowCounts], dict[str, Any] | None]:
    """The window's counts of `objects`: first one combined aggregate query each (25 per HTTP request), then the
    window's COUNT() of the objects that may have changed, and the classic pair of COUNT()s of those the
    aggregate cannot serve (no stamp or no CreatedDate, or refused by the org). An unchanged window of N objects
    costs ceil(N / 25) HTTP requests. `organization`: the Organization query rides in the first batch (one
    subrequest more, no request more); its subrequest's answer comes second (None when it failed)."""
    counts: dict[str, WindowCounts] = {}
    combined = {name: q for name in objects if (q := combined_query(describes[name], name, end)) is not None}
    second: list[tuple[str, str]] = []  # (object, "window" | "classic")
    org_answer: dict[str, Any] | None = None
    if combined or organization:
        subrequests = [{"method": "GET", "url": client.batch_url("queryAll", {"q": q})} for q in combined.values()]
        if organization:
            subrequests.insert(0, {"method": "GET", "url": client.batch_url("query", {"q": ORGANIZATION_SOQL})})
        results = client.composite_batch(subrequests)
        if organization:
            first = results.pop(0)
            if first.get("statusCode", 500) < 400 and isinstance(first.get("result"), dict):
                org_answer = first["result"]
        for name, result in zip(combined, results, strict=True):
            body = result.get("result")
            if result.get("statusCode", 500) >= 400 or not isinstance(body, dict) or not body.get("records"):
                second.append((name, "classic"))  # e.g. an object the org will not aggregate
                continue
            row = body["records"][0]
            total, newest = int(row["n"]), row.get("m")
            if newest is None or parse_stamp(newest) < start:
                counts[name] = WindowCounts(0, total)
            else:
                counts[name] = WindowCounts(-1, total)  # the window's count follows
                second.append((name, "window"))
    second += [(name, "classic") for name in objects if name not in combined]
    queries: list[tuple[str, bool]] = []
    shape: list[tuple[str, str, int]] = []
    for name, kind in second:
        mine = count_queries(describes[name], name, start, end)
        if kind == "window":
            mine = mine[:1]
        queries += mine
        shape.append((name, kind, len(mine)))
    answers = iter(client.counts(queries) if queries else [])
    for name, kind, n in shape:
        window_count = next(answers)
        if kind == "window":
            counts[name] = WindowCounts(window_count, counts[name].org_total)
        else:
            counts[name] = WindowCounts(window_count, next(answers) if n == 2 else None)
    return counts, org_answer


def window_preflight(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    run_id: str,
    sobject: str,
    run_objects: Sequence[str],
    all_objects: Sequence[str],
    start: datetime,
    end: datetime,
) -> Preflight:
    """`sobject`'s describe and counts for the window [start, end), asked once per run for `run_objects`."""
    return objects_preflight(conn, client, run_id, [sobject], run_objects, all_objects, start, end)[sobject]


def objects_preflight(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    run_id: str,
    objects: Sequence[str],
    run_objects: Sequence[str],
    all_objects: Sequence[str],
    start: datetime,
    end: datetime,
) -> dict[str, Preflight]:
    """The describes and counts of `objects` (one step's: an object's own, or the small objects' shared step) for
    the window [start, end), asked once per run for `run_objects`; the first object's Preflight carries what
    this call paid when it asked the org."""
    ensure_run_state(conn)
    calls_before = client.api_calls
    key = f"{run_id}/{start.isoformat()}/{end.isoformat()}"
    # a session lock (not a transaction's): verify_org and the describe cache commit on their own
    conn.execute("SELECT pg_advisory_lock(hashtext(%s)::bigint)", (key,))
    commit(conn)
    try:
        stored = stored_counts(conn, run_id, start, end)
        if all(o in stored for o in objects):
            kept = cached_describes(conn, client.alias, objects)
            out: dict[str, Preflight] = {}
            for sobject in objects:
                describe = kept[sobject].describe
                assert describe is not None
                client._describes[sobject] = describe  # noqa: SLF001
                out[sobject] = Preflight(describe, stored[sobject])
            return out
        # Never another org's records into this org's history (once per run): the org's identity is checked
        # before anything of the org is kept. When the describes changed, by its own query before they are kept;
        # otherwise its query rides in the first Composite Batch of counts (one HTTP request less per window) and
        # is checked before the counts are stored. Only the counts were asked of the org by then.
        verified: list[Any] = []

        def verify() -> None:
            verified.append(verify_org(conn, client))

        describes, refreshed = refresh_describes(
            conn, client, list(dict.fromkeys([*all_objects, *objects])), before_keeping=verify
        )
        wanted = [o for o in dict.fromkeys([*run_objects, *objects]) if o not in stored]
        asked, org_answer = ask_counts(client, describes, wanted, start, end, organization=not verified)
        if not verified:
            if org_answer is None:
                verify_org(conn, client)  # its subrequest failed: asked alone, which says why if it fails again
            else:
                check_org_identity(conn, client.alias, organization_from_answer(client, org_answer))
        counts: dict[str, WindowCounts] = {**stored, **asked}
        store_counts(conn, run_id, start, end, asked)
        forget_old_preflights(conn)
        commit(conn)
        out = {sobject: Preflight(describes[sobject], counts[sobject]) for sobject in objects}
        first = out[objects[0]]
        first.first_step, first.describes_refreshed = True, refreshed
        first.api_calls = client.api_calls - calls_before
        return out
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s)::bigint)", (key,))
        commit(conn)
