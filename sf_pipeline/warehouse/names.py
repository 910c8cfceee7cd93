"""Where Salesforce objects and fields live in PostgreSQL, and the one helper that quotes them.

Every module of the warehouse builds identifiers through these functions, so an object called
`Order` (a reserved word) or a custom field with odd casing can never break or inject SQL.
"""

from __future__ import annotations

from psycopg import sql

MIRROR_SCHEMA = "salesforce"
HISTORY_SCHEMA = "salesforce_history"


def table_name(object_name: str) -> str:
    """Table name of an object: its API name lower-cased (`Invoice__c` -> `invoice__c`)."""
    return object_name.lower()


def column_name(field_name: str) -> str:
    """Column name of a field: its API name lower-cased (`SystemModstamp` -> `systemmodstamp`).

    Salesforce field names are unique regardless of case, so lower-casing never merges two fields.
    """
    return field_name.lower()


def qualified(schema: str, table: str) -> sql.Identifier:
    """A quoted `schema.table` identifier."""
    return sql.Identifier(schema, table)


def ident(name: str) -> sql.Identifier:
    """A quoted column or index identifier."""
    return sql.Identifier(name)


def idents(names: list[str] | tuple[str, ...], prefix: str | None = None) -> sql.Composed:
    """A comma-separated list of quoted identifiers, optionally qualified by a table alias."""
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
