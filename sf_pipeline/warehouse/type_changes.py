"""A field whose type changed in Salesforce: its mirror and history columns follow, no value lost or cut.

An admin may change a custom field's type (Salesforce Help, "Considerations for Converting the Field Type
of a Custom Field"). The backup then meets values of the new type in a column of the old one: text in a
`numeric` column stops the load, a date-time in a `date` column loses its time. So, before a window loads:
- where PostgreSQL converts every old value losslessly to the new type (anything to `text`, `date` to
  `timestamptz`, `varchar(18)` to `text`, `bigint` to `numeric`), the column is changed in place with
  `ALTER TABLE ... ALTER COLUMN ... TYPE ... USING`, and old values read as the new type;
- otherwise (text to number, date-time to date, number to boolean, ...) the old column is renamed to
  `<column>__<old type>` (e.g. `amount__c__text`; a second one gets `_2`, ...), keeping every old value,
  and a new column of the new type takes the field's name. Salesforce field names never hold a double
  underscore except in their suffix, so the name cannot meet a real field's.
The same change is made to the mirror (`salesforce.<object>`) and to history (`salesforce_history.<object>`,
the dbt snapshot), so that the snapshot's insert finds matching columns and old versions keep their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.names import ident, qualified

# PostgreSQL's own spelling (format_type) of the types in schema.PG_TYPES.
_CANONICAL = {
    "varchar(18)": "character varying(18)",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "int": "integer",
}
_SHORT = {
    "character varying(18)": "varchar",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "double precision": "double",
}


def canonical_type(pg_type: str) -> str:
    """A type as PostgreSQL's format_type spells it (`timestamptz` -> `timestamp with time zone`)."""
    return _CANONICAL.get(pg_type, pg_type)


def _widening_using(old: str, new: str, column: sql.Identifier) -> sql.Composable | None:
    """The USING expression converting `old` to `new` without loss, or None when there is none."""
    if old == new:
        return None
    if new == "text":
        return sql.SQL("{}::text").format(column)
    if old == "date" and new == "timestamp with time zone":
        # midnight UTC of the day, whatever the session's TimeZone
        return sql.SQL("({}::timestamp AT TIME ZONE 'UTC')").format(column)
    if old in ("bigint", "integer") and new == "numeric":
        return sql.SQL("{}::numeric").format(column)
    return None


@dataclass(frozen=True)
class ColumnTypeChange:
    """A column whose field changed type: `altered` in place, or the old values kept in `kept_as`."""

    column: str
    old_type: str
    new_type: str
    kept_as: str | None = None  # None: the column was altered in place

    def describe(self) -> str:
        how = "altered in place, values converted" if self.kept_as is None else f"old values kept in {self.kept_as}"
        return f"{self.column}: {self.old_type} -> {self.new_type} ({how})"


def _kept_name(column: str, old_type: str, taken: set[str]) -> str:
    base = f"{column}__{_SHORT.get(old_type, old_type.split('(')[0].replace(' ', '_'))}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def plan_type_changes(existing: Sequence[tuple[str, str]], wanted: Sequence[tuple[str, str]]) -> list[ColumnTypeChange]:
    """The changes that give each existing column of `wanted` its wanted type (plain decision, no database)."""
    have = dict(existing)
    taken = set(have)
    changes = []
    for name, pg_type in wanted:
        old = have.get(name)
        new = canonical_type(pg_type)
        if old is None or old == new:
            continue
        if _widening_using(old, new, ident(name)) is not None:
            changes.append(ColumnTypeChange(name, old, new))
        else:
            kept = _kept_name(name, old, taken)
            taken.add(kept)
            changes.append(ColumnTypeChange(name, old, new, kept))
    return changes


def apply_type_changes(
    conn: psycopg.Connection[Any], schema: str, table: str, changes: Sequence[ColumnTypeChange]
) -> list[ColumnTypeChange]:
    """Make `changes` to `schema.table` where its column still has the old type; returns those made.

    Runs in the caller's transaction. A table without the column (history not created yet, a column the
    snapshot never had) is left alone.
    """
    from sf_pipeline.warehouse.schema import table_columns

    have = dict(table_columns(conn, schema, table))
    target = qualified(schema, table)
    made = []
    for change in changes:
        if have.get(change.column) != change.old_type:
            continue
        column = ident(change.column)
        if change.kept_as is None:
            using = _widening_using(change.old_type, change.new_type, column)
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
                    target, column, sql.SQL(change.new_type), using
                )
            )
        else:
            conn.execute(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(target, column, ident(change.kept_as)))
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(target, column, sql.SQL(change.new_type)))
        made.append(change)
    return made
