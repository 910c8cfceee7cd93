"""Restoring deleted files: ContentDocuments (with their versions and links), Attachments and Documents.

A file restore is a restore config on `ContentDocument`, `ContentVersion` (its document is restored),
`Attachment` or `Document`, with the same two runs as any restore: a dry run that stores its plan, then the same config with
`dry_run: false` and `plan: <the dry run's run id>` that writes exactly that plan.

Per file the plan says what brings it back as it was at `as_of`:
- `noop`: the org holds it (not deleted);
- `undelete`: it is in the org's recycle bin: undeleting brings back the same record (for a document: its id,
  every version and every link), as Salesforce keeps them there for 15 days;
- `recreate`: it is gone from the org (purged, hard-deleted, or another org): the version(s) valid at `as_of`
  are uploaded again from the blob store, oldest first (the first makes a new ContentDocument, the next ones
  are new versions of it), and the links the backup saw are recreated, linked record ids translated through
  `sf_pipeline.id_map` when the target is another org; an attachment is recreated on its (translated) parent, a
  Document in its (translated) Folder with its name, DeveloperName, type and flags (a Document that is a link,
  `Url` and no `Body`, is recreated from its record alone);
- `conflict` (Document only): it cannot be re-created as it was because the org changed: another Document now
  holds its `DeveloperName` (unique in an org), or its Folder is gone (Folders have no undelete); nothing is
  written, the reason says what to fix before planning again;
- `not_restorable`: the backup holds no body for it at `as_of` (with the reason).
Document semantics from the Object Reference ("Document": FolderId required, the ID of the Folder that contains
the document, or a user's ID for the user's personal folder; Body required unless Url is given; DeveloperName
unique in the org; supported calls include undelete(), so a deleted Document waits in the recycle bin;
"Folder": supported calls without undelete()):
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_document.htm
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_folder.htm
Every written file is verified by hash: its bytes are read back from the org and must hash to the backed-up
SHA-256. Items, new ids, outcomes and verification are kept in `sf_pipeline.file_restore_items` (the audit);
`undo_of: <apply run id>` deletes what that run re-created and deletes again what it undeleted.
No Dagster here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from sf_pipeline.blobs import BlobStore
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.errors import RestoreConfigError, RestoreError
from sf_pipeline.restore.tables import apply_lock, ensure_restore_tables
from sf_pipeline.salesforce import soql
from sf_pipeline.salesforce.blobs import insert_with_blob, open_blob
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.errors import BlobUnavailable
from sf_pipeline.salesforce.writes import create_records, undelete
from sf_pipeline.warehouse.files import links_of
from sf_pipeline.warehouse.id_map import lookup_id_map, save_id_map
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, qualified

FILE_OBJECTS = ("ContentDocument", "ContentVersion", "Attachment", "Document")
RECORD_FILES = ("Attachment", "Document")  # one record, one body (no versions, no links)
NOOP, UNDELETE, RECREATE, NOT_RESTORABLE = "noop", "undelete", "recreate", "not_restorable"
CONFLICT = "conflict"
DELETE_AGAIN, DELETE_COPY = "delete_again", "delete_copy"  # undo
USER_PREFIX = "005"
_CV_COPIED = ("title", "pathonclient", "description", "reasonforchange")
_ATT_COPIED = ("name", "contenttype", "description", "isprivate")
_DOC_COPIED = {
    "name": "Name",
    "developername": "DeveloperName",
    "contenttype": "ContentType",
    "type": "Type",
    "description": "Description",
    "keywords": "Keywords",
    "ispublic": "IsPublic",
    "isinternaluseonly": "IsInternalUseOnly",
    "isbodysearchable": "IsBodySearchable",
    "url": "Url",
}
FOLDER_PREFIX = "00l"

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sf_pipeline",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.file_restore_plans (
        run_id text PRIMARY KEY,
        object text NOT NULL,
        target_org text NOT NULL,
        source_org text NOT NULL,
        config jsonb NOT NULL,
        status text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS sf_pipeline.file_restore_items (
        run_id text NOT NULL,
        seq int NOT NULL,
        object text NOT NULL,
        source_id varchar(18) NOT NULL,
        target_id varchar(18),
        action text NOT NULL,
        reason text,
        detail jsonb NOT NULL,
        new_id varchar(18),
        outcome text,
        verified boolean,
        PRIMARY KEY (run_id, seq))""",
]


def is_file_restore(config: RestoreConfig) -> bool:
    return config.object in FILE_OBJECTS


def ensure_file_restore_tables(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x5F_4652_4553_5421,))
        for statement in _DDL:
            conn.execute(statement)


@dataclass
class FileItem:
    """One file of a plan: what to do, and what the backup holds for it."""

    object: str  # ContentDocument | Attachment | Document
    source_id: str
    action: str
    reason: str = ""
    target_id: str | None = None  # the id in the target org (the same id, or the id map's)
    detail: dict[str, Any] = field(default_factory=dict)  # versions / body, links, parent
    new_id: str | None = None
    outcome: str | None = None
    verified: bool | None = None


@dataclass
class FilePlan:
    run_id: str
    object: str
    target_org: str
    source_org: str
    items: list[FileItem]
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.action] = out.get(item.action, 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        lines = ["| file | action | versions | bytes | links | reason |", "|---|---|---|---|---|---|"]
        for item in self.items[:50]:
            versions = item.detail.get("versions") or ([item.detail["body"]] if item.detail.get("body") else [])
            lines.append(
                f"| {item.object} {item.source_id} | {item.action} | {len(versions)} | "
                f"{sum(v.get('size') or 0 for v in versions):,} | {len(item.detail.get('links') or [])} | "
                f"{item.reason or ''} |"
            )
        return {
            "object": self.object,
            "records": len(self.items),
            "counts": self.counts(),
            "records_to_write": sum(i.action in (UNDELETE, RECREATE, DELETE_AGAIN, DELETE_COPY) for i in self.items),
            "preview": "\n".join(lines),
            "notes": self.notes,
        }


# ====================================================================== planning
def _history(conn: psycopg.Connection[Any], sobject: str, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    table = sobject.lower()
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{HISTORY_SCHEMA}"."{table}"',)).fetchone()[0]:
        raise RestoreConfigError(
            f"{sobject} is not backed up (no {HISTORY_SCHEMA}.{table}): add it to backup.objects to restore its files"
        )
    cur = conn.execute(
        sql.SQL("SELECT * FROM {} WHERE " + where + " ORDER BY dbt_valid_from").format(
            qualified(HISTORY_SCHEMA, table)
        ),
        params,
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _valid_at(rows: Sequence[dict[str, Any]], moment: datetime) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r["dbt_valid_from"] <= moment
        and (r["dbt_valid_to"] is None or r["dbt_valid_to"] > moment)
        and not r.get("isdeleted")
    ]


def _selected(conn: psycopg.Connection[Any], config: RestoreConfig) -> list[str]:
    """Source ids of the files the config selects: documents (ContentDocument/ContentVersion), attachments or
    Documents."""
    document = config.object not in RECORD_FILES
    history_object = "ContentVersion" if document else config.object
    ids: list[str] = []
    for rid in config.record_ids:
        if document and rid.startswith("068"):
            rows = _history(conn, "ContentVersion", "id = %s", (rid,))
            if not rows:
                raise RestoreConfigError(f"record_ids: ContentVersion {rid} is not in the backup")
            ids.append(rows[-1]["contentdocumentid"])
        else:
            ids.append(rid)
    if config.changed_between is not None:
        start, end = config.changed_between
        where = "isdeleted AND dbt_valid_from >= %s AND dbt_valid_from < %s"
        params: list[Any] = [start, end]
        if config.changed_by:
            where += " AND lastmodifiedbyid = %s"
            params.append(config.changed_by)
        for row in _history(conn, history_object, where, params):
            ids.append(row["contentdocumentid"] if document else row["id"])
    return list(dict.fromkeys(ids))


def _document_detail(
    conn: psycopg.Connection[Any], store: BlobStore, document_id: str, as_of: datetime
) -> tuple[dict[str, Any], str]:
    versions = _valid_at(_history(conn, "ContentVersion", "contentdocumentid = %s", (document_id,)), as_of)
    if not versions:
        return {}, f"the backup has no live version of this document at {as_of.isoformat()}"
    versions.sort(key=lambda r: (int(r.get("versionnumber") or 0), r["dbt_valid_from"]))
    out = []
    for v in versions:
        sha, size = (v.get("_sfp_versiondata_sha256") or "").strip(), v.get("_sfp_versiondata_size")
        if not sha:
            return {}, f"version {v['id']} has no body in the backup (the org had none to give when backed up)"
        if store.size(sha) != size:
            return {}, f"the body of version {v['id']} ({sha}) is missing from the {store.description}"
        out.append(
            {
                "id": v["id"],
                "version_number": v.get("versionnumber"),
                "sha256": sha,
                "size": size,
                "values": {k: v.get(k) for k in _CV_COPIED if v.get(k) is not None},
            }
        )
    links = [
        {**link, "first_seen": link["first_seen"].isoformat(), "last_seen": link["last_seen"].isoformat()}
        for link in links_of(conn, document_id)
        if not link["linked_entity_id"].startswith(USER_PREFIX)
    ]
    return {"versions": out, "links": links}, ""


def _attachment_detail(
    conn: psycopg.Connection[Any], store: BlobStore, attachment_id: str, as_of: datetime
) -> tuple[dict[str, Any], str]:
    rows = _valid_at(_history(conn, "Attachment", "id = %s", (attachment_id,)), as_of)
    if not rows:
        return {}, f"the backup has no live version of this attachment at {as_of.isoformat()}"
    row = rows[-1]
    sha, size = (row.get("_sfp_body_sha256") or "").strip(), row.get("_sfp_body_size")
    if not sha:
        return {}, "this version has no body in the backup (the org had none to give when backed up)"
    if store.size(sha) != size:
        return {}, f"its body ({sha}) is missing from the {store.description}"
    return {
        "body": {"sha256": sha, "size": size},
        "parent_id": row.get("parentid"),
        "values": {k: row.get(k) for k in _ATT_COPIED if row.get(k) is not None},
    }, ""


def _document_record_detail(
    conn: psycopg.Connection[Any], store: BlobStore, document_id: str, as_of: datetime
) -> tuple[dict[str, Any], str]:
    """A Document (Document.Body, not Files): its body, Folder and the fields it is re-created with."""
    rows = _valid_at(_history(conn, "Document", "id = %s", (document_id,)), as_of)
    if not rows:
        return {}, f"the backup has no live version of this Document at {as_of.isoformat()}"
    row = rows[-1]
    values = {k: row.get(k) for k in _DOC_COPIED if row.get(k) is not None}
    sha, size = (row.get("_sfp_body_sha256") or "").strip(), row.get("_sfp_body_size")
    detail: dict[str, Any] = {
        "body": None,
        "folder_id": row.get("folderid"),
        "author_id": row.get("authorid"),
        "values": values,
    }
    if sha:
        if store.size(sha) != size:
            return {}, f"its body ({sha}) is missing from the {store.description}"
        detail["body"] = {"sha256": sha, "size": size}
        values.pop("url", None)  # Body or Url, never both (Object Reference: Document)
    elif not row.get("url"):
        return {}, "this version has no body in the backup (the org had none to give when backed up)"
    return detail, ""


def _document_conflicts(client: SalesforceClient, items: Sequence[FileItem], id_map: Mapping[str, str]) -> None:
    """Documents to re-create whose Folder is gone from the org, or whose DeveloperName another Document took."""
    todo = [i for i in items if i.action == RECREATE]
    folders = {
        id_map.get(i.detail["folder_id"], i.detail["folder_id"])
        for i in todo
        if str(i.detail.get("folder_id") or "").startswith(FOLDER_PREFIX)
    }
    alive: set[str] = set()
    folder_list = sorted(folders)
    for n in range(0, len(folder_list), 200):
        for page in client.query_pages(
            f"SELECT Id FROM Folder WHERE Id IN ({soql.id_list(folder_list[n : n + 200])})", include_deleted=False
        ):
            alive.update(r["Id"] for r in page)
    names = sorted({i.detail["values"]["developername"] for i in todo if i.detail["values"].get("developername")})
    taken: dict[str, str] = {}
    for n in range(0, len(names), 100):
        # a DeveloperName is letters, digits and single underscores (Object Reference: Document), an API name's shape
        quoted = ", ".join(f"'{soql.api_name(name, 'DeveloperName')}'" for name in names[n : n + 100])
        for page in client.query_pages(
            f"SELECT Id, DeveloperName FROM Document WHERE DeveloperName IN ({quoted})", include_deleted=False
        ):
            taken.update({r["DeveloperName"]: r["Id"] for r in page})
    for item in todo:
        folder = id_map.get(item.detail["folder_id"], item.detail["folder_id"])
        name = item.detail["values"].get("developername")
        if folder in folders and folder not in alive:
            item.action, item.reason = (
                CONFLICT,
                (
                    f"its Folder {folder} is gone from the org (a Folder cannot be "
                    "undeleted): re-create the folder, map it in sf_pipeline.id_map, "
                    "and plan again"
                ),
            )
        elif name in taken:
            item.action, item.reason = (
                CONFLICT,
                (
                    f"Document {taken[name]} in the org now holds its DeveloperName "
                    f"{name!r} (unique in an org): rename or delete that one, then "
                    "plan again"
                ),
            )


def _org_state(client: SalesforceClient, sobject: str, ids: Sequence[str]) -> dict[str, bool]:
    """id -> IsDeleted for the ids the org still holds (recycle bin included); purged ones are absent."""
    state: dict[str, bool] = {}
    for i in range(0, len(ids), 200):
        chunk = ids[i : i + 200]
        if not chunk:
            continue
        soql_text = f"SELECT Id, IsDeleted FROM {sobject} WHERE Id IN ({soql.id_list(chunk)})"
        for page in client.query_pages(soql_text, include_deleted=True):
            for rec in page:
                state[rec["Id"]] = bool(rec.get("IsDeleted"))
    return state


def plan_file_restore(
    conn: psycopg.Connection[Any],
    client: SalesforceClient,
    config: RestoreConfig,
    run_id: str,
    store: BlobStore,
    *,
    source_org: str,
) -> FilePlan:
    """The dry run: what brings each selected file back as of `config.as_of`; stored under `run_id`."""
    ensure_restore_tables(conn)
    ensure_file_restore_tables(conn)
    sobject = config.object if config.object in RECORD_FILES else "ContentDocument"
    plan = FilePlan(run_id, sobject, config.target_org, source_org, [])
    if config.undo_of:
        plan.items = _undo_items(conn, client, config.undo_of, sobject)
        plan.notes.append(f"undo of {config.undo_of}: re-created files are deleted, undeleted ones deleted again")
    else:
        assert config.as_of is not None
        ids = _selected(conn, config)
        if not ids:
            raise RestoreConfigError(
                f"the selection finds no deleted {sobject} in the backup: give record_ids, or a "
                "changed_between interval that holds the deletions"
            )
        id_map = _pairs(conn, source_org, config.target_org, ids)
        if id_map or config.target_org != source_org:
            plan.notes.append(f"ids translated from {source_org} to {config.target_org} through sf_pipeline.id_map")
        targets = {i: (id_map.get(i) if config.target_org != source_org else i) for i in ids}
        # a file an earlier restore re-created in this org is that copy now: never uploaded twice
        copies = _earlier_copies(conn, config.target_org, sobject, ids)
        targets.update(copies)
        state = _org_state(client, sobject, [t for t in targets.values() if t])
        for source_id in ids:
            detail, why = {
                "ContentDocument": _document_detail,
                "Attachment": _attachment_detail,
                "Document": _document_record_detail,
            }[sobject](conn, store, source_id, config.as_of)
            target = targets[source_id]
            item = FileItem(sobject, source_id, NOT_RESTORABLE, why, target_id=target, detail=detail)
            if not why:
                if target in state and not state[target]:
                    item.action, item.reason = (
                        NOOP,
                        (
                            "the org holds it (not deleted)"
                            if source_id not in copies
                            else f"re-created earlier as {target}, which the org holds"
                        ),
                    )
                elif target in state:
                    item.action, item.reason = UNDELETE, "in the org's recycle bin: undeleted as it is"
                else:
                    item.action, item.reason = RECREATE, "gone from the org: uploaded again from the backup"
            plan.items.append(item)
        if sobject == "Document":
            folders = _pairs(conn, source_org, config.target_org, _referenced(plan.items))
            _document_conflicts(client, plan.items, {**id_map, **folders})
    _save(conn, plan, config)
    return plan


def _pairs(conn: psycopg.Connection[Any], source_org: str, target_org: str, ids: Iterable[str]) -> dict[str, str]:
    """source id -> target id of `ids` when the files go to another org (read for them alone: the map between two
    orgs holds every record seeding copied); within one org ids stay as they are."""
    return lookup_id_map(conn, source_org, target_org, [i for i in ids if i]) if target_org != source_org else {}


def _referenced(items: Iterable[FileItem]) -> Iterator[str]:
    """The ids the files to re-create point to (parent, Folder, author, linked records), translated in another org."""
    for item in items:
        if item.action != RECREATE:
            continue
        for key in ("parent_id", "folder_id", "author_id"):
            if item.detail.get(key):
                yield item.detail[key]
        for link in item.detail.get("links") or []:
            yield link["linked_entity_id"]


def _earlier_copies(conn: psycopg.Connection[Any], target_org: str, sobject: str, ids: Sequence[str]) -> dict[str, str]:
    """source id -> the copy the latest applied restore re-created of it in `target_org`."""
    rows = conn.execute(
        "SELECT DISTINCT ON (i.source_id) i.source_id, i.new_id FROM sf_pipeline.file_restore_items i "
        "JOIN sf_pipeline.file_restore_plans p USING (run_id) WHERE p.target_org = %s AND i.object = %s "
        "AND i.outcome = 'recreated' AND i.source_id = ANY(%s) ORDER BY i.source_id, p.created_at DESC",
        (target_org, sobject, list(ids)),
    ).fetchall()
    return {source: new for source, new in rows if new}


def _save(conn: psycopg.Connection[Any], plan: FilePlan, config: RestoreConfig, status: str | None = None) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO sf_pipeline.file_restore_plans (run_id, object, target_org, source_org, config, "
            "status) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET status = "
            "EXCLUDED.status",
            (
                plan.run_id,
                plan.object,
                plan.target_org,
                plan.source_org,
                Jsonb(_config_json(config)),
                status or ("planned" if config.dry_run else "applying"),
            ),
        )
        conn.execute("DELETE FROM sf_pipeline.file_restore_items WHERE run_id = %s", (plan.run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sf_pipeline.file_restore_items (run_id, seq, object, source_id, target_id, action, "
                "reason, detail, new_id, outcome, verified) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        plan.run_id,
                        n,
                        i.object,
                        i.source_id,
                        i.target_id,
                        i.action,
                        i.reason,
                        Jsonb(i.detail),
                        i.new_id,
                        i.outcome,
                        i.verified,
                    )
                    for n, i in enumerate(plan.items)
                ],
            )
    conn.commit()


def _config_json(config: RestoreConfig) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {
                "object": config.object,
                "as_of": config.as_of.isoformat() if config.as_of else None,
                "record_ids": list(config.record_ids),
                "target_org": config.target_org,
                "undo_of": config.undo_of,
                "changed_between": [m.isoformat() for m in config.changed_between] if config.changed_between else None,
                "changed_by": config.changed_by,
                "dry_run": config.dry_run,
                "plan": config.plan,
            }
        )
    )


def load_file_plan(conn: psycopg.Connection[Any], config: RestoreConfig, run_id: str) -> FilePlan:
    """The dry run's stored plan, to be applied as reviewed (the same config, dry_run: false, plan: <its id>)."""
    ensure_file_restore_tables(conn)
    row = conn.execute(
        "SELECT object, target_org, source_org, config FROM sf_pipeline.file_restore_plans WHERE run_id = %s",
        (config.plan,),
    ).fetchone()
    if row is None:
        raise RestoreConfigError(
            f"plan: there is no file restore dry run {config.plan!r}; launch the config with "
            "dry_run: true first and give its run id"
        )
    stored = dict(row[3])
    if stored.get("dry_run") is not True:
        raise RestoreConfigError(f"plan: run {config.plan!r} is not a dry run")
    asked = _config_json(config)
    differ = sorted(
        k for k in set(stored) | set(asked) if k not in ("dry_run", "plan") and stored.get(k) != asked.get(k)
    )
    if differ:
        raise RestoreConfigError(
            f"plan: this config is not the one dry run {config.plan!r} planned (it differs in "
            f"{', '.join(differ)}); apply a plan with its dry run's config"
        )
    items = [
        FileItem(r[0], r[1], r[2], r[3] or "", r[4], dict(r[5]))
        for r in conn.execute(
            "SELECT object, source_id, action, reason, target_id, detail FROM sf_pipeline.file_restore_items "
            "WHERE run_id = %s ORDER BY seq",
            (config.plan,),
        ).fetchall()
    ]
    return FilePlan(run_id, row[0], row[1], row[2], items)


# ====================================================================== applying
@dataclass
class FileApplyResult:
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    verified: int = 0
    links_created: int = 0
    bytes_uploaded: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def as_metadata(self, items: Sequence[FileItem]) -> dict[str, Any]:
        """What the run shows of the apply: outcomes, files whose bytes hash to the backup's, links and bytes
        written, and the id each file has in the target org (source id -> new id)."""
        return {
            "outcomes": self.outcomes,
            "verified_by_hash": self.verified,
            "links_created": self.links_created,
            "bytes_uploaded": self.bytes_uploaded,
            "new_ids": {i.source_id: i.new_id for i in items if i.new_id},
        }

    def shortfall(self, items: Sequence[FileItem]) -> str:
        """The files not restored as planned (the first 50), a line each with the org's error or `verify_failed`;
        empty when every file was."""
        bad = [i for i in items if i.outcome in ("failed", "verify_failed")]
        return "\n".join(f"- {i.source_id}: {self.failed.get(i.source_id, i.outcome)}" for i in bad[:50])


def _hash_in_org(client: SalesforceClient, sobject: str, record_id: str, field_name: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open_blob(client, sobject, record_id, field_name) as (chunks, _):
            for chunk in chunks:
                digest.update(chunk)
    except BlobUnavailable:
        return None
    return digest.hexdigest()


def apply_file_plan(
    conn: psycopg.Connection[Any], client: SalesforceClient, plan: FilePlan, store: BlobStore, config: RestoreConfig
) -> FileApplyResult:
    """Write the reviewed plan, verify each file by hash, and keep every outcome in the audit."""
    result = FileApplyResult()
    client.ensure_session()
    id_map = _pairs(conn, plan.source_org, plan.target_org, _referenced(plan.items))
    with apply_lock(conn, plan.target_org, plan.object, plan.run_id):
        _save(conn, plan, config, status="applying")
        todo = [i for i in plan.items if i.action in (UNDELETE, RECREATE, DELETE_AGAIN, DELETE_COPY)]
        # re-read: a file someone brought back (or deleted) since the dry run is not written unseen
        state = _org_state(client, plan.object, [i.target_id for i in todo if i.target_id])
        for item in plan.items:
            if item not in todo:
                item.outcome = item.action
                result.count(item.outcome)
                continue
            try:
                _apply_item(client, store, item, state, id_map, result)
            except Exception as exc:  # noqa: BLE001 - one file's failure is recorded; the others go on
                item.outcome = "failed"
                result.failed[item.source_id] = str(exc)[:500]
            result.count(item.outcome or "failed")
            result.verified += bool(item.verified)
        _save(conn, plan, config, status="applied" if not result.failed else "partly applied")
        recreated = {i.source_id: i.new_id for i in plan.items if i.action == RECREATE and i.new_id}
        if plan.target_org != plan.source_org and recreated:
            save_id_map(conn, plan.source_org, plan.target_org, plan.object, recreated)
    return result


def _apply_item(
    client: SalesforceClient,
    store: BlobStore,
    item: FileItem,
    state: Mapping[str, bool],
    id_map: Mapping[str, str],
    result: FileApplyResult,
) -> None:
    target = item.target_id
    if item.action in (UNDELETE, RECREATE) and target in state and not state[target]:
        item.outcome = "changed_since_plan"  # someone brought it back since the dry run
        return
    if item.action == UNDELETE:
        if target not in state:
            item.outcome = "changed_since_plan"  # purged since the dry run: make a new dry run (it re-creates)
            return
        [res] = undelete(client, [target])
        if not res.success:
            raise RestoreError(f"undelete refused: {res.errors}")
        item.new_id = target
        item.verified = _verify(client, item, target)
        item.outcome = "undeleted" if item.verified else "verify_failed"
    elif item.action == RECREATE:
        if item.object == "ContentDocument":
            _recreate_document(client, store, item, id_map, result)
        elif item.object == "Document":
            _recreate_document_record(client, store, item, id_map, result, same_org=target == item.source_id)
        else:
            _recreate_attachment(client, store, item, id_map, result)
        item.outcome = "recreated" if item.verified else "verify_failed"
    elif item.action in (DELETE_AGAIN, DELETE_COPY):
        if target not in state or state[target]:
            item.outcome = "already_deleted"
            return
        client.restful(f"sobjects/{item.object}/{soql.record_id(target)}", method="DELETE")
        item.outcome = "deleted"
        item.verified = True


def _verify(client: SalesforceClient, item: FileItem, record_id: str) -> bool:
    """The org's bytes hash to the backed-up SHA-256: the latest version of a document, or the attachment's body."""
    if item.object in RECORD_FILES:
        if item.detail.get("body") is None:  # a Document that is a link: its Url is what there is to check
            return client.restful(f"sobjects/Document/{soql.record_id(record_id)}").get("Url") == item.detail[
                "values"
            ].get("url")
        return _hash_in_org(client, item.object, record_id, "Body") == item.detail["body"]["sha256"]
    latest = next(
        iter(
            client.query_pages(
                f"SELECT Id FROM ContentVersion WHERE ContentDocumentId = '{soql.record_id(record_id)}' AND IsLatest = true",
                include_deleted=False,
            )
        ),
        [],
    )
    return (
        bool(latest)
        and _hash_in_org(client, "ContentVersion", latest[0]["Id"], "VersionData")
        == item.detail["versions"][-1]["sha256"]
    )


def _recreate_document(
    client: SalesforceClient, store: BlobStore, item: FileItem, id_map: Mapping[str, str], result: FileApplyResult
) -> None:
    document: str | None = None
    verified = True
    new_versions = []
    for version in item.detail["versions"]:
        values = dict(version["values"])
        values = {
            {
                "title": "Title",
                "pathonclient": "PathOnClient",
                "description": "Description",
                "reasonforchange": "ReasonForChange",
            }[k]: v
            for k, v in values.items()
        }
        if document:
            values["ContentDocumentId"] = document
        new_id, same = _upload(
            client,
            store,
            result,
            "ContentVersion",
            "VersionData",
            values,
            version,
            values.get("PathOnClient") or values.get("Title"),
        )
        verified &= same
        new_versions.append(new_id)
        if document is None:
            document = client.restful(f"sobjects/ContentVersion/{new_id}")["ContentDocumentId"]
    item.new_id = document
    item.detail["new_versions"] = new_versions
    links = []
    for link in item.detail.get("links") or []:
        entity = id_map.get(link["linked_entity_id"], link["linked_entity_id"])
        links.append(
            {
                "ContentDocumentId": document,
                "LinkedEntityId": entity,
                **({"ShareType": link["share_type"]} if link.get("share_type") else {}),
                **({"Visibility": link["visibility"]} if link.get("visibility") else {}),
            }
        )
    made = create_records(client, "ContentDocumentLink", links) if links else []
    failed_links = [
        f"{link['LinkedEntityId']}: {res.errors}" for link, res in zip(links, made, strict=True) if not res.success
    ]
    result.links_created += sum(res.success for res in made)
    item.detail["new_links"] = [res.id for res in made if res.success]
    if failed_links:
        item.detail["links_not_recreated"] = failed_links
    item.verified = verified


def _recreate_attachment(
    client: SalesforceClient, store: BlobStore, item: FileItem, id_map: Mapping[str, str], result: FileApplyResult
) -> None:
    names = {"name": "Name", "contenttype": "ContentType", "description": "Description", "isprivate": "IsPrivate"}
    values = {names[k]: v for k, v in item.detail["values"].items()}
    parent = item.detail.get("parent_id")
    values["ParentId"] = id_map.get(parent, parent)
    item.new_id, item.verified = _upload(client, store, result, "Attachment", "Body", values, item.detail["body"])


def _upload(
    client: SalesforceClient,
    store: BlobStore,
    result: FileApplyResult,
    sobject: str,
    field_name: str,
    values: dict[str, Any],
    blob: Mapping[str, Any],
    filename: str | None = None,
) -> tuple[str, bool]:
    """Insert a `sobject` record of `values` whose `field_name` holds the backed-up bytes `blob` (streamed from the
    store), then read them back: (the new id, whether the org's bytes hash to the backup's SHA-256)."""
    sha = blob["sha256"]
    new_id = insert_with_blob(
        client,
        sobject,
        values,
        field_name,
        size=int(blob["size"]),
        source=lambda: store.chunks(sha),
        filename=filename or values.get("Name") or "file",
    )
    result.bytes_uploaded += int(blob["size"])
    return new_id, _hash_in_org(client, sobject, new_id, field_name) == sha


def _recreate_document_record(
    client: SalesforceClient,
    store: BlobStore,
    item: FileItem,
    id_map: Mapping[str, str],
    result: FileApplyResult,
    *,
    same_org: bool,
) -> None:
    """A Document re-created in its (translated) Folder with the backed-up body, or as the link it was."""
    values = {_DOC_COPIED[k]: v for k, v in item.detail["values"].items()}
    folder = item.detail.get("folder_id")
    values["FolderId"] = id_map.get(folder, folder)
    author = item.detail.get("author_id")
    if author and (author in id_map or same_org):  # AuthorId defaults to the restoring user otherwise
        values["AuthorId"] = id_map.get(author, author)
    body = item.detail.get("body")
    if body is not None:
        item.new_id, item.verified = _upload(client, store, result, "Document", "Body", values, body)
        return
    [made] = create_records(client, "Document", [values])  # a link: its Url is what there is to check
    if not made.success:
        raise RestoreError(f"Document insert refused: {made.errors}")
    item.new_id = str(made.id)
    item.verified = _verify(client, item, item.new_id)


# ====================================================================== undo
def _undo_items(conn: psycopg.Connection[Any], client: SalesforceClient, undo_of: str, sobject: str) -> list[FileItem]:
    rows = conn.execute(
        "SELECT source_id, new_id, outcome FROM sf_pipeline.file_restore_items WHERE run_id = %s "
        "AND object = %s AND outcome IN ('recreated', 'undeleted') ORDER BY seq",
        (undo_of, sobject),
    ).fetchall()
    if not rows:
        raise RestoreConfigError(
            f"undo_of: run {undo_of!r} restored no {sobject} (no recreated or undeleted file in "
            "sf_pipeline.file_restore_items)"
        )
    return [
        FileItem(
            sobject,
            source,
            DELETE_COPY if outcome == "recreated" else DELETE_AGAIN,
            "re-created by the undone run: deleted"
            if outcome == "recreated"
            else "undeleted by the undone run: deleted again",
            target_id=new_id,
        )
        for source, new_id, outcome in rows
    ]
