"""SFDMU (npm `sfdmu`, unmodified) against devorg, run as users run it, `sf sfdmu run` on the Salesforce CLI:
export Accounts and Contacts from an org to CSV files, then import those files into another org, over the
REST API and over Bulk API 1.0.

scripts/ensure-clients.sh installs the sf CLI (2.108.6, the newest release that runs on Node 20) and the
plugin with `sf plugins install sfdmu@3.7.19` (the only sfdmu version on the registry here). The orgs are
given in export.json's `orgs` section (instanceUrl + accessToken), SFDMU's documented way to connect
without the CLI's auth store; Node trusts devorg's CA through NODE_EXTRA_CA_CERTS."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from sf_pipeline.devorg.bulk1 import jobs_of
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg.public_clients import client_env, ensure_client, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the first run installs the client


def sfdmu(server: DevOrgServer, work: Path, objects: list[dict], source: str, target: str, **options) -> str:
    home = ensure_client("sfdmu")
    export = {
        "orgs": [{"name": "devorg", "instanceUrl": server.instance_url, "accessToken": server.login("admin")}],
        "objects": objects,
        **options,
    }
    (work / "export.json").write_text(json.dumps(export, indent=2))
    env = client_env(
        server,
        HOME=str(home / "home"),
        SF_DISABLE_TELEMETRY="true",
        SF_AUTOUPDATE_DISABLE="true",
        SF_SKIP_NEW_VERSION_CHECK="true",
    )
    out = run(
        [
            str(home / "node_modules" / ".bin" / "sf"),
            "sfdmu",
            "run",
            "--sourceusername",
            source,
            "--targetusername",
            target,
            "--path",
            str(work),
            "--noprompt",
            "--verbose",
        ],
        env,
        work,
        timeout=300,
    ).stdout
    assert "Exit code 0 (SUCCESS)" in out, out[-3000:]
    return out


def contacts(server: DevOrgServer) -> set[tuple]:
    page = server.org.queries.run(
        "SELECT FirstName, LastName, Email, Account.Name, Account.NumberOfEmployees FROM Contact", include_deleted=False
    )
    rows = set()
    while True:
        rows |= {
            (c["FirstName"], c["LastName"], c["Email"], c["Account"]["Name"], c["Account"]["NumberOfEmployees"])
            for c in page["records"]
        }
        if page["done"]:
            return rows
        page = server.org.queries.more(page["nextRecordsUrl"])


@dataclass(frozen=True)
class Export:
    """What `sf sfdmu run` exported from the source org (a folder of CSV files), and what that org held."""

    work: Path
    contacts: set[tuple]
    n_accounts: int


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Export:
    """One export for the module: the import tests each copy its folder and import from the copy (the export
    itself is the same whichever API the import then uses)."""
    root = tmp_path_factory.mktemp("sfdmu_export")
    work = root / "sfdmu"
    work.mkdir()
    with DevOrgServer(root / "source", generate=60) as source:
        sfdmu(
            source,
            work,
            [
                {
                    "query": "SELECT Id, Name, NumberOfEmployees, Industry FROM Account",
                    "operation": "Readonly",
                    "externalId": "Name",
                },
                {
                    "query": "SELECT Id, LastName, FirstName, Email, AccountId FROM Contact",
                    "operation": "Readonly",
                    "externalId": "LastName;FirstName",
                },
            ],
            source="devorg",
            target="csvfile",
        )
        return Export(work, contacts(source), source.org.store.count(source.org.schema.get("Account")))


def test_sfdmu_exports_an_org_to_csv(exported: Export) -> None:
    assert len(exported.contacts) > 10
    with open(exported.work / "Contact.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["FirstName"] or None, r["LastName"], r["Email"] or None, r["Account.Name"]) for r in rows} == {
        c[:4] for c in exported.contacts
    }
    with open(exported.work / "Account.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == exported.n_accounts


@pytest.mark.parametrize("api", ["rest", "bulk1"])
def test_sfdmu_imports_an_exported_org_into_another_org(exported: Export, tmp_path: Path, api: str) -> None:
    work = tmp_path / "sfdmu"
    shutil.copytree(exported.work, work)  # the export's folder as it was left, as a user would import from it
    # SFDMU's Bulk API 1.0 engine above bulkThreshold records; REST (sObject Collections) below it
    options = {"bulkApiVersion": "1.0", "bulkThreshold": 1} if api == "bulk1" else {"bulkThreshold": 100000}
    with DevOrgServer(tmp_path / "target", name="target") as target:
        log = sfdmu(
            target,
            work,
            [
                {
                    "query": "SELECT Id, Name, NumberOfEmployees, Industry FROM Account",
                    "operation": "Insert",
                    "externalId": "Name",
                },
                {
                    "query": "SELECT Id, LastName, FirstName, Email, AccountId FROM Contact",
                    "operation": "Insert",
                    "externalId": "LastName;FirstName",
                },
            ],
            source="csvfile",
            target="devorg",
            **options,
        )
        got = contacts(target)
        assert target.org.store.count(target.org.schema.get("Account")) == exported.n_accounts
        bulk1_jobs = {(j.operation, j.object) for j in jobs_of(target.org).jobs.values()}
    assert got == exported.contacts
    assert bulk1_jobs == ({("insert", "Account"), ("insert", "Contact")} if api == "bulk1" else set())
    assert ("Bulk API V1.0" in log) == (api == "bulk1"), log[-3000:]
