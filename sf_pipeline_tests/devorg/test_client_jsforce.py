"""jsforce 3 (npm), unmodified, against devorg: SOAP login, identity, REST query and insert, Bulk API
1.0 load and query, Bulk API 2.0 query; the test checks what it saw against the org."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg.public_clients import client_env, ensure_client, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]  # the first run installs the client
SCRIPT = Path(__file__).with_name("clients") / "jsforce_session.js"


@pytest.fixture
def org(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "org", generate=30) as server:
        yield server


def test_jsforce_logs_in_queries_inserts_and_bulk_loads_into_devorg(org: DevOrgServer, tmp_path: Path) -> None:
    env_dir = ensure_client("jsforce")
    cred = org.org.user("admin")
    env = client_env(
        org,
        NODE_PATH=str(env_dir / "node_modules"),
        DEVORG_URL=org.instance_url,
        DEVORG_USERNAME=cred.username,
        DEVORG_PASSWORD=cred.password + cred.security_token,
    )
    out = json.loads(run(["node", str(SCRIPT)], env, tmp_path, timeout=120).stdout)

    assert out["userId"] == cred.user_id
    assert out["identityUsername"] == cred.username
    sf = org.org
    accounts = sf.queries.run(
        "SELECT Id, Name FROM Account WHERE Name != 'jsforce Account' ORDER BY Name LIMIT 5", include_deleted=False
    )  # the script queried before its insert
    assert out["queried"] == [{"Id": r["Id"], "Name": r["Name"]} for r in accounts["records"]]

    created = sf.store.get(sf.schema.get("Account"), out["created"]["id"])
    assert (created["Name"], created["NumberOfEmployees"]) == ("jsforce Account", 42)

    # Bulk 1.0 load: results in request order, the third row fails on the required LastName
    loaded = out["loaded"]
    assert [r["success"] for r in loaded] == [True, True, False]
    assert "REQUIRED_FIELD_MISSING" in " ".join(map(str, loaded[2]["errors"]))
    contact = sf.schema.get("Contact")
    for row, last in zip(loaded[:2], ("Bulk One", "Bulk Two"), strict=True):
        rec = sf.store.get(contact, row["id"])
        assert (rec["LastName"], rec["AccountId"]) == (last, created["Id"])
        assert rec["CreatedById"] == cred.user_id

    # Bulk 1.0 query (CSV results) finds exactly those two contacts with their fields
    seen = {c["Id"]: c for c in out["bulkContacts"]}
    assert set(seen) == {loaded[0]["id"], loaded[1]["id"]}
    assert seen[loaded[1]["id"]]["Email"] == "two@example.com"
    assert out["bulk2AccountCount"] == sf.store.count(sf.schema.get("Account"))
