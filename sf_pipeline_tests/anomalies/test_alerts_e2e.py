"""An alert from a real check run: hostile record values never reach Slack or the logs, and a failing webhook's
secret URL never reaches the run's logs (a real local HTTP server plays the webhook)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
import yaml

from sf_pipeline.anomalies import list_incidents
from sf_pipeline.anomalies.checks import check_key
from sf_pipeline.devorg.generator import generate_org

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"
# What an integration (or an attacker with API access) writes into 300 Opportunities: a Slack channel
# mention, a spoofed link and a personal e-mail address.
HOSTILE = "<!channel> <http://evil.example|click here> call mallory.jones@customer.example"
TOKEN = "B0002/XyZsecretTOKEN42"
BASE_URL = "https://dagster.example.com"


class _FailingWebhook(http.server.BaseHTTPRequestHandler):
    """Records what it is sent, then answers 500 (the webhook is down)."""

    received: list[dict] = []
    paths: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _FailingWebhook.received.append(json.loads(body))
        _FailingWebhook.paths.append(self.path)
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"internal error")

    def log_message(self, *args):
        pass


@pytest.mark.e2e
def test_alert_of_hostile_values_carries_counts_and_a_link_and_a_failing_webhook_logs_its_host_only(
    pipeline_factory, caplog, capfd
):
    p = pipeline_factory(["Account", "Opportunity"], partitions={"cron": "0 * * * *", "start": T0.isoformat()})
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["alerts"] = {"dagster_base_url": BASE_URL + "/"}
    p.settings_path.write_text(yaml.safe_dump(settings))
    p.set_clock(T0 - timedelta(minutes=1))
    generate_org(p.devorg.org, 300)
    p.set_clock(T0 + timedelta(hours=1, minutes=10))
    assert p.backup(T0.strftime(KEY)).success  # the full load

    server = http.server.HTTPServer(("127.0.0.1", 0), _FailingWebhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    webhook = f"http://127.0.0.1:{server.server_port}/services/T0001/{TOKEN}"
    _FailingWebhook.received.clear()
    _FailingWebhook.paths.clear()

    # 02:01: every Opportunity's NextStep is overwritten with the same hostile text (sObject Collections)
    p.set_clock(T0 + timedelta(hours=2, minutes=1))
    sf = p.sf()
    ids = [r["Id"] for r in sf.query_all("SELECT Id FROM Opportunity")["records"]]
    for start in range(0, len(ids), 200):
        results = sf.restful(
            "composite/sobjects",
            method="PATCH",
            json={
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Opportunity"}, "id": i, "NextStep": HOSTILE}
                    for i in ids[start : start + 200]
                ],
            },
        )
        assert all(r["success"] for r in results)
    p.set_clock(T0 + timedelta(hours=3, minutes=10))
    window = (T0 + timedelta(hours=2)).strftime(KEY)
    assert p.backup(window).success

    job = p.defs(reload=True).resolve_job_def("anomaly_checks")
    checks = job.get_subset(
        asset_selection=set(), asset_check_selection={check_key("Opportunity"), check_key("Account")}
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SF_PIPELINE_ALERT_WEBHOOK", webhook)
        # everything Python code logs at INFO and above (urllib3 writes each request line at DEBUG, which no
        # deployment enables)
        caplog.set_level(logging.INFO)
        result = checks.execute_in_process(partition_key=window, instance=p.instance)
    server.shutdown()
    assert result.success  # a failing webhook does not fail the check run
    [opportunity] = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[1] == "Opportunity"]
    assert not opportunity.passed and opportunity.severity == dg.AssetCheckSeverity.ERROR

    # The webhook was called, and got the short message: counts, object, field, user, window, link
    assert _FailingWebhook.paths == [f"/services/T0001/{TOKEN}"]
    [message] = [m["text"] for m in _FailingWebhook.received]
    assert f"Mass overwrite on Opportunity.NextStep: {len(ids):,} records" in message
    assert "window 2026-11-24T02:00:00Z to 2026-11-24T03:00:00Z" in message
    assert (
        f"<{BASE_URL}/assets/history/Opportunity?view=checks&checkDetail=no_mass_damage|Open the check in Dagster>"
    ) in message
    for leaked in ("<!channel>", "evil.example", "mallory", "click here", *ids):
        assert leaked not in message, leaked

    # The run's logs: the incident's summary without values, and the failure with the webhook's host only
    messages = [e.message for e in p.instance.all_logs(result.run_id)]
    logged = "\n".join(messages) + caplog.text + "".join(capfd.readouterr())
    [incident_line] = [m for m in messages if m.startswith("INCIDENT Mass overwrite on Opportunity.NextStep")]
    assert f"{BASE_URL}/assets/history/Opportunity" in incident_line
    assert any(
        f"could not post the alert to the webhook at 127.0.0.1:{server.server_port}" in m and "HTTP 500" in m
        for m in messages
    ), messages
    for leaked in (TOKEN, "secretTOKEN", "/services/T0001", "<!channel>", "evil.example", "mallory"):
        assert leaked not in logged, leaked

    # The full incident, values included, stays in the check's metadata and in sf_pipeline.incidents
    assert HOSTILE in opportunity.metadata["incident"].value
    with psycopg.connect(p.db_url) as conn:
        [stored] = [s for s in list_incidents(conn, object="Opportunity") if s.report.detector == "mass_overwrite"]
    assert HOSTILE in json.dumps(stored.report.to_dict()) and stored.report.record_count == len(ids)
