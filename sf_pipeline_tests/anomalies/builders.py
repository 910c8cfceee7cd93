"""History tables in the shape dbt snapshots leave them, built directly with SQL for the anomaly tests.

`salesforce_history.<object>` gets the record's columns (lower-cased field names) plus dbt's
`dbt_scd_id, dbt_updated_at, dbt_valid_from (= SystemModstamp), dbt_valid_to` (null for the current
version, else the next version's valid_from) and the `(id, dbt_valid_from)` index of the snapshot's
post-hook. `History.update/delete` add versions the way a snapshot of the next window does: a copy of
the current version with the changes, stamped `at`, closing the previous one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

WINDOW_START = datetime(2026, 11, 24, 2, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(hours=1)
CREATED = datetime(2026, 11, 1, 8, tzinfo=UTC)

ADMIN = "005000000000000ADM"
INTEGRATION = "005000000000000INT"
SALES1 = "005000000000001SAL"
SALES2 = "005000000000002SAL"
SALES3 = "005000000000003SAL"
SUPPORT = "005000000000000SUP"
USER_NAMES = {
    ADMIN: "Ada Admin",
    INTEGRATION: "Integration User",
    SALES1: "Sam Sales",
    SALES2: "Sue Sales",
    SALES3: "Sid Sales",
    SUPPORT: "Pat Support",
}

# Columns every object gets, as the backup stores them.
SYSTEM_COLUMNS = {
    "id": "varchar(18)",
    "isdeleted": "boolean",
    "createddate": "timestamptz",
    "createdbyid": "varchar(18)",
    "lastmodifieddate": "timestamptz",
    "lastmodifiedbyid": "varchar(18)",
    "systemmodstamp": "timestamptz",
}
DBT_COLUMNS = {
    "dbt_scd_id": "text",
    "dbt_updated_at": "timestamptz",
    "dbt_valid_from": "timestamptz",
    "dbt_valid_to": "timestamptz",
}
PREFIXES = {"account": "001", "contact": "003", "opportunity": "006", "case": "500", "lead": "00Q"}


def record_id(object_name: str, n: int) -> str:
    """A Salesforce-shaped 18-character id: the object's key prefix, then the number."""
    prefix = PREFIXES.get(object_name.lower(), "a0" + str(len(object_name) % 10))
    return prefix + str(n).rjust(15, "0")


def spread(start: datetime, end: datetime, count: int) -> list[datetime]:
    """`count` instants from `start` to `end` inclusive, evenly spaced (milliseconds kept)."""
    if count == 1:
        return [start]
    return [start + (end - start) * i // (count - 1) for i in range(count)]


class History:
    """Builds and changes `salesforce_history.<object>` tables on one connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        conn.execute("CREATE SCHEMA IF NOT EXISTS salesforce_history")

    def _table(self, object_name: str) -> sql.Identifier:
        return sql.Identifier("salesforce_history", object_name.lower())

    def create(self, object_name: str, columns: Mapping[str, str]) -> None:
        """Create the history table of an object with `columns` (name -> PostgreSQL type) besides the
        system and dbt columns."""
        all_columns = {**SYSTEM_COLUMNS, **{k.lower(): v for k, v in columns.items()}, **DBT_COLUMNS}
        self.conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                self._table(object_name),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in all_columns.items()
                ),
            )
        )
        self.conn.execute(sql.SQL("CREATE INDEX ON {} (id, dbt_valid_from)").format(self._table(object_name)))

    def columns(self, object_name: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'salesforce_history' "
            "AND table_name = %s ORDER BY ordinal_position",
            (object_name.lower(),),
        ).fetchall()
        return [r[0] for r in rows]

    def _write(self, object_name: str, rows: Sequence[dict[str, Any]]) -> None:
        columns = self.columns(object_name)
        with self.conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                self._table(object_name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
            )
        ) as copy:
            for row in rows:
                copy.write_row([row.get(c) for c in columns])

    @staticmethod
    def _stamped(row: dict[str, Any], at: datetime, user: str) -> dict[str, Any]:
        scd = hashlib.md5(f"{row['id']}|{at.isoformat()}".encode()).hexdigest()
        return row | {
            "lastmodifieddate": at,
            "lastmodifiedbyid": user,
            "systemmodstamp": at,
            "dbt_scd_id": scd,
            "dbt_updated_at": at,
            "dbt_valid_from": at,
            "dbt_valid_to": None,
        }

    def insert(
        self,
        object_name: str,
        records: Iterable[Mapping[str, Any]],
        at: datetime | Sequence[datetime] = CREATED,
        user: str = ADMIN,
    ) -> list[str]:
        """First versions of new records (each a dict of column -> value with an `id`); returns the ids."""
        records = list(records)
        stamps = [at] * len(records) if isinstance(at, datetime) else list(at)
        rows = []
        for record, stamp in zip(records, stamps, strict=True):
            base = {k.lower(): v for k, v in record.items()}
            base.setdefault("isdeleted", False)
            base.setdefault("createddate", stamp)
            base.setdefault("createdbyid", user)
            rows.append(self._stamped(base, stamp, user))
        self._write(object_name, rows)
        return [r["id"] for r in rows]

    def update(
        self,
        object_name: str,
        ids: Sequence[str],
        changes: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]],
        at: datetime | Sequence[datetime],
        user: str,
    ) -> None:
        """A new version of each record: its current version with `changes` (or `changes(current)`),
        stamped `at` by `user`, the current version closed at that instant."""
        stamps = [at] * len(ids) if isinstance(at, datetime) else list(at)
        if len(stamps) != len(ids):
            raise ValueError("one stamp per record, or one for all")
        with self.conn.cursor(row_factory=dict_row) as cursor:
            current = {
                row["id"]: row
                for row in cursor.execute(
                    sql.SQL("SELECT * FROM {} WHERE id = ANY(%s) AND dbt_valid_to IS NULL").format(
                        self._table(object_name)
                    ),
                    (list(ids),),
                )
            }
        missing = [i for i in ids if i not in current]
        if missing:
            raise KeyError(f"no current version of {missing[:3]} in {object_name}")
        rows = []
        for record_id_, stamp in zip(ids, stamps, strict=True):
            row = dict(current[record_id_])
            if stamp <= row["dbt_valid_from"]:
                raise ValueError(
                    f"{record_id_} changed at {stamp}, not after its current version ({row['dbt_valid_from']})"
                )
            change = changes(row) if callable(changes) else changes
            rows.append(self._stamped(row | {k.lower(): v for k, v in change.items()}, stamp, user))
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL(
                    "UPDATE {} AS h SET dbt_valid_to = v.at FROM unnest(%s::text[], %s::timestamptz[]) AS v(id, at) "
                    "WHERE h.id = v.id AND h.dbt_valid_to IS NULL"
                ).format(self._table(object_name)),
                (list(ids), stamps),
            )
            self._write(object_name, rows)

    def delete(self, object_name: str, ids: Sequence[str], at: datetime | Sequence[datetime], user: str) -> None:
        """Deletion versions (`isdeleted = true`), as queryAll shows records in the recycle bin."""
        self.update(object_name, ids, {"isdeleted": True}, at, user)

    def current(self, object_name: str, column: str) -> dict[str, Any]:
        """id -> value of a column in each record's current version."""
        rows = self.conn.execute(
            sql.SQL("SELECT id, {} FROM {} WHERE dbt_valid_to IS NULL").format(
                sql.Identifier(column), self._table(object_name)
            )
        ).fetchall()
        return dict(rows)
