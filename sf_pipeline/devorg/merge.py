"""SOAP `merge()`: duplicates of an Account, Contact or Lead folded into one master record.

As the SOAP API Developer Guide documents merge() (https://developer.salesforce.com/docs/atlas.en-us.api.meta/
api/sforce_api_calls_merge.htm) and MergeResult (…/sforce_api_calls_merge_mergeresult.htm):
- only Lead, Contact and Account merge (describe `mergeable`); up to three records per request, the master
  included, so one or two `recordToMergeIds`; up to 200 requests per call, each its own transaction;
- field values given on `masterRecord` are written to the master first, like an update;
- every related record of a loser is re-parented to the master (`updatedRelatedIds`), a loser's ReportsTo or
  Parent pointing at the master would make a circular relationship and is an error;
- the losers are deleted into the recycle bin with `MasterRecordId` = the master, so
  `queryAll("... WHERE IsDeleted = true AND MasterRecordId != null")` finds them; undelete brings a loser back
  but not its children ("the child objects are reparented, which can't be undone", undelete() docs).
Error statusCodes for bad requests (too many ids, wrong type, loser = master) are UNVERIFIED: no capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ids
from .errors import SalesforceError
from .store import q

if TYPE_CHECKING:
    from .schema import ObjectDef
    from .store import OrgStore

MERGEABLE = ("Account", "Contact", "Lead")
MAX_LOSERS = 2
MAX_REQUESTS = 200


@dataclass
class MergeResult:
    master_id: str | None
    merged: list[str] = field(default_factory=list)
    updated_related: list[str] = field(default_factory=list)
    error: SalesforceError | None = None

    @property
    def success(self) -> bool:
        return self.error is None


def merge(
    store: OrgStore,
    object_name: str,
    master_id: str,
    loser_ids: list[str],
    master_values: dict[str, Any] | None,
    user_id: str,
) -> MergeResult:
    """One MergeRequest in one transaction; a failure leaves the org untouched and is returned, not raised."""
    try:
        with store.lock, store.transaction():
            return _merge(store, object_name, master_id, loser_ids, master_values or {}, user_id)
    except SalesforceError as err:
        return MergeResult(ids.normalize(master_id or "") or master_id, error=err)


def _merge(
    store: OrgStore,
    object_name: str,
    master_value: str,
    loser_values: list[str],
    master_values: dict[str, Any],
    user_id: str,
) -> MergeResult:
    obj = store.schema.get(object_name)
    if obj.name not in MERGEABLE:
        raise SalesforceError("INVALID_TYPE", f"Merge is only supported for Lead, Contact and Account, not {obj.name}")
    if not loser_values:
        raise SalesforceError("INVALID_ARGUMENT_TYPE", "A merge request needs at least one recordToMergeIds")
    if len(loser_values) > MAX_LOSERS:
        raise SalesforceError(
            "LIMIT_EXCEEDED", "Up to three records can be merged in a single request, including the master record"
        )
    master = _live(store, obj, master_value)
    losers = []
    for value in loser_values:
        rid = _live(store, obj, value)
        if rid == master or rid in losers:
            raise SalesforceError("INVALID_ID_FIELD", f"The same record cannot be merged twice: {rid}")
        losers.append(rid)
    if master_values:
        store.update(obj, master, master_values, user_id)
    updated = _reparent(store, obj, master, losers, user_id)
    for rid in losers:
        store.delete(obj, rid, user_id)
        store.conn.execute(f"UPDATE {q(obj.name)} SET MasterRecordId = ? WHERE Id = ?", (master, rid))
    return MergeResult(master, list(losers), updated)


def _live(store: OrgStore, obj: ObjectDef, value: str) -> str:
    rid = ids.normalize(value or "")
    if rid is None or rid[:3] != obj.key_prefix:
        raise SalesforceError("MALFORMED_ID", f"{obj.label or obj.name} ID: id value of incorrect type: {value}")
    row = store.conn.execute(f"SELECT IsDeleted FROM {q(obj.name)} WHERE Id = ?", (rid,)).fetchone()
    if row is None:
        raise SalesforceError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    if row[0]:
        raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted")
    return rid


def _reparent(store: OrgStore, obj: ObjectDef, master: str, losers: list[str], user_id: str) -> list[str]:
    """Point every live child of the losers at the master, as the merging user; returns the children's ids."""
    now = store.now()
    marks = ",".join("?" * len(losers))
    updated: list[str] = []
    for child, f in store.schema.references_to(obj):
        if f.name == "MasterRecordId" or not (f.createable or f.updateable):
            continue
        live = "IsDeleted = 0 AND " if child.has_field("IsDeleted") else ""
        children = [
            r[0]
            for r in store.conn.execute(f"SELECT Id FROM {q(child.name)} WHERE {live}{q(f.name)} IN ({marks})", losers)
        ]
        children = [c for c in children if c not in losers]
        if not children:
            continue
        if master in children:
            raise SalesforceError(
                "INVALID_OPERATION",
                f"Merging would make {master} its own {f.relationship_name or f.name}: a circular relationship",
            )
        store.conn.executemany(
            f"UPDATE {q(child.name)} SET {q(f.name)} = ?, LastModifiedDate = ?, LastModifiedById = ?, "
            "SystemModstamp = ? WHERE Id = ?",
            [(master, now, user_id, now, c) for c in children],
        )
        updated += children
    return updated
