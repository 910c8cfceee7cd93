"""A plan as stored in `sf_pipeline.restore_items`, read back as RecordItems a chunk of records at a time.

A restore of 100,000 records never holds them all: planning stores each chunk of classified records as it goes,
and apply and verify read the stored items back chunk by chunk (tables.CHUNK_RECORDS), so what a restore holds
is one chunk's worth whatever the incident's size. `StoredRecords` is a plan's records for a person (or a test)
to look through; the restore itself reads `chunks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import psycopg
from psycopg import sql

from sf_pipeline.restore import tables
from sf_pipeline.restore.decisions import (
    CREATE,
    NONE,
    NOT_RESTORABLE,
    RESTORE,
    UNDELETE,
    FieldItem,
    RecordItem,
    record_status,
)
from sf_pipeline.salesforce.values import converter


class StoredRecords(Sequence[RecordItem]):
    """The records of a stored plan (with the outcome apply recorded for each), read from the database when
    looked at: iterating reads them a chunk at a time, in record id order.

    A plan of one chunk also keeps its records as planned (`as_planned`, no larger than a chunk), so that it can
    still be looked at once its connection is closed.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        run_id: str,
        field_types: Mapping[str, str],
        order: Sequence[str],
        as_planned: list[RecordItem] | None = None,
    ):
        self.conn = conn
        self.run_id = run_id
        self._convert = {f: converter(t) for f, t in field_types.items()}
        self._position = {f: i for i, f in enumerate(dict.fromkeys(order))}
        self.as_planned = sorted(as_planned, key=lambda r: r.record_id) if as_planned is not None else None

    def chunks(
        self,
        where: sql.Composable | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Iterator[list[RecordItem]]:
        """The records with an item matching `where` (all without it), tables.CHUNK_RECORDS at a time, read through
        `conn` (default: the connection the plan was made or loaded with)."""
        for rows in tables.item_chunks(conn or self.conn, self.run_id, where=where, params=params):
            yield records_from_rows(rows, self._convert, self._position)

    def __iter__(self) -> Iterator[RecordItem]:
        if self.conn.closed and self.as_planned is not None:
            yield from self.as_planned
            return
        for chunk in self.chunks():
            yield from chunk

    def __len__(self) -> int:
        if self.conn.closed and self.as_planned is not None:
            return len(self.as_planned)
        return tables.count_plan_records(self.conn, self.run_id)

    @overload
    def __getitem__(self, index: int) -> RecordItem: ...
    @overload
    def __getitem__(self, index: slice) -> list[RecordItem]: ...
    def __getitem__(self, index: int | slice) -> RecordItem | list[RecordItem]:
        return list(self)[index]

    def __repr__(self) -> str:
        return f"StoredRecords(run_id={self.run_id!r})"


def records_from_rows(
    rows: Iterable[tuple], convert: Mapping[str, Any], position: Mapping[str, int]
) -> list[RecordItem]:
    """RecordItems from restore_items rows ordered by record (see tables.item_chunks), values back in canonical
    form, each with the outcome and error apply recorded (None before)."""
    records: list[RecordItem] = []
    current_id: str | None = None
    items: list[tuple] = []
    for row in rows:
        if row[0] != current_id:
            if current_id is not None:
                records.append(_record(current_id, items, convert, position))
            current_id, items = row[0], []
        items.append(row)
    if current_id is not None:
        records.append(_record(current_id, items, convert, position))
    return records


def _record(record_id: str, rows: list[tuple], convert: Mapping[str, Any], position: Mapping[str, int]) -> RecordItem:
    action = rows[0][2]
    outcome, error = rows[0][8:10] if len(rows[0]) > 8 else (None, None)
    if len(rows) == 1 and rows[0][1] is None:  # a record-level row: nothing per field
        status, reason = rows[0][6], rows[0][7]
        return RecordItem(record_id, status, action, reason, [], outcome, error)
    fields = []
    for _rid, name, _a, current, desired, damaged, status, reason, *_outcome in sorted(
        rows, key=lambda r: position.get(r[1], len(position))
    ):
        conv = convert.get(name)
        if conv is not None:
            current, desired, damaged = conv(current), conv(desired), conv(damaged)
        fields.append(FieldItem(name, current, desired, damaged, status, reason))
    if action in (UNDELETE, CREATE):
        reason = next((f.reason for f in fields if f.status != NOT_RESTORABLE and f.reason), None) or fields[0].reason
        return RecordItem(record_id, RESTORE, action, reason, fields, outcome, error)
    if action == NONE:
        return RecordItem(record_id, NOT_RESTORABLE, action, fields[0].reason, fields, outcome, error)
    status, reason = record_status(fields)
    return RecordItem(record_id, status, action, reason, fields, outcome, error)


__all__ = ["StoredRecords", "records_from_rows"]
