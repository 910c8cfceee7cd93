"""Cascade deletes: the records deleted *with* a parent belong to the parent's incident, not to one of their own.

Deleting an Account deletes its Contacts and Opportunities, and an Opportunity its contact roles, in the same
transaction: Salesforce stamps every record of the cascade with the same SystemModstamp and the deleting user
(devorg does the same, `store._delete_tree`). Seen object by object, one deletion of 15 Accounts was 5 incidents
(listed newest first, so the parent's incident came last, and the children's restores failed with
`UNDELETE_FAILED: Entity was deleted with its parent`), when undeleting the 15 Accounts brings the whole tree
back: Salesforce undeletes a record's cascade-deleted children with it ("Restoring Deleted Records", Apex
Developer Guide: https://developer.salesforce.com/docs/atlas.en-us.apexcode.meta/apexcode/
langCon_apex_dml_examples_undelete.htm, "undelete ... also restores ... related records that were deleted with
the parent (cascade)").

A record counts as deleted with its parent when its deletion version (in the backup's history) has exactly the
stamp and the user of the deletion version of the record its lookup pointed at. Lookups are found from the
history's columns: `<parent>id` (standard lookups) and `<parent>__c` (custom lookups named after their object),
for parents whose history is backed up; self-lookups (`ParentId`) never cascade in Salesforce (the child's
lookup is cleared), so they are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.names import HISTORY_SCHEMA, ident, qualified, table_name

# Lookups to users, always present and never cascading (users cannot be deleted).
_NOT_PARENTS = frozenset({"ownerid", "createdbyid", "lastmodifiedbyid", "masterrecordid", "id"})
MAX_DEPTH = 4  # Account -> Opportunity -> OpportunityContactRole -> ... and no further

_DELETED_WITH_PARENT = sql.SQL(
    """
    SELECT d.id, coalesce(d.{ref}, p.{ref}) AS parent_id, d.lastmodifiedbyid AS user_id
    FROM {child} AS d
    LEFT JOIN {child} AS p ON p.id = d.id AND p.dbt_valid_to = d.dbt_valid_from
    JOIN {parent} AS pd ON pd.id = coalesce(d.{ref}, p.{ref}) AND pd.dbt_valid_from = d.dbt_valid_from
                       AND pd.isdeleted IS TRUE AND pd.lastmodifiedbyid IS NOT DISTINCT FROM d.lastmodifiedbyid
    WHERE d.dbt_valid_from >= %(start)s AND d.dbt_valid_from < %(end)s AND d.isdeleted IS TRUE
      AND (p.id IS NULL OR p.isdeleted IS NOT TRUE)
    """
)


def backed_up_tables(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """The backup's history tables (lower-cased objects) and their columns, read in one catalog query (a wide
    org backs up hundreds of objects)."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
        "ORDER BY table_name, ordinal_position",
        (HISTORY_SCHEMA,),
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def parent_lookups(columns: Iterable[str], table: str, tables: set[str]) -> dict[str, str]:
    """Lookup columns of a history table to other backed-up objects: column -> parent table."""
    out = {}
    for column in columns:
        if column in _NOT_PARENTS or column.startswith(("dbt_", "_sfp_")):
            continue
        if column.endswith("__c"):
            stem = column[: -len("__c")]
            candidates = (stem, f"{stem}__c")
        elif column.endswith("id"):
            candidates = (column[: -len("id")],)
        else:
            continue
        parent = next((c for c in candidates if c and c in tables and c != table), None)
        if parent is not None:
            out[column] = parent
    return out


_NEEDED = ("id", "isdeleted", "lastmodifiedbyid", "dbt_valid_from", "dbt_valid_to")


def _has_columns(tables: Mapping[str, list[str]], table: str) -> bool:
    present = set(tables.get(table, ()))
    return all(c in present for c in _NEEDED)


def deleted_with_parent(
    conn: psycopg.Connection[Any],
    object_name: str,
    start: datetime,
    end: datetime,
    tables: Mapping[str, list[str]] | None = None,
) -> dict[str, tuple[str, str]]:
    """Records of `object_name` deleted in [start, end) in the same transaction as the parent their lookup
    pointed at: id -> (parent table, parent id). `tables`: `backed_up_tables(conn)`, if already read."""
    tables = backed_up_tables(conn) if tables is None else tables
    child = table_name(object_name)
    if not _has_columns(tables, child):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for column, parent in parent_lookups(tables[child], child, set(tables)).items():
        if not _has_columns(tables, parent):
            continue
        query = _DELETED_WITH_PARENT.format(
            ref=ident(column), child=qualified(HISTORY_SCHEMA, child), parent=qualified(HISTORY_SCHEMA, parent)
        )
        for record_id, parent_id, _user in conn.execute(query, {"start": start, "end": end}):
            out.setdefault(record_id, (parent, parent_id))
    return out


@dataclass
class Cascade:
    """The records deleted with a set of root records, per object (table name -> ids)."""

    beneath: dict[str, list[str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.beneath.values())

    def counts(self, names: Mapping[str, str] | None = None) -> dict[str, int]:
        names = names or {}
        return {names.get(t, t): len(ids) for t, ids in sorted(self.beneath.items())}


def cascade_beneath(
    conn: psycopg.Connection[Any],
    object_name: str,
    root_ids: Iterable[str],
    start: datetime,
    end: datetime,
    tables: Mapping[str, list[str]] | None = None,
) -> Cascade:
    """Every backed-up record deleted in [start, end) with one of `root_ids` (records of `object_name`), their
    children's children included (up to MAX_DEPTH levels)."""
    tables = backed_up_tables(conn) if tables is None else tables
    children_of: dict[str, list[str]] = {}  # parent table -> child tables pointing at it
    for table in sorted(tables):
        for parent in set(parent_lookups(tables[table], table, set(tables)).values()):
            children_of.setdefault(parent, []).append(table)
    cascade = Cascade()
    frontier = {table_name(object_name): set(root_ids)}
    with_parent_cache: dict[str, dict[str, tuple[str, str]]] = {}
    for _ in range(MAX_DEPTH):
        found: dict[str, set[str]] = {}
        for parent, parent_ids in frontier.items():
            if not parent_ids:
                continue
            for child in children_of.get(parent, ()):
                if child not in with_parent_cache:
                    with_parent_cache[child] = deleted_with_parent(conn, child, start, end, tables)
                hits = {rid for rid, (p, pid) in with_parent_cache[child].items() if p == parent and pid in parent_ids}
                if hits:
                    found.setdefault(child, set()).update(hits)
        if not found:
            break
        for child, ids in found.items():
            known = set(cascade.beneath.get(child, ()))
            cascade.beneath[child] = sorted(known | ids)
        frontier = found
    return cascade
