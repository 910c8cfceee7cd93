"""An admin changes field types between two windows: the next window backs up, nothing is cut or lost.

devorg converts the org's data as Salesforce Help's "Considerations for Converting the Field Type of a Custom
Field" says (sf_pipeline/devorg/field_types.py); the backup changes its mirror and history columns to match
(sf_pipeline/warehouse/type_changes.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline.warehouse import history_versions
from sf_pipeline.warehouse.type_changes import ColumnTypeChange, plan_type_changes

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the fixtures' first hourly window


def key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def test_widening_changes_alter_in_place_and_others_keep_the_old_column():
    existing = [
        ("id", "character varying(18)"),
        ("amount__c", "numeric"),
        ("due__c", "date"),
        ("code__c", "text"),
        ("code__c__text", "text"),
        ("when__c", "timestamp with time zone"),
    ]
    wanted = [
        ("id", "varchar(18)"),
        ("amount__c", "text"),
        ("due__c", "timestamptz"),
        ("code__c", "numeric"),
        ("when__c", "date"),
    ]
    assert plan_type_changes(existing, wanted) == [
        ColumnTypeChange("amount__c", "numeric", "text"),
        ColumnTypeChange("due__c", "date", "timestamp with time zone"),
        ColumnTypeChange("code__c", "text", "numeric", kept_as="code__c__text_2"),
        ColumnTypeChange("when__c", "timestamp with time zone", "date", kept_as="when__c__timestamptz"),
    ]


def test_number_date_lookup_and_length_changes_back_up_with_old_values_in_history_and_new_ones_whole(pipeline_factory):
    p = pipeline_factory(["Account", "Invoice__c"])
    p.set_clock(T0 + timedelta(minutes=5))
    sf = p.sf()
    acc = sf.Account.create({"Name": "Acme"})["id"]
    ids = [
        sf.Invoice__c.create(
            {
                "Name": f"INV-{i}",
                "Account__c": acc,
                "Amount__c": 12.5 + i,
                "Due_Date__c": f"2026-03-0{i + 1}",
                "Invoice_Number__c": f"N-{i}",
            }
        )["id"]
        for i in range(2)
    ]
    assert p.backup(key(T0)).success

    org = p.devorg.org
    org.change_field_type("Invoice__c", "Amount__c", "string", length=40)  # Number -> Text
    org.change_field_type("Invoice__c", "Due_Date__c", "datetime")  # Date -> DateTime
    org.change_field_type("Invoice__c", "Account__c", "string", length=80)  # Lookup -> Text
    org.change_field_type("Invoice__c", "Invoice_Number__c", "string", length=200)  # Text(30) -> Text(200)
    p.set_clock(T0 + timedelta(hours=1, minutes=5))
    long_text = "kept as text now, far longer than an 18-character id"
    number = "N" * 150
    sf.Invoice__c.update(
        ids[0],
        {
            "Amount__c": "about twelve",
            "Due_Date__c": "2026-04-01T10:30:15.000+0000",
            "Account__c": long_text,
            "Invoice_Number__c": number,
        },
    )
    result = p.backup(key(T0 + timedelta(hours=1)))
    assert result.success

    [mat] = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "salesforce/Invoice__c"
    ]
    changes = mat.metadata["type_changes"].value
    assert "amount__c: numeric -> text (altered in place" in changes
    assert "due_date__c: date -> timestamp with time zone (altered in place" in changes
    assert "account__c: character varying(18) -> text (altered in place" in changes

    with p.conn() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, amount__c, due_date__c, account__c, invoice_number__c FROM salesforce.invoice__c"
            )
        }
        versions = [v for v in history_versions(conn, "Invoice__c", ids[0])]
    # the new values, whole: text where a number was, the time of day, a text longer than an id
    assert rows[ids[0]] == ("about twelve", datetime(2026, 4, 1, 10, 30, 15, tzinfo=UTC), long_text, number)
    # a record the change did not touch keeps its value, now as the new type
    assert rows[ids[1]][:3] == ("13.5", datetime(2026, 3, 2, tzinfo=UTC), acc)
    # history: the old version keeps what the record held then, the new one what it holds now
    assert len(versions) == 2, versions
    old, new = versions
    assert (old["amount__c"], old["due_date__c"], old["account__c"], old["invoice_number__c"]) == (
        "12.5",
        datetime(2026, 3, 1, tzinfo=UTC),
        acc,
        "N-0",
    )
    assert (new["amount__c"], new["due_date__c"], new["account__c"], new["invoice_number__c"]) == (
        "about twelve",
        datetime(2026, 4, 1, 10, 30, 15, tzinfo=UTC),
        long_text,
        number,
    )
