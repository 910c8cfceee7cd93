"""The indexes an erasure request's lookups need, made with the tables they search.

`forget` finds a data subject by e-mail address in every version of the configured match fields
(`forget: match_fields`, case-insensitively): on a history of millions of versions that is an index lookup
only if an expression index on `lower(<column>)` exists. Building it at the first request took 43 s on a
10,000,000-version history (BENCHMARKS.md "privacy"); so the backup makes these indexes when it makes or
meets the mirror and history tables (each window checks the catalog and builds only what is missing, which
also covers tables made before this existed), and a request finds them ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.ddl import commit
from sf_pipeline.warehouse.names import column_name, ident, qualified, table_name
from sf_pipeline.warehouse.schema import table_columns

# Where an e-mail address is looked for when no `forget: match_fields` is configured (those of the backed-up
# objects that exist). The forget job validates the setting (sf_pipeline.privacy.forget.match_fields).
DEFAULT_MATCH_FIELDS = ("Contact.Email", "Lead.Email", "Case.SuppliedEmail", "Account.PersonEmail")
_DDL_LOCK_KEY = 0x5F_4C4F_4F4B_5550  # "_LOOKUP": two windows of one object build an index once


def match_field_names(privacy_settings: Mapping[str, Any]) -> list[str]:
    """`Object.Field` names an e-mail address is matched on: the settings' or the defaults."""
    block = privacy_settings.get("forget")
    configured = block.get("match_fields") if isinstance(block, Mapping) else None
    return [str(n) for n in (configured if configured is not None else DEFAULT_MATCH_FIELDS)]


def email_columns(privacy_settings: Mapping[str, Any], object_name: str) -> list[str]:
    """The columns of `object_name` an e-mail lookup searches (lower-cased field names)."""
    out = []
    for name in match_field_names(privacy_settings):
        parts = name.split(".")
        if len(parts) == 2 and parts[0].lower() == object_name.lower() and parts[1]:
            out.append(column_name(parts[1]))
    return out


def lower_index_name(table: str, column: str) -> str:
    # the name forget gave the index when it built it on first use: such an index is found, not rebuilt
    return f"{table}_{column}_lower_idx"[:63]


def ensure_lookup_indexes(
    conn: psycopg.Connection[Any],
    schema: str,
    object_name: str,
    columns: Sequence[str],
    present: Iterable[str] | None = None,
) -> list[str]:
    """Create the `lower(column)` indexes of `schema.<object>` that are missing; the names of those built.

    Reads the catalog first, so a call that finds them all costs one query and takes no lock on the table
    (CREATE INDEX IF NOT EXISTS would wait for the table's share lock even when the index exists). Columns the
    table does not have (a match field of another org shape, e.g. Account.PersonEmail) are skipped. Commits.
    An object with no match field costs nothing; `present`: the table's columns when the caller has them.
    """
    if not columns:
        return []
    table = table_name(object_name)
    present = set(present) if present is not None else {name for name, _ in table_columns(conn, schema, table)}
    wanted = {lower_index_name(table, c): c for c in columns if c in present}
    if not wanted:
        return []
    have = {
        r[0]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (schema, table)
        )
    }
    missing = {name: c for name, c in wanted.items() if name not in have}
    if not missing:
        return []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for name, column in missing.items():
            conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (lower({}))").format(
                    ident(name), qualified(schema, table), ident(column)
                )
            )
    commit(conn)
    return sorted(missing)
