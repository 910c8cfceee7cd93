"""Binary content the way Salesforce serves it: Attachment.Body, Document.Body, ContentVersion.VersionData.

- The bytes live on disk in the org's data directory (`blobs/`), never in SQLite or memory; the base64
  column only marks that a blob exists.
- A REST query or record GET returns the blob's URL for a base64 field; the bytes come from
  `GET /services/data/vXX.X/sobjects/<Object>/<Id>/<Field>`, streamed with the file's content type
  (REST API Developer Guide, "Get Blob Data":
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_blob_retrieve.htm).
  Bulk API refuses base64 fields (wide.check_bulk_query).
- Inserts and updates (Attachment, Document) take the base64 value in JSON or a multipart/form-data upload whose first part is the
  record's JSON (`entity_content`, `entity_document`, ...) and whose second part, named after the blob
  field, holds the bytes (REST API Developer Guide, "Insert or Update Blob Data":
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_insert_update_blob.htm).
- A ContentVersion insert without ContentDocumentId creates its ContentDocument (and links it to the
  owner and to FirstPublishLocationId); with ContentDocumentId it is a new version: VersionNumber + 1,
  it becomes IsLatest and the document's LatestPublishedVersionId. ContentDocumentLink links a document
  to records (LinkedEntityId, ShareType, Visibility). Deleting the ContentDocument deletes its versions
  and links (Object Reference: ContentDocument, ContentVersion, ContentDocumentLink).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
from starlette.responses import FileResponse, Response

from .errors import SalesforceError, entity_is_deleted, not_found
from .schema import FieldDef, ObjectDef, Schema
from .store import OrgStore, coerce, q

BLOB_FIELDS = {"Attachment": "Body", "Document": "Body", "ContentVersion": "VersionData"}
MAX_JSON_BLOB = 50 * 1024 * 1024  # "Insert or Update Blob Data": 50 MB in JSON, 2 GB for ContentVersion multipart


def _set(obj: ObjectDef, name: str, **changes: Any) -> None:
    for i, f in enumerate(obj.fields):
        if f.name == name:
            new = dataclasses.replace(f, **changes)
            obj.fields[i] = new
            obj.by_lower[new.lower] = new
            if new.relationship_name:
                obj.by_relationship[new.relationship_name.lower()] = new
            return


def prepare_schema(schema: Schema) -> None:
    """Field properties of the file objects as real orgs describe them (computed fields are read-only)."""
    ro = dict(createable=False, updateable=False)
    att = schema.find("Attachment")
    if att is not None:
        _set(att, "Body", createable=True, updateable=True)
        _set(att, "BodyLength", type="int", precision=0, **ro)
        _set(att, "ParentId", updateable=False)
        _set(att, "OwnerId", defaulted_on_create=True)
    doc = schema.find("Document")
    if doc is not None:
        _set(doc, "Body", createable=True, updateable=True)
        _set(doc, "BodyLength", type="int", precision=0, nillable=True, **ro)
        _set(doc, "AuthorId", defaulted_on_create=True)
        _set(doc, "DeveloperName", defaulted_on_create=True)
        # Object Reference, "Document": FolderId is "the ID of the Folder that contains the document" (a user's
        # ID for the user's personal folder), not the catalog's any-object lookup; a Folder that still holds
        # documents cannot be deleted (Salesforce Help on folders: "You can only delete a folder which is empty", as
        # summarized at sudipta-deb.in/2015/01/admin-notes-what-folder-can-do-in-salesforce.html; Object Reference,
        # "Folder": delete() but no undelete(); test_devorg_documents.py)
        _set(doc, "FolderId", reference_to=("Folder", "User"), cascade_delete=False, restricted_delete=True)
    cv = schema.find("ContentVersion")
    if cv is not None:
        for name in (
            "Checksum",
            "ContentBodyId",
            "ContentModifiedById",
            "ContentModifiedDate",
            "ContentSize",
            "FileExtension",
            "FileType",
            "IsLatest",
            "VersionNumber",
            "PublishStatus",
            "TextPreview",
            "RatingCount",
            "PositiveRatingCount",
            "NegativeRatingCount",
            "IsAssetEnabled",
            "FeaturedContentBoost",
            "FeaturedContentDate",
        ):
            _set(cv, name, nillable=True, **ro)
        _set(cv, "ContentSize", type="int", precision=0)
        for name in ("ContentLocation", "Origin", "SharingOption", "SharingPrivacy", "IsMajorVersion", "OwnerId"):
            _set(cv, name, defaulted_on_create=True, nillable=True)
        _set(cv, "ContentDocumentId", nillable=True, updateable=False, cascade_delete=True)
        _set(cv, "VersionData", createable=True, updateable=False)
        _set(cv, "Title", nillable=True)  # defaulted from PathOnClient
        _set(cv, "FirstPublishLocationId", updateable=False)
    cd = schema.find("ContentDocument")
    if cd is not None:
        for name in ("PublishStatus", "OwnerId", "IsArchived"):
            _set(cd, name, nillable=True)
        _set(cd, "ContentSize", type="int", precision=0)
    cdl = schema.find("ContentDocumentLink")
    if cdl is not None:
        _set(cdl, "ContentDocumentId", updateable=False, cascade_delete=True)
        _set(cdl, "LinkedEntityId", updateable=False, cascade_delete=True)
        _set(cdl, "ShareType", nillable=True, defaulted_on_create=True)
        _set(cdl, "Visibility", nillable=True, defaulted_on_create=True)
    schema.__dict__.pop("_references_cache", None)


# ====================================================================== blobs on disk
class BlobStore:
    """Blob files under `<data dir>/blobs/<key prefix>/<record id>.<field>`."""

    def __init__(self, data_dir: Path | None):
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="devorg-blobs-")
            root = Path(self._tmp.name)
        else:
            root = Path(data_dir) / "blobs"
        self.root = root

    def path(self, record_id: str, field: str) -> Path:
        return self.root / record_id[:3] / f"{record_id}.{field}"

    def write(self, record_id: str, field: str, data: bytes) -> Path:
        path = self.path(record_id, field)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def blobs(org: Any) -> BlobStore:
    store = getattr(org, "_blobs", None)
    if store is None:
        store = org._blobs = BlobStore(org.data_dir)
    return store


# ====================================================================== reading
def blob_response(org: Any, obj: ObjectDef, record_id: str, field: FieldDef) -> Response:
    """GET /sobjects/<Object>/<Id>/<Field>: the blob's bytes, streamed with its content type."""
    rid = org.store.resolve_id(obj, record_id)
    with org.store.lock:
        row = org.store._row(obj, rid)
    if row is None:
        raise not_found()
    if row.get("IsDeleted"):
        raise entity_is_deleted()
    path = blobs(org).path(rid, field.name)
    if row.get(field.name) is None or not path.exists():
        raise not_found()
    return FileResponse(path, media_type=content_type(row))


def content_type(row: dict[str, Any]) -> str:
    if row.get("ContentType"):
        return row["ContentType"]
    name = row.get("PathOnClient") or row.get("Name") or ""
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


# ====================================================================== writing
async def read_insert_body(request: Any, obj: ObjectDef) -> tuple[dict[str, Any], bytes | None]:
    """(field values, blob bytes) from a JSON body or a multipart upload ("Insert or Update Blob Data")."""
    blob_field = BLOB_FIELDS[obj.name]
    ctype = request.headers.get("content-type", "")
    if ctype.lower().startswith("multipart/"):
        form = await request.form(max_part_size=2 * 1024**3)
        values: dict[str, Any] | None = None
        data: bytes | None = None
        for key, part in form.multi_items():
            if key.lower().startswith("entity_"):
                raw = await part.read() if hasattr(part, "read") else part.encode()
                try:
                    values = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise SalesforceError("JSON_PARSER_ERROR", f"Unexpected character in {key}: {exc}") from None
            elif key.lower() == blob_field.lower():
                data = await part.read() if hasattr(part, "read") else part.encode()
        if not isinstance(values, dict):
            raise SalesforceError(
                "MALFORMED_REQUEST",
                "Multipart message must include a non-binary part named "
                "entity_content (or entity_document, entity_attachment) holding the JSON",
            )
        if data is None:
            raise SalesforceError(
                "MALFORMED_REQUEST", f"Multipart message must include a binary part named {blob_field}"
            )
        return values, data
    raw = await request.body()
    try:
        values = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise SalesforceError("JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from None
    if not isinstance(values, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "The request body must be a JSON object")
    encoded = next((v for k, v in values.items() if k.lower() == blob_field.lower()), None)
    values = {k: v for k, v in values.items() if k.lower() != blob_field.lower()}
    if encoded is None:
        return values, None
    if not isinstance(encoded, str):
        raise SalesforceError("JSON_PARSER_ERROR", f"Cannot deserialize instance of base64 from {blob_field}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SalesforceError(
            "JSON_PARSER_ERROR", f"Cannot deserialize instance of base64 from {blob_field}: not valid base64"
        ) from None
    if len(data) > MAX_JSON_BLOB:
        raise SalesforceError(
            "STRING_TOO_LONG", f"{blob_field}: data value too large (max 50 MB in JSON; use a multipart upload)"
        )
    return values, data


def insert_with_blob(org: Any, obj: ObjectDef, values: dict[str, Any], data: bytes | None, user_id: str) -> str:
    """Insert an Attachment, Document or ContentVersion with its bytes (see the module docstring)."""
    store: OrgStore = org.store
    blob_field = BLOB_FIELDS[obj.name]
    if data is None and obj.name != "Document":
        raise SalesforceError(
            "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{blob_field}]", fields=[blob_field]
        )
    with store.lock, store.transaction():
        if obj.name == "ContentVersion":
            rid = _insert_content_version(org, obj, values, data or b"", user_id)
        else:
            extra: dict[str, Any] = {}
            if obj.name == "Document":
                extra["DeveloperName"] = values.get("DeveloperName") or _developer_name(values.get("Name"))
                extra["AuthorId"] = values.get("AuthorId") or user_id
                _unique_developer_name(store, obj, extra["DeveloperName"])
            if data is not None:
                extra[blob_field] = blob_field  # the column marks that the blob exists
            rid = store.insert(obj, {**values, **extra}, user_id)
            store.conn.execute(f"UPDATE {q(obj.name)} SET BodyLength = ? WHERE Id = ?", (len(data or b""), rid))
        if data is not None:
            blobs(org).write(rid, blob_field, data)
            store.conn.execute(f"UPDATE {q(obj.name)} SET {q(blob_field)} = ? WHERE Id = ?", (blob_field, rid))
        return rid


def update_with_blob(
    org: Any, obj: ObjectDef, record_id: str, values: dict[str, Any], data: bytes | None, user_id: str
) -> str:
    """PATCH of an Attachment or Document, optionally with new bytes; a ContentVersion's bytes never change
    (upload a new version with its ContentDocumentId instead)."""
    store: OrgStore = org.store
    blob_field = BLOB_FIELDS[obj.name]
    if data is not None and obj.name == "ContentVersion":
        raise SalesforceError(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            "Unable to create/update fields: VersionData. "
            "Please check the security settings of this field and verify that it is read/write "
            "for your profile or permission set.",
            fields=["VersionData"],
        )
    with store.lock, store.transaction():
        if data is not None:
            values = {**values, blob_field: blob_field}
        rid = store.update(obj, record_id, values, user_id)
        if data is not None:
            blobs(org).write(rid, blob_field, data)
            store.conn.execute(f"UPDATE {q(obj.name)} SET BodyLength = ? WHERE Id = ?", (len(data), rid))
        return rid


def _unique_developer_name(store: OrgStore, obj: ObjectDef, name: Any) -> None:
    """Object Reference, "Document": DeveloperName "must be unique in your org" (checked against the live
    documents; a purged or binned one does not hold its name here)."""
    if (
        name
        and store.conn.execute(
            f"SELECT 1 FROM {q(obj.name)} WHERE DeveloperName = ? AND IsDeleted = 0", (name,)
        ).fetchone()
    ):
        raise SalesforceError(
            "DUPLICATE_DEVELOPER_NAME", f"The Document Unique Name {name!r} is already in use", fields=["DeveloperName"]
        )


def _developer_name(name: Any) -> str | None:
    if not name:
        return None
    return "".join(ch if ch.isalnum() else "_" for ch in str(name))[:80]


def _file_type(path: str | None) -> tuple[str, str | None]:
    ext = Path(path or "").suffix.lstrip(".").lower() or None
    if ext is None:
        return "UNKNOWN", None
    return {
        "jpg": "JPG",
        "jpeg": "JPEG",
        "txt": "TEXT",
        "htm": "HTML",
        "xlsx": "EXCEL_X",
        "xls": "EXCEL",
        "docx": "WORD_X",
        "doc": "WORD",
        "pptx": "POWER_POINT_X",
        "ppt": "POWER_POINT",
    }.get(ext, ext.upper()), ext


def _insert_content_version(org: Any, obj: ObjectDef, values: dict[str, Any], data: bytes, user_id: str) -> str:
    store: OrgStore = org.store
    schema: Schema = org.schema
    path_on_client = values.get("PathOnClient")
    if not path_on_client:
        raise SalesforceError(
            "REQUIRED_FIELD_MISSING", "Required fields are missing: [PathOnClient]", fields=["PathOnClient"]
        )
    values = dict(values)
    values.setdefault("Title", Path(str(path_on_client)).stem)
    doc_obj = schema.get("ContentDocument")
    doc_id = values.get("ContentDocumentId")
    now = store.now()
    file_type, ext = _file_type(str(path_on_client))
    if doc_id:
        doc_id = store.resolve_id(doc_obj, doc_id)
        doc = store._row(doc_obj, doc_id)
        if doc is None or doc.get("IsDeleted"):
            raise SalesforceError(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", fields=["ContentDocumentId"]
            )
        if values.get("FirstPublishLocationId"):
            raise SalesforceError(
                "FIELD_INTEGRITY_EXCEPTION",
                "FirstPublishLocationId can be set only on the first version of a document",
                fields=["FirstPublishLocationId"],
            )
        number = (
            store.conn.execute(
                "SELECT max(CAST(VersionNumber AS INTEGER)) FROM ContentVersion WHERE ContentDocumentId = ?", (doc_id,)
            ).fetchone()[0]
            or 0
        )
        values.pop("ContentDocumentId")
        rid = store.insert(obj, values, user_id)
        store.conn.execute("UPDATE ContentVersion SET IsLatest = 0 WHERE ContentDocumentId = ?", (doc_id,))
    else:
        number = 0
        rid = store.insert(obj, values, user_id)
        doc_id = store.new_id(doc_obj)
        row = {
            "Id": doc_id,
            "IsDeleted": 0,
            "Title": values["Title"],
            "OwnerId": user_id,
            "PublishStatus": "R",
            "IsArchived": 0,
            "CreatedDate": now,
            "CreatedById": user_id,
            "LastModifiedDate": now,
            "LastModifiedById": user_id,
            "SystemModstamp": now,
            "ParentId": None,
        }
        cols = [k for k in row if doc_obj.has_field(k)]
        store.conn.execute(
            f"INSERT INTO ContentDocument ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )
        link_obj = schema.get("ContentDocumentLink")
        targets = [user_id] + ([values["FirstPublishLocationId"]] if values.get("FirstPublishLocationId") else [])
        for target in targets:
            store.conn.execute(
                "INSERT INTO ContentDocumentLink (Id, IsDeleted, ContentDocumentId, LinkedEntityId, ShareType, "
                "Visibility, SystemModstamp) VALUES (?, 0, ?, ?, 'I', 'AllUsers', ?)",
                (store.new_id(link_obj), doc_id, coerce(link_obj, link_obj.field("LinkedEntityId"), target), now),
            )
    store.conn.execute(
        "UPDATE ContentVersion SET ContentDocumentId = ?, VersionNumber = ?, IsLatest = 1, ContentSize = ?, "
        "Checksum = ?, FileType = ?, FileExtension = ?, ContentModifiedDate = ?, ContentModifiedById = ?, "
        "ContentLocation = coalesce(ContentLocation, 'S'), Origin = coalesce(Origin, 'C'), PublishStatus = 'R', "
        "SharingOption = coalesce(SharingOption, 'A'), SharingPrivacy = coalesce(SharingPrivacy, 'N'), "
        "IsMajorVersion = 1 WHERE Id = ?",
        (doc_id, str(number + 1), len(data), hashlib.md5(data).hexdigest(), file_type, ext, now, user_id, rid),
    )
    store.conn.execute(
        "UPDATE ContentDocument SET LatestPublishedVersionId = ?, Title = ?, ContentSize = ?, FileType = ?, "
        "FileExtension = ?, ContentModifiedDate = ?, LastModifiedDate = ?, LastModifiedById = ?, "
        "SystemModstamp = ? WHERE Id = ?",
        (rid, values["Title"], len(data), file_type, ext, now, now, user_id, now, doc_id),
    )
    return rid


def insert_link(org: Any, values: dict[str, Any], user_id: str) -> str:
    """A ContentDocumentLink: ShareType defaults to V (viewer), Visibility to AllUsers."""
    obj = org.schema.get("ContentDocumentLink")
    values = dict(values)
    values.setdefault("ShareType", "V")
    values.setdefault("Visibility", "AllUsers")
    if values["ShareType"] not in ("V", "C", "I"):
        raise SalesforceError(
            "FIELD_INTEGRITY_EXCEPTION", f"Share Type: bad value: {values['ShareType']}", fields=["ShareType"]
        )
    if values["Visibility"] not in ("AllUsers", "InternalUsers", "SharedUsers"):
        raise SalesforceError(
            "FIELD_INTEGRITY_EXCEPTION", f"Visibility: bad value: {values['Visibility']}", fields=["Visibility"]
        )
    store: OrgStore = org.store
    with store.lock, store.transaction():
        doc = values.get("ContentDocumentId")
        target = values.get("LinkedEntityId")
        if (
            doc
            and target
            and store.conn.execute(
                "SELECT 1 FROM ContentDocumentLink WHERE ContentDocumentId = ? AND LinkedEntityId = ? AND "
                "IsDeleted = 0",
                (doc, target),
            ).fetchone()
        ):
            raise SalesforceError(
                "DUPLICATE_VALUE",
                "Document with ID: " + str(doc) + " is already linked with the entity with ID: " + str(target),
                fields=[],
            )
        return store.insert(obj, values, user_id)
