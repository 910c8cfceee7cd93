"""`sf-pipeline orgs`: which org each alias reached (sf_pipeline.org_identity), and accepting a change of org."""

from __future__ import annotations

import click
import psycopg

from sf_pipeline.history_cli import database_url
from sf_pipeline.warehouse.org_identity import forget_org, known_orgs


@click.group("orgs")
def orgs() -> None:
    """The org each alias reached on its first contact; backups, restores and seeding refuse any other."""


@orgs.command("list")
def list_orgs() -> None:
    """Print each alias with its Organization Id, kind and when it was first and last seen."""
    with psycopg.connect(database_url()) as conn:
        rows = known_orgs(conn)
    if not rows:
        click.echo("no org contacted yet")
    for k in rows:
        kind = "sandbox" if k.is_sandbox else "production"
        click.echo(
            f"{k.alias}\t{k.organization_id}\t{kind}\t{k.organization_name or ''}\t"
            f"first seen {k.first_seen:%Y-%m-%d %H:%M:%S%z}\tlast seen {k.last_seen:%Y-%m-%d %H:%M:%S%z}"
        )


@orgs.command("forget")
@click.argument("alias")
def forget(alias: str) -> None:
    """Accept that ALIAS now reaches another org: forget the org it reached (the next contact records the new one).

    Do this only when the change is deliberate (a refreshed sandbox, a migrated org): the backup history of an
    alias is then the history of two orgs.
    """
    with psycopg.connect(database_url()) as conn:
        known = forget_org(conn, alias)
    if known is None:
        raise click.ClickException(f"alias {alias!r} has no recorded org (see `sf-pipeline orgs list`)")
    click.echo(
        f"forgot that {alias!r} reached org {known.organization_id} ({known.organization_name or 'unnamed'}); "
        "its next contact records the org it reaches then"
    )
