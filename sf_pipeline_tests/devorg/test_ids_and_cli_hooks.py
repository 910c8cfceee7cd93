"""Ids with real checksums, and devorg's test hooks driven from the `sf-pipeline devorg` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sf_pipeline.cli import main
from sf_pipeline.devorg import ids
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect


@pytest.mark.parametrize(
    "id15,suffix",
    [
        ("001D000000IqhSL", "IAZ"),
        ("0010R00000VsXkH", "QAV"),
        ("0035500001H9cak", "AAB"),
        ("a0RE000000IJmcN", "MAT"),
        ("aBcDEfgHIJKLMNO", "025"),
    ],
)
def test_checksum_matches_salesforce_reference_ids(id15, suffix):
    assert ids.checksum(id15) == suffix
    assert ids.normalize(id15) == id15 + suffix
    assert ids.normalize((id15 + suffix).lower()) == id15 + suffix  # 18-char ids are case-insensitive


def test_malformed_ids_are_rejected():
    for bad in ("001D000000IqhSL" + "XXX", "001D000000IqhS", "001D000000IqhS!", ""):
        assert ids.normalize(bad) is None


def _cli(server: DevOrgServer, *args: str) -> dict | list:
    env = {**server.env("production"), **server.control_env("production")}
    result = CliRunner().invoke(main, ["devorg", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_moves_the_clock(devorg: DevOrgServer):
    out = _cli(devorg, "clock", "--set", "2026-11-24T02:00:00Z", "--freeze")
    assert out == {"now": "2026-11-24T02:00:00.000+0000", "frozen": True}
    out = _cli(devorg, "clock", "--advance", "90m")
    assert out["now"] == "2026-11-24T03:30:00.000+0000"
    sf = connect(devorg)
    acc = sf.Account.create({"Name": "Stamped"})["id"]
    assert sf.Account.get(acc)["CreatedDate"] == "2026-11-24T03:30:00.000+0000"


def test_cli_injects_and_clears_faults(devorg: DevOrgServer):
    rules = _cli(devorg, "fault", "5xx", "--next", "1", "--status", "500")
    assert rules[0]["kind"] == "5xx" and rules[0]["next"] == 1
    sf = connect(devorg)
    from simple_salesforce.exceptions import SalesforceGeneralError

    with pytest.raises(SalesforceGeneralError):
        sf.query("SELECT Id FROM Account")
    _cli(devorg, "fault", "lock", "--rate", "1")
    assert _cli(devorg, "fault", "--clear") == []
    assert sf.Account.create({"Name": "after clear"})["success"]


def test_cli_runs_a_scenario_as_the_integration_user(devorg: DevOrgServer):
    sf = connect(devorg)
    acc = sf.Account.create({"Name": "Acme"})["id"]
    opp_ids = [
        sf.Opportunity.create(
            {"Name": f"D{i}", "StageName": "Prospecting", "CloseDate": "2026-12-01", "AccountId": acc}
        )["id"]
        for i in range(3)
    ]
    result = CliRunner().invoke(
        main,
        ["devorg", "scenario", "orphan-opportunities", "--at", "2026-11-24T02:00:00Z"],
        env={**devorg.env("production"), **devorg.control_env("production")},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["changed"] == {"Opportunity": 3}
    integration = devorg.org.user("integration").user_id
    for rid in opp_ids:
        rec = sf.Opportunity.get(rid)
        assert rec["AccountId"] is None and rec["LastModifiedById"] == integration
        assert rec["SystemModstamp"].startswith("2026-11-24T02:00")


def test_cli_limits_and_state(devorg: DevOrgServer):
    out = _cli(devorg, "limits", "--daily-limit", "1234", "--reset-usage")
    assert out == {
        "api_usage": 0,
        "daily_limit": 1234,
        "concurrent_long_running": 25,
        "long_running_seconds": 20.0,
        "long_running_now": 0,
    }
    state = _cli(devorg, "state")
    assert state["daily_limit"] == 1234 and state["users"]["integration"]["username"].startswith("integration@")


def test_serve_prints_export_lines_and_persists(tmp_path):
    """`sf-pipeline devorg serve` as a real process: export lines first, data kept in --data."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sf_pipeline.cli",
            "devorg",
            "serve",
            "--data",
            str(tmp_path / "org"),
            "--generate",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, "devorg serve exited before printing its connection details"
            lines.append(line.strip())
            if line.startswith("export DEVORG_PRODUCTION_SUPPORT_SECURITY_TOKEN"):
                break
        env = dict(line[len("export ") :].split("=", 1) for line in lines if line.startswith("export "))
        for name in (
            "INSTANCE_URL",
            "LOGIN_URL",
            "USERNAME",
            "PASSWORD",
            "SECURITY_TOKEN",
            "CLIENT_ID",
            "CLIENT_SECRET",
            "CA_BUNDLE",
        ):
            assert env[f"SALESFORCE_PRODUCTION_{name}"], name
        assert env["DEVORG_PRODUCTION_CONTROL_TOKEN"] and env["DEVORG_PRODUCTION_CONTROL_URL"].endswith("/_devorg")
        import time

        from simple_salesforce import Salesforce

        from sf_pipeline.salesforce.connection import OrgCredentials
        from sf_pipeline.salesforce.connection import connect as connect_env

        count = None
        for _ in range(100):  # the server starts listening right after printing
            try:
                sf: Salesforce = connect_env(OrgCredentials.from_env("production", env))
                count = sf.query("SELECT COUNT() FROM Opportunity")["totalSize"]
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        assert count == 50
    finally:
        proc.terminate()
        proc.wait(timeout=20)
