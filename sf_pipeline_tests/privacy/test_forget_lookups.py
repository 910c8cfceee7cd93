"""A forget finds its subject through indexes the backup made beforehand: no full scan of any table it reads.

The tables are filled by SQL to a size where PostgreSQL's planner would rather use an index than read the
table, when one fits the lookup; PostgreSQL's own statistics (pg_stat_user_tables.seq_scan) then say whether
the forget read any table in full.
"""

from __future__ import annotations

import psycopg

from sf_pipeline.anomalies.incidents import ensure_incident_table
from sf_pipeline.privacy.forget import ForgetRequest, forget
from sf_pipeline.restore.tables import ensure_restore_tables
from sf_pipeline.warehouse.lookups import email_columns, ensure_lookup_indexes
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, MIRROR_SCHEMA

RECORDS, VERSIONS = 20_000, 5
ID = "'003' || lpad(to_hex(r), 12, '0') || 'AAA'"
TABLES = [
    "salesforce.contact",
    "salesforce_history.contact",
    "sf_pipeline.restore_items",
    "sf_pipeline.restore_audit",
    "sf_pipeline.id_map",
    "sf_pipeline.incidents",
]


def _build(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA salesforce; CREATE SCHEMA salesforce_history")
    conn.execute(
        f"CREATE TABLE salesforce_history.contact AS SELECT {ID} AS id, 'person' || r || '@example.org' AS "
        "email, 'Last' || r AS lastname, now() - v * interval '1 day' AS dbt_valid_from, "
        "md5(r || '/' || v) AS dbt_scd_id, NULL::timestamptz AS dbt_valid_to "
        f"FROM generate_series(1, {RECORDS}) r, generate_series(1, {VERSIONS}) v"
    )
    # what dbt's post-hook makes (dbt_snapshots/dbt_project.yml)
    conn.execute("CREATE INDEX ON salesforce_history.contact (id, dbt_valid_from)")
    conn.execute("CREATE TABLE salesforce.contact (id varchar(18) PRIMARY KEY, email text, lastname text)")
    conn.execute(
        "INSERT INTO salesforce.contact SELECT DISTINCT ON (id) id, email, lastname FROM salesforce_history.contact"
    )
    ensure_restore_tables(conn)
    ensure_incident_table(conn)
    conn.execute(
        f"INSERT INTO sf_pipeline.restore_items (run_id, object, record_id, field, action, classification) "
        f"SELECT 'run' || r % 7, 'Contact', {ID}, 'Phone', 'update', 'restore' FROM generate_series(1, 5000) r"
    )
    conn.execute(
        f"INSERT INTO sf_pipeline.restore_audit (run_id, org_alias, object, record_id, field) "
        f"SELECT 'run' || r % 7, 'production', 'Contact', {ID}, 'Phone' FROM generate_series(1, 5000) r"
    )
    conn.execute(
        f"INSERT INTO sf_pipeline.id_map SELECT 'production', 'sandbox', 'Contact', {ID}, "
        f"'003' || lpad(to_hex(r), 12, '0') || 'BBB' FROM generate_series(1, 5000) r"
    )
    conn.execute(
        f"INSERT INTO sf_pipeline.incidents (org, object, detector, severity, window_start, window_end, "
        f"affected_count, report) SELECT 'production', 'Contact', 'mass_update', 'error', "
        f"now() - r * interval '1 hour', now(), 10, jsonb_build_object('sample', (SELECT jsonb_agg("
        f"jsonb_build_object('id', {ID.replace('r)', '(r * 10 + k))')}, 'before', "
        f"jsonb_build_object('phone', '+1 202 555 0100'))) FROM generate_series(0, 9) k)) "
        f"FROM generate_series(1, 1000) r"
    )


def _seq_scans(conn: psycopg.Connection) -> dict[str, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT schemaname || '.' || relname, seq_scan FROM pg_stat_user_tables "
        "WHERE schemaname || '.' || relname = ANY(%s)",
        (TABLES,),
    ).fetchall()
    return dict(rows)


def test_forget_by_email_reads_indexes_the_backup_made_and_scans_no_table(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _build(conn)
        # what the backup's window steps do with the mirror and the history (backup/assets.py)
        columns = email_columns({}, "Contact")
        assert columns == ["email"]
        assert ensure_lookup_indexes(conn, MIRROR_SCHEMA, "Contact", columns) == ["contact_email_lower_idx"]
        assert ensure_lookup_indexes(conn, HISTORY_SCHEMA, "Contact", columns) == ["contact_email_lower_idx"]
        assert ensure_lookup_indexes(conn, HISTORY_SCHEMA, "Contact", columns) == []  # the next window: nothing
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_force_next_flush()")
    subject = 1230  # has history, a mirror row, plan items, audit rows, an id map entry and incident samples
    with psycopg.connect(pg_url, autocommit=True) as watcher, psycopg.connect(pg_url) as conn:
        before = _seq_scans(watcher)
        assert set(before) == set(TABLES)
        result = forget(
            conn,
            ForgetRequest.from_dict({"email": f"PERSON{subject}@example.org", "dry_run": False}, ["Contact"]),
            backed_up=["Contact"],
            fields=[("Contact", "Email")],
            requested_by="test",
        )
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        conn.execute("SELECT 1")  # the flush happens when the session goes idle after a transaction
        conn.commit()
        after = _seq_scans(watcher)
    assert result.indexes_built == []  # made by the backup, not at the request
    assert result.records == {"Contact": ["003" + format(subject, "x").rjust(12, "0") + "AAA"]}
    assert result.rows_removed["salesforce_history.contact"] == VERSIONS
    assert result.rows_removed["salesforce.contact"] == 1
    assert result.rows_removed["sf_pipeline.restore_audit"] == 1 and result.rows_removed["sf_pipeline.id_map"] == 1
    assert result.rows_removed["sf_pipeline.incidents (samples)"] == 1
    assert after == before, {t: after[t] - before[t] for t in TABLES if after[t] != before[t]}
