"""The restore's decisions and value handling as plain functions: no org, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from sf_pipeline.restore import RestoreConfig, RestoreConfigError
from sf_pipeline.restore.decisions import (
    ALREADY_CORRECT,
    CHANGED_SINCE_PLAN,
    CONFLICT,
    CREATE,
    DELETED_SINCE_PLAN,
    LIVE,
    MISSING,
    NONE,
    NOOP,
    NOT_RESTORABLE,
    RECYCLE_BIN,
    RESTORE,
    SKIPPED_CONFLICT,
    UNDELETE,
    UPDATE,
    WRITTEN,
    changed_since_plan,
    changes_to_write,
    classify_field,
    classify_record,
    markdown_table,
    mismatches,
    preview_rows,
    unavailable_parents,
)
from sf_pipeline.salesforce.values import canonical, csv_text, id18

ACME, GLOBEX, INITECH = "0015J0000000001QAA", "0015J0000000002QAA", "0015J0000000003QAA"
OPP = "0065J0000000001QAA"


# ----------------------------------------------------------------- fields
def test_field_already_holding_the_desired_value_is_noop():
    assert classify_field(ACME, None, None, ACME, org_newer=True) == (NOOP, None)


def test_field_still_holding_the_damaged_value_is_restored():
    assert classify_field(ACME, None, None, None, org_newer=False) == (RESTORE, None)


def test_field_fixed_by_hand_to_another_value_is_a_conflict():
    status, reason = classify_field(ACME, None, None, GLOBEX, org_newer=True)
    assert status == CONFLICT and "changed in the org after the damage" in reason and GLOBEX in reason


def test_field_changed_again_after_the_last_backup_is_a_conflict_even_if_it_matches_the_damage():
    # damaged to null (window), fixed to GLOBEX (backed up), nulled again after the backup
    status, reason = classify_field(ACME, None, GLOBEX, None, org_newer=True)
    assert status == CONFLICT and "after the last backup" in reason
    assert classify_field(ACME, None, GLOBEX, None, org_newer=False)[0] == RESTORE


# ----------------------------------------------------------------- records
def live(current, desired=None, damaged=None, **kw):
    desired = {"AccountId": ACME} if desired is None else desired
    damaged = {"AccountId": None} if damaged is None else damaged
    return classify_record(
        OPP,
        list(desired),
        desired=desired,
        damaged=damaged,
        latest=damaged,
        current=current,
        org_state=LIVE,
        references={"AccountId"},
        **kw,
    )


def test_record_is_as_bad_as_its_worst_field():
    rec = live(
        {"AccountId": GLOBEX, "StageName": "Lost"},
        desired={"AccountId": ACME, "StageName": "Won"},
        damaged={"AccountId": None, "StageName": "Lost"},
    )
    assert rec.status == CONFLICT and rec.action == UPDATE
    assert [f.status for f in rec.fields] == [CONFLICT, RESTORE]
    assert rec.writes("skip") == {}
    assert rec.writes("overwrite") == {"AccountId": ACME, "StageName": "Won"}
    assert live({"AccountId": ACME}).status == NOOP


def test_record_pointing_to_a_deleted_parent_is_not_restorable():
    rec = live({"AccountId": None}, unavailable_parents={ACME: "is deleted in the org"})
    assert rec.status == NOT_RESTORABLE
    assert rec.fields[0].reason == f"AccountId would point to {ACME}, which is deleted in the org"
    assert rec.writes("overwrite") == {}


def test_record_that_did_not_exist_at_as_of_is_never_deleted():
    rec = classify_record(OPP, ["AccountId"], desired=None, damaged={}, latest={}, current={}, org_state=LIVE)
    assert (rec.status, rec.action) == (NOT_RESTORABLE, NONE) and "restore never deletes" in rec.reason


@pytest.mark.parametrize(
    ("state", "action", "hint"), [(RECYCLE_BIN, UNDELETE, "undelete"), (MISSING, CREATE, "re-create")]
)
def test_deleted_record_is_brought_back_only_with_restore_deleted(state, action, hint):
    kwargs = dict(
        desired={"AccountId": ACME, "Name": "Deal"},
        damaged={"AccountId": ACME, "Name": "Deal"},
        latest={"AccountId": ACME, "Name": "Deal"},
        current=None,
        org_state=state,
        createable={"AccountId", "Name"},
    )
    kept = classify_record(OPP, ["AccountId", "Name"], **kwargs)
    assert kept.status == NOT_RESTORABLE and f"restore_deleted: true to {hint}" in kept.reason
    back = classify_record(OPP, ["AccountId", "Name"], restore_deleted=True, **kwargs)
    assert (back.status, back.action) == (RESTORE, action)
    assert back.writes("skip") == {"AccountId": ACME, "Name": "Deal"}


def test_recreated_record_cannot_carry_a_field_that_is_not_createable():
    rec = classify_record(
        OPP,
        ["Name", "ContactId"],
        desired={"Name": "Deal", "ContactId": "0035J0000000001QAA"},
        damaged={},
        latest={},
        current=None,
        org_state=MISSING,
        restore_deleted=True,
        createable={"Name"},
    )
    by_field = {f.field: f for f in rec.fields}
    assert by_field["ContactId"].status == NOT_RESTORABLE and "not createable" in by_field["ContactId"].reason
    assert rec.writes("skip") == {"Name": "Deal"}


def test_parents_brought_back_by_the_plan_are_available():
    wanted = {ACME, GLOBEX, INITECH}
    assert unavailable_parents(wanted, live={ACME}, deleted={GLOBEX}, restored_by_plan={INITECH}) == {
        GLOBEX: "is deleted in the org"
    }
    assert unavailable_parents({GLOBEX}, live=(), deleted=()) == {GLOBEX: "does not exist in the org"}


# ----------------------------------------------------------------- apply-time decisions
def test_value_moved_since_the_plan_is_refused_even_with_overwrite():
    rec = live({"AccountId": None})
    assert changes_to_write(rec, {"AccountId": None}, "skip") == ({"AccountId": ACME}, WRITTEN)
    assert changes_to_write(rec, {"AccountId": ACME}, "skip") == ({}, ALREADY_CORRECT)
    assert changes_to_write(rec, {"AccountId": GLOBEX}, "skip") == ({}, CHANGED_SINCE_PLAN)
    # overwrite is for the conflicts the reviewed plan showed; a value that moved after the dry run was never seen
    assert changes_to_write(rec, {"AccountId": GLOBEX}, "overwrite") == ({}, CHANGED_SINCE_PLAN)
    assert "the plan saw null, the org now holds " + GLOBEX in changed_since_plan(
        rec, {"AccountId": GLOBEX}, {"AccountId": ACME}
    )
    assert changes_to_write(rec, None, "skip") == ({}, DELETED_SINCE_PLAN)
    assert changes_to_write(rec, {"AccountId": None}, "skip", remap={ACME: INITECH}) == (
        {"AccountId": INITECH},
        WRITTEN,
    )
    assert changes_to_write(live({"AccountId": GLOBEX}), {"AccountId": GLOBEX}, "skip") == ({}, SKIPPED_CONFLICT)


def test_mismatches_name_field_expected_and_found():
    assert mismatches({"AccountId": ACME}, {"AccountId": GLOBEX}) == [("AccountId", ACME, GLOBEX)]
    assert mismatches({"AccountId": ACME}, None) == [("(record)", "live", "deleted or missing")]


def test_preview_lists_conflicts_first_and_stops_at_the_limit():
    records = [live({"AccountId": None}), live({"AccountId": GLOBEX}), live({"AccountId": ACME})]
    rows = preview_rows(records, limit=2)
    assert [r["classification"] for r in rows] == [CONFLICT, RESTORE]
    table = markdown_table(rows)
    assert (
        table.splitlines()[0].startswith("| record_id | field | current | desired |") and len(table.splitlines()) == 4
    )


# ----------------------------------------------------------------- values
def test_history_rest_and_bulk_values_compare_equal():
    assert canonical("currency", Decimal("1000.50")) == canonical("currency", 1000.5) == canonical("currency", "1000.5")
    assert canonical("boolean", "true") is True and canonical("boolean", False) is False
    assert canonical("int", "42") == 42
    stamp = datetime(2026, 11, 24, 1, 59, 59, tzinfo=UTC)
    assert (
        canonical("datetime", stamp)
        == canonical("datetime", "2026-11-24T01:59:59.000+0000")
        == canonical("datetime", "2026-11-24T01:59:59Z")
        == "2026-11-24T01:59:59.000+0000"
    )
    assert canonical("date", date(2026, 12, 31)) == canonical("date", "2026-12-31")
    assert canonical("time", time(9, 30)) == canonical("time", "09:30:00.000Z")
    assert canonical("string", "") is None and canonical("reference", "") is None
    assert canonical("reference", "0015J0000000001") == ACME


def test_ids_get_their_18_character_form_and_case_back():
    assert id18("001D000000IqhSL") == "001D000000IqhSLIAZ"  # vector from salesforce-api-fidelity.md 2.5
    assert id18("001d000000iqhsliaz") == "001D000000IqhSLIAZ"
    with pytest.raises(ValueError, match="not a Salesforce record id"):
        id18("006-not-an-id")


def test_bulk_cells_set_null_explicitly():
    assert [csv_text(v) for v in (None, True, 1000.0, 12.5, "x")] == ["#N/A", "true", "1000", "12.5", "x"]


# ----------------------------------------------------------------- config
BASE = {"object": "Opportunity", "fields": ["AccountId"], "as_of": "2026-11-24T01:59:59Z", "target_org": "production"}


def test_launchpad_config_is_parsed_with_safe_defaults():
    config = RestoreConfig.from_dict(
        {
            **BASE,
            "record_ids": ["0065J0000000001"],
            "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00+00:00"],
        },
        orgs=["production"],
    )
    assert config.dry_run is True and config.on_conflict == "skip" and config.restore_deleted is False
    assert config.record_ids == (OPP,)
    assert config.as_of == datetime(2026, 11, 24, 1, 59, 59, tzinfo=UTC)
    assert config.to_dict()["changed_between"] == ["2026-11-24T02:00:00.000+0000", "2026-11-24T02:10:00.000+0000"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_org": "staging"}, "unknown org alias 'staging': the configured orgs are production, sandbox"),
        ({"colour": "red"}, "unknown restore config key(s) colour"),
        ({"as_of": None}, "as_of is required"),
        ({"as_of": "2026-11-24T01:59:59"}, "as_of '2026-11-24T01:59:59' needs a time zone"),
        ({"as_of": "yesterday"}, "is not an ISO instant"),
        ({"changed_between": ["2026-11-24T03:00:00Z", "2026-11-24T02:00:00Z"]}, "must go forward in time"),
        ({"changed_between": "2026-11-24T02:00:00Z"}, "changed_between must be two instants"),
        ({"record_ids": ["0065J000000000"]}, "record_ids[0]: '0065J000000000' is not a Salesforce record id"),
        ({"changed_by": "0015J0000000001QAA"}, "is not a User id"),
        ({"on_conflict": "merge"}, "on_conflict must be one of skip, overwrite"),
        ({"dry_run": "false"}, "dry_run must be true or false"),
        ({"fields": "AccountId"}, "fields must be a list"),
        ({"object": "Opportunity; DROP"}, "is not a Salesforce object API name"),
        # production is never written by leaving target_org out
        ({"target_org": None}, "target_org is required: the alias of the org to write to (one of production, sandbox)"),
        # the reviewed plan is what is written: no apply without the dry run's run id
        ({"dry_run": False}, "dry_run: false needs plan: <run id of its dry run>"),
        ({"plan": "run-1"}, "plan: run-1 applies a reviewed plan, which only a run with dry_run: false does"),
        ({"plan": ""}, "plan must be the run id of the dry run"),
        # every field of every record changed since as_of only when said so
        ({"fields": []}, "this restore names no fields and selects no records"),
        ({"all_fields": True}, "all_fields: true restores every updateable field, but fields lists AccountId"),
        ({"all_fields": "yes"}, "all_fields must be true or false"),
    ],
)
def test_config_mistakes_are_reported_before_anything_runs(change, message):
    with pytest.raises(RestoreConfigError) as err:
        RestoreConfig.from_dict({**BASE, **change}, orgs=["production", "sandbox"])
    assert message in str(err.value)


def test_a_restore_of_every_field_needs_a_selection_or_all_fields():
    for selection in (
        {"record_ids": ["0065J0000000001"]},
        {"changed_by": "0055J0000000001"},
        {"changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00Z"]},
        {"all_fields": True},
    ):
        assert RestoreConfig.from_dict({**BASE, "fields": [], **selection}).fields == ()
    applying = RestoreConfig.from_dict({**BASE, "dry_run": False, "plan": " run-1 "})
    assert applying.plan == "run-1" and applying.planned_as() == RestoreConfig.from_dict(BASE).planned_as()


def test_as_of_in_the_future_is_refused():
    config = RestoreConfig.from_dict({**BASE, "as_of": "2026-11-25T00:00:00Z"})
    with pytest.raises(RestoreConfigError, match="is in the future"):
        config.check_instants(now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    config.check_instants(now=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC))


def test_undo_needs_no_as_of_and_says_what_it_ignores():
    config = RestoreConfig.from_dict(
        {
            "object": "Opportunity",
            "undo_of": "run-1",
            "target_org": "production",
            "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00Z"],
        }
    )
    assert config.undo_of == "run-1" and "ignored" in config.notes[0]


def test_a_record_the_org_does_not_return_is_gone_only_when_the_backup_saw_it_deleted():
    from sf_pipeline.restore.decisions import LIVE, MISSING, unseen_reason

    assert unseen_reason(MISSING, backup_saw_deleted=True) is None  # deleted, then purged: re-creatable
    assert unseen_reason(MISSING, backup_saw_deleted=None) is None  # no backup evidence (an undo): as before
    assert unseen_reason(LIVE, backup_saw_deleted=False) is None
    why = unseen_reason(MISSING, backup_saw_deleted=False)  # hidden by sharing, or deleted after the last backup
    assert why.startswith("could not be checked") and "not re-created" in why
