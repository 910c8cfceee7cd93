"""Mirror tables from Salesforce describe: type mapping, DDL and schema drift.

One table per object in schema `salesforce`, one column per backed-up field, named by the
lower-cased API names. A field added in Salesforce becomes a new column; a field that disappears
keeps its column (and its history), because dropping data is never the backup's call to make.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.errors import WarehouseSchemaError
from sf_pipeline.warehouse.names import (
    HISTORY_SCHEMA,
    MIRROR_SCHEMA,
    column_name,
    ident,
    qualified,
    table_name,
)
from sf_pipeline.warehouse.type_changes import ColumnTypeChange, apply_type_changes, plan_type_changes

# Salesforce describe `type` -> PostgreSQL type. Anything not listed is kept as text, which never
# loses information (Salesforce sends every value as text in Bulk CSV anyway).
PG_TYPES: Mapping[str, str] = {
    "id": "varchar(18)",
    "reference": "varchar(18)",
    "string": "text",
    "textarea": "text",
    "picklist": "text",
    "multipicklist": "text",
    "email": "text",
    "phone": "text",
    "url": "text",
    "combobox": "text",
    "encryptedstring": "text",
    "boolean": "boolean",
    "int": "bigint",
    "double": "double precision",
    "percent": "double precision",
    "currency": "numeric",
    "date": "date",
    "datetime": "timestamptz",
    "time": "time",
}
DEFAULT_PG_TYPE = "text"

# Compound fields duplicate their component fields (BillingStreet, BillingCity, ...), which are
# backed up on their own; base64 bodies cannot be read by a query at all (only one record at a time
# through the blob endpoint), so a bulk backup cannot carry them.
SKIPPED_TYPES = frozenset({"address", "location", "base64"})

# The upsert needs both: `id` is the conflict key, `systemmodstamp` decides which version wins.
REQUIRED_FIELDS = ("id", "systemmodstamp")

# One lock for all warehouse DDL: CREATE SCHEMA/TABLE ... IF NOT EXISTS are not safe against a
# concurrent twin (both may pass the existence check and one then fails on a unique index of the
# catalog), so two processes preparing the same object serialize on this key instead.
_DDL_LOCK_KEY = 0x5F_5049_5045_4C4E  # "sf pipeln", any constant bigint works

_EXISTING_COLUMNS = sql.SQL(
    """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
    """
)


def pg_type_for(field: Mapping[str, Any]) -> str:
    """PostgreSQL type for one describe field (`text` for types we do not know)."""
    return PG_TYPES.get(str(field.get("type", "")).lower(), DEFAULT_PG_TYPE)


def backup_fields(describe_fields: Iterable[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The describe fields a backup stores: all but compound, base64 and excluded ones.

    `exclude` holds field API names in any case (`description` excludes `Description`).
    """
    excluded = {name.lower() for name in exclude}
    return [
        dict(field)
        for field in describe_fields
        if str(field.get("type", "")).lower() not in SKIPPED_TYPES and str(field["name"]).lower() not in excluded
    ]


@dataclass(frozen=True)
class MirrorColumn:
    """A column of a mirror table and its PostgreSQL type as the catalog reports it."""

    name: str
    pg_type: str


@dataclass(frozen=True)
class MirrorTable:
    """A mirror table as it is after `ensure_mirror_table`.

    `columns` lists every column in table order, including retired ones (fields no longer in the
    describe), since old rows still carry their values. `added_columns` are those created by this
    call; `created` says the table itself was new.
    """

    object_name: str
    schema: str
    name: str
    columns: tuple[MirrorColumn, ...]
    created: bool = False
    added_columns: tuple[str, ...] = ()
    retired_columns: tuple[str, ...] = ()
    type_changes: tuple[ColumnTypeChange, ...] = ()

    @property
    def identifier(self) -> sql.Identifier:
        return qualified(self.schema, self.name)

    @property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.pg_type for c in self.columns}


_TABLES_COLUMNS = sql.SQL(
    """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s) AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY c.relname, a.attnum
    """
)


def table_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    """(name, type) of every column of a table, in table order; empty when the table does not exist."""
    return list(conn.execute(_EXISTING_COLUMNS, {"schema": schema, "table": table}).fetchall())


def mirror_columns(
    conn: psycopg.Connection[Any], object_names: Iterable[str], schema: str = MIRROR_SCHEMA
) -> dict[str, list[tuple[str, str]]]:
    """`table_columns` of many objects' tables in one catalog query (object name -> columns; empty when the
    table does not exist): what `ensure_mirror_table(existing=...)` compares a describe with, so a step of
    hundreds of objects reads the catalog once instead of twice per object under the DDL lock."""
    names = {table_name(o): o for o in object_names}
    found: dict[str, list[tuple[str, str]]] = {o: [] for o in names.values()}
    for table, column, pg_type in conn.execute(_TABLES_COLUMNS, {"schema": schema, "tables": list(names)}):
        found[names[table]].append((column, pg_type))
    return found


def _create_table_sql(target: sql.Identifier, columns: Sequence[tuple[str, str]]) -> sql.Composed:
    definitions = [
        sql.SQL("{} {}{}").format(
            ident(name),
            sql.SQL(pg_type),
            sql.SQL(" NOT NULL") if name == "systemmodstamp" else sql.SQL(""),
        )
        for name, pg_type in columns
    ]
    return sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
        target, sql.SQL(", ").join(definitions), ident("id")
    )


def ensure_mirror_table(
    conn: psycopg.Connection[Any],
    object_name: str,
    describe_fields: Iterable[Mapping[str, Any]],
    schema: str = MIRROR_SCHEMA,
    exclude: Iterable[str] = (),
    existing: Sequence[tuple[str, str]] | None = None,
) -> MirrorTable:
    """Create the mirror table of an object, or add columns for fields that are new since last time.

    Safe to call before every load: it only takes a short lock and does nothing when the table is
    already up to date. Commits its own transaction (or savepoint, inside a caller's transaction).
    A field whose type changed gets its column changed in the mirror and in history (type_changes.py).
    `existing`: the table's columns as the caller just read them (`mirror_columns`); when they already hold
    every field with its type, the table is returned as it is, with no lock and no further catalog read (the
    backup never drops or narrows a column, so a table found up to date stays so). Otherwise the usual path.
    """
    fields = backup_fields(describe_fields, exclude)
    wanted = [(column_name(f["name"]), pg_type_for(f)) for f in fields]
    missing_required = [c for c in REQUIRED_FIELDS if c not in {name for name, _ in wanted}]
    if missing_required:
        raise WarehouseSchemaError(
            f"{object_name} cannot be backed up: its describe has no "
            f"{' or '.join(missing_required)} field (needed to identify records and order their "
            "versions); check the describe, and the exclude list if one was given"
        )

    table = table_name(object_name)
    target = qualified(schema, table)
    described = {name for name, _ in wanted}
    if existing and _up_to_date(existing, wanted):
        return MirrorTable(
            object_name=object_name,
            schema=schema,
            name=table,
            columns=tuple(MirrorColumn(name, pg_type) for name, pg_type in existing),
            retired_columns=tuple(
                name for name, _ in existing if name not in described and not name.startswith("_sfp_")
            ),
        )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        existing = table_columns(conn, schema, table)
        created = not existing
        if created:
            # The history schema too: parallel dbt snapshot steps would otherwise race to create it
            # (CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent twin).
            for name in (schema, HISTORY_SCHEMA):
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(name)))
            conn.execute(_create_table_sql(target, wanted))
            conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(target, ident("systemmodstamp")))
            added: list[str] = []
            changed: list[ColumnTypeChange] = []
        else:
            have = {name for name, _ in existing}
            absent_required = [c for c in REQUIRED_FIELDS if c not in have]
            if absent_required:
                raise WarehouseSchemaError(
                    f"table {schema}.{table} exists but has no {' or '.join(absent_required)} column; "
                    "it was not created by sf-pipeline: rename or drop it, or choose another schema"
                )
            added = [name for name, _ in wanted if name not in have]
            for name, pg_type in wanted:
                if name in added:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                            target, ident(name), sql.SQL(pg_type)
                        )
                    )
            changed = apply_type_changes(conn, schema, table, plan_type_changes(existing, wanted))
            if changed and schema == MIRROR_SCHEMA:
                # history (the dbt snapshot) has the same columns: change them alike, or its insert fails
                apply_type_changes(conn, HISTORY_SCHEMA, table, changed)
        final = table_columns(conn, schema, table)

    return MirrorTable(
        object_name=object_name,
        schema=schema,
        name=table,
        columns=tuple(MirrorColumn(name, pg_type) for name, pg_type in final),
        created=created,
        added_columns=tuple(added),
        type_changes=tuple(changed),
        retired_columns=tuple(name for name, _ in final if name not in described and not name.startswith("_sfp_")),
    )


def _up_to_date(existing: Sequence[tuple[str, str]], wanted: Sequence[tuple[str, str]]) -> bool:
    """Whether a table with columns `existing` already holds every wanted column with its type, and the columns
    the upsert needs: `ensure_mirror_table` would change nothing."""
    have = {name for name, _ in existing}
    return (
        all(c in have for c in REQUIRED_FIELDS)
        and all(name in have for name, _ in wanted)
        and not plan_type_changes(list(existing), list(wanted))
    )


def get_mirror_table(conn: psycopg.Connection[Any], object_name: str, schema: str = MIRROR_SCHEMA) -> MirrorTable:
    """The existing mirror table of an object, read from the catalog (no describe needed)."""
    table = table_name(object_name)
    columns = table_columns(conn, schema, table)
    if not columns:
        raise WarehouseSchemaError(
            f"no mirror table {schema}.{table} for {object_name}: call ensure_mirror_table with the "
            "object's describe first"
        )
    return MirrorTable(
        object_name=object_name,
        schema=schema,
        name=table,
        columns=tuple(MirrorColumn(name, pg_type) for name, pg_type in columns),
    )
