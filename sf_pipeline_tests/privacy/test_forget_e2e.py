"""The forget job, end to end: production and sandbox devorg orgs, PostgreSQL, a real Dagster instance.

A contact is backed up in two versions, restored once (so the restore audit holds its values), named in an
incident's sample and seeded into the sandbox (so the id map holds it). The forget job erases it by e-mail
address; then every text column of every table of the backup database is searched for its name, e-mail and
phones. The contact still exists in the org: the job says so, and a later backup window that sees it change
again skips it, while other records' backups and restores still work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from sf_pipeline.anomalies.detectors import Finding, SampleChange
from sf_pipeline.anomalies.incidents import IncidentReport, save_incident
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline_tests.privacy.runs import restore_reviewed, run_job, step_metadata

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"
OBJECTS = ["Account", "Contact", "Lead", "Case"]
# The Dagster instance of these tests keeps its runs in the same database, in schema public; a deployment
# gives Dagster its own database (deploy/). Everything else is the backup's.
NOT_THE_BACKUP = ("public", "pg_catalog", "information_schema", "pg_toast")


def search_backup(db_url: str, needles: list[str]) -> list[str]:
    """`schema.table.column: needle` for every text, varchar, char or jsonb column value of every table of the
    backup database that contains one of `needles` (case-insensitive)."""
    hits = []
    with psycopg.connect(db_url) as conn:
        columns = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) WHERE t.table_type = 'BASE TABLE' "
            "AND c.table_schema <> ALL(%s) AND (c.data_type IN ('text', 'character varying', 'character', "
            "'jsonb', 'json') OR c.data_type = 'ARRAY') "
            # the catalog's own order changes with DDL (a dry run ensures its tables): compare in a fixed order
            "ORDER BY c.table_schema, c.table_name, c.ordinal_position",
            (list(NOT_THE_BACKUP),),
        ).fetchall()
        schemas = {s for s, _, _ in columns}
        assert {"salesforce", "salesforce_history", "sf_pipeline"} <= schemas, schemas
        for schema, table, column in columns:
            for needle in needles:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text ILIKE %s").format(
                    sql.Identifier(schema, table), sql.Identifier(column)
                )
                if conn.execute(query, (f"%{needle}%",)).fetchone()[0]:
                    hits.append(f"{schema}.{table}.{column}: {needle}")
    return hits


def contact_window(result) -> dict:
    """The metadata of a backup run's `salesforce/Contact` materialization."""
    [meta] = [
        {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key.path == ["salesforce", "Contact"]
    ]
    return meta


@pytest.fixture(scope="module")
def story(module_pipeline_factory, sandbox):
    p = module_pipeline_factory(OBJECTS, partitions={"cron": "0 * * * *", "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")})
    p.set_clock(T0 - timedelta(minutes=30))
    generate_org(p.devorg.org, 120)
    prod = p.sf()
    # the subject: a contact whose name, e-mail and phone no other record of the org carries
    everything = []
    for o in OBJECTS:
        text = [
            f["name"]
            for f in getattr(prod, o).describe()["fields"]
            if f["type"] in ("string", "textarea", "email", "phone")
        ]
        everything += [
            v
            for r in prod.query_all(f"SELECT {', '.join(text)} FROM {o}")["records"]
            for k, v in r.items()
            if k != "attributes" and isinstance(v, str)
        ]
    contacts = prod.query_all(
        "SELECT Id, Name, Email, Phone FROM Contact WHERE Email != null AND Phone != null ORDER BY Id"
    )["records"]
    subject = next(
        c for c in contacts if all(sum(c[k] in v for v in everything) == 1 for k in ("Name", "Email", "Phone"))
    )
    other = next(c for c in contacts if c["Id"] != subject["Id"])
    p.set_clock(T0 + timedelta(hours=1, minutes=5))
    assert p.backup(T0.strftime(KEY)).success
    # 01:10 an import overwrites both contacts' phones; the backup keeps both versions
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    prod.Contact.update(subject["Id"], {"Phone": "+1 202 555 0199"})
    prod.Contact.update(other["Id"], {"Phone": "+1 202 555 0198"})
    p.set_clock(T0 + timedelta(hours=2, minutes=10))
    assert p.backup((T0 + timedelta(hours=1)).strftime(KEY)).success
    # the subject's phone is restored (the audit keeps before and after), and its copy seeded into the sandbox
    restored = restore_reviewed(
        p,
        {
            "object": "Contact",
            "fields": ["Phone"],
            "as_of": "2026-11-24T01:05:00Z",
            "record_ids": [subject["Id"]],
            "target_org": "production",
        },
    )
    assert restored.success
    seeded = run_job(
        p, "seed_sandbox", "seed_sandbox", {"as_of": "2026-11-24T02:00:00Z", "record_ids": [subject["Id"], other["Id"]]}
    )
    assert seeded.success
    # an incident whose sample shows the subject's change (detectors store exactly this)
    with psycopg.connect(p.db_url) as conn:
        finding = Finding(
            "mass_update",
            "error",
            "Contact",
            ("phone",),
            2,
            1.0,
            T0 + timedelta(hours=1, minutes=10),
            T0 + timedelta(hours=1, minutes=10),
            "005000000000001AAA",
            (
                SampleChange(subject["Id"], {"phone": subject["Phone"]}, {"phone": "+1 202 555 0199"}),
                SampleChange(other["Id"], {"phone": other["Phone"]}, {"phone": "+1 202 555 0198"}),
            ),
            (subject["Id"], other["Id"]),
            ("phone",),
            details={"sample_names": {subject["Id"]: subject["Name"], other["Id"]: other["Name"]}},
            window_start=T0 + timedelta(hours=1),
            window_end=T0 + timedelta(hours=2),
        )
        save_incident(conn, IncidentReport.from_finding(finding))
    return p, subject, other


@pytest.mark.e2e
def test_forgetting_a_contact_leaves_no_trace_of_it_in_the_backup(story):
    p, subject, other = story
    # the backup made the e-mail lookup indexes with the tables: the request will not build them
    with psycopg.connect(p.db_url) as conn:
        indexes = conn.execute(
            "SELECT schemaname, indexname FROM pg_indexes WHERE indexdef LIKE '%%lower(%%'"
        ).fetchall()
    assert {
        ("salesforce", "contact_email_lower_idx"),
        ("salesforce_history", "contact_email_lower_idx"),
        ("salesforce", "lead_email_lower_idx"),
        ("salesforce_history", "case_suppliedemail_lower_idx"),
    } <= set(indexes), indexes
    needles = [subject["Name"], subject["Email"], subject["Phone"], "+1 202 555 0199"]
    before = search_backup(p.db_url, needles)
    tables = {h.rsplit(".", 1)[0] for h in before}
    assert {
        "salesforce.contact",
        "salesforce_history.contact",
        "sf_pipeline.restore_audit",
        "sf_pipeline.incidents",
    } <= tables, before

    # a dry run (the default) counts and erases nothing
    dry = run_job(p, "forget", "forget", {"email": subject["Email"].upper()})
    assert dry.success
    meta = step_metadata(dry)
    assert meta["records"] == {"Contact": [subject["Id"]]} and meta["dry_run"] is True
    assert meta["rows_to_remove"]["salesforce_history.contact"] == 2
    assert search_backup(p.db_url, needles) == before

    done = run_job(
        p,
        "forget",
        "forget",
        {"email": subject["Email"], "dry_run": False},
        tags={"sf_pipeline/requested_by": "dpo@example.com"},
    )
    assert done.success
    meta = step_metadata(done)
    assert meta["rows_removed"]["salesforce_history.contact"] == 2 and meta["rows_removed"]["salesforce.contact"] == 1
    assert meta["rows_removed"]["sf_pipeline.restore_audit"] >= 1
    assert meta["rows_removed"]["sf_pipeline.incidents (samples)"] == 1
    assert list(meta["seeded_copies"]) == ["sandbox"]  # the copy's id, to delete it in the sandbox too
    assert meta["still_in_org"] == {"Contact": [subject["Id"]]}  # erasing it in Salesforce is the org's job
    assert meta["indexes_built"] == []
    assert search_backup(p.db_url, needles) == []

    with psycopg.connect(p.db_url) as conn:
        log = conn.execute(
            "SELECT requested_by, dry_run, matched_by, records, rows_removed, still_in_org "
            "FROM sf_pipeline.erasure_log ORDER BY id"
        ).fetchall()
        incident = conn.execute("SELECT report FROM sf_pipeline.incidents").fetchone()[0]
    assert [row[1] for row in log] == [True, False]
    who, _, matched_by, records, rows, still = log[-1]
    assert who == "dpo@example.com" and matched_by == "email" and records == {"Contact": [subject["Id"]]}
    assert rows["salesforce_history.contact"] == 2 and still == {"Contact": [subject["Id"]]}
    assert [s["id"] for s in incident["sample"]] == [other["Id"]]  # the other record's sample stays

    # the contact changes again in the org: the next window does not bring it back, and says so
    prod = p.sf()
    p.set_clock(T0 + timedelta(hours=2, minutes=20))
    prod.Contact.update(subject["Id"], {"Title": "Changed after the erasure"})
    prod.Contact.update(other["Id"], {"Title": "Changed after the erasure"})
    p.set_clock(T0 + timedelta(hours=3, minutes=10))
    window = p.backup((T0 + timedelta(hours=2)).strftime(KEY))
    assert window.success
    meta = contact_window(window)
    assert meta["erased_records_skipped"] == {"count": 1, "ids": [subject["Id"]]}
    # the id reconciliation counts the erased contact the org still holds as known: no difference to descend
    # into (one COUNT() call), nothing missing from the backup, nothing re-ingested
    assert meta["reconciled"] is True and meta["reconcile_api_calls"] == 1
    assert (meta["missing_from_backup"], meta["vanished_total"], meta["erased_still_in_org"]) == (0, 0, 1)
    assert search_backup(p.db_url, needles) == []
    with psycopg.connect(p.db_url) as conn:
        versions = conn.execute(
            "SELECT count(*) FROM salesforce_history.contact WHERE id = %s", (other["Id"],)
        ).fetchone()[0]
    assert versions == 3  # the other contact's backup goes on

    # the org erases the contact too (a hard delete): the next reconciliation notes it gone from the org, not
    # as a vanished record of the backup; the one after counts equal again
    p.set_clock(T0 + timedelta(hours=3, minutes=20))
    # (its cases first: Salesforce refuses to delete a contact a case refers to, DELETE_FAILED)
    cases = [
        {"Id": c["Id"]} for c in prod.query_all(f"SELECT Id FROM Case WHERE ContactId = '{subject['Id']}'")["records"]
    ]
    for sobject, records in (("Case", cases), ("Contact", [{"Id": subject["Id"]}])):
        if records:
            [job] = getattr(prod.bulk2, sobject).hard_delete(records=records, wait=0.2)
            assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (len(records), 0), job
    p.set_clock(T0 + timedelta(hours=4, minutes=10))
    meta = contact_window(p.backup((T0 + timedelta(hours=3)).strftime(KEY)))
    assert (
        meta["erased_gone_from_org"],
        meta["erased_still_in_org"],
        meta["vanished_total"],
        meta["missing_from_backup"],
    ) == (1, 0, 0, 0)
    with psycopg.connect(p.db_url) as conn:
        gone = conn.execute(
            "SELECT gone_from_org_at IS NOT NULL, created_date IS NOT NULL FROM "
            "sf_pipeline.erased_records WHERE record_id = %s",
            (subject["Id"],),
        ).fetchone()
    assert gone == (True, True)
    p.set_clock(T0 + timedelta(hours=5, minutes=10))
    meta = contact_window(p.backup((T0 + timedelta(hours=4)).strftime(KEY)))
    # counts equal again: the run's preflight COUNT()s settle it, the reconciliation asks the org nothing more
    assert meta["reconcile_api_calls"] == 0 and (meta["erased_gone_from_org"], meta["erased_still_in_org"]) == (0, 0)
    assert meta["reconcile_reason"].startswith("counts equal")
    assert search_backup(p.db_url, needles) == []

    # and restores of other records still work
    result = restore_reviewed(
        p,
        {
            "object": "Contact",
            "fields": ["Phone", "Title"],
            "as_of": "2026-11-24T01:05:00Z",
            "record_ids": [other["Id"]],
            "target_org": "production",
        },
    )
    assert result.success
    back = prod.Contact.get(other["Id"])
    assert back["Phone"] == other["Phone"] and back["Title"] != "Changed after the erasure"
