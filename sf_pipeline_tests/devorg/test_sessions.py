"""Sessions end after the org's session timeout (Setup > Session Settings, 2 hours by default) and then every
API answers INVALID_SESSION_ID; activity past half the timeout extends the session, as Salesforce documents.
"""

from __future__ import annotations

import requests
from click.testing import CliRunner
from simple_salesforce import Salesforce

from sf_pipeline.cli import main
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect, tls_session

V = "59.0"


def every_api(devorg: DevOrgServer, token: str) -> dict[str, requests.Response]:
    """One call on each API devorg serves, with this session."""
    session = tls_session(devorg)
    auth = {"Authorization": f"Bearer {token}"}
    base = f"{devorg.instance_url}/services/data/v{V}"
    soap = (
        '<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
        f"<soapenv:Header><urn:SessionHeader><urn:sessionId>{token}</urn:sessionId></urn:SessionHeader>"
        "</soapenv:Header><soapenv:Body><urn:undelete><urn:ids>001000000000000AAA</urn:ids></urn:undelete>"
        "</soapenv:Body></soapenv:Envelope>"
    )
    return {
        "rest": session.get(f"{base}/sobjects/Account/describe", headers=auth),
        "query": session.get(f"{base}/query", params={"q": "SELECT Id FROM Account"}, headers=auth),
        "bulk2": session.post(
            f"{base}/jobs/query", headers=auth, json={"operation": "query", "query": "SELECT Id FROM Account"}
        ),
        "bulk2_session_header": session.get(f"{base}/jobs/query", headers={"X-SFDC-Session": token}),
        "soap": session.post(
            f"{devorg.instance_url}/services/Soap/u/{V}",
            data=soap,
            headers={"Content-Type": "text/xml", "SOAPAction": "undelete"},
        ),
        "userinfo": session.get(f"{devorg.instance_url}/services/oauth2/userinfo", headers=auth),
    }


def assert_invalid_everywhere(answers: dict[str, requests.Response]) -> None:
    for name, resp in answers.items():
        if name == "soap":
            assert resp.status_code == 500 and "<faultcode>INVALID_SESSION_ID</faultcode>" in resp.text, name
        else:
            assert resp.status_code == 401, name
            assert resp.json()[0]["errorCode"] == "INVALID_SESSION_ID", name


def test_a_session_ends_after_two_hours_by_default_on_every_api(devorg: DevOrgServer):
    devorg.control("clock", {"set": "2026-11-24T08:00:00Z", "freeze": True})
    token = devorg.login("admin")
    fine = every_api(devorg, token)
    assert all(r.status_code in (200, 201) for k, r in fine.items() if k != "soap"), {
        k: r.text for k, r in fine.items()
    }
    assert "<undeleteResponse>" in fine["soap"].text
    devorg.control("clock", {"advance": "59m"})
    assert every_api(devorg, token)["rest"].status_code == 200  # before half the timeout: not extended
    devorg.control("clock", {"advance": "61m"})
    assert_invalid_everywhere(every_api(devorg, token))


def test_activity_past_half_the_timeout_extends_the_session(devorg: DevOrgServer):
    devorg.control("clock", {"set": "2026-11-24T08:00:00Z", "freeze": True})
    token = devorg.login("admin")
    devorg.control("clock", {"advance": "61m"})
    assert every_api(devorg, token)["rest"].status_code == 200  # at 09:01: the session now lasts until 11:01
    devorg.control("clock", {"advance": "118m"})
    assert every_api(devorg, token)["query"].status_code == 200  # 10:59
    devorg.control("clock", {"advance": "200m"})
    assert_invalid_everywhere(every_api(devorg, token))


def test_the_session_timeout_is_configurable_like_session_settings(devorg: DevOrgServer):
    env = {**devorg.env("production"), **devorg.control_env("production")}
    result = CliRunner().invoke(main, ["devorg", "session-timeout", "15m"], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and '"timeout_seconds": 900' in result.output
    bad = tls_session(devorg).post(
        f"{devorg.instance_url}/_devorg/sessions/timeout",
        json={"timeout": "3h"},
        headers={"Authorization": f"Bearer {devorg.control_token}"},
    )
    assert bad.status_code == 400 and "15m, 30m, 1h, 2h, 4h, 8h, 12h, 24h" in bad.json()["error"]
    devorg.control("clock", {"set": "2026-11-24T08:00:00Z", "freeze": True})
    token = devorg.login("admin")
    devorg.control("clock", {"advance": "16m"})
    assert_invalid_everywhere(every_api(devorg, token))


def test_a_client_holding_credentials_logs_in_again_after_the_timeout(devorg: DevOrgServer):
    sf: Salesforce = connect(devorg)
    first = sf.session_id
    devorg.control("clock", {"advance": "3h"})
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] >= 0  # simple-salesforce re-logs in on 401
    assert sf.session_id != first
