"""Seeding writes only to a verified sandbox, and every alias remembers the org it reached.

Real parts: devorg orgs over HTTPS (a production org and two sandboxes, told apart by their Organization
record), a throwaway PostgreSQL database, the `sf-pipeline orgs` command.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from click.testing import CliRunner

from sf_pipeline.cli import main
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.seeding import SeedConfig, SeedTargetError, check_seed_target, seed_sandbox
from sf_pipeline.warehouse.org_identity import OrgIdentityError, known_orgs


@pytest.fixture(scope="module")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DevOrgServer]]:
    root = tmp_path_factory.mktemp("targets")
    servers = {
        "production": DevOrgServer(root / "production").start(),
        "sandbox": DevOrgServer(root / "sandbox", name="sandbox", sandbox=True).start(),
        "refreshed": DevOrgServer(root / "refreshed", name="refreshed", sandbox=True).start(),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def client(server: DevOrgServer, alias: str) -> SalesforceClient:
    """A client for `alias` whose SALESFORCE_<ALIAS>_* variables point at `server`."""
    return SalesforceClient(connect(OrgCredentials.from_env(alias, server.env(alias))), alias=alias)


def test_a_target_that_is_not_a_sandbox_is_refused_before_any_write(orgs, pg_conn: psycopg.Connection):
    prod = orgs["production"]
    accounts = prod.org.queries.run("SELECT COUNT() FROM Account", include_deleted=True, batch_size=10)["totalSize"]
    # the alias says "sandbox", but its credentials reach a production org
    mistaken = client(prod, "sandbox")
    with pytest.raises(SeedTargetError) as refused:
        check_seed_target(pg_conn, mistaken, backup_org="production")
    assert f"target_org 'sandbox' reaches org {prod.org.org_id}" in str(refused.value)
    assert "not a sandbox (its Organization.IsSandbox is false)" in str(refused.value)
    config = SeedConfig.from_dict({"as_of": "2026-11-24T02:00:00Z", "objects": ["Account"]})
    with pytest.raises(SeedTargetError):
        seed_sandbox(pg_conn, mistaken, config, backed_up=["Account"], backup_org="production")
    # the backed-up org is refused by name, before its Organization is even read
    backed_up = client(prod, "production")
    with pytest.raises(SeedTargetError, match="target_org 'production' is the backed-up org"):
        check_seed_target(pg_conn, backed_up, backup_org="production")
    assert backed_up.api_calls == 0
    assert (
        prod.org.queries.run("SELECT COUNT() FROM Account", include_deleted=True, batch_size=10)["totalSize"]
        == accounts
    )
    assert pg_conn.execute("SELECT to_regclass('sf_pipeline.id_map')").fetchone()[0] is None  # nothing mapped


def test_an_alias_pointed_at_another_org_is_refused_until_the_change_is_accepted(
    orgs, pg_url: str, pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
):
    sandbox, refreshed = orgs["sandbox"], orgs["refreshed"]
    before = datetime.now(UTC)
    first = check_seed_target(pg_conn, client(sandbox, "sandbox"), backup_org="production")
    assert first.id == sandbox.org.org_id and first.is_sandbox
    [known] = known_orgs(pg_conn)
    assert (known.alias, known.organization_id, known.is_sandbox) == ("sandbox", sandbox.org.org_id, True)
    assert known.first_seen >= before

    # SALESFORCE_SANDBOX_* now reach another org (a sandbox too, so only the remembered id can tell)
    with pytest.raises(OrgIdentityError) as changed:
        check_seed_target(pg_conn, client(refreshed, "sandbox"), backup_org="production")
    message = str(changed.value)
    assert "org alias 'sandbox'" in message and sandbox.org.org_id in message and refreshed.org.org_id in message
    assert "sf-pipeline orgs forget sandbox" in message and "Nothing was read or written" in message
    assert [k.organization_id for k in known_orgs(pg_conn)] == [sandbox.org.org_id]

    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url)
    listed = CliRunner().invoke(main, ["orgs", "list"])
    assert listed.exit_code == 0 and sandbox.org.org_id in listed.output and "sandbox" in listed.output
    forgot = CliRunner().invoke(main, ["orgs", "forget", "sandbox"])
    assert forgot.exit_code == 0, forgot.output
    assert f"forgot that 'sandbox' reached org {sandbox.org.org_id}" in forgot.output
    assert CliRunner().invoke(main, ["orgs", "forget", "sandbox"]).exit_code != 0  # nothing left to forget

    accepted = check_seed_target(pg_conn, client(refreshed, "sandbox"), backup_org="production")
    assert accepted.id == refreshed.org.org_id
    assert [k.organization_id for k in known_orgs(pg_conn)] == [refreshed.org.org_id]


def test_devorg_serve_can_start_a_sandbox():
    help_text = CliRunner().invoke(main, ["devorg", "serve", "--help"]).output
    assert "--sandbox" in help_text and "IsSandbox" in help_text
