"""`sf-pipeline file <Id> [--as-of T] [-o PATH]`: a file's content as it was at an instant, from the backup."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import click
import psycopg

from sf_pipeline.blobs import BlobError
from sf_pipeline.history_cli import database_url, parse_instant
from sf_pipeline.settings import load_settings
from sf_pipeline.warehouse.files import FileNotInBackupError, file_version


@click.command("file")
@click.argument("record_id")
@click.option("--as-of", "as_of", default=None, help="The instant (ISO 8601); default: the latest backed-up version.")
@click.option(
    "-o",
    "--output",
    default=None,
    help="Where to write the bytes (default: standard output; a directory: the file's own name in it).",
)
@click.option(
    "--object",
    "sobject",
    default=None,
    help="The record's object, for objects other than ContentDocument, ContentVersion, Attachment and Document.",
)
@click.option("--field", default=None, help="The base64 field, when the object has several.")
def file_command(record_id: str, as_of: str | None, output: str | None, sobject: str | None, field: str | None) -> None:
    """Write the content a file (ContentDocument, ContentVersion, Attachment, Document) had at an instant."""
    moment = parse_instant(as_of) if as_of else None
    settings = load_settings()
    store = settings.blob_store()
    with psycopg.connect(database_url(), autocommit=True) as conn:
        try:
            version = file_version(conn, record_id, moment, object_name=sobject, field=field)
        except FileNotInBackupError as exc:
            raise click.ClickException(str(exc)) from None
    note = (
        f"{version.object_name} {version.record_id} ({version.name or 'no name'}), version valid from "
        f"{version.valid_from.isoformat()}{', deleted then' if version.deleted else ''}: {version.size} bytes, "
        f"sha256 {version.sha256}"
    )
    digest = hashlib.sha256()
    try:
        if output is None:
            out = sys.stdout.buffer
            for chunk in store.chunks(version.sha256):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
        else:
            target = Path(output)
            if target.is_dir():
                target = target / Path(version.name or version.record_id).name
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in store.chunks(version.sha256):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != version.sha256:
                    raise click.ClickException(
                        f"the stored blob of {record_id} no longer hashes to {version.sha256}: "
                        f"the blob store is damaged ({store.description})"
                    )
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            note += f" -> {target}"
    except BlobError as exc:
        raise click.ClickException(f"{note}: {exc}") from None
    click.echo(note, err=True)
