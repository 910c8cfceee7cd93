"""Salesforce's API limits in devorg, over HTTPS: request size, rolling 24-hour usage, concurrent long-running
requests, compressed responses, and sObject Collections retrieve with ids in the body.

References are in sf_pipeline/devorg/limits.py and collections.py.
"""

from __future__ import annotations

import gzip
import threading
import time

from simple_salesforce import Salesforce

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import tls_session

V = "59.0"


def api(devorg: DevOrgServer, path: str) -> str:
    return f"{devorg.instance_url}/services/data/v{V}/{path}"


def bearer(devorg: DevOrgServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {devorg.login('admin')}"}


def make_accounts(devorg: DevOrgServer, n: int) -> list[str]:
    org = devorg.org
    account, admin = org.schema.get("Account"), org.user("admin").user_id
    return [org.store.insert(account, {"Name": f"Account {i}"}, admin) for i in range(n)]


# ============================================================================ request size
def test_a_uri_over_16384_bytes_is_refused_with_414_uri_too_long(devorg: DevOrgServer):
    session = tls_session(devorg)
    soql = "SELECT Id FROM Account WHERE Name IN (" + ", ".join(f"'name {i:05d}'" for i in range(1300)) + ")"
    resp = session.get(api(devorg, "query"), params={"q": soql}, headers=bearer(devorg))
    assert len(resp.request.url) > 16_384
    assert resp.status_code == 414
    assert resp.text == "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"  # the real front server's page
    assert resp.headers["content-type"].startswith("text/html")
    # the same query fits once it is short enough
    short = "SELECT Id FROM Account WHERE Name IN (" + ", ".join(f"'name {i:05d}'" for i in range(100)) + ")"
    assert session.get(api(devorg, "query"), params={"q": short}, headers=bearer(devorg)).status_code == 200


def test_uri_and_headers_over_16384_bytes_are_refused_with_431(devorg: DevOrgServer):
    headers = {**bearer(devorg), "X-Padding": "p" * 15_000}
    resp = tls_session(devorg).get(api(devorg, "limits"), params={"x": "y" * 1_500}, headers=headers)
    assert resp.status_code == 431
    assert resp.text == "<h1>Bad Message 431</h1><pre>reason: Request Header Fields Too Large</pre>"


def test_collections_retrieve_takes_2000_ids_in_the_body_where_the_url_form_fails(devorg: DevOrgServer, sf: Salesforce):
    ids = make_accounts(devorg, 2001)
    session = tls_session(devorg)
    too_long = session.get(
        api(devorg, "composite/sobjects/Account"),
        headers=bearer(devorg),
        params={"ids": ",".join(ids[:2000]), "fields": "Id,Name"},
    )
    assert too_long.status_code == 414
    records = sf.restful(
        "composite/sobjects/Account",
        method="POST",
        json={"ids": [*ids[:1999], "001000000000000AAA"], "fields": ["Id", "Name"]},
    )
    assert len(records) == 2000 and records[-1] is None  # an id that is not there answers null
    assert records[0] == {
        "attributes": {"type": "Account", "url": f"/services/data/v{V}/sobjects/Account/{ids[0]}"},
        "Id": ids[0],
        "Name": "Account 0",
    }
    over = session.post(
        api(devorg, "composite/sobjects/Account"), headers=bearer(devorg), json={"ids": ids, "fields": ["Name"]}
    )
    assert over.status_code == 400 and over.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    bad_field = session.post(
        api(devorg, "composite/sobjects/Account"), headers=bearer(devorg), json={"ids": ids[:2], "fields": ["Nope__c"]}
    )
    assert bad_field.status_code == 400 and bad_field.json()[0]["errorCode"] == "INVALID_FIELD"
    missing = session.post(api(devorg, "composite/sobjects/Account"), headers=bearer(devorg), json={"ids": ids[:2]})
    assert missing.status_code == 400


# ============================================================================ rolling 24 hours
def test_api_usage_is_a_rolling_24_hours_on_the_org_clock(devorg: DevOrgServer, sf: Salesforce):
    devorg.control("clock", {"set": "2026-11-24T09:00:00Z", "freeze": True})
    devorg.control("limits", {"reset_usage": True, "daily_limit": 6})
    session = tls_session(devorg)
    token = bearer(devorg)
    for _ in range(3):
        assert session.get(api(devorg, "limits"), headers=token).status_code == 200
    devorg.control("clock", {"advance": "20h"})
    token = bearer(devorg)  # a new session: the first one timed out after 2 hours
    answer = session.get(api(devorg, "limits"), headers=token)
    assert answer.headers["Sforce-Limit-Info"] == "api-usage=4/6"
    assert answer.json()["DailyApiRequests"] == {"Max": 6, "Remaining": 2}
    session.get(api(devorg, "limits"), headers=token)
    session.get(api(devorg, "limits"), headers=token)
    refused = session.get(api(devorg, "limits"), headers=token)
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    # at 09:01 the next day the three requests of 09:00 have left the window; the three of 05:00 have not
    devorg.control("clock", {"advance": "241m"})
    token = bearer(devorg)
    again = session.get(api(devorg, "limits"), headers=token)
    assert again.status_code == 200 and again.headers["Sforce-Limit-Info"] == "api-usage=4/6"
    assert devorg.control("limits", method="GET")["api_usage"] == 4


# ============================================================================ concurrent long-running requests
def test_concurrent_long_running_requests_over_the_limit_are_refused(devorg: DevOrgServer):
    """Salesforce counts requests running 20 s or longer (25 per production org); scaled down here: 2 requests
    of 0.3 s or longer. Shorter requests are never limited."""
    devorg.control("limits", {"concurrent_long_running": 2, "long_running_seconds": 0.3})
    devorg.control("faults", {"kind": "slow", "next": 2, "delay": 2.5, "path": "/limits"})
    token = bearer(devorg)
    slow_answers: list[int] = []

    def slow_call() -> None:
        slow_answers.append(tls_session(devorg).get(api(devorg, "limits"), headers=token).status_code)

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while devorg.control("limits", method="GET")["long_running_now"] < 2:
        assert time.monotonic() < deadline, "the slow requests never became long-running"
        time.sleep(0.05)
    session = tls_session(devorg)
    refused = session.get(api(devorg, "sobjects"), headers=token)
    assert refused.status_code == 403
    assert refused.json() == [
        {
            "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]
    soap = session.post(
        f"{devorg.instance_url}/services/Soap/u/{V}",
        data="<x/>",
        headers={"Content-Type": "text/xml", "SOAPAction": "login"},
    )
    assert soap.status_code == 500 and "<faultcode>sf:REQUEST_LIMIT_EXCEEDED</faultcode>" in soap.text
    for t in threads:
        t.join()
    assert slow_answers == [200, 200]
    assert session.get(api(devorg, "sobjects"), headers=token).status_code == 200  # they finished: room again


# ============================================================================ compression
def test_rest_and_bulk_results_are_gzip_compressed_when_the_client_asks(devorg: DevOrgServer, sf: Salesforce):
    make_accounts(devorg, 50)
    session = tls_session(devorg)
    token = bearer(devorg)
    url = api(devorg, "query")
    plain = session.get(
        url, params={"q": "SELECT Id, Name FROM Account"}, headers={**token, "Accept-Encoding": "identity"}, stream=True
    )
    assert "content-encoding" not in plain.headers
    raw_plain = plain.raw.read()
    packed = session.get(
        url, params={"q": "SELECT Id, Name FROM Account"}, headers={**token, "Accept-Encoding": "gzip"}, stream=True
    )
    assert packed.headers["content-encoding"] == "gzip"
    body = packed.raw.read(decode_content=False)
    assert gzip.decompress(body) == raw_plain and len(body) < len(raw_plain)
    deflate_only = session.get(
        url, params={"q": "SELECT Id FROM Account"}, headers={**token, "Accept-Encoding": "deflate"}
    )
    assert "content-encoding" not in deflate_only.headers  # the REST API may answer uncompressed

    job = session.post(
        api(devorg, "jobs/query"), headers=token, json={"operation": "query", "query": "SELECT Id, Name FROM Account"}
    ).json()["id"]
    for _ in range(200):
        if session.get(api(devorg, f"jobs/query/{job}"), headers=token).json()["state"] == "JobComplete":
            break
        time.sleep(0.05)
    results = session.get(
        api(devorg, f"jobs/query/{job}/results"), headers={**token, "Accept-Encoding": "gzip"}, stream=True
    )
    assert results.headers["content-encoding"] == "gzip" and results.headers["Sforce-NumberOfRecords"] == "50"
    csv_text = gzip.decompress(results.raw.read(decode_content=False)).decode()
    assert csv_text.splitlines()[0] == '"Id","Name"' and len(csv_text.splitlines()) == 51
    # simple-salesforce (requests) asks for gzip by default and reads the same records
    assert len(list(sf.bulk2.Account.query("SELECT Id FROM Account"))[0].splitlines()) == 51
