"""Scenarios where records vanish for good: a Bulk API hard delete, the recycle bin purged, a mass merge.

They act through the same code paths as the APIs (a Bulk API 2.0 ingest job run by `bulk.run_ingest_job`, the
recycle bin's `empty`/retention purge, SOAP merge's `merge.merge`), so what a backup sees afterwards is what a
real org would show: no row in queryAll for hard-deleted or purged records, and merged losers in the bin with
`MasterRecordId` set while their children now point at the master.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from .clock import format_datetime, parse_datetime
from .merge import MAX_REQUESTS, merge
from .recycle_bin import EMPTY_RECYCLE_BIN_LIMIT, RETENTION
from .store import q


def _ids(org: Any, sql: str, params: tuple = ()) -> list[str]:
    with org.store.lock:
        return [r[0] for r in org.store.conn.execute(sql, params)]


def _sample(ids: list[str], share: float, rng: random.Random) -> list[str]:
    k = min(len(ids), int(share * len(ids) + 0.5))
    return sorted(rng.sample(ids, k)) if k < len(ids) else list(ids)


def _children(org: Any, obj_name: str, parents: list[str]) -> dict[tuple[str, str], set[str]]:
    """Live records whose lookups point at `parents`: (object, lookup field) -> ids."""
    out: dict[tuple[str, str], set[str]] = {}
    store = org.store
    with store.lock:
        for child, f in org.schema.references_to(org.schema.get(obj_name)):
            live = "IsDeleted = 0 AND " if child.has_field("IsDeleted") else ""
            for i in range(0, len(parents), 500):
                part = parents[i : i + 500]
                for (cid,) in store.conn.execute(
                    f"SELECT Id FROM {q(child.name)} WHERE {live}{q(f.name)} IN ({','.join('?' * len(part))})", part
                ):
                    out.setdefault((child.name, f.name), set()).add(cid)
    return out


def _still_there(org: Any, obj_name: str, field: str, record_ids: set[str]) -> dict[str, Any]:
    """Id -> current value of `field` for those of record_ids that still exist."""
    found: dict[str, Any] = {}
    ids = sorted(record_ids)
    with org.store.lock:
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            found.update(
                org.store.conn.execute(
                    f"SELECT Id, {q(field)} FROM {q(obj_name)} WHERE Id IN ({','.join('?' * len(part))})", part
                )
            )
    return found


# ----------------------------------------------------------------- mass-hard-delete
HARD_DELETE_OBJECTS = ("Opportunity", "Contact")


def mass_hard_delete(org: Any, user_id: str, share: float, rng: random.Random) -> tuple[dict, dict]:
    """The integration user hard-deletes a share of the live Opportunities and Contacts with Bulk API 2.0 jobs."""
    from .bulk import result_rows, run_ingest_job

    changed: dict[str, list[str]] = {}
    details: dict[str, Any] = {
        "jobs": {},
        "hard_deleted": {},
        "failed": {},
        "eligible": {},
        "fraction": share,
        "cascade_deleted": {},
        "lookups_cleared": {},
    }
    for obj_name in HARD_DELETE_OBJECTS:
        eligible = _ids(org, f"SELECT Id FROM {q(obj_name)} WHERE IsDeleted = 0 ORDER BY Id")
        chosen = _sample(eligible, share, rng)
        details["eligible"][obj_name] = len(eligible)
        if not chosen:
            continue
        children = _children(org, obj_name, chosen)
        job = run_ingest_job(org, obj_name, "hardDelete", "Id\n" + "\n".join(chosen) + "\n", user_id)
        if job.state != "JobComplete":
            raise RuntimeError(
                f"Bulk API 2.0 hardDelete job {job.id} on {obj_name} ended {job.state}: {job.error_message}"
            )
        done = [r["sf__Id"] for r in result_rows(job, "success")]
        failed = {r["Id"]: r["sf__Error"] for r in result_rows(job, "failed")}
        details["jobs"][obj_name] = job.id
        details["hard_deleted"][obj_name] = len(done)
        details["failed"][obj_name] = failed
        changed.setdefault(obj_name, []).extend(done)
        for (child_name, field), child_ids in children.items():
            child_ids -= set(done)
            remaining = _still_there(org, child_name, field, child_ids)
            gone = sorted(child_ids - set(remaining))
            cleared = sorted(cid for cid, value in remaining.items() if value is None)
            if gone:
                details["cascade_deleted"][child_name] = details["cascade_deleted"].get(child_name, 0) + len(gone)
            if cleared:
                key = f"{child_name}.{field}"
                details["lookups_cleared"][key] = details["lookups_cleared"].get(key, 0) + len(cleared)
            if gone or cleared:
                changed.setdefault(child_name, []).extend(gone + cleared)
        if org.clock.frozen_at is not None:
            org.advance_clock(timedelta(seconds=1))
    return {k: sorted(set(v)) for k, v in changed.items()}, details


# ----------------------------------------------------------------- recycle-bin-purge
def recycle_bin_purge(
    org: Any, user_id: str, share: float | None, rng: random.Random, *, empty_bin: bool
) -> tuple[dict, dict]:
    """Records leave the recycle bin for good: the clock passes their 15 days, or an admin empties the bin."""
    store = org.store
    with store.lock:
        log = store.conn.execute(
            "SELECT object, id, deleted_date, root FROM _delete_log ORDER BY deleted_date, id"
        ).fetchall()
    roots = sorted({root for _, _, _, root in log})
    if empty_bin:
        chosen = set(_sample(roots, 1.0 if share is None else share, rng))
        for i in range(0, len(chosen), EMPTY_RECYCLE_BIN_LIMIT):  # one emptyRecycleBin call per 200 ids
            part = sorted(chosen)[i : i + EMPTY_RECYCLE_BIN_LIMIT]
            with store.lock, store.transaction():
                store.bin.empty(part)
            if org.clock.frozen_at is not None:
                org.advance_clock(timedelta(seconds=1))
        purged = [(o, rid) for o, rid, _, root in log if root in chosen]
        details: dict[str, Any] = {
            "mode": "emptyRecycleBin",
            "emptied_roots": len(chosen),
            "in_bin": len(roots),
            "fraction": 1.0 if share is None else share,
        }
    else:
        if share is not None:
            raise ValueError(
                "recycle-bin-purge by retention purges everything 15 days old: pass no fraction "
                "(or --empty-bin to empty a share of the bin)"
            )
        now = org.clock.now()
        newest = parse_datetime(log[-1][2]) if log else now
        target = max(now, newest + RETENTION + timedelta(minutes=1))
        org.set_clock(target, freeze=org.clock.frozen_at is not None)  # purges on the way (Org.purge_recycle_bin)
        cutoff = format_datetime(target - RETENTION)
        purged = [(o, rid) for o, rid, when, _ in log if when <= cutoff]
        details = {"mode": "retention", "clock_moved_to": format_datetime(target), "in_bin": len(roots)}
    changed: dict[str, list[str]] = {}
    for obj_name, rid in purged:
        changed.setdefault(obj_name, []).append(rid)
    details["purged"] = {k: len(v) for k, v in changed.items()}
    return {k: sorted(v) for k, v in changed.items()}, details


# ----------------------------------------------------------------- mass-merge
def mass_merge(org: Any, user_id: str, share: float, rng: random.Random) -> tuple[dict, dict]:
    """A deduplication tool merges a share of the live Accounts away: groups of three (a master and two losers),
    200 merge requests per SOAP call."""
    eligible = _ids(org, 'SELECT Id FROM "Account" WHERE IsDeleted = 0 ORDER BY Id')
    losers_wanted = min(int(share * len(eligible) + 0.5), len(eligible) * 2 // 3)
    pool = list(eligible)
    rng.shuffle(pool)
    groups: list[tuple[str, list[str]]] = []
    taken = 0
    while taken < losers_wanted and len(pool) >= 2:
        n = min(2, losers_wanted - taken, len(pool) - 1)
        master, losers = pool.pop(), [pool.pop() for _ in range(n)]
        groups.append((master, losers))
        taken += n
    changed: dict[str, set[str]] = {}
    failed: dict[str, str] = {}
    merged = 0
    for i in range(0, len(groups), MAX_REQUESTS):
        for master, losers in groups[i : i + MAX_REQUESTS]:
            result = merge(org.store, "Account", master, losers, None, user_id)
            if not result.success:
                failed[master] = f"{result.error.error_code}: {result.error.message}"
                continue
            merged += len(result.merged)
            changed.setdefault("Account", set()).update([master, *result.merged])
            for cid in result.updated_related:
                child = org.schema.object_for_id(cid)
                changed.setdefault(child.name if child else "?", set()).add(cid)
        if org.clock.frozen_at is not None:
            org.advance_clock(timedelta(seconds=1))
    details = {
        "eligible": len(eligible),
        "fraction": share,
        "merge_requests": len(groups),
        "merged": merged,
        "masters": len(groups) - len(failed),
        "failed": failed,
        "reparented": {k: len(v) for k, v in changed.items() if k != "Account"},
    }
    return {k: sorted(v) for k, v in changed.items()}, details
