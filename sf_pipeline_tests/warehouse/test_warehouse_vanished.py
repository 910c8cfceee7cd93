"""Vanished records in the mirror (warehouse/vanished.py): flags, the closing time, and what a reload does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from sf_pipeline.warehouse import ensure_mirror_table, get_mirror_table, load_window
from sf_pipeline.warehouse.vanished import (
    VanishedRecord,
    ensure_vanished_columns,
    flag_window_deletions,
    mark_vanished,
    reconcilable_ids,
)
from sf_pipeline_tests.warehouse.builders import OPPORTUNITY_FIELDS, csv_batch, opportunity

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
FOUND = datetime(2026, 1, 3, 8, tzinfo=UTC)
A, B, C, D = (f"00600000000000{n}AAA" for n in range(1, 5))


@pytest.fixture
def table(pg_conn: psycopg.Connection):
    table = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    load_window(
        pg_conn,
        table,
        [
            csv_batch(
                [
                    opportunity(A, "2026-01-01T10:00:00.000Z"),
                    opportunity(B, "2026-01-01T11:00:00.000Z"),
                    opportunity(C, "2026-01-01T12:00:00.000Z", deleted=True),
                    opportunity(D, "2026-01-01T13:00:00.000Z"),
                ]
            )
        ],
        JAN_1,
        JAN_1 + timedelta(days=1),
    )
    ensure_vanished_columns(pg_conn, table)
    return get_mirror_table(pg_conn, "Opportunity")


def rows(conn: psycopg.Connection) -> dict[str, dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["id"]: r for r in cur.execute("SELECT * FROM salesforce.opportunity")}


def test_the_flag_columns_are_bookkeeping_not_retired_fields(pg_conn, table) -> None:
    again = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    assert again.retired_columns == () and "_sfp_vanished" in again.column_types


def test_a_window_flags_its_deleted_rows_and_an_undelete_clears_the_flag(pg_conn, table) -> None:
    assert flag_window_deletions(pg_conn, table, JAN_1, JAN_1 + timedelta(days=1), FOUND) == {"deleted": 1}
    assert rows(pg_conn)[C]["_sfp_vanished"] == "deleted" and rows(pg_conn)[C]["_sfp_gone"] is False
    load_window(
        pg_conn,
        table,
        [csv_batch([opportunity(C, "2026-01-02T09:00:00.000Z")])],
        JAN_1 + timedelta(days=1),
        JAN_1 + timedelta(days=2),
    )
    flag_window_deletions(pg_conn, table, JAN_1 + timedelta(days=1), JAN_1 + timedelta(days=2), FOUND)
    assert rows(pg_conn)[C]["_sfp_vanished"] is None and rows(pg_conn)[C]["isdeleted"] is False


def test_vanished_rows_are_closed_at_the_best_known_time_and_leave_the_reconciliation(pg_conn, table) -> None:
    window_end = JAN_1 + timedelta(days=2)
    hard_at = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)
    changed = mark_vanished(
        pg_conn,
        table,
        [
            VanishedRecord(A, "hard-deleted", hard_at, by="005000000000001AAA"),
            VanishedRecord(B, "unknown"),
            VanishedRecord(C, "purged"),  # it was in the recycle bin: its deleted version stays the closing one
            # a time before the record's last version cannot close it: one millisecond after it instead
            VanishedRecord(D, "purged", datetime(2026, 1, 1, 0, tzinfo=UTC), exact=False),
        ],
        FOUND,
        window_end,
    )
    assert changed == 4
    got = rows(pg_conn)
    assert (got[A]["isdeleted"], got[A]["systemmodstamp"], got[A]["_sfp_vanished_at"], got[A]["_sfp_vanished_by"]) == (
        True,
        hard_at,
        hard_at,
        "005000000000001AAA",
    )
    assert got[A]["_sfp_vanished_after"] is None and got[A]["_sfp_found_in_window"] == window_end
    assert (got[B]["systemmodstamp"], got[B]["_sfp_vanished"]) == (FOUND, "unknown")
    assert got[B]["_sfp_vanished_after"] == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert (got[C]["systemmodstamp"], got[C]["_sfp_vanished"], got[C]["_sfp_gone"]) == (
        datetime(2026, 1, 1, 12, tzinfo=UTC),
        "purged",
        True,
    )
    assert got[D]["systemmodstamp"] == datetime(2026, 1, 1, 13, tzinfo=UTC) + timedelta(milliseconds=1)
    assert all(r["_sfp_gone"] for r in got.values())
    assert reconcilable_ids(pg_conn, table, None) == []
    # marking again changes nothing
    assert mark_vanished(pg_conn, table, [VanishedRecord(A, "unknown")], FOUND, window_end) == 0


def test_an_unknown_cause_is_refused() -> None:
    with pytest.raises(ValueError, match="cause must be one of"):
        VanishedRecord(A, "vaporized")
