"""The forget job's config and settings, and the erased-records list the backup's loads consult."""

from __future__ import annotations

import pytest

from sf_pipeline.privacy.errors import ForgetConfigError, PrivacySettingsError
from sf_pipeline.privacy.forget import ForgetRequest, match_fields
from sf_pipeline.warehouse.erased import add_erased, drop_erased_rows, ensure_erased_table

BACKED_UP = ["Account", "Contact", "Case"]


def test_a_forget_request_names_records_or_an_address_and_is_a_dry_run_by_default():
    by_id = ForgetRequest.from_dict({"object": "contact", "record_ids": ["003000000000001"]}, BACKED_UP)
    assert by_id.object == "Contact" and by_id.record_ids == ("003000000000001AAA",) and by_id.dry_run
    by_email = ForgetRequest.from_dict({"email": " ada@example.com ", "dry_run": False}, BACKED_UP)
    assert by_email.email == "ada@example.com" and not by_email.dry_run and by_email.matched_by == "email"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "give either record_ids"),
        ({"email": "a@b.c", "object": "Contact", "record_ids": ["003000000000001"]}, "give either record_ids"),
        ({"email": "not an address"}, "one e-mail address"),
        ({"object": "Lead", "record_ids": ["00Q000000000001"]}, "must be a backed-up object"),
        ({"object": "Contact", "record_ids": ["xyz"]}, "is not a Salesforce record id"),
        ({"email": "a@b.c", "dry_run": "no"}, "dry_run must be true or false"),
        ({"email": "a@b.c", "who": "me"}, "unknown keys who"),
    ],
)
def test_a_bad_forget_request_is_refused_with_the_key_named(data, message):
    with pytest.raises(ForgetConfigError, match=message):
        ForgetRequest.from_dict(data, BACKED_UP)


def test_addresses_are_matched_on_configured_fields_of_backed_up_objects():
    assert match_fields({}, BACKED_UP) == [("Contact", "Email"), ("Case", "SuppliedEmail"), ("Account", "PersonEmail")]
    assert match_fields({"forget": {"match_fields": ["Contact.Email"]}}, BACKED_UP) == [("Contact", "Email")]
    with pytest.raises(PrivacySettingsError, match="Lead is not a backed-up object"):
        match_fields({"forget": {"match_fields": ["Lead.Email"]}}, BACKED_UP)
    with pytest.raises(PrivacySettingsError, match="is not Object.Field"):
        match_fields({"forget": {"match_fields": ["Email"]}}, BACKED_UP)


def test_a_window_load_drops_the_mirror_rows_of_erased_records(pg_conn):
    pg_conn.execute("CREATE SCHEMA salesforce")
    pg_conn.execute("CREATE TABLE salesforce.contact (id varchar(18) PRIMARY KEY, lastname text)")
    pg_conn.execute(
        "INSERT INTO salesforce.contact VALUES ('003000000000001AAA', 'Gone'), ('003000000000002AAA', 'Kept')"
    )
    assert drop_erased_rows(pg_conn, "Contact") == []  # no list yet: nothing happens
    ensure_erased_table(pg_conn)
    add_erased(pg_conn, "Contact", ["003000000000001AAA"], 1)
    add_erased(pg_conn, "Contact", ["003000000000001AAA"], 2)  # erased twice: listed once
    assert drop_erased_rows(pg_conn, "Contact") == ["003000000000001AAA"]
    assert pg_conn.execute("SELECT id FROM salesforce.contact").fetchall() == [("003000000000002AAA",)]
    assert pg_conn.execute("SELECT erasure_id FROM sf_pipeline.erased_records").fetchall() == [(1,)]
