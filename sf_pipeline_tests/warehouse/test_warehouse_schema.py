"""Mirror tables from describe: which fields are kept, their PostgreSQL types, and schema drift."""

from __future__ import annotations

import threading

import psycopg
import pytest

from sf_pipeline.warehouse import (
    WarehouseSchemaError,
    backup_fields,
    ensure_mirror_table,
    get_mirror_table,
    pg_type_for,
)
from sf_pipeline.warehouse.schema import mirror_columns
from sf_pipeline_tests.warehouse.builders import OPPORTUNITY_FIELDS


def columns_of(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("salesforce_type", "postgres_type"),
    [
        ("id", "varchar(18)"),
        ("reference", "varchar(18)"),
        ("string", "text"),
        ("textarea", "text"),
        ("picklist", "text"),
        ("multipicklist", "text"),
        ("email", "text"),
        ("phone", "text"),
        ("url", "text"),
        ("combobox", "text"),
        ("encryptedstring", "text"),
        ("boolean", "boolean"),
        ("int", "bigint"),
        ("double", "double precision"),
        ("percent", "double precision"),
        ("currency", "numeric"),
        ("date", "date"),
        ("datetime", "timestamptz"),
        ("time", "time"),
        ("anyType", "text"),
        ("complexvalue", "text"),
    ],
)
def test_describe_types_map_to_postgres_types(salesforce_type: str, postgres_type: str) -> None:
    assert pg_type_for({"name": "F", "type": salesforce_type}) == postgres_type


def test_compound_base64_and_excluded_fields_are_not_backed_up() -> None:
    fields = [
        {"name": "Id", "type": "id"},
        {"name": "BillingAddress", "type": "address"},
        {"name": "BillingStreet", "type": "textarea"},
        {"name": "Location__c", "type": "location"},
        {"name": "Body", "type": "base64"},
        {"name": "Description", "type": "textarea"},
        {"name": "SystemModstamp", "type": "datetime"},
    ]

    kept = backup_fields(fields, exclude=["DESCRIPTION"])

    assert [f["name"] for f in kept] == ["Id", "BillingStreet", "SystemModstamp"]


def test_mirror_table_has_lowercase_columns_a_primary_key_on_id_and_an_index_on_systemmodstamp(
    pg_conn: psycopg.Connection,
) -> None:
    table = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)

    assert (table.schema, table.name, table.created) == ("salesforce", "opportunity", True)
    assert columns_of(pg_conn, "salesforce", "opportunity") == {
        "id": "character varying",
        "isdeleted": "boolean",
        "accountid": "character varying",
        "name": "text",
        "description": "text",
        "stagename": "text",
        "amount": "numeric",
        "probability": "double precision",
        "closedate": "date",
        "fiscalyear": "bigint",
        "systemmodstamp": "timestamp with time zone",
    }
    assert table.column_types["id"] == "character varying(18)"
    primary_key = pg_conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
        "WHERE i.indrelid = 'salesforce.opportunity'::regclass AND i.indisprimary"
    ).fetchall()
    assert primary_key == [("id",)]
    index_definitions = [
        d for (d,) in pg_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'opportunity'")
    ]
    assert any(d.endswith("USING btree (systemmodstamp)") for d in index_definitions)


def test_new_field_becomes_a_column_and_a_removed_field_keeps_its_column_and_data(
    pg_conn: psycopg.Connection,
) -> None:
    ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    pg_conn.execute(
        "INSERT INTO salesforce.opportunity (id, description, systemmodstamp) "
        "VALUES ('006000000000001AAA', 'kept', now())"
    )
    drifted = [f for f in OPPORTUNITY_FIELDS if f["name"] != "Description"] + [
        {"name": "Region__c", "type": "picklist"},
        {"name": "Score__c", "type": "double"},
    ]

    table = ensure_mirror_table(pg_conn, "Opportunity", drifted)

    assert table.created is False
    assert table.added_columns == ("region__c", "score__c")
    assert table.retired_columns == ("description",)
    columns = columns_of(pg_conn, "salesforce", "opportunity")
    assert columns["region__c"] == "text" and columns["score__c"] == "double precision"
    assert pg_conn.execute("SELECT description FROM salesforce.opportunity").fetchone() == ("kept",)
    # Nothing to do the second time.
    assert ensure_mirror_table(pg_conn, "Opportunity", drifted).added_columns == ()


def test_a_table_read_from_the_catalog_once_is_returned_as_it_is_when_the_describe_changed_nothing(
    pg_conn: psycopg.Connection,
) -> None:
    made = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    pg_conn.execute("ALTER TABLE salesforce.opportunity ADD COLUMN _sfp_gone boolean")
    known = mirror_columns(pg_conn, ["Opportunity", "Account"])
    assert known["Account"] == []  # no table yet
    assert [c for c, _ in known["Opportunity"]] == [c.name for c in made.columns] + ["_sfp_gone"]
    statements: list[str] = []
    original = pg_conn.execute

    def counting(query, *args, **kwargs):
        statements.append(str(query))
        return original(query, *args, **kwargs)

    pg_conn.execute = counting  # type: ignore[method-assign]
    try:
        fast = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS, existing=known["Opportunity"])
    finally:
        pg_conn.execute = original  # type: ignore[method-assign]

    assert statements == []  # no lock, no catalog read
    assert fast == ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)  # what the locked path says
    assert fast.created is False and fast.added_columns == () and fast.type_changes == ()


def test_a_table_read_from_the_catalog_still_gets_new_fields_and_type_changes(pg_conn: psycopg.Connection) -> None:
    ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    known = mirror_columns(pg_conn, ["Opportunity"])["Opportunity"]
    drifted = [{**f, "type": "string"} if f["name"] == "Amount" else f for f in OPPORTUNITY_FIELDS] + [
        {"name": "Region__c", "type": "picklist"}
    ]

    table = ensure_mirror_table(pg_conn, "Opportunity", drifted, existing=known)

    assert table.added_columns == ("region__c",)
    assert [(c.column, c.new_type) for c in table.type_changes] == [("amount", "text")]
    columns = columns_of(pg_conn, "salesforce", "opportunity")
    assert columns["region__c"] == "text" and columns["amount"] == "text"
    # a new table is made as before
    assert ensure_mirror_table(pg_conn, "Account", OPPORTUNITY_FIELDS, existing=[]).created is True


def test_object_named_like_a_sql_keyword_gets_its_own_table(pg_conn: psycopg.Connection) -> None:
    fields = [
        {"name": "Id", "type": "id"},
        {"name": "Group", "type": "string"},
        {"name": "SystemModstamp", "type": "datetime"},
    ]

    table = ensure_mirror_table(pg_conn, "Order", fields)

    assert table.name == "order"
    assert list(columns_of(pg_conn, "salesforce", "order")) == ["id", "group", "systemmodstamp"]
    assert get_mirror_table(pg_conn, "Order").column_types == table.column_types


def test_two_processes_preparing_the_same_table_at_once_both_succeed(pg_url: str) -> None:
    start = threading.Barrier(4)
    outcomes: list[object] = []

    def prepare() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            start.wait()
            try:
                outcomes.append(ensure_mirror_table(conn, "Opportunity", OPPORTUNITY_FIELDS).name)
            except Exception as exc:  # recorded, so the assertion shows it
                outcomes.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == ["opportunity"] * 4


def test_describe_without_systemmodstamp_is_rejected_with_the_reason(pg_conn: psycopg.Connection) -> None:
    fields = [{"name": "Id", "type": "id"}, {"name": "Name", "type": "string"}]

    with pytest.raises(WarehouseSchemaError, match="Thing__c cannot be backed up.*systemmodstamp"):
        ensure_mirror_table(pg_conn, "Thing__c", fields)


def test_loading_an_object_without_mirror_table_says_what_to_do(pg_conn: psycopg.Connection) -> None:
    with pytest.raises(WarehouseSchemaError, match="call ensure_mirror_table"):
        get_mirror_table(pg_conn, "Opportunity")
