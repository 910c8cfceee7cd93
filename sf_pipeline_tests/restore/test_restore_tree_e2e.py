"""Whole hierarchies in one run: a mass delete of Accounts (their Contacts, Opportunities and contact roles
deleted with them, the lookups of other records cleared), the recycle bin purged, restored in one run, undone.

devorg deletes as Salesforce does: master-detail and cascade-delete children go with their parent, plain lookups
are cleared ("Delete Records", https://help.salesforce.com/s/articleView?id=sf.data_delete.htm; describe's
`childRelationships[].cascadeDelete`, https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm),
and records leave the recycle bin for good after 15 days
(https://help.salesforce.com/s/articleView?id=sf.home_delete.htm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline.restore import (
    RestoreConfigError,
    RestoreVerifyError,
    apply_plan,
    hierarchy,
    load_plan,
    plan_restore,
    tables,
    verify_plan,
)
from sf_pipeline.warehouse.id_map import load_id_map
from sf_pipeline_tests.pipeline_fixtures import SavedState
from sf_pipeline_tests.restore.story import at, client, config, create, reviewed
from sf_pipeline_tests.restore.test_interrupted_restore_e2e import journal_states, kill_at

pytestmark = pytest.mark.e2e
TREE = {"object": "Account", "fields": [], "restore_deleted": True}  # with_children: on for deletions

OBJECTS = ["Account", "Contact", "Opportunity", "OpportunityContactRole", "Invoice__c"]
FIELDS = {
    "Account": ["Name", "Industry", "ParentId"],
    "Contact": ["LastName", "AccountId", "ReportsToId", "Email"],
    "Opportunity": ["Name", "StageName", "CloseDate", "Amount", "AccountId"],
    "OpportunityContactRole": ["OpportunityId", "ContactId", "Role"],
    "Invoice__c": ["Account__c", "Amount__c", "Status__c"],
}


def live(p, sobject: str) -> dict[str, dict[str, Any]]:
    """Every live record of an object as devorg holds it: id -> the compared fields."""
    rows = p.devorg.org.queries.run(
        f"SELECT Id, {', '.join(FIELDS[sobject])} FROM {sobject}", include_deleted=False, batch_size=2000
    )["records"]
    return {r["Id"]: {f: r[f] for f in FIELDS[sobject]} for r in rows}


def org_state(p) -> dict[str, dict[str, dict[str, Any]]]:
    return {o: live(p, o) for o in OBJECTS}


def mapped(state: dict[str, dict[str, dict[str, Any]]], ids: dict[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """`state` with every id (record ids and lookup values) translated through `ids`."""
    return {
        o: {
            ids.get(rid, rid): {f: ids.get(v, v) if isinstance(v, str) else v for f, v in values.items()}
            for rid, values in records.items()
        }
        for o, records in state.items()
    }


def build_accounts_with_children(p):
    """Six Accounts with Contacts, Opportunities, contact roles and Invoices; four Accounts are then deleted."""
    at(p, 0, 10)
    accounts = create(p, "Account", [{"Name": f"Account {i}", "Industry": "Banking"} for i in range(6)])
    sf = p.sf("admin")
    # Account 1 belongs to account 0 (a self-reference inside the deleted tree: set after both exist) and
    # account 4, which survives, to account 2 (the delete clears it: it must be re-pointed).
    sf.Account.update(accounts[1], {"ParentId": accounts[0]})
    sf.Account.update(accounts[4], {"ParentId": accounts[2]})
    contacts = create(
        p,
        "Contact",
        [{"LastName": f"Contact {i}", "AccountId": accounts[i // 2], "Email": f"c{i}@example.com"} for i in range(12)],
    )
    sf.Contact.update(contacts[0], {"ReportsToId": contacts[2]})  # both deleted
    sf.Contact.update(contacts[8], {"ReportsToId": contacts[0]})  # a survivor reporting to a deleted contact
    opps = create(
        p,
        "Opportunity",
        [
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "Amount": 1000 + i,
                "AccountId": accounts[i // 2],
            }
            for i in range(12)
        ],
    )
    create(
        p,
        "OpportunityContactRole",
        [{"OpportunityId": opps[i], "ContactId": contacts[i], "Role": "Decision Maker"} for i in range(12)]
        # a survivor's deal with a deleted account's contact: the role goes with the contact
        + [{"OpportunityId": opps[9], "ContactId": contacts[1], "Role": "Influencer"}],
    )
    # Invoices only look their account up: the delete clears it (Cases would refuse the delete, as in Salesforce).
    create(
        p, "Invoice__c", [{"Account__c": accounts[i % 6], "Amount__c": 100 * i, "Status__c": "Sent"} for i in range(12)]
    )
    return accounts


@dataclass
class DeletedAccounts:
    accounts: list[str]
    before: dict[str, dict[str, dict[str, Any]]]  # every live record before the delete
    damaged: dict[str, dict[str, dict[str, Any]]]  # and after it


def delete_four_accounts(p) -> DeletedAccounts:
    """The org of `build_accounts_with_children`, backed up; at 02:00 sales3 deletes four Accounts (their
    Contacts, Opportunities and contact roles go with them), and the 02:00 window is backed up."""
    accounts = build_accounts_with_children(p)
    before = org_state(p)
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    at(p, 2, 0)
    deleted = accounts[:4]
    answer = p.sf("sales3").restful(f"composite/sobjects?ids={','.join(deleted)}&allOrNone=true", method="DELETE")
    assert all(r["success"] for r in answer), answer
    damaged = org_state(p)
    assert len(damaged["Contact"]) == 4 and len(damaged["Opportunity"]) == 4
    assert damaged["Account"][accounts[4]]["ParentId"] is None  # the delete cleared a survivor's lookup
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    return DeletedAccounts(accounts, before, damaged)


@pytest.fixture(scope="module")
def four_accounts_deleted(save_pipeline_state) -> SavedState:
    return save_pipeline_state(delete_four_accounts, OBJECTS)


def test_mass_delete_of_accounts_comes_back_whole_in_one_run_after_the_purge_and_is_undone(
    pipeline_factory, four_accounts_deleted
):
    p = pipeline_factory(state=four_accounts_deleted)
    story: DeletedAccounts = four_accounts_deleted.story
    before, damaged = story.before, story.damaged
    purge = run_scenario(p.devorg.org, "recycle-bin-purge")
    assert purge.details["purged"]["Account"] == 4 and purge.details["purged"]["Contact"] == 8

    c = client(p)
    tree = {"object": "Account", "fields": [], "restore_deleted": True}
    with p.conn() as conn:
        dry = plan_restore(conn, c, config(**tree), "tree-dry")
        summary = dry.summary()
        assert summary["tree"]["Account"] == {"undelete": 0, "re-create": 4, "re-point": 1}
        assert summary["tree"]["Contact"] == {"undelete": 0, "re-create": 8, "re-point": 1}
        assert summary["tree"]["Opportunity"] == {"undelete": 0, "re-create": 8, "re-point": 0}
        assert summary["tree"]["OpportunityContactRole"] == {"undelete": 0, "re-create": 9, "re-point": 0}
        assert summary["tree"]["Invoice__c"]["re-point"] == 8  # the invoices of the deleted accounts
        # parents first, the junction after both of its ends; the self-references set after the inserts
        order = summary["order"]
        assert order.index("Account") < order.index("Contact") < order.index("OpportunityContactRole")
        assert order.index("Opportunity") < order.index("OpportunityContactRole")
        assert summary["deferred"] == {"Account": ["ParentId"], "Contact": ["ReportsToId"]}
        assert "| Account | 0 | 4 | 1 |" in summary["preview"]
        assert org_state(p) == damaged  # a dry run writes nothing

        plan = reviewed(conn, c, "tree-1", **tree)
        calls = c.api_calls
        result = apply_plan(conn, c, plan)
        verified = verify_plan(c, plan, conn=conn)
        assert result.success and verified.success
        assert result.outcomes == {"created": 29, "repointed": 10}
        ids = result.id_map
        assert len(ids) == 29 and not set(ids) & set(ids.values())
        # Every record is back under its new id, every lookup to it re-pointed, survivors' included.
        assert org_state(p) == mapped(before, ids)
        assert (
            conn.execute(
                "SELECT count(*) FROM sf_pipeline.id_map WHERE source_alias = 'production' AND "
                "target_alias = 'production'"
            ).fetchone()[0]
            == 29
        )
        by_op = dict(
            conn.execute(
                "SELECT object || ':' || operation, count(DISTINCT record_id) FROM "
                "sf_pipeline.restore_audit WHERE run_id = 'tree-1' GROUP BY 1"
            ).fetchall()
        )
        assert by_op["Invoice__c:repoint"] == 8 and by_op["Account:repoint"] == 1 and by_op["Contact:repoint"] == 1
        assert by_op["OpportunityContactRole:create"] == 9
        print(f"restore of 29 records and 10 lookups: {c.api_calls - calls} API calls (apply and verify)")

        # Applying the same plan again finds the records (id map) and writes nothing twice.
        again = load_again(conn, c, tree)
        assert again.outcomes.get("created", 0) == 0 and len(org_state(p)["Account"]) == 6

        # Undo: the re-pointed lookups go back to empty and the re-created records to the recycle bin.
        undo = reviewed(conn, c, "undo-1", object="Account", undo_of="tree-1")
        assert undo.summary()["actions"] == {"delete": 29, "repoint": 10}
        undone = apply_plan(conn, c, undo)
        assert undone.success and verify_plan(c, undo, conn=conn).success
        assert org_state(p) == damaged


def load_again(conn, c, tree: dict[str, Any]):
    plan = load_plan(conn, config(**tree, dry_run=False, plan="tree-1-dry"), "tree-1-again")
    return apply_plan(conn, c, plan)


def test_records_still_in_the_bin_are_undeleted_with_their_children_and_purged_ones_re_created(
    pipeline_factory, four_accounts_deleted
):
    p = pipeline_factory(state=four_accounts_deleted)
    story: DeletedAccounts = four_accounts_deleted.story
    # An admin empties half of the recycle bin (emptyRecycleBin): two deleted Accounts leave it with
    # everything deleted with them; the two others can still be undeleted.
    purge = run_scenario(p.devorg.org, "recycle-bin-purge", empty_bin=True, fraction=0.5)
    assert purge.details["purged"]["Account"] == 2
    c = client(p)
    tree = {"object": "Account", "fields": [], "restore_deleted": True}
    with p.conn() as conn:
        plan = reviewed(conn, c, "mixed", **tree)
        objects = plan.summary()["tree"]
        assert objects["Account"]["undelete"] == 2 and objects["Account"]["re-create"] == 2
        assert objects["Contact"]["undelete"] + objects["Contact"]["re-create"] == 8
        assert objects["Contact"]["undelete"] == 4  # they come back with their Account's undelete
        # contact roles cannot be undeleted on their own (describe: undeletable false), but come back with theirs
        assert objects["OpportunityContactRole"]["undelete"] == 4
        result = apply_plan(conn, c, plan)
        assert verify_plan(c, plan, conn=conn).success
        assert result.outcomes["undeleted"] == 2 + 4 + 4 + objects["OpportunityContactRole"]["undelete"]
        undeletes = conn.execute(
            "SELECT count(*) FROM sf_pipeline.restore_audit WHERE run_id = 'mixed' AND operation = 'undelete'"
        ).fetchone()[0]
        assert undeletes == result.outcomes["undeleted"]
        ids = dict(result.id_map)  # read from sf_pipeline.id_map while the connection is open
    # Undeleted records keep their ids, re-created ones have new ids; every lookup points at them again.
    assert org_state(p) == mapped(story.before, ids)
    assert len(ids) == sum(n["re-create"] for n in objects.values())


def test_records_deleted_with_one_that_cannot_come_back_are_planned_as_not_restorable_down_the_tree(
    pipeline_factory, four_accounts_deleted
):
    """The recycle bin purged, and Contacts cannot be created by the restore user (describe's object-level
    `createable` is false: DescribeSObjectResult, "createable: Indicates whether the object can be created via the
    create() call", https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_describesobjects_describesobjectresult.htm;
    a profile without Create on the object): the dry run lists the deleted Contacts as not restorable, and the
    contact roles deleted with them (a level further down) as not restorable because of them, each naming its own
    Contact; the Accounts and Opportunities are still re-created and the lookups into them re-pointed."""
    p = pipeline_factory(state=four_accounts_deleted)
    story: DeletedAccounts = four_accounts_deleted.story
    run_scenario(p.devorg.org, "recycle-bin-purge")
    contact = p.devorg.org.schema.get("Contact")  # as describe shows it to a user without Create on Contact
    contact.createable = contact.flags["createable"] = False
    c = client(p)
    with p.conn() as conn:
        summary = plan_restore(conn, c, config(**TREE), "no-contacts-dry").summary()
        roles = conn.execute(
            "SELECT record_id, damaged_value #>> '{}', reason FROM sf_pipeline.restore_items WHERE run_id = "
            "'no-contacts-dry' AND object = 'OpportunityContactRole' AND action = 'none'"
        ).fetchall()
    deleted_contacts = set(story.before["Contact"]) - set(story.damaged["Contact"])
    assert len(deleted_contacts) == 8
    assert summary["tree"]["Contact"] == {"undelete": 0, "re-create": 0, "re-point": 0, "cannot": 8}
    assert summary["tree"]["Account"] == {"undelete": 0, "re-create": 4, "re-point": 1}
    assert summary["tree"]["Opportunity"] == {"undelete": 0, "re-create": 8, "re-point": 0}
    assert summary["tree"]["Invoice__c"]["re-point"] == 8
    assert summary["cannot"]["Contact"] == {
        "Contact is not createable: a record gone from the recycle bin cannot be re-created": 8
    }
    # each role that cannot come back names the Contact it was deleted with, which cannot come back either
    assert summary["tree"]["OpportunityContactRole"] == {"undelete": 0, "re-create": 0, "re-point": 0, "cannot": 9}
    assert len(roles) == 9 and {parent for _rid, parent, _why in roles} == deleted_contacts
    assert all(why == f"deleted with Contact {parent}, which cannot be brought back" for _rid, parent, why in roles)
    per_contact: dict[str, int] = {}
    for _rid, _parent, why in roles:
        per_contact[why] = per_contact.get(why, 0) + 1
    assert summary["cannot"]["OpportunityContactRole"] == per_contact
    assert "| Contact | 0 | 0 | 0 | 0 | 8 | 0 |" in summary["preview"]
    assert "Contact" not in summary["order"]  # nothing of it to create


def test_a_tree_restored_a_chunk_at_a_time_comes_back_whole_and_verify_checks_what_its_journal_wrote(
    pipeline_factory, four_accounts_deleted, monkeypatch
):
    """Issue 16, flat memory: a large tree is created, its references set, its lookups re-pointed and verified
    tables.CHUNK_RECORDS records at a time, each chunk of inserts one Bulk API 2.0 job, and verify compares each
    re-created record with what the run's journal (PostgreSQL) says was written, not with values held through the
    run. Shrunk to 3 records a chunk, the 29 records take 11 insert jobs."""
    p = pipeline_factory(state=four_accounts_deleted)
    story: DeletedAccounts = four_accounts_deleted.story
    run_scenario(p.devorg.org, "recycle-bin-purge")
    monkeypatch.setattr(tables, "CHUNK_RECORDS", 3)
    monkeypatch.setattr(hierarchy, "INSERT_CHUNK", 3)
    monkeypatch.setattr(hierarchy, "BULK_AT", 1)  # every chunk through Bulk API 2.0
    c = client(p)
    with p.conn() as conn:
        plan = reviewed(conn, c, "chunked", **TREE)
        result = apply_plan(conn, c, plan)
        assert result.success and result.outcomes == {"created": 29, "repointed": 10}
        jobs = dict(
            conn.execute(
                "SELECT object, count(DISTINCT job_id) FROM sf_pipeline.restore_audit WHERE run_id = 'chunked' "
                "AND operation = 'create' GROUP BY 1"
            ).fetchall()
        )
        assert jobs == {"Account": 2, "Contact": 3, "Opportunity": 3, "OpportunityContactRole": 3}
        ids = result.id_map
        assert org_state(p) == mapped(story.before, ids)  # every record once, every lookup to it re-pointed
        verified = verify_plan(c, plan, conn=conn)
        assert verified.success and verified.checked == 29 + 10  # re-created, and the survivors re-pointed

        # Someone changes a re-created deal's amount, and a re-created contact's manager (a reference set after
        # the inserts): verify finds both, against the values the journal holds.
        deal = next(o for o in story.before["Opportunity"] if o not in story.damaged["Opportunity"])
        contact = next(
            k for k, v in story.before["Contact"].items() if k not in story.damaged["Contact"] and v["ReportsToId"]
        )
        sf = p.sf("admin")
        sf.Opportunity.update(ids[deal], {"Amount": 1})
        sf.Contact.update(ids[contact], {"ReportsToId": None})
        with pytest.raises(RestoreVerifyError) as failed:
            verify_plan(c, plan, conn=conn)
        mismatched = failed.value.result.mismatched
        amount = story.before["Opportunity"][deal]["Amount"]
        assert mismatched == {
            ids[deal]: [("Amount", amount, 1.0)],
            ids[contact]: [("ReportsToId", ids[story.before["Contact"][contact]["ReportsToId"]], None)],
        }


def test_the_restore_job_brings_the_tree_back_from_the_launchpad_and_undoes_it(pipeline_factory, four_accounts_deleted):
    p = pipeline_factory(state=four_accounts_deleted)
    story: DeletedAccounts = four_accounts_deleted.story
    run_scenario(p.devorg.org, "recycle-bin-purge")
    job = p.defs().resolve_job_def("restore")

    def launch(config: dict[str, Any]) -> dict[str, Any]:
        result = job.execute_in_process(run_config={"ops": {"restore": {"config": config}}}, instance=p.instance)
        [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        return {"run_id": result.run_id, **{k: v.value for k, v in event.event_specific_data.metadata.items()}}

    tree = {
        "object": "Account",
        "restore_deleted": True,
        "as_of": "2026-11-24T01:59:59Z",
        "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00Z"],
        "target_org": "production",
    }
    dry = launch(tree)
    assert dry["tree"]["objects"]["Opportunity"]["re-create"] == 8
    assert dry["tree"]["order"].index("Account") < dry["tree"]["order"].index("OpportunityContactRole")
    assert "| Contact | 0 | 8 | 1 |" in dry["plan"]
    assert org_state(p) == story.damaged
    applied = launch({**tree, "dry_run": False, "plan": dry["run_id"]})
    assert applied["outcomes"] == {"created": 29, "repointed": 10} and applied["verified_records"] == 29 + 10
    with p.conn() as conn:
        ids = load_id_map(conn, "production", "production")
    assert org_state(p) == mapped(story.before, ids)
    undo = {"object": "Account", "undo_of": applied["run_id"], "target_org": "production"}
    undo_dry = launch(undo)
    assert undo_dry["counts"]["restore"] == 29 + 10
    launch({**undo, "dry_run": False, "plan": undo_dry["run_id"]})
    assert org_state(p) == story.damaged


def test_with_children_is_on_for_deletions_and_refused_without_restore_deleted():
    with pytest.raises(RestoreConfigError, match="needs restore_deleted: true"):
        config(object="Account", fields=[], with_children=True)
    with pytest.raises(RestoreConfigError, match="with_children must be true or false"):
        config(object="Account", fields=[], restore_deleted=True, with_children="yes")
    assert config(object="Account", fields=[], restore_deleted=True).with_children is True
    assert config(object="Account", fields=["Name"], restore_deleted=True).with_children is True
    assert config(object="Account", fields=[], restore_deleted=True, with_children=False).with_children is False
    assert config(object="Account", fields=[]).with_children is False


# ===================================================================== killed and applied again
# Four Accounts deleted with their Contacts, Opportunities and contact roles (the org above), then
# half of the recycle bin emptied: two Accounts come back by undelete (their children with them), two are
# re-created with their children (Bulk inserts when `bulk_at` is small), self-references set after the inserts
# (`update`), and the lookups of survivors re-pointed (`repoint`: one call per object, Account, Contact and
# Invoice__c).
# With the whole bin purged instead, everything is re-created and the self-references inside the tree
# (Account.ParentId, Contact.ReportsToId) are set by an update once both ends exist.
TREE_KILLS = [
    pytest.param("undelete", "after", 1, None, 0.5, id="after-undelete"),
    pytest.param("create", "job", 2, 1, 0.5, id="mid-insert-bulk-job-created"),
    pytest.param("create", "after", 2, 1, 0.5, id="bulk-insert-done-never-completed"),
    pytest.param("create", "after", 1, None, 0.5, id="collections-insert-done-never-completed"),
    pytest.param("update", "before", 1, None, 1.0, id="after-insert-before-references"),
    pytest.param("repoint", "before", 1, None, 0.5, id="after-insert-before-re-point"),
    pytest.param("repoint", "after", 2, 1, 1.0, id="mid-re-point-bulk"),
]


@pytest.mark.parametrize(("operation", "phase", "nth", "bulk_at", "purged"), TREE_KILLS)
def test_tree_restore_killed_at_any_phase_reruns_without_a_duplicate(
    pipeline_factory, four_accounts_deleted, operation, phase, nth, bulk_at, purged
):
    """SIGKILL of a real process applying the tree plan, at one phase of one call of the write-ahead journal
    (test_interrupted_restore_e2e.py's runner), then the same plan applied again."""
    p = pipeline_factory(state=four_accounts_deleted)
    run_scenario(p.devorg.org, "recycle-bin-purge", empty_bin=True, fraction=purged)
    at(p, 9, 0)
    with p.conn() as conn:
        plan = plan_restore(conn, client(p), config(**TREE), "t1-dry")
        actions = {"undelete": 0, **plan.summary()["actions"]}
        assert bool(actions["undelete"]) == (purged < 1) and actions["create"] and actions["repoint"] >= 3
        kill_at(p, TREE, "t1", operation, phase, nth, **({"bulk_at": bulk_at} if bulk_at else {}))
        assert journal_states(conn, operation).get("pending", 0) > 0  # the killed run left its journal open
        if phase == "job":  # the job's id was logged before anything was uploaded
            assert (
                conn.execute(
                    "SELECT count(*) FROM sf_pipeline.restore_audit a JOIN sf_pipeline.restore_call_jobs USING (call_id) "
                    "WHERE a.state = 'pending'"
                ).fetchone()[0]
                > 0
            )
        c = client(p)
        rerun = load_plan(conn, config(**TREE, dry_run=False, plan="t1-dry"), "t2")
        result = apply_plan(conn, c, rerun)
        assert result.success, result.summary()
        assert verify_plan(c, rerun, conn=conn).success
        if phase != "before" and phase != "job":  # the killed call was carried out: found done, not made again
            assert result.reconciled.get("done", 0) >= 1, result.reconciled
        # a complete audit: nothing pending or unsettled, one done create per re-created record across both runs
        states = dict(conn.execute("SELECT state, count(*) FROM sf_pipeline.restore_audit GROUP BY 1").fetchall())
        assert "pending" not in states and "unchecked" not in states, states
        ids = dict(
            conn.execute(
                "SELECT source_id, target_id FROM sf_pipeline.id_map WHERE source_alias = "
                "'production' AND target_alias = 'production'"
            ).fetchall()
        )
        assert len(ids) == actions["create"]
        created = conn.execute(
            "SELECT before #>> '{}', record_id FROM sf_pipeline.restore_audit WHERE operation = "
            "'create' AND field = 'Id' AND state = 'done'"
        ).fetchall()
        assert sorted(created) == sorted(ids.items())  # each old id re-created once, under the id in the id map
        undeleted = conn.execute(
            "SELECT record_id, count(*) FROM sf_pipeline.restore_audit WHERE operation = "
            "'undelete' AND state = 'done' GROUP BY 1"
        ).fetchall()
        assert len(undeleted) == actions["undelete"] and all(n == 1 for _, n in undeleted)
    # No record twice (every object's live records are exactly those before the delete, re-created ones under
    # their new ids) and every lookup to a record of the tree points at it again, survivors' included.
    story: DeletedAccounts = four_accounts_deleted.story
    assert org_state(p) == mapped(story.before, ids)
