"""Cascade deletes are one incident, the root's: 15 Accounts deleted with their Contacts and
Opportunities is a mass deletion of Accounts with the cascade beneath it, not one incident per object."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from sf_pipeline.anomalies import run_detectors
from sf_pipeline.anomalies.cascades import cascade_beneath, deleted_with_parent
from sf_pipeline_tests.anomalies.builders import (
    CREATED,
    SALES1,
    SALES3,
    WINDOW_END,
    WINDOW_START,
    History,
    record_id,
)

AT = WINDOW_START + timedelta(minutes=5)


def _org(history: History, accounts: int = 60, families: int = 15) -> dict[str, list[str]]:
    """`accounts` Accounts; the first `families` have 3 Contacts and 4 Opportunities each, which a deletion of
    those Accounts takes with them (same stamp, same user); 100 other Contacts and Opportunities stay."""
    history.create("Account", {"name": "text"})
    history.create("Contact", {"lastname": "text", "accountid": "varchar(18)"})
    history.create("Opportunity", {"name": "text", "accountid": "varchar(18)", "stagename": "text"})
    ids = history.insert("Account", [{"id": record_id("Account", i), "name": f"A{i}"} for i in range(accounts)])
    family = ids[:families]
    contacts = history.insert(
        "Contact",
        [
            {"id": record_id("Contact", i), "lastname": f"C{i}", "accountid": ids[i % families]}
            for i in range(3 * families)
        ],
    )
    others = history.insert(
        "Contact",
        [
            {
                "id": record_id("Contact", 1000 + i),
                "lastname": "x",
                "accountid": ids[families + i % (accounts - families)],
            }
            for i in range(100)
        ],
    )
    opportunities = history.insert(
        "Opportunity",
        [
            {
                "id": record_id("Opportunity", i),
                "name": f"O{i}",
                "accountid": ids[i % families],
                "stagename": "Prospecting",
            }
            for i in range(4 * families)
        ],
    )
    history.insert(
        "Opportunity",
        [
            {
                "id": record_id("Opportunity", 1000 + i),
                "name": "x",
                "accountid": ids[families],
                "stagename": "Prospecting",
            }
            for i in range(100)
        ],
    )
    assert CREATED < AT
    return {"accounts": family, "contacts": contacts, "opportunities": opportunities, "others": others}


def _delete_tree(history: History, org: dict[str, list[str]], user: str = SALES3) -> None:
    history.delete("Account", org["accounts"], AT, user)
    history.delete("Contact", org["contacts"], AT, user)
    history.delete("Opportunity", org["opportunities"], AT, user)


def test_records_deleted_with_their_parent_are_found_by_stamp_and_user(
    pg_conn: psycopg.Connection, history: History
) -> None:
    org = _org(history)
    _delete_tree(history, org)
    # a Contact deleted by someone else at another instant is its own deletion
    history.delete("Contact", org["others"][:1], AT + timedelta(seconds=3), SALES1)
    found = deleted_with_parent(pg_conn, "Contact", WINDOW_START, WINDOW_END)
    assert sorted(found) == sorted(org["contacts"]) and {p for p, _ in found.values()} == {"account"}
    tree = cascade_beneath(pg_conn, "Account", org["accounts"], WINDOW_START, WINDOW_END)
    assert tree.counts() == {"contact": 45, "opportunity": 60}


def test_a_cascade_is_one_incident_of_its_root_even_when_the_roots_alone_are_few(
    pg_conn: psycopg.Connection, history: History
) -> None:
    org = _org(history)
    _delete_tree(history, org)
    findings = {
        o: [f for f in run_detectors(pg_conn, o, WINDOW_START, WINDOW_END) if f.detector == "mass_delete"]
        for o in ("Account", "Contact", "Opportunity")
    }
    assert findings["Contact"] == [] and findings["Opportunity"] == []  # they are the Account incident's
    [root] = findings["Account"]
    assert root.severity == "error" and root.user_id == SALES3 and root.restore_deleted
    assert sorted(root.record_ids) == sorted(org["accounts"])  # 15: below min_records 50 on their own
    assert root.details["cascade"] == {"contact": 45, "opportunity": 60} and root.details["cascade_records"] == 105


def test_deletions_beside_a_cascade_stay_an_incident_of_their_own(
    pg_conn: psycopg.Connection, history: History
) -> None:
    org = _org(history, families=15)
    _delete_tree(history, org)
    # the same user also deletes 60 of the other Contacts directly, a second later
    history.delete("Contact", org["others"][:60], AT + timedelta(seconds=1), SALES3)
    [contacts] = [f for f in run_detectors(pg_conn, "Contact", WINDOW_START, WINDOW_END) if f.detector == "mass_delete"]
    assert sorted(contacts.record_ids) == sorted(org["others"][:60])
    assert contacts.details["deleted_with_parent"] == 45
