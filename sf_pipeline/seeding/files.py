"""The files of seeded records: attachments and documents copied into the sandbox after the records.

After `seed_sandbox` has copied records, every record it holds a copy of (`sf_pipeline.id_map`, source ->
target) gets its files as they were at `as_of`: Attachments whose parent it is, re-created on the copy; and
ContentDocuments linked to it (the links the backup saw), uploaded once (the version valid at `as_of`) with a
link to each seeded record they were linked to. Bytes come from the blob store, streamed; files larger than
`blobs.seed_max_file_mb` are listed, not copied. A document or attachment already copied (in the id map) is not
copied again.

Masking (`masking.enabled`, on by default for seeding) cannot mask a file's content or title field by field: a PDF
or a photo holds whatever personal data it holds, and a title is often a person's name ("Ada Lovelace - contract
signed.pdf"). So a masked seed follows `masking.files`:
- `skip` (the default): no file of a seeded record is copied; the run lists how many were withheld;
- `placeholder`: each file becomes a short text placeholder (no byte of the original) named `file-<hash>.txt`,
  the hash keyed by the masking secret over the source record id (the same on every reseed, not reversible, and
  saying nothing about the original name), on the same seeded parents and links: code that expects a record's
  files finds some;
- `keep`: the files are copied as they are, titles and contents (an admin's decision, like `enabled: false`).
Without masking the files are copied as they are (`blobs.seed_files: false` keeps them out of sandboxes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from sf_pipeline.blobs import BlobStore
from sf_pipeline.salesforce.blobs import insert_with_blob
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.writes import create_records
from sf_pipeline.warehouse.files import ensure_file_tables
from sf_pipeline.warehouse.id_map import load_id_map, save_id_map


@dataclass
class SeedFilesResult:
    attachments: int = 0
    documents: int = 0
    links: int = 0
    bytes: int = 0
    too_large: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    mode: str = "copy"  # copy (as they are) | skip | placeholder: see the module docstring
    withheld: int = 0  # files of seeded records not copied because masking is on (masking.files: skip)

    def as_metadata(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "attachments_copied": self.attachments,
            "documents_copied": self.documents,
            "links": self.links,
            "bytes": self.bytes,
            "too_large_not_copied": self.too_large[:50],
            "failures": self.failures[:50],
        }
        if self.mode == "skip":
            out["withheld_by_masking"] = self.withheld
        return out


PLACEHOLDER = (
    b"This file was withheld by sf-pipeline's masking (masking.files: placeholder): the sandbox gets "
    b"this text instead of the original content.\n"
)


def placeholder_name(digest: Callable[[str, str], bytes], sobject: str, source_id: str) -> str:
    """`file-<hash>.txt`: keyed by the masking secret over the source id, so stable across reseeds and telling
    nothing about the original title."""
    return f"file-{digest('file', f'{sobject}:{source_id}').hex()[:16]}.txt"


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'salesforce_history."{table}"',)).fetchone()[0])


def _valid_at(table: str) -> str:
    return (
        f'SELECT * FROM salesforce_history."{table}" h WHERE h.dbt_valid_from <= %(as_of)s AND '
        "(h.dbt_valid_to IS NULL OR h.dbt_valid_to > %(as_of)s) AND NOT h.isdeleted"
    )


def _rows(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(query, params)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def seed_files(
    conn: psycopg.Connection[Any],
    target: SalesforceClient,
    store: BlobStore,
    *,
    source_org: str,
    target_org: str,
    as_of: datetime,
    max_bytes: int,
    mode: str = "copy",
    digest: Callable[[str, str], bytes] | None = None,
) -> SeedFilesResult:
    """Copy the files of every record seeded from `source_org` into `target_org`; see the module docstring.

    `mode`: `copy` (as they are), `skip` (masking: count them, copy nothing) or `placeholder` (masking: a text
    placeholder named by `digest`, the masking's keyed HMAC)."""
    if mode not in ("copy", "skip", "placeholder"):
        raise ValueError(f"seed_files: mode {mode!r}")
    if mode == "placeholder" and digest is None:
        raise ValueError("seed_files: placeholders are named with the masking's keyed digest")
    result = SeedFilesResult(mode=mode)

    def body(
        sobject: str, source_id: str, sha: str, size: int, name: str
    ) -> tuple[int, Callable[[], Iterable[bytes]], str]:
        """(size, bytes, file name) of what the sandbox gets for this file: the original, or a placeholder."""
        if mode == "placeholder":
            assert digest is not None
            return len(PLACEHOLDER), lambda: iter((PLACEHOLDER,)), placeholder_name(digest, sobject, source_id)
        return size, lambda: store.chunks(sha), name

    ensure_file_tables(conn)
    id_map = load_id_map(conn, source_org, target_org)
    seeded = list(id_map)
    if not seeded:
        return result
    params = {"as_of": as_of, "ids": seeded}
    if _exists(conn, "attachment"):
        copies: dict[str, str] = {}
        for att in _rows(conn, _valid_at("attachment") + " AND h.parentid = ANY(%(ids)s)", params):
            if att["id"] in id_map or not att.get("_sfp_body_sha256"):
                continue
            if mode == "skip":
                result.withheld += 1
                continue
            size, sha = int(att["_sfp_body_size"] or 0), att["_sfp_body_sha256"].strip()
            if size > max_bytes and mode == "copy":
                result.too_large.append(f"Attachment {att['id']} ({size:,} bytes)")
                continue
            size, source, name = body("Attachment", att["id"], sha, size, att["name"])
            if mode == "placeholder":
                values = {"ParentId": id_map[att["parentid"]], "Name": name, "ContentType": "text/plain"}
            else:
                values = {
                    "ParentId": id_map[att["parentid"]],
                    "Name": att["name"],
                    **({"ContentType": att["contenttype"]} if att.get("contenttype") else {}),
                    **({"Description": att["description"]} if att.get("description") else {}),
                }
            try:
                copies[att["id"]] = insert_with_blob(
                    target, "Attachment", values, "Body", size=size, source=source, filename=name
                )
                result.attachments += 1
                result.bytes += size
            except Exception as exc:  # noqa: BLE001 - listed in the run's metadata; the other files go on
                result.failures.append(f"Attachment {att['id']}: {str(exc)[:200]}")
        if copies:
            save_id_map(conn, source_org, target_org, "Attachment", copies)
    if _exists(conn, "contentversion"):
        links = conn.execute(
            "SELECT content_document_id, array_agg(DISTINCT linked_entity_id) FROM sf_pipeline.content_document_links "
            "WHERE linked_entity_id = ANY(%(ids)s) "
            "GROUP BY content_document_id",
            params,
        ).fetchall()
        documents = {doc: sorted(entities) for doc, entities in links if doc not in id_map}
        latest: dict[str, dict[str, Any]] = {}
        for version in _rows(
            conn,
            _valid_at("contentversion") + " AND h.contentdocumentid = ANY(%(docs)s)",
            {**params, "docs": list(documents)},
        ):
            doc = version["contentdocumentid"]
            if doc not in latest or int(version.get("versionnumber") or 0) > int(latest[doc].get("versionnumber") or 0):
                latest[doc] = version
        copies = {}
        for doc, version in latest.items():
            sha = (version.get("_sfp_versiondata_sha256") or "").strip()
            size = int(version.get("_sfp_versiondata_size") or 0)
            if not sha:
                continue
            if mode == "skip":
                result.withheld += 1
                continue
            if size > max_bytes and mode == "copy":
                result.too_large.append(f"ContentDocument {doc} ({size:,} bytes)")
                continue
            entities = [id_map[e] for e in documents[doc]]
            size, source, name = body("ContentDocument", doc, sha, size, version.get("pathonclient") or "file")
            if mode == "placeholder":
                values = {"Title": name, "PathOnClient": name, "FirstPublishLocationId": entities[0]}
            else:
                values = {
                    "Title": version.get("title") or "file",
                    "PathOnClient": name,
                    "FirstPublishLocationId": entities[0],
                }
            try:
                new_version = insert_with_blob(
                    target,
                    "ContentVersion",
                    values,
                    "VersionData",
                    size=size,
                    source=source,
                    filename=values["PathOnClient"],
                )
                new_doc = target.restful(f"sobjects/ContentVersion/{new_version}")["ContentDocumentId"]
                made = create_records(
                    target,
                    "ContentDocumentLink",
                    [{"ContentDocumentId": new_doc, "LinkedEntityId": e, "ShareType": "V"} for e in entities[1:]],
                )
                copies[doc] = new_doc
                result.documents += 1
                result.links += 1 + sum(r.success for r in made)
                result.bytes += size
            except Exception as exc:  # noqa: BLE001 - listed in the run's metadata; the other files go on
                result.failures.append(f"ContentDocument {doc}: {str(exc)[:200]}")
        if copies:
            save_id_map(conn, source_org, target_org, "ContentDocument", copies)
    return result
