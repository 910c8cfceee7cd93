"""Masked seeding, end to end: production and sandbox devorg orgs, PostgreSQL, a real Dagster instance.

A small production org (accounts, contacts, leads, cases, opportunities) is backed up, damaged (contact titles
overwritten) and backed up again; the sandbox is seeded from the backup with the default masking. Then every
record of every object in the sandbox, every text field, is searched for every original value of a masked
field; a reseed must give the same pseudonyms; and a restore rehearsed on the sandbox puts the titles back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from sf_pipeline.devorg.generator import generate_org
from sf_pipeline_tests.devorg_fixtures import connect
from sf_pipeline_tests.privacy.runs import restore_reviewed, run_job, step_metadata

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"
OBJECTS = ["Account", "Contact", "Lead", "Case", "Opportunity"]
SEEDED = ["Contact", "Lead", "Case"]
TEXT_TYPES = {"string", "textarea", "email", "phone", "url", "combobox", "picklist"}


def _all_records(sf, sobject: str) -> list[dict[str, Any]]:
    """Every record of an object, every text-like field (what a developer with sandbox access can read)."""
    fields = [f["name"] for f in getattr(sf, sobject).describe()["fields"] if f["type"] in TEXT_TYPES]
    return sf.query_all(f"SELECT Id, {', '.join(fields)} FROM {sobject}")["records"]


@pytest.fixture(scope="module")
def seeded(module_pipeline_factory, sandbox):
    p = module_pipeline_factory(OBJECTS, partitions={"cron": "0 * * * *", "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")})
    p.set_clock(T0 - timedelta(minutes=30))
    generate_org(p.devorg.org, 300)  # about 60 contacts, 15 leads, 60 cases
    p.set_clock(T0 + timedelta(hours=1, minutes=5))
    assert p.backup(T0.strftime(KEY)).success
    prod = p.sf()
    damaged = [c["Id"] for c in prod.query_all("SELECT Id FROM Contact ORDER BY Id LIMIT 5")["records"]]
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    for cid in damaged:
        prod.Contact.update(cid, {"Title": "Overwritten by an import"})
    p.set_clock(T0 + timedelta(hours=2, minutes=10))
    assert p.backup((T0 + timedelta(hours=1)).strftime(KEY)).success
    config = {"as_of": "2026-11-24T02:00:00Z", "objects": SEEDED}
    first = run_job(p, "seed_sandbox", "seed_sandbox", config)
    assert first.success, [e.message for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
    return p, sandbox, config, first, damaged


def _originals(p, masked: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every backed-up version's value of every masked field: object -> record id -> field -> values."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with psycopg.connect(p.db_url) as conn:
        for sobject, fields in masked.items():
            names = list(fields)
            query = sql.SQL("SELECT id, {} FROM salesforce_history.{}").format(
                sql.SQL(", ").join(sql.Identifier(f.lower()) for f in names), sql.Identifier(sobject.lower())
            )
            for rid, *values in conn.execute(query):
                record = out.setdefault(sobject, {}).setdefault(rid, {})
                for name, value in zip(names, values, strict=True):
                    if value is not None:
                        record.setdefault(name, set()).add(str(value))
    return out


@pytest.mark.e2e
def test_no_original_value_of_a_masked_field_reaches_the_sandbox(seeded):
    p, sandbox, _config, first, _damaged = seeded
    meta = step_metadata(first)
    masked = meta["masked_fields"]
    assert masked["Contact"]["Email"] == "pseudonym (email)" and masked["Lead"]["LastName"] == "pseudonym (name)"
    assert masked["Account"]["Phone"] == "pseudonym (phone)" and masked["Contact"]["Birthdate"] == "empty"
    assert "Title" not in masked["Contact"] and "OwnerId" not in masked["Contact"]
    summary = first.output_for_node("seed_sandbox")
    assert summary["objects"]["Contact"]["inserted"] > 40 and summary["objects"]["Lead"]["inserted"] > 8
    assert summary["failed"] == 0

    originals = _originals(p, masked)
    sand = connect(sandbox)
    everything = [(o, r) for o in OBJECTS for r in _all_records(sand, o)]
    values = {str(v) for _, r in everything for k, v in r.items() if k != "attributes" and v}
    long_values = [v for v in values if len(v) > 12]
    searched = 0
    for sobject, records in originals.items():
        for rid, fields in records.items():
            for fname, found in fields.items():
                if masked[sobject][fname].endswith("(name)"):
                    continue  # single names are checked below, as full names: Faker's and the org's overlap
                for original in found:
                    searched += 1
                    assert original not in values, f"{sobject}.{fname} of {rid}: {original!r} is in the sandbox"
                    if len(original) >= 8:
                        assert not any(original in v for v in long_values), (
                            f"{sobject}.{fname} of {rid}: {original!r} is inside a sandbox value"
                        )
    assert searched > 100
    # a person's full name (first + last) appears nowhere, in any field of any record
    full_names = {
        f"{first} {last}"
        for sobject in ("Contact", "Lead")
        for fields in originals[sobject].values()
        for first in fields.get("FirstName", ())
        for last in fields.get("LastName", ())
    }
    assert len(full_names) > 20
    assert not full_names & values and not any(n in v for n in full_names for v in long_values)
    # and no copy keeps its own name
    with psycopg.connect(p.db_url) as conn:
        id_map = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"
            ).fetchall()
        )
    copies = {r["Id"]: r for o, r in everything if o in ("Contact", "Lead")}
    for sobject in ("Contact", "Lead"):
        for rid, fields in originals[sobject].items():
            if rid in id_map:
                copy = copies[id_map[rid]]
                assert (copy["FirstName"], copy["LastName"]) not in {
                    (f, last) for f in fields.get("FirstName", {None}) for last in fields["LastName"]
                }
                assert copy["Email"] is None or copy["Email"].split("@")[1] in (
                    "example.com",
                    "example.net",
                    "example.org",
                )


@pytest.mark.e2e
def test_pseudonyms_are_the_same_across_records_objects_and_a_reseed(seeded):
    p, sandbox, config, _first, _damaged = seeded
    sand = connect(sandbox)
    prod = p.sf()
    fields = "Id, FirstName, LastName, Email, Phone"
    before = {
        o: {r["Id"]: r for r in sand.query_all(f"SELECT {fields} FROM {o}")["records"]} for o in ("Contact", "Lead")
    }
    again = run_job(p, "seed_sandbox", "seed_sandbox", config)
    assert again.success
    objects = again.output_for_node("seed_sandbox")["objects"]
    assert objects["Contact"]["inserted"] == 0 and objects["Contact"]["updated"] == len(before["Contact"])
    after = {
        o: {r["Id"]: r for r in sand.query_all(f"SELECT {fields} FROM {o}")["records"]} for o in ("Contact", "Lead")
    }
    assert after == before  # same input, same pseudonym: a reseed changes nothing

    # duplicates stay duplicates, within an object and across objects (matching rules keep working)
    with psycopg.connect(p.db_url) as conn:
        id_map = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"
            ).fetchall()
        )
    source = {o: prod.query_all(f"SELECT {fields} FROM {o}")["records"] for o in ("Contact", "Lead")}
    copy_of = {r["Id"]: after[o][id_map[r["Id"]]] for o in source for r in source[o] if r["Id"] in id_map}
    by_last: dict[str, set[str]] = {}
    for o in source:
        for r in source[o]:
            if r["Id"] in copy_of:
                by_last.setdefault(r["LastName"].lower(), set()).add(copy_of[r["Id"]]["LastName"])
    shared = [
        name
        for name, fakes in by_last.items()
        if sum(1 for o in source for r in source[o] if r["LastName"].lower() == name) > 1
    ]
    assert shared, "the generated org has no two people with one last name: the check would prove nothing"
    assert all(len(by_last[name]) == 1 for name in shared)
    across = [
        r
        for r in source["Lead"]
        if r["Id"] in copy_of
        and r["LastName"].lower() in {c["LastName"].lower() for c in source["Contact"] if c["Id"] in copy_of}
    ]
    assert across  # a lead and a contact share a last name, and so do their pseudonyms
    contact_fakes = {
        c["LastName"].lower(): copy_of[c["Id"]]["LastName"] for c in source["Contact"] if c["Id"] in copy_of
    }
    assert all(copy_of[r["Id"]]["LastName"] == contact_fakes[r["LastName"].lower()] for r in across)


@pytest.mark.e2e
def test_a_restore_rehearsed_on_the_masked_sandbox_puts_the_values_back(seeded):
    p, sandbox, _config, _first, damaged = seeded
    sand = connect(sandbox)
    prod = p.sf()
    with psycopg.connect(p.db_url) as conn:
        id_map = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE target_alias = 'sandbox'"
            ).fetchall()
        )
        titles = dict(
            conn.execute(
                "SELECT id, title FROM salesforce_history.contact WHERE id = ANY(%s) "
                "AND dbt_valid_from <= %s AND (dbt_valid_to IS NULL OR dbt_valid_to > %s)",
                (damaged, T0 + timedelta(hours=1), T0 + timedelta(hours=1)),
            ).fetchall()
        )
    soql = "SELECT Id, Title, Email, LastName FROM Contact WHERE Id IN ({})".format(
        ", ".join(f"'{id_map[c]}'" for c in damaged)
    )
    masked_before = {r["Id"]: r for r in sand.query_all(soql)["records"]}
    assert {r["Title"] for r in masked_before.values()} == {"Overwritten by an import"}  # the seeded damage

    result = restore_reviewed(
        p,
        {
            "object": "Contact",
            "fields": ["Title"],
            "as_of": "2026-11-24T01:05:00Z",
            "record_ids": damaged,
            "target_org": "sandbox",
        },
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    after = {r["Id"]: r for r in sand.query_all(soql)["records"]}
    for cid in damaged:
        copy = after[id_map[cid]]
        assert copy["Title"] == titles[cid]  # restored through the id map
        # the personal fields stay masked: the restore wrote only what it was asked to
        assert (copy["Email"], copy["LastName"]) == (
            masked_before[id_map[cid]]["Email"],
            masked_before[id_map[cid]]["LastName"],
        )
        assert copy["LastName"] != prod.Contact.get(cid)["LastName"] or copy["Email"] != prod.Contact.get(cid)["Email"]
