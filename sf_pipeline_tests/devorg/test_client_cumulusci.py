"""CumulusCI (PyPI, unmodified) against devorg: `extract_dataset` from one org and `load_dataset` into
another, over the REST API and over Bulk API 1.0 (`api: bulk`). CumulusCI connects the way a CI job does:
an org from the `CUMULUSCI_ORG_<name>` variable carrying a refresh token (obtained here through devorg's
OAuth web server flow), refreshed with the refresh-token grant, then the identity, userinfo and
Organization lookups of `OrgConfig.refresh_oauth_token`."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg.public_clients import client_env, ensure_client, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the first run installs the client
CALLBACK = "http://localhost:8080/callback"
MAPPING = """\
Insert Accounts:
  sf_object: Account
  api: {api}
  fields: [Name, NumberOfEmployees, Industry]
Insert Contacts:
  sf_object: Contact
  api: {api}
  fields: [LastName, FirstName, Email]
  lookups:
    AccountId:
      table: Account
"""


@pytest.fixture
def source(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "source", generate=60) as server:
        yield server


@pytest.fixture
def target(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "target", name="target") as server:
        yield server


def refresh_token_org(server: DevOrgServer) -> dict[str, str]:
    """What `cci org connect` stores: a refresh token from the OAuth web server flow (the user logs in
    on the authorize page, the callback receives a code, the code is exchanged for tokens)."""
    org, cred = server.org, server.org.user("admin")
    http = requests.Session()
    http.verify, http.trust_env = server.ca_bundle, False
    login = http.post(
        f"{server.instance_url}/services/oauth2/authorize",
        allow_redirects=False,
        data={
            "response_type": "code",
            "client_id": org.client_id,
            "redirect_uri": CALLBACK,
            "username": cred.username,
            "pw": cred.password,
        },
    )
    assert login.status_code == 302, login.text
    code = unquote(re.search(r"[?&]code=([^&]+)", login.headers["location"]).group(1))
    tokens = http.post(
        f"{server.instance_url}/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": org.client_id,
            "client_secret": org.client_secret,
            "redirect_uri": CALLBACK,
        },
    ).json()
    return {
        "instance_url": server.instance_url,
        "refresh_token": tokens["refresh_token"],
        "id": tokens["id"],
        "username": cred.username,
        "client_id": org.client_id,
        "client_secret": org.client_secret,
    }


def cci(project: Path, server: DevOrgServer, *args: str) -> str:
    env = client_env(
        server,
        CUMULUSCI_ORG_devorg=json.dumps(refresh_token_org(server)),
        CUMULUSCI_KEY="0123456789abcdef",
        HOME=str(project / f"home-{server.port}"),
    )  # cci saves the org: one home per org
    exe = ensure_client("cumulusci") / "bin" / "cci"
    return run([str(exe), "task", "run", *args, "--org", "devorg"], env, project, timeout=300).stdout


def project_dir(tmp_path: Path, api: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "cumulusci.yml").write_text(
        'project:\n    name: DevorgCheck\n    package:\n        name: DevorgCheck\n        api_version: "59.0"\n'
    )
    (project / "mapping.yml").write_text(MAPPING.format(api=api))
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


def org_accounts_and_contacts(server: DevOrgServer) -> tuple[set, set]:
    q = server.org.queries
    accounts = q.run("SELECT Name, NumberOfEmployees, Industry FROM Account", include_deleted=False)["records"]
    contacts = []
    page = q.run("SELECT LastName, FirstName, Email, Account.Name FROM Contact", include_deleted=False)
    while True:
        contacts += page["records"]
        if page["done"]:
            break
        page = q.more(page["nextRecordsUrl"])
    return (
        {(a["Name"], a["NumberOfEmployees"], a["Industry"]) for a in accounts},
        {(c["LastName"], c["FirstName"], c["Email"], (c["Account"] or {}).get("Name")) for c in contacts},
    )


@pytest.mark.parametrize("api", ["rest", "bulk"])
def test_cumulusci_extracts_a_dataset_and_loads_it_into_another_org(
    source: DevOrgServer, target: DevOrgServer, tmp_path: Path, api: str
) -> None:
    project = project_dir(tmp_path, api)
    log = cci(project, source, "extract_dataset", "-o", "mapping", "mapping.yml", "-o", "sql_path", "data.sql")
    if api == "bulk":
        assert "Created Bulk API query job" in log  # Bulk API 1.0, not a silent REST fallback

    # what was extracted is what the source org holds
    db = sqlite3.connect(":memory:")
    db.executescript((project / "data.sql").read_text())
    names = dict(db.execute("SELECT id, Name FROM Account"))
    extracted_accounts = {
        (n, int(e) if e else None, i or None)
        for n, e, i in db.execute("SELECT Name, NumberOfEmployees, Industry FROM Account")
    }
    extracted_contacts = {
        (ln, fn or None, em or None, names.get(acc))
        for ln, fn, em, acc in db.execute("SELECT LastName, FirstName, Email, AccountId FROM Contact")
    }
    want_accounts, want_contacts = org_accounts_and_contacts(source)
    assert len(want_contacts) > 10
    assert extracted_accounts == want_accounts
    assert extracted_contacts == want_contacts

    before = target.org.store.count(target.org.schema.get("Contact"))
    log = cci(project, target, "load_dataset", "-o", "mapping", "mapping.yml", "-o", "sql_path", "data.sql")
    assert f"Creating insert Operation for Contact using {api}" in log

    # loaded into the target: same values, each Contact under the Account of the same name
    got_accounts, got_contacts = org_accounts_and_contacts(target)
    assert want_accounts <= got_accounts
    assert want_contacts <= got_contacts
    assert target.org.store.count(target.org.schema.get("Contact")) == before + len(want_contacts)
