"""The restore's own tables in PostgreSQL: plans, items, audit and id map round-trip exactly."""

from __future__ import annotations

from sf_pipeline.restore import ensure_restore_tables, tables
from sf_pipeline.warehouse.id_map import load_id_map, save_id_map

AWKWARD = 'tab\there, line\nbreak, back\\slash, "quotes", \\N, naïve ☃'


def test_plan_items_keep_every_character_and_null(pg_conn):
    ensure_restore_tables(pg_conn)
    ensure_restore_tables(pg_conn)  # idempotent
    items = [
        ("0065J0000000001QAA", "Description", "update", AWKWARD, None, "x", "restore", AWKWARD),
        ("0065J0000000002QAA", None, "none", None, None, None, "not_restorable", "deleted"),
        ("0065J0000000003QAA", "Amount", "update", 12.5, True, {"nested": [1, "\\"]}, "noop", None),
    ]
    for _ in range(2):  # saving a run id again replaces its plan
        tables.save_plan(
            pg_conn,
            run_id="run\t1",
            object_name="Opportunity",
            target_org="production",
            source_org="production",
            config={"object": "Opportunity"},
            counts={"restore": 1},
            details={},
            items=iter(items),
        )
    rows = pg_conn.execute(
        "SELECT record_id, field, action, current_value, desired_value, damaged_value, "
        "classification, reason FROM sf_pipeline.restore_items WHERE run_id = %s "
        "ORDER BY record_id",
        ("run\t1",),
    ).fetchall()
    assert rows == [tuple(r) for r in items]
    assert tables.plan_row(pg_conn, "run\t1")["status"] == "planned"


def test_audit_keeps_first_before_and_last_after_per_field(pg_conn):
    ensure_restore_tables(pg_conn)
    rid = "0065J0000000001QAA"
    tables.write_audit(
        pg_conn,
        [
            ("r1", "production", "Opportunity", rid, "AccountId", None, "A", "update", "005x"),
            ("r1", "production", "Opportunity", rid, "AccountId", "A", "B", "update", "005x"),
            ("r1", "production", "Contact", rid, "AccountId", "C", "D", "repoint", "005x"),
        ],
    )
    assert tables.audit_exists(pg_conn, "r1", "opportunity") and not tables.audit_exists(pg_conn, "r1", "Case")
    assert tables.audit_updated_fields(pg_conn, "r1", "opportunity") == ["AccountId"]
    entries = [e for chunk in tables.audit_chunks(pg_conn, "r1", "opportunity") for e in chunk]
    assert [(e.record_id, e.field, e.before, e.after, e.operation) for e in entries] == [
        (rid, "AccountId", None, "B", "update")
    ]


def test_an_audit_is_read_a_chunk_of_records_at_a_time_each_record_whole(pg_conn):
    """Undo reads a run's audit in keyset pages of records: a record's writes all in one page, merged there."""
    ensure_restore_tables(pg_conn)
    ids = [f"0065J00000000{i:02d}QAA" for i in range(5)]
    tables.write_audit(
        pg_conn,
        [("r2", "production", "Opportunity", rid, "StageName", f"{rid}-0", f"{rid}-1", "update", "005x") for rid in ids]
        + [
            ("r2", "production", "Opportunity", rid, "StageName", f"{rid}-1", f"{rid}-2", "update", "005x")
            for rid in ids
        ]
        + [("r2", "production", "Opportunity", ids[4], "Id", ids[4], "new", "create", "005x")],
    )
    chunks = list(tables.audit_chunks(pg_conn, "r2", "Opportunity", chunk=2))
    assert [sorted({e.record_id for e in c}) for c in chunks] == [ids[0:2], ids[2:4], ids[4:5]]
    merged = {(e.record_id, e.field): (e.before, e.after, e.operation) for c in chunks for e in c}
    assert merged[(ids[0], "StageName")] == (f"{ids[0]}-0", f"{ids[0]}-2", "update")
    assert merged[(ids[4], "Id")] == (ids[4], "new", "create")
    assert tables.audit_updated_fields(pg_conn, "r2", "Opportunity") == ["StageName"]


def test_id_map_pairs_are_replaced_not_duplicated(pg_conn):
    ensure_restore_tables(pg_conn)
    save_id_map(pg_conn, "production", "production", "Case", {"5005J0000000001QAA": "5005J0000000009QAA"})
    save_id_map(pg_conn, "production", "production", "Case", {"5005J0000000001QAA": "5005J000000000AQAQ"})
    assert load_id_map(pg_conn, "production", "production") == {"5005J0000000001QAA": "5005J000000000AQAQ"}
    assert load_id_map(pg_conn, "production", "sandbox") == {}
