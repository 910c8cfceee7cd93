"""All SQL of seeding: reads of the backup history as of an instant. The id map lives with the restore tables
(`sf_pipeline.id_map`), which translate a restore's ids through it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.history import as_of_sql
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, qualified, table_name


def records_as_of(
    conn: psycopg.Connection[Any],
    sobject: str,
    columns: Sequence[str],
    as_of: datetime,
    ids: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Records of `sobject` as they were at `as_of` (all of them, or those of `ids`), id -> {column: value}."""
    query = as_of_sql(sobject, columns, by_ids=ids is not None)
    params: dict[str, Any] = {"as_of": as_of}
    if ids is not None:
        params["ids"] = list(ids)
    out: dict[str, dict[str, Any]] = {}
    with conn.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        for row in cur:
            values = dict(zip(names, row, strict=True))
            out[values["id"]] = values
    return out


def ids_changed(
    conn: psycopg.Connection[Any], sobject: str, start: datetime, end: datetime, user_id: str | None
) -> list[str]:
    """Ids of the records with a version stamped in [start, end) (by `user_id`, if given)."""
    by_user = sql.SQL(" AND lastmodifiedbyid = %(user)s") if user_id else sql.SQL("")
    query = sql.SQL(
        "SELECT DISTINCT id FROM {} WHERE dbt_valid_from >= %(start)s AND dbt_valid_from < %(end)s{} ORDER BY id"
    ).format(qualified(HISTORY_SCHEMA, table_name(sobject)), by_user)
    return [r[0] for r in conn.execute(query, {"start": start, "end": end, "user": user_id})]
