"""Backup end to end: devorg over HTTPS → Dagster (real instance on PostgreSQL) → mirror + dbt history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.warehouse import as_of, history_versions
from sf_pipeline_tests.devorg_fixtures import connect
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
COMPARED = {
    "Account": ["Id", "Name", "Industry", "OwnerId", "IsDeleted", "SystemModstamp"],
    "Opportunity": ["Id", "Name", "AccountId", "Amount", "StageName", "IsDeleted", "SystemModstamp"],
}


def _norm(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str) and len(value) == 28 and value.endswith("+0000"):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    return value


def devorg_state(p: Pipeline, sobject: str, include_deleted: bool = False) -> dict[str, dict]:
    """What devorg holds right now, as {Id: {field: value}} (the truth the backup must match)."""
    fields = COMPARED[sobject]
    result = p.devorg.org.queries.run(
        f"SELECT {', '.join(fields)} FROM {sobject}", include_deleted=include_deleted, batch_size=2000
    )
    assert result["done"]
    return {r["Id"]: {f.lower(): _norm(r[f]) for f in fields} for r in result["records"]}


def mirror_state(p: Pipeline, sobject: str) -> dict[str, dict]:
    cols = [f.lower() for f in COMPARED[sobject]]
    with p.conn() as conn:
        rows = conn.execute(f'SELECT {", ".join(cols)} FROM salesforce."{sobject.lower()}"').fetchall()
    return {r[0]: {c: _norm(v) for c, v in zip(cols, r, strict=True)} for r in rows}


def history_state(p: Pipeline, sobject: str, instant: datetime) -> dict[str, dict]:
    cols = [f.lower() for f in COMPARED[sobject]]
    with p.conn() as conn:
        rows = list(as_of(conn, sobject, instant))
    return {r["id"]: {c: _norm(r[c]) for c in cols} for r in rows}


def materializations(result: dg.ExecuteInProcessResult, key: str) -> list[dict]:
    out = []
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == key:
            out.append({k: v.value for k, v in mat.metadata.items()})
    return out


def dbt_parse(p: Pipeline, result: dg.ExecuteInProcessResult) -> list[str]:
    """How each dbt snapshot call of the run came by dbt's manifest (the history step's log line)."""
    return [e.user_message for e in p.instance.all_logs(result.run_id) if e.user_message.startswith("dbt parse:")]


def at(p: Pipeline, hour: int, minute: int) -> datetime:
    moment = T0 + timedelta(hours=hour, minutes=minute)
    p.set_clock(moment)
    return moment


def test_backfill_then_windows_keep_mirror_and_history_equal_to_the_org(pipeline: Pipeline):
    p = pipeline
    sf = p.sf()
    # Before the backup starts: an org with history of its own (created in the hours before midnight).
    at(p, -2, 5)
    acme = sf.Account.create({"Name": "Acme", "Industry": "Banking"})["id"]
    globex = sf.Account.create({"Name": "Globex", "Industry": "Energy"})["id"]
    at(p, -1, 30)
    opps = [
        sf.Opportunity.create(
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "AccountId": acme if i % 2 else globex,
                "Amount": 1000 * i,
            }
        )["id"]
        for i in range(1, 5)
    ]
    at(p, 0, 20)
    initech = sf.Account.create({"Name": "Initech"})["id"]

    # Initial load: one backfill over the first windows, as a single run.
    result = p.backup("2026-11-23-22:00", "2026-11-24-00:00")
    assert result.success
    meta = materializations(result, "salesforce/Opportunity")
    # one run for the whole range: one materialization per window, reporting the run's single extraction
    assert len(meta) == 3 and all(m == meta[0] for m in meta)
    assert meta[0]["records_extracted"] == 4 and meta[0]["records_inserted"] == 4
    assert meta[0]["window_start"].startswith("2026-11-23T22:00") and meta[0]["window_end"].startswith(
        "2026-11-24T01:00"
    )
    # at least the read of its records (the run's first step also asked the org for every object's counts)
    assert meta[0]["api_calls"] >= 1 and meta[0]["bytes"] > 0
    assert materializations(result, "history/Opportunity")
    for sobject in COMPARED:
        assert mirror_state(p, sobject) == devorg_state(p, sobject, include_deleted=True)

    truths: dict[datetime, dict] = {at(p, 0, 59): {s: devorg_state(p, s) for s in COMPARED}}

    # Window 01:00-02:00: an update, a cascade delete, a new record; each record changes once per window.
    at(p, 1, 10)
    sf.Opportunity.update(opps[0], {"Amount": 5555, "StageName": "Closed Won"})
    truths[at(p, 1, 15)] = {s: devorg_state(p, s) for s in COMPARED}
    at(p, 1, 20)
    sf.Account.delete(globex)  # cascades to its opportunities
    truths[at(p, 1, 25)] = {s: devorg_state(p, s) for s in COMPARED}
    at(p, 1, 30)
    new_opp = sf.Opportunity.create(
        {"Name": "New", "StageName": "Qualification", "CloseDate": "2027-01-31", "AccountId": initech}
    )["id"]
    truths[at(p, 1, 59)] = {s: devorg_state(p, s) for s in COMPARED}

    # The schedule backs window 1 up ten minutes after it closes, before the next changes.
    at(p, 2, 10)
    w1 = p.backup("2026-11-24-01:00")
    m1 = materializations(w1, "salesforce/Opportunity")[0]
    # Deal 1 updated, Globex's two opportunities deleted with it (versions with IsDeleted), one new
    assert (m1["records_extracted"], m1["records_inserted"], m1["records_updated"], m1["records_deleted"]) == (
        4,
        1,
        3,
        2,
    )
    assert materializations(w1, "salesforce/Account")[0]["records_deleted"] == 1

    # Window 02:00-03:00: undelete brings the account and its opportunities back; another update.
    at(p, 2, 15)
    p.devorg.org.store.undelete(globex, p.devorg.org.user("admin").user_id)
    truths[at(p, 2, 20)] = {s: devorg_state(p, s) for s in COMPARED}
    at(p, 2, 40)
    sf.Opportunity.update(new_opp, {"Amount": 777})
    truths[at(p, 2, 59)] = {s: devorg_state(p, s) for s in COMPARED}

    at(p, 3, 10)
    w2 = p.backup("2026-11-24-02:00")
    m2 = materializations(w2, "salesforce/Opportunity")[0]
    assert (m2["records_extracted"], m2["records_inserted"], m2["records_updated"], m2["records_deleted"]) == (
        3,
        0,
        3,
        0,
    )
    for sobject in COMPARED:
        assert mirror_state(p, sobject) == devorg_state(p, sobject, include_deleted=True)
    # Each window's dbt call reused the parse the first run made on this database: the window is no reason to
    # parse the project again (dbt_snapshots/macros/salesforce_window.sql)
    assert dbt_parse(p, w1) == dbt_parse(p, w2) == ["dbt parse: reused"]

    # History: the state of the org at every instant equals what devorg held then.
    for instant, truth in truths.items():
        for sobject in COMPARED:
            assert history_state(p, sobject, instant) == truth[sobject], (sobject, instant)
    with p.conn() as conn:
        versions = history_versions(conn, "Opportunity", opps[0])
    assert [float(v["amount"]) for v in versions] == [1000.0, 5555.0]
    assert versions[0]["dbt_valid_to"] == versions[1]["dbt_valid_from"]

    # Windows materialized again, and out of order, change nothing.
    with p.conn() as conn:
        before = conn.execute('SELECT count(*) FROM salesforce_history."opportunity"').fetchone()[0]
    again = p.backup("2026-11-24-01:00")
    m = materializations(again, "salesforce/Opportunity")[0]
    assert m["records_inserted"] == 0 and m["records_updated"] == 0
    p.backup("2026-11-24-00:00")
    with p.conn() as conn:
        assert conn.execute('SELECT count(*) FROM salesforce_history."opportunity"').fetchone()[0] == before
    for instant, truth in truths.items():
        assert history_state(p, "Opportunity", instant) == truth["Opportunity"]

    # An unchanged window costs at most five API calls: describe, the Organization record that proves it is
    # still the same org, COUNT() of the window, and what finds vanished records (the delete log, and the
    # reconciliation's one COUNT() when the totals agree).
    quiet = p.backup("2026-11-23-20:00")
    for sobject in ("Account", "Opportunity"):
        assert materializations(quiet, f"salesforce/{sobject}")[0]["api_calls"] <= 5


def test_new_custom_field_becomes_a_new_column(pipeline: Pipeline):
    p = pipeline
    sf = p.sf()
    at(p, 0, 10)
    acc = sf.Account.create({"Name": "Acme"})["id"]
    p.backup("2026-11-24-00:00")
    p.devorg.org.add_custom_field("Account", {"name": "Region__c", "type": "picklist", "values": ["EMEA", "AMER"]})
    at(p, 1, 10)
    sf.Account.update(acc, {"Region__c": "EMEA"})
    at(p, 2, 30)
    result = p.backup("2026-11-24-01:00")
    assert materializations(result, "salesforce/Account")[0]["new_columns"] == "region__c"
    with p.conn() as conn:
        assert conn.execute('SELECT region__c FROM salesforce."account"').fetchone()[0] == "EMEA"
        versions = history_versions(conn, "Account", acc)
    assert [v.get("region__c") for v in versions] == [None, "EMEA"]


def test_failed_extraction_leaves_the_backup_untouched_and_a_rerun_completes(pipeline_factory):
    p = pipeline_factory(["Opportunity"], bulk_threshold=50)  # large windows go through Bulk API 2.0
    sf = p.sf()
    at(p, 0, 5)
    for chunk in range(3):
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={
                "records": [
                    {
                        "attributes": {"type": "Opportunity"},
                        "Name": f"Bulk {chunk}-{i}",
                        "StageName": "Prospecting",
                        "CloseDate": "2026-12-31",
                    }
                    for i in range(100)
                ]
            },
        )
    p.backup("2026-11-24-00:00")
    at(p, 1, 5)
    ids = [r["Id"] for r in sf.query_all("SELECT Id FROM Opportunity")["records"]]
    for i, rid in enumerate(ids):
        sf.Opportunity.update(rid, {"Amount": i})
    with p.conn() as conn:
        before = conn.execute('SELECT id, amount, systemmodstamp FROM salesforce."opportunity" ORDER BY id').fetchall()
    # The org fails every Bulk results download: the run must fail and leave mirror and history as they were.
    p.devorg.app.faults.add("5xx", rate=1.0, path="/results")
    at(p, 2, 30)
    failed = p.backup("2026-11-24-01:00", raise_on_error=False)
    assert not failed.success
    with p.conn() as conn:
        assert (
            conn.execute('SELECT id, amount, systemmodstamp FROM salesforce."opportunity" ORDER BY id').fetchall()
            == before
        )
        assert conn.execute('SELECT count(*) FROM salesforce_history."opportunity"').fetchone()[0] == 300
    p.devorg.app.faults.clear()
    rerun = p.backup("2026-11-24-01:00")
    meta = materializations(rerun, "salesforce/Opportunity")[0]
    assert meta["extract_mode"] == "bulk" and meta["records_extracted"] == 300 and meta["records_updated"] == 300
    with p.conn() as conn:
        amounts = dict(conn.execute('SELECT id, amount FROM salesforce."opportunity"').fetchall())
        assert conn.execute('SELECT count(*) FROM salesforce_history."opportunity"').fetchone()[0] == 600
    assert {rid: float(amounts[rid]) for rid in ids} == {rid: float(i) for i, rid in enumerate(ids)}


def test_transient_failures_are_retried(pipeline: Pipeline):
    p = pipeline
    sf = p.sf()
    at(p, 0, 5)
    sf.Account.create({"Name": "Acme"})
    p.devorg.app.faults.add("5xx", next=3)
    p.devorg.app.faults.add("drop", next=1, path="/query")
    at(p, 1, 30)
    result = p.backup("2026-11-24-00:00")
    meta = materializations(result, "salesforce/Account")[0]
    assert meta["records_extracted"] == 1 and meta["api_retries"] >= 1


def test_a_backup_never_takes_another_orgs_records_into_this_orgs_history(
    pipeline: Pipeline, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    p = pipeline
    at(p, 0, 5)
    p.sf().Account.create({"Name": "Acme"})
    at(p, 1, 30)
    assert p.backup("2026-11-24-00:00").success
    kept = "SELECT object, last_modified, md5(describe::text) FROM sf_pipeline.describes ORDER BY object"
    with p.conn() as conn:
        describes = conn.execute(kept).fetchall()
    with DevOrgServer(tmp_path / "other") as other:
        other.org.set_clock(datetime(2026, 11, 24, 1, 5, tzinfo=UTC), freeze=True)
        connect(other).Account.create({"Name": "Intruder"})
        other.org.set_clock(datetime(2026, 11, 24, 2, 30, tzinfo=UTC), freeze=True)
        for name, value in other.env("production").items():  # the production credentials now reach another org
            monkeypatch.setenv(name, value)
        result = p.backup("2026-11-24-01:00", raise_on_error=False)
    assert not result.success
    errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
    messages = []
    for error in errors:
        while error is not None:
            messages.append(error.message)
            error = error.cause
    assert any(
        f"org alias 'production' now reaches org {other.org.org_id}" in m
        and p.devorg.org.org_id in m
        and "sf-pipeline orgs forget production" in m
        for m in messages
    ), messages
    with p.conn() as conn:
        names = [r[0] for r in conn.execute('SELECT name FROM salesforce."account"')]
        assert names == ["Acme"]
        assert conn.execute("SELECT alias, organization_id FROM sf_pipeline.org_identity").fetchall() == [
            ("production", p.devorg.org.org_id)
        ]
        # nor its describes into this org's describe cache (they would stand for this org's in the next run)
        assert conn.execute(kept).fetchall() == describes


def test_api_budget_stops_the_backup_with_a_clear_error(pipeline: Pipeline):
    p = pipeline
    at(p, 0, 5)
    p.sf().Account.create({"Name": "Acme"})
    p.devorg.org.set_daily_limit(p.devorg.org.api_usage() + 6)  # the budget share (50%) is already spent
    at(p, 1, 30)
    result = p.backup("2026-11-24-00:00", raise_on_error=False)
    assert not result.success
    errors = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error is not None:
                errors.append(error.message)
                error = error.cause
    assert any("ApiBudgetExceeded" in m and "daily API requests" in m and "50%" in m for m in errors), errors


def test_schedule_requests_every_closed_window_not_backed_up_oldest_first(pipeline_factory):
    # hourly windows from 2026-11-20 (the fixtures' settings), none backed up yet, lag 10 minutes
    pipeline = pipeline_factory(max_windows_per_tick=500)
    defs = pipeline.defs()
    schedule = defs.resolve_schedule_def("backup_schedule")
    first = "2026-11-20-00:00"
    for now, newest in [
        (datetime(2026, 11, 24, 3, 10, tzinfo=UTC), "2026-11-24-02:00"),
        (datetime(2026, 11, 24, 3, 9, tzinfo=UTC), "2026-11-24-01:00"),
    ]:
        ctx = dg.build_schedule_context(
            instance=pipeline.instance, scheduled_execution_time=now, repository_def=defs.get_repository_def()
        )
        requests = list(schedule.evaluate_tick(ctx).run_requests)
        windows = [r.partition_key for r in requests]
        assert windows[0] == first and windows[-1] == newest and windows == sorted(windows)
        # every hour from the first window's start to the newest window's end
        hours = (datetime.strptime(newest, "%Y-%m-%d-%H:%M") - datetime(2026, 11, 20)) // timedelta(hours=1) + 1
        assert len(windows) == len(set(windows)) == hours
        assert requests[-1].run_key == f"{newest}#1" and requests[-1].tags["sf_pipeline/window"] == newest
    # once a window has a run (running, or queued), later ticks do not launch it again
    from dagster._core.test_utils import create_run_for_test

    create_run_for_test(
        pipeline.instance,
        job_name="backup",
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/schedule_name": "backup_schedule", "sf_pipeline/window": "2026-11-24-02:00"},
    )
    later = dg.build_schedule_context(
        instance=pipeline.instance,
        repository_def=defs.get_repository_def(),
        scheduled_execution_time=datetime(2026, 11, 24, 3, 11, tzinfo=UTC),
    )
    windows = [r.partition_key for r in schedule.evaluate_tick(later).run_requests]
    assert "2026-11-24-02:00" not in windows and windows[-1] == "2026-11-24-01:00"


def test_definitions_show_both_assets_per_object_with_the_same_partitions(pipeline: Pipeline):
    defs = pipeline.defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for sobject in ("Account", "Contact", "Opportunity", "Case"):
        assert {f"salesforce/{sobject}", f"history/{sobject}"} <= keys
        history = graph.get(dg.AssetKey(["history", sobject]))
        assert history.parent_keys == {dg.AssetKey(["salesforce", sobject])}
        assert history.partitions_def == graph.get(dg.AssetKey(["salesforce", sobject])).partitions_def
        assert history.group_name == "production"
    assert defs.resolve_job_def("backup") is not None


def test_first_window_also_backs_up_everything_stamped_before_the_partitions_start(pipeline: Pipeline):
    p = pipeline
    p.set_clock(datetime(2026, 11, 1, 9, 0, tzinfo=UTC))  # weeks before the partitions start (2026-11-20)
    old = p.sf().Account.create({"Name": "Ancient"})["id"]
    p.set_clock(datetime(2026, 11, 20, 0, 30, tzinfo=UTC))
    young = p.sf().Account.create({"Name": "Young"})["id"]
    result = p.backup("2026-11-20-00:00")
    meta = materializations(result, "salesforce/Account")[0]
    assert meta["window_start"].startswith("1970-01-01") and meta["records_extracted"] == 2
    assert set(mirror_state(p, "Account")) == {old, young}
