"""Loading windows into the mirror: counts, newest-version-wins, all-or-nothing, clear errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg.rows import dict_row

from sf_pipeline.warehouse import MirrorTable, WarehouseLoadError, ensure_mirror_table, load_window
from sf_pipeline_tests.warehouse.builders import (
    COLUMNS,
    OPPORTUNITY_FIELDS,
    csv_batch,
    json_batch,
    opportunity,
    stored,
)

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_2 = JAN_1 + timedelta(days=1)
JAN_3 = JAN_2 + timedelta(days=1)

A = "006000000000001AAA"
B = "006000000000002AAA"
C = "006000000000003AAA"
D = "006000000000004AAA"

WINDOW_1 = [
    opportunity(A, "2026-01-01T10:00:00.000Z", amount="100"),
    opportunity(B, "2026-01-01T11:00:00.000Z", amount="200"),
    opportunity(C, "2026-01-01T12:00:00.000Z", amount=None),
]
# A's amount changed, B was deleted (queryAll returns it with IsDeleted = true), D is new.
WINDOW_2 = [
    opportunity(A, "2026-01-02T09:00:00.000Z", amount="150"),
    opportunity(B, "2026-01-02T10:00:00.000Z", amount="200", deleted=True),
    opportunity(D, "2026-01-02T11:00:00.000Z", amount="400"),
]


@pytest.fixture
def mirror(pg_conn: psycopg.Connection) -> MirrorTable:
    return ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)


def mirror_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            "SELECT id, isdeleted, name, amount, closedate, fiscalyear, systemmodstamp "
            "FROM salesforce.opportunity ORDER BY id"
        ).fetchall()


def counts(result: Any) -> dict[str, int]:
    return {
        k: getattr(result, k) for k in ("extracted", "inserted", "updated", "unchanged", "deleted", "outside_window")
    }


def test_first_window_inserts_every_record_with_typed_values(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    result = load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)

    assert counts(result) == {
        "extracted": 3,
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "outside_window": 0,
    }
    assert result.bytes > 0 and result.into_empty_table
    assert mirror_rows(pg_conn) == [stored(r) for r in WINDOW_1]
    # Salesforce has no empty strings: an empty CSV field, quoted or not, is null.
    assert pg_conn.execute("SELECT count(*) FROM salesforce.opportunity WHERE description IS NULL").fetchone() == (3,)


def test_newer_window_updates_changed_records_keeps_deleted_ones_flagged_and_adds_new_ones(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)

    result = load_window(pg_conn, mirror, [csv_batch(WINDOW_2[:2]), csv_batch(WINDOW_2[2:])], JAN_2, JAN_3)

    assert counts(result) == {
        "extracted": 3,
        "inserted": 1,
        "updated": 2,
        "unchanged": 0,
        "deleted": 1,
        "outside_window": 0,
    }
    assert result.into_empty_table is False
    assert mirror_rows(pg_conn) == [stored(r) for r in (WINDOW_2[0], WINDOW_2[1], WINDOW_1[2], WINDOW_2[2])]


def test_reloading_an_older_window_never_overwrites_newer_data(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)
    load_window(pg_conn, mirror, [csv_batch(WINDOW_2)], JAN_2, JAN_3)
    before = mirror_rows(pg_conn)

    result = load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)

    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 3)
    assert mirror_rows(pg_conn) == before


def test_windows_loaded_in_reverse_order_end_in_the_same_state(pg_url: str) -> None:
    def final_state(order: list[tuple[list[dict[str, Any]], datetime, datetime]]) -> list[dict[str, Any]]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS salesforce CASCADE")
            table = ensure_mirror_table(conn, "Opportunity", OPPORTUNITY_FIELDS)
            for records, start, end in order:
                load_window(conn, table, [csv_batch(records)], start, end)
            return mirror_rows(conn)

    forward = final_state([(WINDOW_1, JAN_1, JAN_2), (WINDOW_2, JAN_2, JAN_3)])
    backward = final_state([(WINDOW_2, JAN_2, JAN_3), (WINDOW_1, JAN_1, JAN_2)])

    assert backward == forward


def test_loading_the_same_window_twice_changes_nothing(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)
    before = mirror_rows(pg_conn)

    again = load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)

    assert (again.extracted, again.inserted, again.updated, again.unchanged) == (3, 0, 0, 3)
    assert mirror_rows(pg_conn) == before


def test_typed_json_batches_store_the_same_values_as_csv_strings(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    result = load_window(pg_conn, mirror, [json_batch(WINDOW_1)], JAN_1, JAN_2)

    assert json_batch(WINDOW_1).schema.field("IsDeleted").type == pa.bool_()
    assert (result.inserted, result.deleted) == (3, 0)
    assert mirror_rows(pg_conn) == [stored(r) for r in WINDOW_1]

    update = load_window(pg_conn, mirror, [json_batch(WINDOW_2)], JAN_2, JAN_3)
    assert (update.inserted, update.updated, update.deleted) == (1, 2, 1)


def test_extractor_failing_mid_stream_leaves_the_mirror_untouched(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)
    before = mirror_rows(pg_conn)

    def extraction_that_dies() -> Iterator[pa.RecordBatch]:
        yield csv_batch(WINDOW_2[:2])
        raise ConnectionResetError("Salesforce closed the connection")

    with pytest.raises(ConnectionResetError):
        load_window(pg_conn, mirror, extraction_that_dies(), JAN_2, JAN_3)

    assert mirror_rows(pg_conn) == before
    # The connection is still usable and the next attempt loads the window.
    retry = load_window(pg_conn, mirror, [csv_batch(WINDOW_2)], JAN_2, JAN_3)
    assert (retry.inserted, retry.updated) == (1, 2)


@pytest.mark.parametrize(
    ("field", "bad_value", "column"),
    [
        ("Amount", "12,50", "amount"),
        ("CloseDate", "2026-02-30", "closedate"),
        ("FiscalYear", "2026.5", "fiscalyear"),
        ("IsDeleted", "maybe", "isdeleted"),
        ("AccountId", "001000000000001AAAXYZ", "accountid"),
        ("SystemModstamp", "yesterday-ish", "systemmodstamp"),
    ],
)
def test_value_that_does_not_fit_its_column_names_object_column_record_and_value(
    pg_conn: psycopg.Connection, mirror: MirrorTable, field: str, bad_value: str, column: str
) -> None:
    load_window(pg_conn, mirror, [csv_batch(WINDOW_1)], JAN_1, JAN_2)
    before = mirror_rows(pg_conn)
    broken = [*WINDOW_2[:2], {**WINDOW_2[2], field: bad_value}]

    with pytest.raises(WarehouseLoadError) as caught:
        load_window(pg_conn, mirror, [csv_batch(broken)], JAN_2, JAN_3)

    error = caught.value
    assert (error.object_name, error.column, error.value, error.record_id) == (
        "Opportunity",
        column,
        bad_value,
        D,
    )
    assert f"Opportunity.{column}" in str(error) and bad_value in str(error) and D in str(error)
    assert mirror_rows(pg_conn) == before


def test_record_without_id_is_rejected_and_nothing_is_loaded(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    with pytest.raises(WarehouseLoadError, match=r"Opportunity\.id.*empty"):
        load_window(
            pg_conn,
            mirror,
            [csv_batch([*WINDOW_1, opportunity("", "2026-01-01T13:00:00.000Z")])],
            JAN_1,
            JAN_2,
        )

    assert mirror_rows(pg_conn) == []


def test_record_twice_in_one_window_keeps_its_newest_version(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    newest = opportunity(A, "2026-01-01T15:00:00.000Z", name="renamed")
    records = [newest, *WINDOW_1]

    result = load_window(pg_conn, mirror, [csv_batch(records[:2]), csv_batch(records[2:])], JAN_1, JAN_2)

    assert (result.extracted, result.inserted, result.unchanged) == (4, 3, 1)
    assert mirror_rows(pg_conn)[0] == stored(newest)


def test_columns_missing_from_the_extract_are_left_untouched(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    with_description = [opportunity(A, "2026-01-01T10:00:00.000Z", description="key account")]
    load_window(pg_conn, mirror, [csv_batch(with_description)], JAN_1, JAN_2)
    narrow = [c for c in COLUMNS if c != "Description"]

    load_window(pg_conn, mirror, [csv_batch([WINDOW_2[0]], columns=narrow)], JAN_2, JAN_3)

    assert pg_conn.execute("SELECT description, amount FROM salesforce.opportunity").fetchone() == (
        "key account",
        stored(WINDOW_2[0])["amount"],
    )


def test_batches_of_one_window_with_different_columns_are_rejected(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    narrow = [c for c in COLUMNS if c != "Amount"]
    batches = [csv_batch(WINDOW_1[:1]), csv_batch(WINDOW_1[1:], columns=narrow)]

    with pytest.raises(WarehouseLoadError, match=r"same columns.*without \['amount'\]"):
        load_window(pg_conn, mirror, batches, JAN_1, JAN_2)

    assert mirror_rows(pg_conn) == []


def test_column_unknown_to_the_mirror_is_rejected_with_what_to_do(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    batch = csv_batch(WINDOW_1).append_column("Region__c", pa.array(["EMEA"] * 3))

    with pytest.raises(WarehouseLoadError, match="'Region__c' has no column.*ensure_mirror_table"):
        load_window(pg_conn, mirror, [batch], JAN_1, JAN_2)


def test_column_order_and_case_of_batches_do_not_matter(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    shuffled = csv_batch(WINDOW_1[:1], columns=list(reversed(COLUMNS)))
    lower = csv_batch(WINDOW_1[1:])
    lower = lower.rename_columns([c.lower() for c in lower.schema.names])

    load_window(pg_conn, mirror, [shuffled, lower], JAN_1, JAN_2)

    assert mirror_rows(pg_conn) == [stored(r) for r in WINDOW_1]


def test_rows_stamped_outside_the_window_are_applied_and_counted(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    result = load_window(pg_conn, mirror, [csv_batch(WINDOW_1 + WINDOW_2[2:])], JAN_1, JAN_2)

    assert (result.inserted, result.outside_window) == (4, 1)


def test_empty_window_loads_nothing_and_says_so(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    result = load_window(pg_conn, mirror, [csv_batch([])], JAN_1, JAN_2)

    assert (result.extracted, result.inserted, result.bytes) == (0, 0, 0)
    assert result.as_metadata()["extracted"] == 0


def test_empty_window_says_whether_the_mirror_was_empty_as_a_load_would(
    pg_conn: psycopg.Connection, mirror: MirrorTable
) -> None:
    # an unchanged window skips the staging table and the lock, but a first load's "into an empty table" holds
    assert load_window(pg_conn, mirror, [], JAN_1, JAN_2, unique_ids=True).into_empty_table is True
    assert load_window(pg_conn, mirror, [csv_batch([])], JAN_1, JAN_2).into_empty_table is False
    load_window(pg_conn, mirror, [csv_batch(WINDOW_2)], JAN_2, JAN_2 + (JAN_2 - JAN_1))
    again = load_window(pg_conn, mirror, [csv_batch([])], JAN_1, JAN_2, unique_ids=True)
    assert (again.extracted, again.into_empty_table) == (0, False)
    assert pg_conn.execute("SELECT count(*) FROM salesforce.opportunity").fetchone()[0] == 3


def test_window_bounds_must_be_timezone_aware_and_ordered(pg_conn: psycopg.Connection, mirror: MirrorTable) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        load_window(pg_conn, mirror, [], JAN_1.replace(tzinfo=None), JAN_2)
    with pytest.raises(ValueError, match="empty window"):
        load_window(pg_conn, mirror, [], JAN_2, JAN_1)


def test_two_windows_loaded_at_the_same_time_into_an_empty_table_both_land(pg_url: str, mirror: MirrorTable) -> None:
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def load(records: list[dict[str, Any]], window_start: datetime, window_end: datetime) -> None:
        def batches() -> Iterator[pa.RecordBatch]:
            start.wait()  # both transactions are open before either applies its window
            yield csv_batch(records)

        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                load_window(conn, mirror, batches(), window_start, window_end)
        except BaseException as exc:  # recorded, so the assertion shows it
            failures.append(exc)

    threads = [
        threading.Thread(target=load, args=(WINDOW_1, JAN_1, JAN_2)),
        threading.Thread(target=load, args=(WINDOW_2, JAN_2, JAN_3)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    with psycopg.connect(pg_url) as conn:
        assert mirror_rows(conn) == [stored(r) for r in (WINDOW_2[0], WINDOW_2[1], WINDOW_1[2], WINDOW_2[2])]


def test_first_load_fast_path_gives_the_same_mirror_and_names_bad_values(pg_conn):
    """unique_ids=True on an empty mirror COPYs straight into it: same rows, same counts, clear errors."""
    import pyarrow as pa

    from sf_pipeline.warehouse import WarehouseLoadError, ensure_mirror_table, load_window

    fields = [
        {"name": "Id", "type": "id", "length": 18, "precision": 0, "scale": 0},
        {"name": "Name", "type": "string", "length": 80, "precision": 0, "scale": 0},
        {"name": "Amount", "type": "currency", "length": 0, "precision": 18, "scale": 2},
        {"name": "IsDeleted", "type": "boolean", "length": 0, "precision": 0, "scale": 0},
        {"name": "SystemModstamp", "type": "datetime", "length": 0, "precision": 0, "scale": 0},
    ]
    start, end = datetime(2026, 11, 24, 0, tzinfo=UTC), datetime(2026, 11, 24, 1, tzinfo=UTC)
    batch = pa.RecordBatch.from_pydict(
        {
            "Id": ["0065J0000000001AAA", "0065J0000000002AAA", "0065J0000000003AAA"],
            "Name": ["A", "B", None],
            "Amount": ["10.50", "", "3"],
            "IsDeleted": ["false", "true", "false"],
            "SystemModstamp": ["2026-11-24T00:10:00.000Z"] * 3,
        }
    )
    fast = ensure_mirror_table(pg_conn, "FastOpp", fields)
    result = load_window(pg_conn, fast, [batch], start, end, unique_ids=True)
    assert result.into_empty_table and (result.extracted, result.inserted, result.deleted) == (3, 3, 1)
    slow = ensure_mirror_table(pg_conn, "SlowOpp", fields)
    load_window(pg_conn, slow, [batch], start, end)
    rows = 'SELECT id, name, amount, isdeleted, systemmodstamp FROM salesforce."{}" ORDER BY id'
    assert pg_conn.execute(rows.format("fastopp")).fetchall() == pg_conn.execute(rows.format("slowopp")).fetchall()
    # a second window on the now non-empty mirror takes the upsert path
    again = load_window(pg_conn, fast, [batch], start, end, unique_ids=True)
    assert not again.into_empty_table and again.unchanged == 3
    bad = pa.RecordBatch.from_pydict(
        {
            "Id": ["0065J0000000009AAA"],
            "Name": ["X"],
            "Amount": ["lots"],
            "IsDeleted": ["false"],
            "SystemModstamp": ["2026-11-24T00:10:00.000Z"],
        }
    )
    empty = ensure_mirror_table(pg_conn, "EmptyOpp", fields)
    with pytest.raises(WarehouseLoadError) as exc:
        load_window(pg_conn, empty, [bad], start, end, unique_ids=True)
    assert "EmptyOpp" in str(exc.value) and "amount" in str(exc.value) and "lots" in str(exc.value)
    assert pg_conn.execute('SELECT count(*) FROM salesforce."emptyopp"').fetchone()[0] == 0
