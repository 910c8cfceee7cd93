"""A field's type changes in Salesforce: ensure_mirror_table changes its mirror and history columns alike."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from sf_pipeline.warehouse import ensure_mirror_table


def fields(**types: str) -> list[dict]:
    return [
        {"name": "Id", "type": "id"},
        {"name": "SystemModstamp", "type": "datetime"},
        *({"name": name, "type": t} for name, t in types.items()),
    ]


def columns(conn: psycopg.Connection, schema: str) -> dict[str, str]:
    return dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'invoice__c' ORDER BY ordinal_position",
            (schema,),
        ).fetchall()
    )


def test_type_changes_alter_or_keep_old_columns_in_mirror_and_history(pg_url: str):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ensure_mirror_table(
            conn, "Invoice__c", fields(Amount__c="currency", Due__c="date", Account__c="reference", Code__c="string")
        )
        conn.execute(
            "INSERT INTO salesforce.invoice__c VALUES ('a0X000000000001AAA', '2026-01-01T00:00:00Z', 12.50, "
            "'2026-03-01', '001000000000001AAA', '42')"
        )
        # history as the dbt snapshot makes it: the mirror's columns plus dbt's
        conn.execute(
            "CREATE TABLE salesforce_history.invoice__c AS SELECT *, now() AS dbt_valid_from FROM salesforce.invoice__c"
        )

        table = ensure_mirror_table(
            conn, "Invoice__c", fields(Amount__c="string", Due__c="datetime", Account__c="string", Code__c="double")
        )

        assert [c.describe() for c in table.type_changes] == [
            "amount__c: numeric -> text (altered in place, values converted)",
            "due__c: date -> timestamp with time zone (altered in place, values converted)",
            "account__c: character varying(18) -> text (altered in place, values converted)",
            "code__c: text -> double precision (old values kept in code__c__text)",
        ]
        for schema in ("salesforce", "salesforce_history"):
            cols = columns(conn, schema)
            assert (cols["amount__c"], cols["due__c"], cols["account__c"], cols["code__c"], cols["code__c__text"]) == (
                "text",
                "timestamp with time zone",
                "text",
                "double precision",
                "text",
            ), schema
            row = conn.execute(
                f"SELECT amount__c, due__c, account__c, code__c, code__c__text FROM {schema}.invoice__c"
            ).fetchone()
            assert row == ("12.50", datetime(2026, 3, 1, tzinfo=UTC), "001000000000001AAA", None, "42"), schema
        assert "code__c__text" in table.retired_columns
        # text of any length, a date-time with its time: nothing is cut any more
        conn.execute(
            "UPDATE salesforce.invoice__c SET amount__c = 'about twelve', due__c = '2026-04-01T10:30:15Z', "
            "account__c = repeat('x', 300), code__c = 4.25"
        )
        row = conn.execute(
            "SELECT amount__c, due__c, length(account__c), code__c FROM salesforce.invoice__c"
        ).fetchone()
        assert row == ("about twelve", datetime(2026, 4, 1, 10, 30, 15, tzinfo=UTC), 300, 4.25)
        # the next call finds nothing to change
        assert (
            ensure_mirror_table(
                conn, "Invoice__c", fields(Amount__c="string", Due__c="datetime", Account__c="string", Code__c="double")
            ).type_changes
            == ()
        )
