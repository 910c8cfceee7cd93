"""An unchanged window costs the org a few calls for all objects together, and runs no dbt snapshot.

devorg counts API usage as Salesforce does (each Composite Batch subrequest is one call; a describe answered
304 is one call), so the figures below are what a real org's `Sforce-Limit-Info` would show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline_tests.pipeline_fixtures import DEFAULT_OBJECTS, Pipeline

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def materializations(result) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_an_unchanged_window_asks_the_org_once_for_all_objects_and_snapshots_only_what_changed(pipeline: Pipeline):
    p = pipeline
    sf = p.sf()
    p.set_clock(T0 + timedelta(minutes=5))
    account = sf.Account.create({"Name": "Acme"})["id"]
    sf.Opportunity.create({"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": account})
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    assert p.backup("2026-11-24-00:00").success

    org = p.devorg.org
    p.set_clock(T0 + timedelta(hours=2, minutes=10))
    used = org.api_usage()
    quiet = materializations(p.backup("2026-11-24-01:00"))
    objects = len(DEFAULT_OBJECTS)
    # the global describe answered 304 once, then one batch: the Organization query (once per run) and one
    # aggregate query per object (COUNT(Id) and MAX(SystemModstamp) of the records created before the window's
    # end: the newest stamp is older than the window, so the window's own COUNT() is not asked)
    assert org.api_usage() - used == 2 + objects
    mirrors = [quiet[f"salesforce/{o}"] for o in DEFAULT_OBJECTS]
    assert sum(m["api_calls"] for m in mirrors) == 2  # HTTP requests: the describe, one batch
    assert sum(m["preflight"].startswith("this step asked the org") for m in mirrors) == 1
    # no delete log read: nothing changed (objects with records), or still empty (Contact, Case: "first load")
    assert all(m["delete_log_coverage"].startswith("not read") for m in mirrors)
    assert (
        quiet["salesforce/Account"]["delete_log_coverage"] == "not read: nothing changed (empty window, equal counts)"
    )
    for o in DEFAULT_OBJECTS:
        assert quiet[f"history/{o}"]["snapshot"].startswith("skipped: the window changed nothing"), o

    # A change in one object: only its history is snapshotted; a new field shows its describe is re-read.
    org.add_custom_field("Account", {"name": "Region__c", "type": "picklist", "values": ["EMEA", "AMER"]})
    p.set_clock(T0 + timedelta(hours=2, minutes=20))
    sf.Account.update(account, {"Region__c": "EMEA"})
    p.set_clock(T0 + timedelta(hours=3, minutes=10))
    changed = materializations(p.backup("2026-11-24-02:00"))
    assert changed["salesforce/Account"]["new_columns"] == "region__c"
    assert "snapshot" not in changed["history/Account"]  # dbt's own materialization
    for o in DEFAULT_OBJECTS[1:]:
        assert changed[f"history/{o}"]["snapshot"].startswith("skipped"), o
    with p.conn() as conn:
        assert (
            conn.execute(
                "SELECT region__c FROM salesforce_history.account WHERE id = %s AND dbt_valid_to IS NULL", (account,)
            ).fetchone()[0]
            == "EMEA"
        )
