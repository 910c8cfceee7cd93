"""Amaxa (PyPI, unmodified) against devorg: extract Accounts with their Contacts through Bulk API 1.0
(JSON jobs created with XML requests, heroku salesforce-bulk) into CSV files, then load them into
another org, where the Contacts must point at the new Accounts.

Amaxa hands salesforce-bulk only the host name of the instance URL (`urlparse(bulk_url).hostname`), so
its Bulk API calls always go to port 443: each devorg here listens on localhost:443 (as root, one at a
time: the source org is stopped before the target starts)."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg.public_clients import client_env, ensure_client, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the first run installs the client
OPERATION = """\
version: 2
operation:
    - sobject: Account
      fields: [Name, NumberOfEmployees, Industry]
      extract:
        all: True
    - sobject: Contact
      fields: [FirstName, LastName, Email, AccountId]
      extract:
        descendents: True
"""


def _port_443_free() -> bool:
    if os.geteuid() != 0:
        return False
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 443))
        except OSError:
            return False
    return True


def amaxa(server: DevOrgServer, work: Path, *args: str) -> str:
    (work / "credentials.yml").write_text(
        f"version: 2\ncredentials:\n    token:\n        instance-url: https://localhost\n"
        f'        access-token: "{server.login("admin")}"\n'
    )
    exe = ensure_client("amaxa") / "bin" / "amaxa"
    return run(
        [str(exe), "-c", "credentials.yml", "-v", "verbose", *args, "operation.yml"],
        client_env(server),
        work,
        timeout=300,
    ).stdout


def contacts_by_account(server: DevOrgServer) -> set[tuple]:
    page = server.org.queries.run(
        "SELECT FirstName, LastName, Email, Account.Name, Account.Industry FROM Contact", include_deleted=False
    )
    rows = set()
    while True:
        rows |= {
            (c["FirstName"], c["LastName"], c["Email"], c["Account"]["Name"], c["Account"]["Industry"])
            for c in page["records"]
        }
        if page["done"]:
            return rows
        page = server.org.queries.more(page["nextRecordsUrl"])


def test_amaxa_extracts_accounts_with_contacts_and_loads_them_into_another_org(tmp_path: Path) -> None:
    assert _port_443_free(), "Amaxa's Bulk API client only reaches port 443: run as root with 127.0.0.1:443 free"
    ensure_client("amaxa")
    work = tmp_path / "amaxa"
    work.mkdir()
    (work / "operation.yml").write_text(OPERATION)

    with DevOrgServer(tmp_path / "source", host="localhost", port=443, generate=60) as source:
        amaxa(source, work)
        want = contacts_by_account(source)
        accounts = source.org.queries.run("SELECT Id, Name FROM Account", include_deleted=False)["records"]
    assert len(want) > 10
    with open(work / "Account.csv", newline="") as fh:
        assert {r["Id"]: r["Name"] for r in csv.DictReader(fh)} == {a["Id"]: a["Name"] for a in accounts}
    with open(work / "Contact.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(want)

    with DevOrgServer(tmp_path / "target", host="localhost", port=443, name="target") as target:
        amaxa(target, work, "--load")
        got = contacts_by_account(target)
        owner = target.org.user("admin").user_id
        created_by = {
            r["CreatedById"]
            for r in target.org.queries.run("SELECT CreatedById FROM Contact", include_deleted=False)["records"]
        }
    assert got == want
    assert created_by == {owner}
