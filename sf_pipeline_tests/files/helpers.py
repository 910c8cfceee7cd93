"""Shared steps of the files tests: files put into devorg the way a client uploads them, and read back."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sf_pipeline_tests.pipeline_fixtures import Pipeline

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
FILE_OBJECTS = ["Account", "ContentVersion", "Attachment"]


def at(p: Pipeline, hour: int, minute: int) -> datetime:
    moment = T0 + timedelta(hours=hour, minutes=minute)
    p.set_clock(moment)
    return moment


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(sf: Any, title: str, data: bytes, *, parent: str | None = None, document: str | None = None) -> str:
    """A ContentVersion as a client inserts it (REST, base64 JSON): a new document, or a new version of one."""
    values: dict[str, Any] = {
        "Title": title,
        "PathOnClient": f"{title}.pdf",
        "VersionData": base64.b64encode(data).decode(),
    }
    if document:
        values["ContentDocumentId"] = document
    elif parent:
        values["FirstPublishLocationId"] = parent
    return sf.ContentVersion.create(values)["id"]


def attach(sf: Any, parent: str, name: str, data: bytes) -> str:
    return sf.Attachment.create({"ParentId": parent, "Name": name, "Body": base64.b64encode(data).decode()})["id"]


def rows(p: Pipeline, schema: str, sobject: str, record_id: str, order: str = "systemmodstamp") -> list[dict]:
    with p.conn() as conn:
        cur = conn.execute(f'SELECT * FROM {schema}."{sobject.lower()}" WHERE id = %s ORDER BY {order}', (record_id,))
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def metadata(result: Any, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == key:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def blob_store(p: Pipeline):
    from sf_pipeline.settings import load_settings

    return load_settings(p.settings_path).blob_store()
