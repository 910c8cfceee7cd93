"""A restore in an org with automation and sharing, through the `restore` job (issue 16, "Real limits"):

- it runs as the settings file's restore user (`orgs: production: restore: run_as:`), with the credentials of
  `SALESFORCE_PRODUCTION_RESTORE_*`, and its metadata says who wrote; a session as anyone else is refused;
- records the org's automation changed again after our write (devorg/automation.py: a before-save rule in our
  transaction, or an after-save update by another user) are reported as "changed again by automation after our
  write", in the run's metadata and per record, apart from plain failures;
- a record the restore user cannot see (devorg/sharing.py: Opportunity Private, owned by another user) is not
  re-created: the plan says it could not be checked.

One small org for the module: 30 Opportunities over 3 Accounts, 2 of them owned by sales1 and the others by the
integration user, backed up, then orphaned at 02:00 (`orphan-opportunities`) and the 02:00 window backed up.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
import yaml

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.pipeline_fixtures import Pipeline, SavedState
from sf_pipeline_tests.restore.story import AS_OF, DAMAGE_WINDOW, at, create

pytestmark = pytest.mark.e2e

COUNT, HIDDEN = 30, 2
RESTORE = {
    "object": "Opportunity",
    "fields": ["AccountId"],
    "as_of": AS_OF,
    "changed_between": DAMAGE_WINDOW,
    "target_org": "production",
}


def _story(p: Pipeline) -> dict[str, Any]:
    at(p, 0, 10)
    accounts = create(p, "Account", [{"Name": f"Account {i}"} for i in range(3)])
    owners = {"integration": p.devorg.org.user("integration").user_id, "sales1": p.devorg.org.user("sales1").user_id}
    opportunities = create(
        p,
        "Opportunity",
        [
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "AccountId": accounts[i % 3],
                "OwnerId": owners["sales1" if i < HIDDEN else "integration"],
            }
            for i in range(COUNT)
        ],
    )
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    result = run_scenario(p.devorg.org, "orphan-opportunities", at=at(p, 2, 0))
    assert sorted(result.changed["Opportunity"]) == sorted(opportunities)
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    return {
        "accounts": accounts,
        "opportunities": opportunities,
        "hidden": opportunities[:HIDDEN],
        "original": {o: accounts[i % 3] for i, o in enumerate(opportunities)},
    }


@pytest.fixture(scope="module")
def orphaned(save_pipeline_state) -> SavedState:
    return save_pipeline_state(_story, ["Account", "Opportunity"])


def _restore_settings(p: Pipeline, **restore: Any) -> None:
    """`orgs: production: restore: {...}` in the settings file (what an admin writes; never run config)."""
    data = yaml.safe_load(p.settings_path.read_text())
    data["orgs"]["production"] = {"restore": restore}
    p.settings_path.write_text(yaml.safe_dump(data))
    p.defs(reload=True)


def _launch(p: Pipeline, config: dict[str, Any]) -> tuple[dg.ExecuteInProcessResult, dict[str, Any], str]:
    """The restore job as launched from the launchpad: (result, its op's metadata, the failure's message)."""
    result = (
        p.defs()
        .resolve_job_def("restore")
        .execute_in_process(
            run_config={"ops": {"restore": {"config": config}}}, instance=p.instance, raise_on_error=False
        )
    )
    for event in result.all_events:
        if event.event_type_value == "STEP_OUTPUT":
            return result, {k: v.value for k, v in event.event_specific_data.metadata.items()}, ""
        if event.is_step_failure:
            data = event.event_specific_data
            metadata = data.user_failure_data.metadata if data.user_failure_data else {}
            return result, {k: v.value for k, v in metadata.items()}, data.error.message
    raise AssertionError("the restore op neither output nor failed")


def _dry_then_apply(p: Pipeline, config: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, dict[str, Any], str]]:
    dry, dry_meta, error = _launch(p, config)
    assert dry.success, error
    return dry_meta, _launch(p, {**config, "dry_run": False, "plan": dry.run_id})


def _org(p: Pipeline, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = p.devorg.org.queries.run(
        "SELECT Id, AccountId, LastModifiedById FROM Opportunity", include_deleted=True, batch_size=2000
    )["records"]
    return {r["Id"]: r for r in rows if r["Id"] in set(ids)}


@pytest.mark.parametrize("as_user", [None, "sales1"], ids=["before-save-in-our-write", "after-save-by-another-user"])
def test_records_automation_changed_after_the_restore_wrote_them_are_reported_as_such(
    pipeline_factory, orphaned, as_user
):
    p = pipeline_factory(state=orphaned)
    story = orphaned.story
    integration = p.devorg.org.user("integration")
    _restore_settings(p, run_as=integration.username, serial=True)
    house = story["accounts"][0]  # the org's flow moves every re-parented deal to the house account
    p.devorg.control(
        "automation",
        {
            "rules": [
                {"object": "Opportunity", "when_fields": ["AccountId"], "set": {"AccountId": house}, "as_user": as_user}
            ]
        },
    )
    dry_meta, (applied, meta, error) = _dry_then_apply(p, {**RESTORE})
    assert dry_meta["read_as"]["username"] == integration.username
    assert not applied.success and "changed again by automation after our write" in error
    assert meta["written_as"] == {
        "username": integration.username,
        "user_id": integration.user_id,
        "source": "orgs.<alias>.restore.run_as",
        "writes": "serial (sObject Collections, one call at a time)",
    }
    changed = sorted(o for o, a in story["original"].items() if a != house)
    assert sorted(meta["verify"]["automation"]) == changed  # the deals of the house account hold what we wrote
    assert meta["changed_by_automation"] == len(changed) == meta["verify"]["mismatched"]
    by = integration.user_id if as_user is None else p.devorg.org.user(as_user).user_id
    expected = "restore user itself" if as_user is None else "not the restore user"
    assert all(expected in why and by in why for why in meta["verify"]["automation"].values())
    org = _org(p, story["opportunities"])
    assert {o: org[o]["AccountId"] for o in changed} == dict.fromkeys(changed, house)
    with p.conn() as conn:  # per record, in the run's results
        outcomes = dict(
            conn.execute(
                "SELECT record_id, outcome FROM sf_pipeline.restore_items WHERE run_id = %s", (applied.run_id,)
            ).fetchall()
        )
        written_by = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT written_by FROM sf_pipeline.restore_audit WHERE run_id = %s AND state = 'done'",
                (applied.run_id,),
            )
        }
    assert {o for o, out in outcomes.items() if out == "changed_by_automation"} == set(changed)
    assert written_by == {integration.user_id}


def test_a_record_the_restore_user_cannot_see_is_not_recreated_and_is_named(pipeline_factory, orphaned, monkeypatch):
    p = pipeline_factory(state=orphaned)
    story = orphaned.story
    integration = p.devorg.org.user("integration")
    _restore_settings(p, run_as=integration.username)
    config = {**RESTORE, "restore_deleted": True, "with_children": False}
    # a session as another user than run_as is refused before anything is read
    monkeypatch.setenv("SALESFORCE_PRODUCTION_RESTORE_USERNAME", p.devorg.org.user("sales2").username)
    refused, _, error = _launch(p, config)
    assert not refused.success and f"run as {integration.username}" in error and "sales2" in error
    monkeypatch.delenv("SALESFORCE_PRODUCTION_RESTORE_USERNAME")
    # Opportunity is Private: the integration user sees its own 28 deals, not sales1's 2
    p.devorg.control("sharing", {"objects": {"Opportunity": "Private"}})
    dry_meta, (applied, meta, error) = _dry_then_apply(p, config)
    assert applied.success, error
    hidden = story["hidden"]
    assert f"{HIDDEN} record(s) could not be checked" in dry_meta["notes"] and all(
        h in dry_meta["notes"] for h in hidden
    )
    assert meta["outcomes"].get("created", 0) == 0 and meta["outcomes"]["written"] == COUNT - HIDDEN
    p.devorg.control("sharing", {"objects": {"Opportunity": "Public Read/Write"}})
    org = _org(p, story["opportunities"])
    assert len(org) == COUNT  # nothing re-created in their place
    assert {o: org[o]["AccountId"] for o in hidden} == dict.fromkeys(hidden)  # left for a user who can see them
    assert {o: r["AccountId"] for o, r in org.items() if o not in hidden} == {
        o: a for o, a in story["original"].items() if o not in hidden
    }
