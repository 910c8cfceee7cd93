"""`sf-pipeline history` and `sf-pipeline as-of`: point-in-time answers from the backup database."""

from __future__ import annotations

import csv
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
import psycopg

from sf_pipeline import instants
from sf_pipeline.privacy.retention import history_resolution_note, resolution_note
from sf_pipeline.warehouse import as_of, history_versions
from sf_pipeline.warehouse.errors import HistoryNotFoundError

BOOKKEEPING = {"dbt_scd_id", "dbt_updated_at", "dbt_valid_from", "dbt_valid_to"}


def database_url() -> str:
    url = os.environ.get("SF_PIPELINE_DATABASE_URL")
    if not url:
        raise click.UsageError("SF_PIPELINE_DATABASE_URL is not set: it must hold the backup database URL")
    return url


def parse_instant(text: str) -> datetime:
    """An instant given on the command line; without a time zone it is UTC (as this command prints instants)."""
    try:
        return instants.parse_instant(text, "the instant", naive_in=UTC)
    except instants.InstantError as exc:
        raise click.BadParameter(str(exc)) from None


def _fmt(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _vanished_line(version: dict[str, Any]) -> str:
    """How the backup learnt the record is gone (the `_sfp_` flags of warehouse/vanished.py), in words."""
    cause = version["_sfp_vanished"]
    words = {
        "deleted": "deleted (in the recycle bin)",
        "purged": "purged from the recycle bin",
        "hard-deleted": "hard-deleted (never in the recycle bin)",
        "unknown": "gone, cause unknown",
    }
    text = f"merged into {version.get('_sfp_merged_into')}" if cause == "merged" else words.get(cause, cause)
    if version.get("_sfp_vanished_by"):
        text += f" by {version['_sfp_vanished_by']}"
    if version.get("_sfp_vanished_after"):
        text += f", some time after {_fmt(version['_sfp_vanished_after'])}"
    if version.get("_sfp_found_at"):
        text += f"; found by the backup {_fmt(version['_sfp_found_at'])}"
    return f"vanished: {text}"


@click.command("history")
@click.argument("sobject")
@click.argument("record_id")
def history(sobject: str, record_id: str) -> None:
    """Print every version of one record: when it changed, who changed it, and what changed."""
    try:
        with psycopg.connect(database_url()) as conn:
            versions = history_versions(conn, sobject, record_id)
    except HistoryNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if not versions:
        raise click.ClickException(f"no history for {sobject} {record_id} in the backup")
    # retention thins old history: say what each period keeps, so a gap between versions reads right
    click.echo(f"# {history_resolution_note(sobject, datetime.now(UTC))}", err=True)
    previous: dict[str, Any] = {}
    for n, version in enumerate(versions, 1):
        valid_to = version.get("dbt_valid_to")
        click.echo(
            f"version {n}: from {_fmt(version['dbt_valid_from'])} to "
            f"{_fmt(valid_to) if valid_to else 'now'}  by {version.get('lastmodifiedbyid') or '?'}"
            f"{'  [DELETED]' if version.get('isdeleted') else ''}"
        )
        if version.get("_sfp_vanished"):
            click.echo(f"    {_vanished_line(version)}")
        changed = {
            k: v
            for k, v in version.items()
            if k not in BOOKKEEPING | {"systemmodstamp", "lastmodifieddate"}
            and not k.startswith("_sfp_")
            and previous.get(k, v) != v
        }
        fields = (
            changed
            if previous
            else {
                k: v for k, v in version.items() if k not in BOOKKEEPING and not k.startswith("_sfp_") and v is not None
            }
        )
        for key, value in fields.items():
            before = f"{_fmt(previous[key])} → " if previous else ""
            click.echo(f"    {key}: {before}{_fmt(value)}")
        previous = version


@click.command("as-of")
@click.argument("sobject")
@click.argument("timestamp")
@click.option("--fields", default=None, help="Comma-separated fields (default: all).")
def as_of_command(sobject: str, timestamp: str, fields: str | None) -> None:
    """Print, as CSV, every record of an object as it was at TIMESTAMP (deleted ones excluded)."""
    moment = parse_instant(timestamp)
    click.echo(f"# {resolution_note(sobject, moment)}", err=True)  # retention thins old history
    columns = [f.strip().lower() for f in fields.split(",")] if fields else None
    writer = None
    try:
        with psycopg.connect(database_url()) as conn:
            for row in as_of(conn, sobject, moment, columns):
                if writer is None:
                    writer = csv.DictWriter(sys.stdout, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow({k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()})
    except HistoryNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    if writer is None:
        click.echo(f"# no {sobject} record existed at {moment.isoformat()}", err=True)


@click.command("incidents")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--object", "sobject", default=None, help="Only incidents of this object.")
def incidents(limit: int, sobject: str | None) -> None:
    """List anomaly incidents, latest first, each with its ready-to-paste restore config."""
    from sf_pipeline.anomalies import list_incidents

    with psycopg.connect(database_url()) as conn:
        stored = list_incidents(conn, limit=limit, object=sobject)
    if not stored:
        click.echo("no incidents recorded")
        return
    for item in stored:
        report = item.report
        click.echo(f"#{item.id} [{report.severity.upper()}] {report.title}")
        click.echo(report.to_markdown(embed_chart=False, incident_id=item.id))
        if report.restore_config:
            click.echo("restore config (paste into the restore job's launchpad):")
            click.echo(report.launchpad_yaml(item.id))
        click.echo("")
