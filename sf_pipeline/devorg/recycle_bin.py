"""Records that vanish: the recycle bin's 15-day retention, emptyRecycleBin, hard delete and the delete log.

Real Salesforce, as documented:
- A deleted record stays in the Recycle Bin 15 days, then it is permanently deleted ("Restoring Deleted
  Records", Apex Developer Guide: https://developer.salesforce.com/docs/atlas.en-us.apexcode.meta/apexcode/
  langCon_apex_dml_examples_undelete.htm). devorg purges on the org clock: lazily, the first time any API (or a
  clock move) finds a bin entry older than 15 days; the purged rows are gone from every table, queryAll included.
- `emptyRecycleBin()` (SOAP, at most 200 ids; "Do not include the IDs of any records that will be cascade
  deleted, or an error will occur": https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/
  sforce_api_calls_emptyrecyclebin.htm) and Bulk API `hardDelete` ("not in the Recycle Bin, not undeletable",
  platform facts [P7]) delete permanently. Salesforce says the rows may still show in queryAll "for some time,
  typically 24 hours, but may be shorter or longer": devorg takes the shortest, zero, the case where a backup
  has no trace left to read.
- Undeleting a record that is no longer in the bin answers `UNDELETE_FAILED` "Entity is not in the recycle bin"
  (Salesforce KB 000386040, "Unable to Restore a Deleted Salesforce Record from the Recycle Bin").
- The delete log behind `/sobjects/<Object>/deleted/` covers at most 15 days "or earlier if an administrator
  has purged the Recycle Bin"; `earliestDateAvailable` is "the timestamp of the last physically deleted object"
  of that type, and a start before it is `INVALID_REPLICATION_DATE` (getDeleted(), GetDeletedResult:
  https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm). Whether
  hard-deleted ids ever appear in the log is not documented (platform facts, question 1): devorg never lists
  them, but their physical deletion moves `earliestDateAvailable`, so a reader learns that its window lost
  coverage (I). Start must precede end by more than a minute (seconds are ignored), `/updated/` serves at most
  30 days back (getUpdated(): https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/
  sforce_api_calls_getupdated.htm), both answer at most 600,000 ids (`EXCEEDED_ID_LIMIT`).

Bookkeeping: `_delete_log(object, id, deleted_date, root)` holds one row per record in the bin (cascade-deleted
children share their root's row date); `_purge_marks(object, last_purged)` the deletedDate of the last record of
each object that was physically deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import format_datetime, parse_datetime
from .errors import SalesforceError

if TYPE_CHECKING:
    from .schema import ObjectDef
    from .store import OrgStore

RETENTION = timedelta(days=15)
UPDATED_RANGE = timedelta(days=30)
MAX_IDS = 600_000
EMPTY_RECYCLE_BIN_LIMIT = 200


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def not_in_recycle_bin() -> SalesforceError:
    # Salesforce KB 000386040: the answer to undelete for a hard-deleted (or purged) record.
    return SalesforceError("UNDELETE_FAILED", "Entity is not in the recycle bin")


class RecycleBin:
    """The bin and delete log of one org store. Every method runs under `store.lock`, inside a transaction."""

    def __init__(self, store: OrgStore):
        self.store = store
        c = store.conn
        c.execute(
            "CREATE TABLE IF NOT EXISTS _delete_log (object TEXT, id TEXT PRIMARY KEY, deleted_date TEXT, root TEXT)"
        )
        c.execute("CREATE INDEX IF NOT EXISTS _delete_log_date ON _delete_log(deleted_date)")
        c.execute("CREATE INDEX IF NOT EXISTS _delete_log_root ON _delete_log(root)")
        c.execute("CREATE INDEX IF NOT EXISTS _delete_log_object ON _delete_log(object, deleted_date)")
        c.execute("CREATE TABLE IF NOT EXISTS _purge_marks (object TEXT PRIMARY KEY, last_purged TEXT)")
        self._next_due: str | None = None
        self._last_logged: str | None = None  # the last deletion stamp logged, and its due date
        self._last_due = ""
        self.recompute_due()

    # ----------------------------------------------------------------- the log
    def log(self, object_name: str, rid: str, when: str, root: str) -> None:
        self.store.conn.execute(
            "INSERT OR REPLACE INTO _delete_log(object, id, deleted_date, root) VALUES (?, ?, ?, ?)",
            (object_name, rid, when, root),
        )
        if when != self._last_logged:  # a tree's records share one stamp: compute its due date once
            self._last_logged, self._last_due = when, format_datetime(parse_datetime(when) + RETENTION)
        due = self._last_due
        if self._next_due is None or due < self._next_due:
            self._next_due = due

    def unlog_root(self, root: str) -> None:
        """An undeleted tree leaves the log (it is no longer deleted)."""
        self.store.conn.execute("DELETE FROM _delete_log WHERE root = ?", (root,))

    def recompute_due(self) -> None:
        oldest = self.store.conn.execute("SELECT min(deleted_date) FROM _delete_log").fetchone()[0]
        self._next_due = format_datetime(parse_datetime(oldest) + RETENTION) if oldest else None

    # ----------------------------------------------------------------- permanent deletion
    def is_due(self, now: datetime) -> bool:
        due = self._next_due
        return due is not None and format_datetime(now) >= due

    def purge_due(self, now: datetime) -> int:
        """Permanently delete what has been in the bin 15 days or more; cheap when nothing is due."""
        due = self._next_due
        if due is None or format_datetime(now) < due:
            return 0
        cutoff = format_datetime(now - RETENTION)
        roots = [
            r[0]
            for r in self.store.conn.execute("SELECT DISTINCT root FROM _delete_log WHERE deleted_date <= ?", (cutoff,))
        ]
        removed = self.remove_roots(roots)
        self.recompute_due()
        return removed

    def remove_roots(self, roots: list[str]) -> int:
        """Physically delete the trees deleted as `roots` (rows, cleared-lookup memory, log entries)."""
        conn = self.store.conn
        removed = 0
        for i in range(0, len(roots), 500):
            chunk = roots[i : i + 500]
            marks = ",".join("?" * len(chunk))
            entries = conn.execute(
                f"SELECT object, id, deleted_date FROM _delete_log WHERE root IN ({marks})", chunk
            ).fetchall()
            by_object: dict[str, list[str]] = {}
            latest: dict[str, str] = {}
            for obj_name, rid, when in entries:
                by_object.setdefault(obj_name, []).append(rid)
                latest[obj_name] = max(latest.get(obj_name, when), when)
            for obj_name, record_ids in by_object.items():
                for j in range(0, len(record_ids), 500):
                    part = record_ids[j : j + 500]
                    cur = conn.execute(
                        f"DELETE FROM {q(obj_name)} WHERE IsDeleted = 1 AND Id IN ({','.join('?' * len(part))})", part
                    )
                    removed += cur.rowcount
            conn.execute(f"DELETE FROM _delete_log WHERE root IN ({marks})", chunk)
            conn.execute(f"DELETE FROM _cleared_lookups WHERE root IN ({marks})", chunk)
            for obj_name, when in latest.items():
                conn.execute(
                    "INSERT INTO _purge_marks(object, last_purged) VALUES (?, ?) ON CONFLICT(object) DO UPDATE "
                    "SET last_purged = max(last_purged, excluded.last_purged)",
                    (obj_name, when),
                )
        return removed

    def root_of(self, rid: str) -> tuple[str, str] | None:
        """(object, root) of a record in the bin, None if it is not there."""
        row = self.store.conn.execute("SELECT object, root FROM _delete_log WHERE id = ?", (rid,)).fetchone()
        return (row[0], row[1]) if row else None

    def empty(self, record_ids: list[str]) -> list[dict[str, Any]]:
        """SOAP emptyRecycleBin: one EmptyRecycleBinResult-like dict per id, in order.

        The statusCodes of the per-id errors are UNVERIFIED (not documented); the rule they enforce is.
        """
        if len(record_ids) > EMPTY_RECYCLE_BIN_LIMIT:
            raise SalesforceError(
                "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
            )
        from . import ids

        results: list[dict[str, Any]] = []
        roots: list[str] = []
        for value in record_ids:
            rid = ids.normalize(value)
            entry = self.root_of(rid) if rid else None
            if rid is None:
                results.append(
                    {
                        "id": value,
                        "success": False,
                        "errors": [{"statusCode": "MALFORMED_ID", "message": f"malformed id {value}", "fields": []}],
                    }
                )
            elif entry is None:
                results.append(
                    {
                        "id": rid,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "INVALID_ID_FIELD",
                                "message": "Entity is not in the recycle bin",
                                "fields": [],
                            }
                        ],
                    }
                )
            elif entry[1] != rid:
                results.append(
                    {
                        "id": rid,
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "INVALID_ID_FIELD",
                                "message": "Entity was deleted with its parent: empty the "
                                "parent from the recycle bin instead",
                                "fields": [],
                            }
                        ],
                    }
                )
            else:
                roots.append(rid)
                results.append({"id": rid, "success": True, "errors": []})
        self.remove_roots(roots)
        self.recompute_due()
        return results

    # ----------------------------------------------------------------- replication reads
    def earliest_available(self, obj: ObjectDef, now: datetime) -> datetime:
        row = self.store.conn.execute("SELECT last_purged FROM _purge_marks WHERE object = ?", (obj.name,)).fetchone()
        floor = now - RETENTION
        return max(floor, parse_datetime(row[0])) if row else floor

    def get_deleted(self, obj: ObjectDef, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        if not obj.has_field("IsDeleted"):
            raise SalesforceError("INVALID_TYPE_FOR_OPERATION", f"entity type {obj.name} does not support delete")
        start, end = _window(start, end, now)
        earliest = self.earliest_available(obj, now)
        if start < earliest:
            # Message text UNVERIFIED; code and rule: getDeleted() docs.
            raise SalesforceError(
                "INVALID_REPLICATION_DATE",
                "startDate is before the earliest date available: "
                f"{format_datetime(earliest)}; the delete log no longer covers it, do a full pull",
            )
        s, e = format_datetime(start), format_datetime(end)
        rows = self.store.conn.execute(
            "SELECT id, deleted_date FROM _delete_log WHERE object = ? AND deleted_date >= ? AND deleted_date < ? "
            "ORDER BY deleted_date, id",
            (obj.name, s, e),
        ).fetchall()
        if len(rows) > MAX_IDS:
            raise SalesforceError("EXCEEDED_ID_LIMIT", "too many ids: choose start and end dates closer together")
        return {
            "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
            "earliestDateAvailable": format_datetime(earliest),
            "latestDateCovered": e,
        }

    def get_updated(self, obj: ObjectDef, start: datetime, end: datetime, now: datetime) -> dict[str, Any]:
        start, end = _window(start, end, now)
        if start < now - UPDATED_RANGE:
            # getUpdated() serves 30 days back; message text UNVERIFIED.
            raise SalesforceError("INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
        s, e = format_datetime(start), format_datetime(end)
        live = "IsDeleted = 0" if obj.has_field("IsDeleted") else "1"
        rows = self.store.conn.execute(
            f"SELECT Id FROM {q(obj.name)} WHERE SystemModstamp >= ? AND SystemModstamp < ? AND {live} "
            "ORDER BY SystemModstamp",
            (s, e),
        ).fetchall()
        if len(rows) > MAX_IDS:
            raise SalesforceError("EXCEEDED_ID_LIMIT", "too many ids: choose start and end dates closer together")
        return {"ids": [r[0] for r in rows], "latestDateCovered": e}


def _window(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    """End is capped at now; start must precede end by more than one minute; then seconds are ignored."""
    end = min(end, now)
    if end - start <= timedelta(minutes=1):
        raise SalesforceError(
            "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate by more than one minute"
        )
    return start.replace(second=0, microsecond=0), end.replace(second=0, microsecond=0)
