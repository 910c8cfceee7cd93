"""The two ways a careful client saves API calls: composite/batch (each subrequest still counts) and
describes answered 304 Not Modified to If-Modified-Since."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from simple_salesforce import Salesforce

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect

V = "v59.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path_factory.mktemp("batch") / "org", generate=50) as srv:
        yield srv


@pytest.fixture(scope="module")
def sf(server: DevOrgServer) -> Salesforce:
    return connect(server)


def _usage(resp) -> int:
    return int(re.match(r"api-usage=(\d+)/", resp.headers["Sforce-Limit-Info"]).group(1))


def _batch(sf: Salesforce, server: DevOrgServer, body: dict):
    return sf.session.post(f"{server.instance_url}/services/data/{V}/composite/batch", headers=sf.headers, json=body)


def test_a_batch_runs_its_subrequests_in_order_and_each_counts_as_an_api_call(sf, server):
    acc = sf.query("SELECT Id, Name FROM Account LIMIT 1")["records"][0]["Id"]
    before = _usage(sf.session.get(f"{server.instance_url}/services/data/{V}/limits", headers=sf.headers))
    resp = _batch(
        sf,
        server,
        {
            "batchRequests": [
                {"method": "PATCH", "url": f"{V}/sobjects/Account/{acc}", "richInput": {"Name": "Renamed in a batch"}},
                {"method": "GET", "url": f"{V}/sobjects/Account/{acc}?fields=Name"},
                {"method": "GET", "url": f"v58.0/query/?q=SELECT+Name+FROM+Account+WHERE+Id='{acc}'"},
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["hasErrors"] is False
    assert [r["statusCode"] for r in body["results"]] == [204, 200, 200]
    assert body["results"][0]["result"] is None
    assert body["results"][1]["result"]["Name"] == "Renamed in a batch"
    assert body["results"][2]["result"]["records"][0]["Name"] == "Renamed in a batch"
    # "Each subrequest counts against rate limits": three subrequests, three calls (and no extra one for the
    # batch itself: a one-subrequest batch costs what the plain request costs)
    assert _usage(resp) == before + 3


def test_halt_on_error_answers_412_for_the_subrequests_after_a_failure(sf, server):
    resp = _batch(
        sf,
        server,
        {
            "haltOnError": True,
            "batchRequests": [
                {"method": "GET", "url": f"{V}/sobjects/Account/001000000000000AAA"},
                {"method": "GET", "url": f"{V}/limits"},
            ],
        },
    )
    body = resp.json()
    assert resp.status_code == 200 and body["hasErrors"] is True
    assert body["results"][0]["statusCode"] == 404
    assert body["results"][1] == {
        "statusCode": 412,
        "result": [{"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}],
    }
    # without haltOnError the batch goes on
    go_on = _batch(
        sf,
        server,
        {
            "batchRequests": [
                {"method": "GET", "url": f"{V}/sobjects/Account/001000000000000AAA"},
                {"method": "GET", "url": f"{V}/limits"},
            ]
        },
    )
    assert [r["statusCode"] for r in go_on.json()["results"]] == [404, 200]


def test_a_batch_of_more_than_25_or_with_a_bad_subrequest_runs_nothing(sf, server):
    acc = sf.Account.create({"Name": "Untouched"})["id"]
    patch = {"method": "PATCH", "url": f"{V}/sobjects/Account/{acc}", "richInput": {"Name": "Touched"}}
    too_many = _batch(sf, server, {"batchRequests": [patch] + [{"method": "GET", "url": f"{V}/limits"}] * 25})
    assert too_many.status_code == 400 and "25" in too_many.json()[0]["message"]
    bad = _batch(sf, server, {"batchRequests": [patch, {"method": "FETCH", "url": f"{V}/limits"}]})
    assert bad.status_code == 400
    newer = _batch(sf, server, {"batchRequests": [patch, {"method": "GET", "url": "v60.0/limits"}]})
    assert newer.status_code == 400  # a subrequest's version may not be later than the batch's
    assert sf.Account.get(acc)["Name"] == "Untouched"


def test_describes_answer_304_until_the_metadata_changes(sf, server):
    url = f"{server.instance_url}/services/data/{V}/sobjects"
    first = sf.session.get(f"{url}/Account/describe", headers=sf.headers)
    assert first.status_code == 200 and first.headers["Last-Modified"]
    since = first.headers["Last-Modified"]
    again = sf.session.get(f"{url}/Account/describe", headers={**sf.headers, "If-Modified-Since": since})
    assert again.status_code == 304 and again.content == b""
    glob = sf.session.get(url, headers={**sf.headers, "If-Modified-Since": since})
    assert glob.status_code == 304
    old = sf.session.get(
        f"{url}/Account/describe", headers={**sf.headers, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200
    # an admin adds a field an hour later: Account's describe and the global describe change, Contact's does not
    server.org.advance_clock(__import__("datetime").timedelta(hours=1))
    server.org.add_custom_field("Account", {"name": "Tier__c", "type": "string"})
    changed = sf.session.get(f"{url}/Account/describe", headers={**sf.headers, "If-Modified-Since": since})
    assert changed.status_code == 200 and "Tier__c" in {f["name"] for f in changed.json()["fields"]}
    assert sf.session.get(url, headers={**sf.headers, "If-Modified-Since": since}).status_code == 200
    contact = sf.session.get(f"{url}/Contact/describe", headers={**sf.headers, "If-Modified-Since": since})
    assert contact.status_code == 304
