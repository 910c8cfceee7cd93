"""Each org alias remembers which org it reached: `sf_pipeline.org_identity`, one row per alias.

Credentials are only environment variables: pointing `SALESFORCE_SANDBOX_*` at production, or
`SALESFORCE_PRODUCTION_*` at another org, changes nothing the pipeline could see by itself. So the first
contact records the alias's Organization Id (and whether it is a sandbox), and every backup, restore and
seeding compares the org it reaches with it: another org is refused, naming the alias and both ids, until
someone accepts the change on purpose with `sf-pipeline orgs forget <alias>` (then the next contact records
the new org). A backup thus never mixes another org's records into this org's history, and a write never
lands in an org that nobody chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.organization import Organization, read_organization
from sf_pipeline.warehouse.ddl import commit, ensure_ddl

_DDL_LOCK_KEY = 0x5F_4F52_4749_4400  # serializes concurrent first contacts creating the table
_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sf_pipeline",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.org_identity (
        alias text PRIMARY KEY,
        organization_id varchar(18) NOT NULL,
        organization_name text,
        is_sandbox boolean NOT NULL,
        first_seen timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now())""",
]


class OrgIdentityError(RuntimeError):
    """An org alias reaches another org than the one it reached before; nothing was read or written."""


@dataclass(frozen=True)
class KnownOrg:
    """What an alias reached on its first contact, and when it was last seen."""

    alias: str
    organization_id: str
    organization_name: str | None
    is_sandbox: bool
    first_seen: datetime
    last_seen: datetime


def ensure_org_identity_table(conn: psycopg.Connection[Any]) -> None:
    ensure_ddl(conn, _DDL_LOCK_KEY, _DDL)


def check_org_identity(conn: psycopg.Connection[Any], alias: str, org: Organization) -> KnownOrg:
    """Record `org` as what `alias` reaches on the first contact; afterwards refuse any other org."""
    ensure_org_identity_table(conn)
    with conn.transaction():
        conn.execute(
            "INSERT INTO sf_pipeline.org_identity (alias, organization_id, organization_name, is_sandbox) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (alias) DO NOTHING",
            (alias, org.id, org.name, org.is_sandbox),
        )
        known = _row(conn, alias, lock=True)
        assert known is not None
        if known.organization_id != org.id:
            raise OrgIdentityError(
                f"org alias {alias!r} now reaches org {org.label()}, but it reached org {known.organization_id} "
                f"({known.organization_name or 'unnamed'}) when it was first used on {known.first_seen:%Y-%m-%d}: "
                f"its credentials (SALESFORCE_{alias.upper()}_*) point at another org. Nothing was read or "
                f"written. Point them back at {known.organization_id}, or, if {alias!r} is now meant to be "
                f"{org.id} (e.g. a refreshed sandbox), accept the change with `sf-pipeline orgs forget {alias}`"
            )
        conn.execute(
            "UPDATE sf_pipeline.org_identity SET last_seen = now(), is_sandbox = %s, organization_name = %s "
            "WHERE alias = %s",
            (org.is_sandbox, org.name, alias),
        )
    commit(conn)
    return known


def verify_org(conn: psycopg.Connection[Any], client: SalesforceClient) -> Organization:
    """Read the org the client reaches (one API call) and check it is the one its alias always reached."""
    org = read_organization(client)
    check_org_identity(conn, client.alias, org)
    return org


def known_orgs(conn: psycopg.Connection[Any]) -> list[KnownOrg]:
    if conn.execute("SELECT to_regclass('sf_pipeline.org_identity')").fetchone()[0] is None:
        return []
    rows = conn.execute(
        "SELECT alias, organization_id, organization_name, is_sandbox, first_seen, last_seen "
        "FROM sf_pipeline.org_identity ORDER BY alias"
    ).fetchall()
    return [KnownOrg(*row) for row in rows]


def forget_org(conn: psycopg.Connection[Any], alias: str) -> KnownOrg | None:
    """Forget what `alias` reached (the next contact records the org it reaches then); the row forgotten."""
    if conn.execute("SELECT to_regclass('sf_pipeline.org_identity')").fetchone()[0] is None:
        return None
    with conn.transaction():
        known = _row(conn, alias, lock=True)
        conn.execute("DELETE FROM sf_pipeline.org_identity WHERE alias = %s", (alias,))
    commit(conn)
    return known


def _row(conn: psycopg.Connection[Any], alias: str, *, lock: bool = False) -> KnownOrg | None:
    row = conn.execute(
        "SELECT alias, organization_id, organization_name, is_sandbox, first_seen, last_seen FROM "
        "sf_pipeline.org_identity WHERE alias = %s" + (" FOR UPDATE" if lock else ""),
        (alias,),
    ).fetchone()
    return KnownOrg(*row) if row else None
