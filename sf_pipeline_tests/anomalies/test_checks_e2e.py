"""The 2 am story, caught by the pipeline itself: backup → sensor → anomaly checks → incident + restore config."""

from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner

from sf_pipeline.anomalies import list_incidents
from sf_pipeline.anomalies.incidents import incident_restore_selection
from sf_pipeline.cli import main
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.pipeline_fixtures import Pipeline, SavedState

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"


OBJECTS = ["Account", "Opportunity", "Case", "Invoice__c"]


def _partitions(cron: str = "0 * * * *") -> dict[str, str]:
    return {"cron": cron, "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _full_load(p: Pipeline, size: int = 300) -> Pipeline:
    """A generated org of `size`, backed up in the first window (the full load)."""
    p.set_clock(T0 - timedelta(minutes=1))
    generate_org(p.devorg.org, size)
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    assert p.backup(T0.strftime(KEY)).success  # the first window: the full load
    return p


def _org(pipeline_factory, size: int = 300, cron: str = "0 * * * *") -> Pipeline:
    return _full_load(pipeline_factory(OBJECTS, partitions=_partitions(cron)), size)


@pytest.fixture(scope="module")
def thousand_backed_up(save_pipeline_state) -> SavedState:
    """`_org(size=1000)`, built once for the module; each test starts on its own copy of the org and database."""
    return save_pipeline_state(lambda p: _full_load(p, 1000), OBJECTS, partitions=_partitions())


_CURSORS: dict[int, str | None] = {}


def _sensor_requests(p: Pipeline) -> list[dg.RunRequest]:
    """One sensor tick, carrying the cursor from the previous tick as the daemon does."""
    defs = p.defs()
    sensor = defs.resolve_sensor_def("history_materialized_checks")
    ctx = dg.build_sensor_context(
        instance=p.instance, repository_def=defs.get_repository_def(), cursor=_CURSORS.get(id(p))
    )
    result = sensor.evaluate_tick(ctx)
    _CURSORS[id(p)] = result.cursor
    return list(result.run_requests)


def _check(p: Pipeline, request: dg.RunRequest) -> list[dg.AssetCheckEvaluation]:
    job = p.defs().resolve_job_def("anomaly_checks")
    # exactly what the request selects: no asset, the checks of the objects materialized in the window
    assert request.asset_selection == []
    subset = job.get_subset(asset_selection=set(), asset_check_selection=set(request.asset_check_keys))
    result = subset.execute_in_process(partition_key=request.partition_key, instance=p.instance, tags=request.tags)
    assert not result.get_asset_materialization_events()
    assert result.success
    return result.get_asset_check_evaluations()


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.e2e
def test_orphaned_opportunities_are_caught_explained_and_given_a_restore_config(pipeline_factory, monkeypatch):
    """The story with 15-minute windows and a 10-minute lag: detected in the first window after the damage."""
    p = _org(pipeline_factory, cron="*/15 * * * *")
    # The pipeline ran all night: every window up to 01:45 backed up (here as one run, the windows after the full
    # load's), so the 02:25 tick finds only the damaged window outstanding.
    p.set_clock(T0 + timedelta(hours=2))
    caught_up = (T0 + timedelta(minutes=15), T0 + timedelta(hours=1, minutes=45))
    assert p.backup(*(w.strftime(KEY) for w in caught_up)).success
    server = http.server.HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SF_PIPELINE_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    _Webhook.received.clear()
    sf = p.sf()
    before = {r["Id"]: r["AccountId"] for r in sf.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
    damaged = sorted(i for i, a in before.items() if a)
    # 02:01: the marketing integration nulls AccountId on every Opportunity.
    damage_at = T0 + timedelta(hours=2, minutes=1)
    result = run_scenario(p.devorg.org, "orphan-opportunities", at=damage_at)
    assert sorted(result.changed["Opportunity"]) == damaged

    # 02:25: the schedule's tick asks for the 02:00-02:15 window (closed, plus the 10-minute lag).
    tick = T0 + timedelta(hours=2, minutes=25)
    p.set_clock(tick)
    defs = p.defs()
    schedule_ctx = dg.build_schedule_context(
        instance=p.instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    )
    # The schedule asks for every closed window not backed up yet: only the 02:00 window, in one run that also
    # re-reads the 01:45 window before it (late commits).
    scheduled = list(defs.resolve_schedule_def("backup_schedule").evaluate_tick(schedule_ctx).run_requests)
    ranges = [
        (
            (r.tags or {}).get("dagster/asset_partition_range_start", r.partition_key),
            (r.tags or {}).get("dagster/asset_partition_range_end", r.partition_key),
        )
        for r in scheduled
    ]
    window = (T0 + timedelta(hours=2)).strftime(KEY)
    assert ranges == [((T0 + timedelta(hours=1, minutes=45)).strftime(KEY), window)]
    began = time.monotonic()
    for first, last in ranges:
        assert p.backup(first, last).success

    requests = {r.partition_key: r for r in _sensor_requests(p)}
    assert window in requests
    assert (
        dg.AssetCheckKey(dg.AssetKey(["history", "Opportunity"]), "no_mass_damage") in requests[window].asset_check_keys
    )
    evaluations = {e.asset_key.path[1]: e for e in _check(p, requests[window])}
    processing = time.monotonic() - began
    delay = tick - damage_at + timedelta(seconds=processing)
    print(
        f"\ndamage at {damage_at:%H:%M:%S} -> schedule tick {tick:%H:%M:%S} -> alert after "
        f"{processing:.1f} s of backup + checks: {delay.total_seconds() / 60:.1f} min from damage to alert"
    )
    assert delay < timedelta(minutes=15 + 10 + 2)  # one window plus the schedule lag (plus processing)
    opp = evaluations["Opportunity"]
    assert not opp.passed and opp.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in opp.metadata.items()}
    assert meta["affected_records"] == len(damaged)
    assert "Marketing Integration" in meta["acting_user"]
    assert meta["first_change"].startswith("2026-11-24T02:01:00")
    assert "AccountId" in meta["incident"]
    # the launchpad config: the stored incident, which holds the selection (no pasted ids)
    number = meta["incident_ids"][0]  # the worst finding's (errors first), whose config the metadata shows
    assert meta["restore_config_json"] == {"incident": number, "target_org": "production", "dry_run": True}
    with psycopg.connect(p.db_url) as conn:
        config = incident_restore_selection(conn, number)
    assert config["object"] == "Opportunity" and config["fields"] == ["AccountId"]
    assert config["as_of"] == "2026-11-24T02:00:59Z"
    assert sorted(config["record_ids"]) == damaged
    # the other objects' checks pass: nothing happened to them
    assert evaluations["Account"].passed and evaluations["Case"].passed
    # the alert reached the webhook as Slack-compatible JSON
    assert any("Opportunity" in m["text"] and "AccountId" in m["text"] for m in _Webhook.received)
    server.shutdown()

    # a second sensor tick asks for nothing new
    assert _sensor_requests(p) == []
    with psycopg.connect(p.db_url) as conn:
        stored = list_incidents(conn)
    assert ("Opportunity", "error", "mass_nulling") in [
        (s.report.object, s.report.severity, s.report.detector) for s in stored
    ]
    out = CliRunner().invoke(main, ["incidents"], env={"SF_PIPELINE_DATABASE_URL": p.db_url})
    assert out.exit_code == 0 and f"incident: {number}" in out.output and "Opportunity" in out.output


@pytest.mark.e2e
def test_a_normal_business_day_raises_no_error_level_alarm(pipeline_factory, thousand_backed_up):
    p = pipeline_factory(state=thousand_backed_up)  # _org(pipeline_factory, size=1000)
    run_scenario(p.devorg.org, "business-day", at=T0 + timedelta(hours=1))
    p.set_clock(T0 + timedelta(hours=10, minutes=10))
    assert p.backup((T0 + timedelta(hours=1)).strftime(KEY), (T0 + timedelta(hours=9)).strftime(KEY)).success
    requests = _sensor_requests(p)
    assert len(requests) >= 9  # the first window and each hour of the day
    for request in requests:
        for evaluation in _check(p, request):
            assert evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR, (
                request.partition_key,
                evaluation.asset_key,
                evaluation.metadata,
            )


@pytest.mark.e2e
def test_a_simulated_week_of_business_days_raises_no_error_level_finding(pipeline_factory, thousand_backed_up):
    """Seven working days, backed up by one backfill run; every hourly window of the week is checked."""
    from sf_pipeline.anomalies import run_detectors

    p = pipeline_factory(state=thousand_backed_up)  # _org(pipeline_factory, size=1000)
    for day in range(7):
        run_scenario(p.devorg.org, "business-day", at=T0 + timedelta(days=day, hours=8))
    p.set_clock(T0 + timedelta(days=7, minutes=10))
    assert p.backup((T0 + timedelta(hours=1)).strftime(KEY), (T0 + timedelta(days=6, hours=23)).strftime(KEY)).success
    errors = []
    with psycopg.connect(p.db_url) as conn:
        for hour in range(1, 7 * 24):
            start = T0 + timedelta(hours=hour)
            for sobject in ("Account", "Opportunity", "Case", "Invoice__c"):
                for finding in run_detectors(conn, sobject, start, start + timedelta(hours=1), history_start=T0):
                    if finding.severity == "error":
                        errors.append((start, sobject, finding.detector, finding.affected_count))
    assert errors == []
