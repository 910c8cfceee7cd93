"""SFDMU (npm `sfdmu`, unmodified) against devorg: export Accounts and Contacts from an org to CSV files,
then import those files into another org, over the REST API and over Bulk API 1.0.

SFDMU is an sfdx plugin (oclif v1, `@salesforce/command` 3). The registry here holds only sfdmu 3.7.19,
whose oclif v1 stack the current `sf` CLI (which also needs Node 22) does not run, so the test runs the
plugin's own `sfdmu:run` command through its bundled `@oclif/command`, exactly as `sfdx sfdmu:run` would.
The orgs are given in export.json's `orgs` section (instanceUrl + accessToken), SFDMU's documented way to
connect without the CLI's auth store; Node trusts devorg's CA through NODE_EXTRA_CA_CERTS."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sf_pipeline.devorg.bulk1 import jobs_of
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg.public_clients import client_env, ensure_client, ensure_organization, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the first run installs the client
RUN_PLUGIN = ("require('@oclif/command').run(process.argv.slice(2), process.argv[1])"
              ".then(require('@oclif/command/flush')).catch(require('@oclif/errors/handle'))")


def sfdmu(server: DevOrgServer, work: Path, objects: list[dict], source: str, target: str, **options) -> str:
    root = ensure_client("sfdmu") / "node_modules"
    export = {"orgs": [{"name": "devorg", "instanceUrl": server.instance_url, "accessToken": server.login("admin")}],
              "objects": objects, **options}
    (work / "export.json").write_text(json.dumps(export, indent=2))
    out = run(["node", "-e", RUN_PLUGIN, str(root / "sfdmu"), "sfdmu:run", "--sourceusername", source,
               "--targetusername", target, "--path", str(work), "--noprompt", "--verbose"],
              client_env(server, NODE_PATH=str(root)), work, timeout=300).stdout
    assert "Exit code 0 (SUCCESS)" in out, out[-3000:]
    return out


def contacts(server: DevOrgServer) -> set[tuple]:
    page = server.org.queries.run("SELECT FirstName, LastName, Email, Account.Name, Account.NumberOfEmployees "
                                  "FROM Contact", include_deleted=False)
    rows = set()
    while True:
        rows |= {(c["FirstName"], c["LastName"], c["Email"], c["Account"]["Name"], c["Account"]["NumberOfEmployees"])
                 for c in page["records"]}
        if page["done"]:
            return rows
        page = server.org.queries.more(page["nextRecordsUrl"])


@pytest.mark.parametrize("api", ["rest", "bulk1"])
def test_sfdmu_exports_an_org_to_csv_and_imports_it_into_another_org(tmp_path: Path, api: str) -> None:
    work = tmp_path / "sfdmu"
    work.mkdir()
    with DevOrgServer(tmp_path / "source", generate=60) as source:
        ensure_organization(source)
        sfdmu(source, work, [
            {"query": "SELECT Id, Name, NumberOfEmployees, Industry FROM Account", "operation": "Readonly",
             "externalId": "Name"},
            {"query": "SELECT Id, LastName, FirstName, Email, AccountId FROM Contact", "operation": "Readonly",
             "externalId": "LastName;FirstName"},
        ], source="devorg", target="csvfile")
        want = contacts(source)
        n_accounts = source.org.store.count(source.org.schema.get("Account"))
    assert len(want) > 10
    with open(work / "Contact.csv", newline="") as fh:
        exported = list(csv.DictReader(fh))
    assert {(r["FirstName"] or None, r["LastName"], r["Email"] or None, r["Account.Name"]) for r in exported} == \
        {c[:4] for c in want}

    # SFDMU's Bulk API 1.0 engine above bulkThreshold records; REST (sObject Collections) below it
    options = {"bulkApiVersion": "1.0", "bulkThreshold": 1} if api == "bulk1" else {"bulkThreshold": 100000}
    with DevOrgServer(tmp_path / "target", name="target") as target:
        ensure_organization(target)
        log = sfdmu(target, work, [
            {"query": "SELECT Id, Name, NumberOfEmployees, Industry FROM Account", "operation": "Insert",
             "externalId": "Name"},
            {"query": "SELECT Id, LastName, FirstName, Email, AccountId FROM Contact", "operation": "Insert",
             "externalId": "LastName;FirstName"},
        ], source="csvfile", target="devorg", **options)
        got = contacts(target)
        assert target.org.store.count(target.org.schema.get("Account")) == n_accounts
        bulk1_jobs = {(j.operation, j.object) for j in jobs_of(target.org).jobs.values()}
    assert got == want
    assert bulk1_jobs == ({("insert", "Account"), ("insert", "Contact")} if api == "bulk1" else set())
    assert ("Bulk API V1.0" in log) == (api == "bulk1"), log[-3000:]
