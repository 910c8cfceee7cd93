"""Restore end to end: devorg damaged by a scenario, backed up through Dagster, restored from the history."""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline.restore import (
    CONFLICT,
    NOT_RESTORABLE,
    RestoreApplyError,
    RestoreBusyError,
    RestoreConfigError,
    apply_plan,
    load_plan,
    plan_restore,
    tables,
    verify_plan,
)
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.warehouse.id_map import save_id_map
from sf_pipeline_tests.pipeline_fixtures import Pipeline, SavedState
from sf_pipeline_tests.restore.story import (
    OpportunityOrg,
    account_ids_in_org,
    at,
    client,
    config,
    create,
    org_snapshot,
    orphaned_opportunities,
    reviewed,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def thirty_orphaned(save_pipeline_state) -> SavedState:
    """30 Opportunities orphaned at 02:00, backed up before and after: built once for the module."""
    return save_pipeline_state(lambda p: orphaned_opportunities(p, count=30))


@pytest.fixture
def orphaned(pipeline_factory, thirty_orphaned: SavedState) -> tuple[Pipeline, OpportunityOrg]:
    """The test's own copy of `thirty_orphaned` (org and database), to damage and restore as it likes."""
    return pipeline_factory(state=thirty_orphaned), thirty_orphaned.story


def audit(conn: psycopg.Connection, run_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT record_id, field, before, after, operation, written_by, org_alias, object "
        "FROM sf_pipeline.restore_audit WHERE run_id = %s AND state = 'done' ORDER BY id",
        (run_id,),
    ).fetchall()


def stored_items(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT classification, count(*) FROM sf_pipeline.restore_items WHERE run_id = %s GROUP BY 1", (run_id,)
        ).fetchall()
    )


def plan_status(conn: psycopg.Connection, run_id: str) -> str:
    return conn.execute("SELECT status FROM sf_pipeline.restore_plans WHERE run_id = %s", (run_id,)).fetchone()[0]


def test_restore_puts_orphaned_opportunities_back_and_skips_the_one_fixed_by_hand(orphaned):
    p, org = orphaned
    fixed = org.opportunities[3]
    assert org.original_account[fixed] != org.accounts[0]
    at(p, 7, 0)
    p.sf("sales1").Opportunity.update(fixed, {"AccountId": org.accounts[0]})  # fixed by hand, differently
    at(p, 9, 0)
    c = client(p)
    admin = p.devorg.org.user("admin").user_id
    untouched = org_snapshot(p, "Opportunity")

    with p.conn() as conn:
        # Dry run: the plan shows every Opportunity and nothing is written.
        dry = plan_restore(conn, c, config(), "dry-1")
        assert dry.counts == {"restore": 29, "conflict": 1, "not_restorable": 0, "noop": 0}
        conflict = next(r for r in dry.records if r.status == CONFLICT)
        assert conflict.record_id == fixed and "changed in the org after the damage" in conflict.reason
        summary = dry.summary()
        assert summary["records_to_write"] == 29 and summary["dry_run"] is True
        assert len(summary["preview"].splitlines()) == 2 + 30 and f"| {fixed} | AccountId |" in summary["preview"]
        assert stored_items(conn, "dry-1") == {"restore": 29, "conflict": 1}
        # The path large plans take (one Bulk API 2.0 read of everything changed since the damage started,
        # parents read in bulk) classifies exactly the same.
        through_bulk = plan_restore(conn, c, config(), "dry-bulk", bulk_threshold=3)
        assert dry.fetch_mode == "collections" and through_bulk.fetch_mode == "bulk"
        assert [(r.record_id, r.status, r.fields) for r in through_bulk.records] == [
            (r.record_id, r.status, r.fields) for r in dry.records
        ]
        nothing = apply_plan(conn, c, dry)
        assert nothing.dry_run and nothing.values_written == 0 and verify_plan(c, dry).checked == 0
        assert org_snapshot(p, "Opportunity") == untouched
        assert audit(conn, "dry-1") == []

        # Apply the reviewed plan and verify.
        plan = load_plan(conn, config(dry_run=False, plan="dry-1"), "restore-1")
        assert plan.plan_of == "dry-1" and plan.counts == dry.counts
        result = apply_plan(conn, c, plan)
        assert result.success and result.outcomes == {"written": 29, "skipped_conflict": 1}
        assert result.values_written == 29 and result.mode == "collections"
        assert verify_plan(c, plan, conn=conn).checked == 29
        assert plan_status(conn, "restore-1") == "verified"
        rows = audit(conn, "restore-1")
        assert sorted(r[0] for r in rows) == sorted(o for o in org.opportunities if o != fixed)
        assert all(r[1:4] == ("AccountId", None, org.original_account[r[0]]) for r in rows)
        assert {(r[4], r[5], r[6], r[7]) for r in rows} == {("update", admin, "production", "Opportunity")}
        outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM sf_pipeline.restore_items WHERE run_id = 'restore-1' GROUP BY 1"
            ).fetchall()
        )
        assert outcomes == {"written": 29, "skipped_conflict": 1}
    expected = {o: org.accounts[0] if o == fixed else org.original_account[o] for o in org.opportunities}
    assert account_ids_in_org(p, org.opportunities) == expected

    # The same config again (dry run, then its plan): nothing left to write, not a single call to write.
    restored = org_snapshot(p, "Opportunity")
    with p.conn() as conn:
        again = reviewed(conn, c, "restore-2")
        assert again.counts == {"restore": 0, "conflict": 1, "not_restorable": 0, "noop": 29}
        calls = c.api_calls
        second = apply_plan(conn, c, again)
        assert second.outcomes == {"nothing_to_do": 29, "skipped_conflict": 1} and second.values_written == 0
        assert c.api_calls == calls
        assert audit(conn, "restore-2") == []
    assert org_snapshot(p, "Opportunity") == restored

    # Only on_conflict: overwrite replaces the hand fix.
    with p.conn() as conn:
        overwrite = reviewed(conn, c, "restore-3", on_conflict="overwrite")
        assert apply_plan(conn, c, overwrite).outcomes == {"written": 1, "nothing_to_do": 29}
        verify_plan(c, overwrite, conn=conn)
    assert account_ids_in_org(p, [fixed]) == {fixed: org.original_account[fixed]}


def test_restore_in_chunks_plans_applies_and_verifies_as_it_does_in_one(orphaned, monkeypatch):
    """A large incident is planned, applied and verified a chunk of records at a time (tables.CHUNK_RECORDS, so its
    memory does not grow with the incident): shrunk to 7 records, the 30 orphaned Opportunities take 5 chunks, each
    read and written through its own Bulk API 2.0 job, and give the same plan, outcomes, audit and verification."""
    p, org = orphaned
    fixed = org.opportunities[3]
    at(p, 7, 0)
    p.sf("sales1").Opportunity.update(fixed, {"AccountId": org.accounts[0]})  # fixed by hand: a conflict
    at(p, 9, 0)
    c = client(p)
    with p.conn() as conn:
        whole = plan_restore(conn, c, config(), "dry-whole", bulk_threshold=10)
        monkeypatch.setattr(tables, "CHUNK_RECORDS", 7)
        dry = plan_restore(conn, c, config(), "dry-1", bulk_threshold=10)
        assert dry.counts == whole.counts == {"restore": 29, "conflict": 1, "not_restorable": 0, "noop": 0}
        assert dry.summary()["preview"] == whole.summary()["preview"] and dry.fetch_mode == "bulk"
        assert dry.since == whole.since and dry.notes == whole.notes
        assert [(r.record_id, r.status, r.reason, r.fields) for r in dry.records] == [
            (r.record_id, r.status, r.reason, r.fields) for r in whole.records
        ]
        plan = load_plan(conn, config(dry_run=False, plan="dry-1"), "restore-1")
        assert plan.counts == dry.counts and plan.summary()["records_to_write"] == 29
        result = apply_plan(conn, c, plan, bulk_threshold=10)
        assert result.success and result.outcomes == {"written": 29, "skipped_conflict": 1}
        assert result.values_written == 29 and result.mode == "bulk"
        jobs = conn.execute(
            "SELECT count(DISTINCT job_id) FROM sf_pipeline.restore_audit WHERE run_id = 'restore-1'"
        ).fetchone()[0]
        assert jobs == 5  # one Bulk API 2.0 ingest job per chunk of 7 records
        assert verify_plan(c, plan, conn=conn, bulk_threshold=10).checked == 29
        assert plan_status(conn, "restore-1") == "verified"
        rows = audit(conn, "restore-1")
        assert sorted(r[0] for r in rows) == sorted(o for o in org.opportunities if o != fixed)
        assert all(r[1:4] == ("AccountId", None, org.original_account[r[0]]) for r in rows)
        assert {r.record_id: r.outcome for r in plan.records} == {
            o: "skipped_conflict" if o == fixed else "written" for o in org.opportunities
        }
    expected = {o: org.accounts[0] if o == fixed else org.original_account[o] for o in org.opportunities}
    assert account_ids_in_org(p, org.opportunities) == expected


def test_a_restore_rehearsed_in_another_org_translates_ids_and_lookups_through_a_large_id_map(orphaned, monkeypatch):
    """The backup of production restored into another org (a sandbox seeding filled): every record id and every
    lookup value goes through the production -> sandbox pairs of sf_pipeline.id_map, read a chunk of records at a
    time among thousands of pairs the restore has no use for; a record without a pair is not restorable, and the
    pairs of other orgs are never used."""
    p, org = orphaned
    # The sandbox is this devorg under another alias, holding the copies seeding made of the 5 Accounts and of the
    # 30 Opportunities (orphaned too: seeded from the incident).
    at(p, 8, 0)
    copies = create(p, "Account", [{"Name": f"Copy {a}"} for a in org.accounts])
    account_copy = dict(zip(org.accounts, copies, strict=True))
    deal = {"StageName": "Prospecting", "CloseDate": "2026-12-31"}
    copies = create(p, "Opportunity", [{"Name": f"Copy {o}", **deal} for o in org.opportunities])
    opportunity_copy = dict(zip(org.opportunities, copies, strict=True))
    unmapped = org.opportunities[7]
    with p.conn() as conn:
        tables.ensure_restore_tables(conn)
        save_id_map(conn, "production", "sandbox", "Account", account_copy)
        save_id_map(
            conn, "production", "sandbox", "Opportunity", {o: c for o, c in opportunity_copy.items() if o != unmapped}
        )
        others = {f"001Zz{i:010d}AAA": f"001Zy{i:010d}AAA" for i in range(5_000)}
        save_id_map(conn, "production", "sandbox", "Account", others)
        # the same source ids paired within production and with a third org: not this restore's pairs
        save_id_map(conn, "production", "production", "Account", {org.accounts[1]: account_copy[org.accounts[0]]})
        save_id_map(conn, "production", "staging", "Opportunity", {unmapped: opportunity_copy[unmapped]})
    monkeypatch.setattr(tables, "CHUNK_RECORDS", 7)  # 5 chunks, each with its own look-up
    at(p, 9, 0)
    sandbox = SalesforceClient(connect(OrgCredentials.from_env("production")), alias="sandbox", backoff=0.01)
    with p.conn() as conn:
        dry = plan_restore(conn, sandbox, config(target_org="sandbox"), "rehearse-dry", source_org="production")
        assert dry.counts == {"restore": 29, "conflict": 0, "not_restorable": 1, "noop": 0}
        wanted = {
            opportunity_copy[o]: account_copy[org.original_account[o]] for o in org.opportunities if o != unmapped
        }
        assert {r.record_id: r.field_item("AccountId").desired for r in dry.records if r.status == "restore"} == wanted
        assert [(r.record_id, r.reason) for r in dry.records if r.status == NOT_RESTORABLE] == [
            (unmapped, "no id in org 'sandbox' for this record (sf_pipeline.id_map has no production -> sandbox pair)")
        ]
        assert (
            "history of org 'production' applied to org 'sandbox' through sf_pipeline.id_map "
            "(29 records mapped, 1 without a mapping)"
        ) in dry.notes
        plan = load_plan(conn, config(target_org="sandbox", dry_run=False, plan="rehearse-dry"), "rehearse")
        result = apply_plan(conn, sandbox, plan)
        assert result.success and result.values_written == 29
        assert verify_plan(sandbox, plan, conn=conn).checked == 29
    assert account_ids_in_org(p, list(opportunity_copy.values())) == {**wanted, opportunity_copy[unmapped]: None}
    assert set(account_ids_in_org(p, org.opportunities).values()) == {None}  # production's own records untouched


def test_undo_through_bulk_api_puts_back_what_a_restore_replaced_except_later_hand_edits(orphaned):
    p, org = orphaned
    at(p, 9, 0)
    c = client(p)
    with p.conn() as conn:
        apply_plan(conn, c, reviewed(conn, c, "restore-1"))
    edited = org.opportunities[5]
    at(p, 10, 0)
    p.sf("sales2").Opportunity.update(edited, {"AccountId": org.accounts[1]})  # after the restore, by hand
    assert org.original_account[edited] != org.accounts[1]

    at(p, 11, 0)
    rows_locked = p.devorg.app.faults.add("lock", rate=0.3, path="sobjects/Opportunity")  # Bulk rows fail at random
    with p.conn() as conn:
        undo = reviewed(conn, c, "undo-1", undo_of="restore-1")
        assert undo.counts == {"restore": 29, "conflict": 1, "not_restorable": 0, "noop": 0}
        assert next(r for r in undo.records if r.status == CONFLICT).record_id == edited
        result = apply_plan(conn, c, undo, bulk_threshold=10)  # 29 records: a Bulk API 2.0 ingest job
        assert result.mode == "bulk" and result.outcomes == {"written": 29, "skipped_conflict": 1}
        verify_plan(c, undo, conn=conn)
        rows = audit(conn, "undo-1")
        assert {r[0] for r in rows} == set(org.opportunities) - {edited}
        assert all(r[2] == org.original_account[r[0]] and r[3] is None for r in rows)
    assert rows_locked.fired > 0
    expected = {o: org.accounts[1] if o == edited else None for o in org.opportunities}
    assert account_ids_in_org(p, org.opportunities) == expected


def test_interrupted_restore_reruns_to_completion_with_exact_accounting(pipeline: Pipeline):
    p = pipeline
    org = orphaned_opportunities(p, count=300, accounts=10)
    at(p, 9, 0)
    faults = p.devorg.app.faults
    with p.conn() as conn:
        c = client(p, max_attempts=3)
        plan = reviewed(conn, c, "restore-1")
        assert plan.counts["restore"] == 300
        # The fresh read and the first PATCH (200 records) pass; the second PATCH fails on every attempt.
        faults.add("slow", next=2, delay=0.01, path="composite/sobjects")
        faults.add("5xx", next=3, path="composite/sobjects")
        with pytest.raises(RestoreApplyError) as failed:
            apply_plan(conn, c, plan)
        result = failed.value.result
        assert not result.success and result.outcomes == {"written": 200, "not_attempted": 100}
        assert "503" in result.interrupted and "apply the same plan again" in str(failed.value)
        assert "plan: restore-1-dry" in str(failed.value)
        assert plan_status(conn, "restore-1") == "apply_failed"
        first = {r[0] for r in audit(conn, "restore-1")}
        assert len(first) == 200
        not_attempted = {r.record_id for r in plan.records if r.outcome == "not_attempted"}
        assert not_attempted == set(org.opportunities) - first
    now = account_ids_in_org(p, org.opportunities)
    assert {o for o, acc in now.items() if acc is not None} == first
    assert all(now[o] == org.original_account[o] for o in first)

    # The same plan applied again through a flaky org (a third of the writes hit a locked row): exactly the
    # rest is written; what the first run wrote is already right.
    faults.clear()
    lock = faults.add("lock", rate=0.3, path="composite/sobjects")
    with p.conn() as conn:
        c = client(p)
        rerun = load_plan(conn, config(dry_run=False, plan="restore-1-dry"), "restore-2")
        assert rerun.counts == {"restore": 300, "conflict": 0, "not_restorable": 0, "noop": 0}
        result = apply_plan(conn, c, rerun)
        assert result.outcomes == {"written": 100, "already_correct": 200}
        verify_plan(c, rerun, conn=conn)
        second = [r[0] for r in audit(conn, "restore-2")]
        assert sorted(second) == sorted(not_attempted)
    assert lock.fired > 0 and c.retries > 0
    assert account_ids_in_org(p, org.opportunities) == org.original_account


def test_restore_deleted_cases_brings_them_back_with_their_relationships(pipeline: Pipeline):
    p = pipeline
    at(p, 0, 10)
    accounts = create(p, "Account", [{"Name": f"Account {i}"} for i in range(3)])
    contacts = create(p, "Contact", [{"LastName": f"Contact {i}", "AccountId": accounts[i % 3]} for i in range(6)])
    parents = create(
        p,
        "Case",
        [
            {
                "Subject": f"Outage {i}",
                "AccountId": accounts[i % 3],
                "Priority": "High",
                "ContactId": contacts[i % 6],
                "Status": "Working",
                "Origin": "Phone",
            }
            for i in range(10)
        ],
    )
    create(
        p,
        "Case",
        [{"Subject": f"Follow-up {i}", "ParentId": parents[i % 10], "AccountId": accounts[i % 3]} for i in range(20)],
    )
    fields = "Id, Subject, Status, Priority, Origin, AccountId, ContactId, ParentId"
    before = {
        r["Id"]: r
        for r in p.devorg.org.queries.run(f"SELECT {fields} FROM Case", include_deleted=False, batch_size=2000)[
            "records"
        ]
    }
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    damage = run_scenario(p.devorg.org, "mass-delete", at=at(p, 2, 0), fraction=0.5)
    deleted = damage.changed["Case"][: damage.details["deleted"]["Case"]]
    cleared = damage.details["lookups_cleared"]["Case.ParentId"]
    assert len(deleted) == 15 and cleared
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    # One deleted parent has left the recycle bin for good (emptied after 15 days, or purged).
    purged = next(before[child]["ParentId"] for child in cleared if before[child]["ParentId"] in deleted)
    with p.devorg.org.store.lock:
        p.devorg.org.store.conn.execute('DELETE FROM "Case" WHERE Id = ?', (purged,))

    at(p, 9, 0)
    c = client(p)
    case = {"object": "Case", "fields": []}
    with p.conn() as conn:
        kept = plan_restore(conn, c, config(**case), "dry-1")
        assert kept.counts == {"restore": 0, "conflict": 0, "not_restorable": 15 + len(cleared), "noop": 0}
        reasons = {r.record_id: r.reason for r in kept.records}
        assert all(
            "recycle bin; set restore_deleted: true to undelete it" in reasons[d] for d in deleted if d != purged
        )
        assert "no longer in its recycle bin; set restore_deleted: true to re-create it" in reasons[purged]
        assert all(
            re.match(r"ParentId would point to \w+, which (is deleted|does not exist) in the org", reasons[child])
            for child in cleared
        )

        plan = reviewed(conn, c, "restore-1", **case, restore_deleted=True, with_children=False)
        assert plan.counts["restore"] == 15 + len(cleared)
        assert plan.actions == {"undelete": 14, "create": 1, "update": len(cleared)}
        result = apply_plan(conn, c, plan)
        assert result.outcomes["undeleted"] == 14 and result.outcomes["created"] == 1
        assert verify_plan(c, plan, conn=conn).checked == 15 + len(cleared)
        new_id = result.id_map[purged]
        assert conn.execute(
            "SELECT source_alias, target_alias, object, target_id FROM sf_pipeline.id_map WHERE source_id = %s",
            (purged,),
        ).fetchall() == [("production", "production", "Case", new_id)]
        operations = dict(
            conn.execute(
                "SELECT operation, count(DISTINCT record_id) FROM sf_pipeline.restore_audit "
                "WHERE run_id = 'restore-1' GROUP BY 1"
            ).fetchall()
        )
        assert operations["undelete"] == 14 and operations["create"] == 1

        # Every case of before the damage is live again with its values and relationships.
        after = {
            r["Id"]: r
            for r in p.devorg.org.queries.run(f"SELECT {fields} FROM Case", include_deleted=False, batch_size=2000)[
                "records"
            ]
        }
        moved = {purged: new_id}
        assert set(after) == {moved.get(rid, rid) for rid in before}
        for rid, old in before.items():
            now = after[moved.get(rid, rid)]
            assert {k: v for k, v in now.items() if k not in ("Id", "attributes")} == {
                k: moved.get(v, v) for k, v in old.items() if k not in ("Id", "attributes")
            }, rid

        # Running it again finds everything restored, the re-created case under its new id.
        again = reviewed(conn, c, "restore-2", **case, restore_deleted=True, with_children=False)
        assert again.counts == {"restore": 0, "conflict": 0, "not_restorable": 0, "noop": 15 + len(cleared)}
        assert new_id in {r.record_id for r in again.records}


def test_recreated_account_gets_its_invoices_pointed_back_to_it(pipeline_factory):
    p = pipeline_factory(["Account", "Invoice__c"])
    at(p, 0, 10)
    accounts = create(p, "Account", [{"Name": "Acme", "Industry": "Banking"}, {"Name": "Globex"}])
    invoices = create(
        p, "Invoice__c", [{"Account__c": accounts[i % 2], "Amount__c": 100 * i, "Status__c": "Sent"} for i in range(6)]
    )
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    at(p, 2, 0)
    p.sf("sales3").Account.delete(accounts[0])  # a plain lookup: its invoices lose their Account__c
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    with p.devorg.org.store.lock:
        p.devorg.org.store.conn.execute('DELETE FROM "Account" WHERE Id = ?', (accounts[0],))

    at(p, 9, 0)
    c = client(p)
    with p.conn() as conn:
        plan = reviewed(conn, c, "r-1", object="Account", fields=[], restore_deleted=True, with_children=False)
        assert plan.actions == {"create": 1}
        result = apply_plan(conn, c, plan)
        verify_plan(c, plan, conn=conn)
        new_id = result.id_map[accounts[0]]
        assert result.repointed == 3
        repointed = conn.execute(
            "SELECT record_id, before, after FROM sf_pipeline.restore_audit WHERE run_id = 'r-1' "
            "AND object = 'Invoice__c' AND operation = 'repoint' ORDER BY record_id"
        ).fetchall()
        assert repointed == [(i, None, new_id) for i in sorted(invoices[0::2])]
    rows = p.devorg.org.queries.run("SELECT Id, Name, Industry FROM Account", include_deleted=True, batch_size=2000)[
        "records"
    ]
    assert {(r["Name"], r["Industry"]) for r in rows if r["Id"] == new_id} == {("Acme", "Banking")}
    held = {
        r["Id"]: r["Account__c"]
        for r in p.devorg.org.queries.run(
            "SELECT Id, Account__c FROM Invoice__c", include_deleted=False, batch_size=2000
        )["records"]
    }
    assert held == {inv: new_id if i % 2 == 0 else accounts[1] for i, inv in enumerate(invoices)}


def test_every_config_mistake_is_refused_before_anything_is_written(orphaned):
    p, org = orphaned
    at(p, 9, 0)
    c = client(p)
    untouched = org_snapshot(p, "Opportunity")
    sales2 = p.devorg.org.user("sales2").user_id
    integration = p.devorg.org.user("integration").user_id
    without_api = [  # refused from the config, the settings and the backup history alone
        ({"target_org": "staging"}, "unknown org alias 'staging': the configured orgs are production, sandbox"),
        ({"object": "Widget__c"}, "no backup history for Widget__c"),
        ({"as_of": "2099-01-01T00:00:00Z"}, "as_of 2099-01-01T00:00:00.000+0000 is in the future"),
        (
            {"as_of": "2026-11-23T00:00:00Z"},
            "as_of 2026-11-23T00:00:00.000+0000 is before the first backup of Opportunity",
        ),
        ({"undo_of": "no-such-run"}, "there is no restore run 'no-such-run'"),
        ({"on_conflict": "merge"}, "on_conflict must be one of skip, overwrite"),
        ({"dry_run": False}, "dry_run: false needs plan: <run id of its dry run>"),
        ({"target_org": None}, "target_org is required"),
        ({"changed_between": None, "fields": []}, "this restore names no fields and selects no records"),
    ]
    with_describe = [  # refused once describe (a read) has answered
        ({"fields": ["Colour"]}, "field `Colour` does not exist on Opportunity in org 'production'"),
        (
            {"fields": ["ExpectedRevenue"]},
            "field `ExpectedRevenue` on Opportunity is not updateable and cannot be restored",
        ),
        ({"fields": ["ContactId"]}, "field `ContactId` on Opportunity is not updateable"),
        (
            {"changed_between": ["2026-11-24T05:00:00Z", "2026-11-24T06:00:00Z"]},
            "empty selection: no Opportunity record changed between 2026-11-24T05:00:00.000+0000 and",
        ),
        (
            {"changed_by": sales2},
            f"empty selection: no Opportunity record changed between "
            f"2026-11-24T02:00:00.000+0000 and 2026-11-24T02:10:00.000+0000 by user {sales2}",
        ),
    ]
    with p.conn() as conn:
        for i, (values, message) in enumerate(without_api + with_describe):
            with pytest.raises(RestoreConfigError) as err:
                plan_restore(conn, c, config(**values), f"bad-{i}")
            assert message in str(err.value)
            if i < len(without_api):
                assert c.api_calls == 0, values
        assert c.api_calls == 3  # reads only: describe of Opportunity (cached), a COUNT() per window checked
        assert conn.execute("SELECT count(*) FROM sf_pipeline.restore_plans").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM sf_pipeline.restore_audit").fetchone()[0] == 0
        # The same window narrowed to the user who did the damage selects every record.
        by_integration = plan_restore(conn, c, config(changed_by=integration), "ok-1")
        assert by_integration.counts["restore"] == len(org.opportunities)
        picked = plan_restore(conn, c, config(record_ids=org.opportunities[:2] + ["0065J00000000ZZ"]), "ok-2")
        assert picked.counts["restore"] == 2 and len(picked.records) == 2
        alone = plan_restore(conn, c, config(changed_between=None, record_ids=["0065J00000000ZZ"]), "ok-3")
        assert [r.status for r in alone.records] == [NOT_RESTORABLE] and "no backup history" in alone.records[0].reason
    assert org_snapshot(p, "Opportunity") == untouched


def test_apply_writes_the_reviewed_plan_and_refuses_a_record_changed_since_the_dry_run(orphaned):
    p, org = orphaned
    at(p, 9, 0)
    c = client(p)
    moved = org.opportunities[3]
    with p.conn() as conn:
        dry = plan_restore(conn, c, config(), "dry-1")
        assert dry.counts["restore"] == 30
        # Plans are applied as reviewed: not without a dry run, not with another config, not another apply's plan.
        for values, message in [
            ({"plan": "no-such-run"}, "there is no restore run 'no-such-run'"),
            (
                {"plan": "dry-1", "fields": ["AccountId", "Amount"]},
                "this config is not the one dry run 'dry-1' planned (fields: the dry run had "
                "['AccountId'], this config has ['AccountId', 'Amount'])",
            ),
            ({"plan": "dry-1", "on_conflict": "overwrite"}, "on_conflict: the dry run had 'skip'"),
        ]:
            with pytest.raises(RestoreConfigError) as err:
                load_plan(conn, config(dry_run=False, **values), "bad")
            assert message in str(err.value)
    untouched = org_snapshot(p, "Opportunity")

    # 09:30, after the review: someone points one of the planned records at another account.
    at(p, 9, 30)
    p.sf("sales1").Opportunity.update(moved, {"AccountId": org.accounts[0]})
    assert org.original_account[moved] != org.accounts[0]
    at(p, 10, 0)
    with p.conn() as conn:
        plan = load_plan(conn, config(dry_run=False, plan="dry-1"), "restore-1")
        assert [(r.record_id, r.fields) for r in plan.records] == [
            (r.record_id, r.fields) for r in sorted(dry.records, key=lambda r: r.record_id)
        ]
        result = apply_plan(conn, c, plan)
        assert result.success and result.outcomes == {"written": 29, "changed_since_plan": 1}
        assert list(result.changed) == [moved]
        assert (
            f"AccountId changed in the org since the dry run: the plan saw null, the org now holds {org.accounts[0]}"
        ) in result.changed[moved]
        stored = conn.execute(
            "SELECT outcome, error FROM sf_pipeline.restore_items WHERE run_id = 'restore-1' AND record_id = %s",
            (moved,),
        ).fetchone()
        assert stored[0] == "changed_since_plan" and "the plan saw null" in stored[1]
        assert verify_plan(c, plan, conn=conn).checked == 29
        assert {r[0] for r in audit(conn, "restore-1")} == set(org.opportunities) - {moved}
        with pytest.raises(RestoreConfigError, match="run 'restore-1' is not a dry run"):
            load_plan(conn, config(dry_run=False, plan="restore-1"), "bad")
    expected = {o: org.accounts[0] if o == moved else org.original_account[o] for o in org.opportunities}
    assert account_ids_in_org(p, org.opportunities) == expected
    assert untouched != org_snapshot(p, "Opportunity")


def test_two_restores_of_the_same_object_and_org_never_write_at_once(orphaned):
    p, org = orphaned
    at(p, 9, 0)
    with p.conn() as conn:
        plan_restore(conn, client(p), config(), "dry-1")
    # The first restore's reads of the org are slow, so it holds the lock of (production, Opportunity) a while.
    p.devorg.app.faults.add("slow", next=1, delay=3.0, path="composite/sobjects")
    first: dict = {}

    def apply_first() -> None:
        with p.conn() as conn:
            first["result"] = apply_plan(conn, client(p), load_plan(conn, config(dry_run=False, plan="dry-1"), "r-1"))

    thread = threading.Thread(target=apply_first)
    thread.start()
    with p.conn() as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT status FROM sf_pipeline.restore_plans WHERE run_id = 'r-1'").fetchone() != (
            "applying",
        ):
            assert time.monotonic() < deadline, "the first restore never started writing"
            time.sleep(0.05)
        second_client = client(p)
        second = load_plan(conn, config(dry_run=False, plan="dry-1"), "r-2")
        started = time.monotonic()
        with pytest.raises(RestoreBusyError) as busy:
            apply_plan(conn, second_client, second)
        assert time.monotonic() - started < 2  # fails fast, does not wait for the first
        assert "another restore of Opportunity into org 'production' is being applied (run r-1)" in str(busy.value)
        assert second_client.api_calls == 0 and audit(conn, "r-2") == []
    thread.join(timeout=60)
    assert first["result"].outcomes == {"written": 30}
    with p.conn() as conn:  # the lock went with the first restore: the second may run now, and finds it done
        assert apply_plan(conn, client(p), second).outcomes == {"already_correct": 30}
    assert account_ids_in_org(p, org.opportunities) == org.original_account
