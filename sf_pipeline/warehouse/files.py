"""File bodies in the warehouse: hash and size columns on mirror and history, the fetch ledger, document links.

- Each base64 field `F` of a backed-up object gets two bookkeeping columns on its mirror table,
  `_sfp_<f>_sha256` and `_sfp_<f>_size`: the SHA-256 (the blob store's key) and byte size of the body of
  that version. The dbt snapshot copies them into history like any column, so every version of every file
  stays reachable from history (`_sfp_` columns are backup bookkeeping: restores and detectors ignore them).
- `sf_pipeline.file_bodies` is the fetch ledger: one row per (object, record, field, SystemModstamp) whose
  body was stored (or found unavailable), committed right after the blob is complete in the store. A rerun
  of a killed window therefore fetches only the bodies not in the ledger, and the mirror's columns are set
  from the ledger, never from a half-finished download.
- `sf_pipeline.content_document_links` keeps every ContentDocumentLink the backup saw (a link is queried
  per document: Salesforce refuses an unfiltered ContentDocumentLink query), with when it was first and
  last seen, so a restored document gets its links back.
No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from sf_pipeline.warehouse.names import HISTORY_SCHEMA, MIRROR_SCHEMA, ident, qualified, table_name
from sf_pipeline.warehouse.schema import MirrorTable

SCHEMA = "sf_pipeline"
LEDGER = "file_bodies"
LINKS = "content_document_links"
_DDL_LOCK_KEY = 0x5F_4649_4C45_5321  # "_FILES!": serializes concurrent ensure_file_tables

# Fields that announce a body's size in the record itself: a download must deliver exactly that many bytes.
SIZE_FIELDS: Mapping[str, Mapping[str, str]] = {
    "ContentVersion": {"VersionData": "contentsize"},
    "Attachment": {"Body": "bodylength"},
    "Document": {"Body": "bodylength"},
}

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.{LEDGER} (
        object text NOT NULL,
        record_id varchar(18) NOT NULL,
        field text NOT NULL,
        systemmodstamp timestamptz NOT NULL,
        sha256 char(64),
        size bigint,
        how text NOT NULL,              -- fetched | carried (a deleted version keeps its body) | unavailable
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (object, record_id, field, systemmodstamp))""",
    f"CREATE INDEX IF NOT EXISTS file_bodies_sha256_idx ON {SCHEMA}.{LEDGER} (sha256)",
    f"CREATE INDEX IF NOT EXISTS file_bodies_record_idx ON {SCHEMA}.{LEDGER} (record_id)",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.{LINKS} (
        content_document_id varchar(18) NOT NULL,
        link_id varchar(18) NOT NULL,
        linked_entity_id varchar(18) NOT NULL,
        share_type text,
        visibility text,
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        PRIMARY KEY (content_document_id, link_id))""",
]


def ensure_file_tables(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for statement in _DDL:
            conn.execute(statement)


def base64_fields(describe_fields: Iterable[Mapping[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """API names of the object's base64 fields (file bodies), less the excluded ones."""
    excluded = {e.lower() for e in exclude}
    return [
        str(f["name"])
        for f in describe_fields
        if str(f.get("type", "")).lower() == "base64" and str(f["name"]).lower() not in excluded
    ]


def sha256_column(field: str) -> str:
    return f"_sfp_{field.lower()}_sha256"


def size_column(field: str) -> str:
    return f"_sfp_{field.lower()}_size"


def body_columns(columns: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The file-body columns present among `columns`: lower-case field -> (sha256 column, size column)."""
    have = set(columns)
    found: dict[str, tuple[str, str]] = {}
    for name in have:
        if name.startswith("_sfp_") and name.endswith("_sha256"):
            field = name[len("_sfp_") : -len("_sha256")]
            if size_column(field) in have:
                found[field] = (name, size_column(field))
    return found


def ensure_body_columns(conn: psycopg.Connection[Any], table: MirrorTable, fields: Sequence[str]) -> list[str]:
    """Add the hash and size columns of each base64 field to the mirror (and to history when it exists)."""
    added: list[str] = []
    have = set(table.column_types)
    for field in fields:
        for column in (sha256_column(field), size_column(field)):
            if column not in have:
                added.append(column)
    if not added:
        return []
    with conn.transaction():
        for schema in (MIRROR_SCHEMA, HISTORY_SCHEMA):
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table.name}"',)).fetchone()[0]
            if not exists:
                continue
            conn.execute(
                sql.SQL("ALTER TABLE {} {}").format(
                    qualified(schema, table.name),
                    sql.SQL(", ").join(
                        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(
                            ident(c), sql.SQL("char(64)" if c.endswith("_sha256") else "bigint")
                        )
                        for c in added
                    ),
                )
            )
    return added


@dataclass(frozen=True)
class PendingBody:
    """One version whose body the ledger does not know yet."""

    record_id: str
    systemmodstamp: datetime
    downloadable: bool  # False: the version is deleted or vanished, the org serves no bytes for it
    expected_size: int | None
    known_sha256: str | None  # the mirror's hash of the version before (carried over to a deleted version)
    known_size: int | None


def pending_bodies(
    conn: psycopg.Connection[Any], table: MirrorTable, field: str, start: datetime, end: datetime
) -> list[PendingBody]:
    """The window's versions (stamped in it, or found vanished by it) whose body is not in the ledger."""
    columns = set(table.column_types)
    size_field = SIZE_FIELDS.get(table.object_name, {}).get(field)
    expected = (
        sql.SQL("m.{}").format(ident(size_field)) if size_field and size_field in columns else sql.SQL("NULL::bigint")
    )
    gone = [sql.SQL("m.isdeleted")] if "isdeleted" in columns else []
    if "_sfp_vanished" in columns:
        gone.append(sql.SQL("m._sfp_vanished IS NOT NULL"))
    in_window = sql.SQL("(m.systemmodstamp >= %(start)s AND m.systemmodstamp < %(end)s)")
    if "_sfp_found_in_window" in columns:
        in_window = sql.SQL("({} OR m._sfp_found_in_window = %(end)s)").format(in_window)
    query = sql.SQL(
        """SELECT m.id, m.systemmodstamp, {downloadable}, {expected}, m.{sha}, m.{size}
           FROM {mirror} m
           WHERE {in_window}
             AND NOT EXISTS (SELECT FROM {ledger} l WHERE l.object = %(object)s AND l.record_id = m.id
                             AND l.field = %(field)s AND l.systemmodstamp = m.systemmodstamp)
           ORDER BY m.systemmodstamp, m.id"""
    ).format(
        downloadable=sql.SQL("NOT ({})").format(sql.SQL(" OR ").join(gone)) if gone else sql.SQL("true"),
        expected=expected,
        sha=ident(sha256_column(field)),
        size=ident(size_column(field)),
        mirror=table.identifier,
        in_window=in_window,
        ledger=qualified(SCHEMA, LEDGER),
    )
    rows = conn.execute(query, {"start": start, "end": end, "object": table.object_name, "field": field}).fetchall()
    return [PendingBody(r[0], r[1], bool(r[2]), r[3], r[4].strip() if r[4] else None, r[5]) for r in rows]


def latest_known_body(
    conn: psycopg.Connection[Any], object_name: str, field: str, record_id: str, before: datetime
) -> tuple[str | None, int | None]:
    """The body of a record's latest version before `before` that the ledger holds, or (None, None)."""
    row = conn.execute(
        f"SELECT sha256, size FROM {SCHEMA}.{LEDGER} WHERE object = %s AND record_id = %s AND field = %s "
        "AND systemmodstamp < %s AND sha256 IS NOT NULL ORDER BY systemmodstamp DESC LIMIT 1",
        (object_name, record_id, field, before),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def record_bodies(
    conn: psycopg.Connection[Any],
    object_name: str,
    field: str,
    rows: Sequence[tuple[str, datetime, str | None, int | None, str]],
) -> None:
    """Ledger rows (record id, SystemModstamp, sha256, size, how), committed at once: the blobs are complete."""
    if not rows:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.{LEDGER} (object, record_id, field, systemmodstamp, sha256, size, how) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(object_name, rid, field, stamp, sha, size, how) for rid, stamp, sha, size, how in rows],
            )
    conn.commit()


def apply_bodies(conn: psycopg.Connection[Any], table: MirrorTable, field: str, start: datetime, end: datetime) -> int:
    """Set the window's mirror rows' hash and size from the ledger (exact version); returns the rows changed."""
    columns = set(table.column_types)
    in_window = sql.SQL("(m.systemmodstamp >= %(start)s AND m.systemmodstamp < %(end)s)")
    if "_sfp_found_in_window" in columns:
        in_window = sql.SQL("({} OR m._sfp_found_in_window = %(end)s)").format(in_window)
    sha, size = ident(sha256_column(field)), ident(size_column(field))
    with conn.transaction():
        cur = conn.execute(
            sql.SQL(
                """UPDATE {mirror} m SET {sha} = l.sha256, {size} = l.size
               FROM {ledger} l
               WHERE l.object = %(object)s AND l.field = %(field)s AND l.record_id = m.id
                 AND l.systemmodstamp = m.systemmodstamp AND {in_window}
                 AND (m.{sha} IS DISTINCT FROM l.sha256 OR m.{size} IS DISTINCT FROM l.size)"""
            ).format(
                mirror=table.identifier, sha=sha, size=size, ledger=qualified(SCHEMA, LEDGER), in_window=in_window
            ),
            {"object": table.object_name, "field": field, "start": start, "end": end},
        )
        changed = cur.rowcount
    conn.commit()
    return changed


def documents_in_window(conn: psycopg.Connection[Any], table: MirrorTable, start: datetime, end: datetime) -> list[str]:
    """ContentDocument ids of the ContentVersions stamped in the window (live ones: links of deleted documents
    are gone from the org, and the ones seen before are kept)."""
    if "contentdocumentid" not in table.column_types:
        return []
    deleted = sql.SQL("AND NOT isdeleted") if "isdeleted" in table.column_types else sql.SQL("")
    return [
        r[0]
        for r in conn.execute(
            sql.SQL(
                "SELECT DISTINCT contentdocumentid FROM {} WHERE systemmodstamp >= %s AND systemmodstamp < %s "
                "AND contentdocumentid IS NOT NULL {}"
            ).format(table.identifier, deleted),
            (start, end),
        ).fetchall()
    ]


def record_links(conn: psycopg.Connection[Any], links: Sequence[Mapping[str, Any]], seen: datetime) -> None:
    if not links:
        return
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                f"""INSERT INTO {SCHEMA}.{LINKS} (content_document_id, link_id, linked_entity_id, share_type,
                        visibility, first_seen, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (content_document_id, link_id) DO UPDATE SET last_seen = greatest(
                        {LINKS}.last_seen, EXCLUDED.last_seen), share_type = EXCLUDED.share_type,
                        visibility = EXCLUDED.visibility""",
                [
                    (
                        link["ContentDocumentId"],
                        link["Id"],
                        link["LinkedEntityId"],
                        link.get("ShareType"),
                        link.get("Visibility"),
                        seen,
                        seen,
                    )
                    for link in links
                ],
            )
    conn.commit()


def links_of(conn: psycopg.Connection[Any], document_id: str) -> list[dict[str, Any]]:
    """Every link the backup saw on a document."""
    ensure_file_tables(conn)
    rows = conn.execute(
        f"SELECT link_id, linked_entity_id, share_type, visibility, first_seen, last_seen FROM {SCHEMA}.{LINKS} "
        "WHERE content_document_id = %s ORDER BY first_seen, link_id",
        (document_id,),
    ).fetchall()
    return [
        dict(
            zip(("link_id", "linked_entity_id", "share_type", "visibility", "first_seen", "last_seen"), r, strict=True)
        )
        for r in rows
    ]


def referenced_blobs(conn: psycopg.Connection[Any]) -> Iterable[tuple[str, int | None]]:
    """Every (sha256, size) that mirror, history or the ledger refers to, each once."""
    ensure_file_tables(conn)
    parts = [sql.SQL("SELECT sha256, size FROM {} WHERE sha256 IS NOT NULL").format(qualified(SCHEMA, LEDGER))]
    for schema, table, sha, size in body_column_tables(conn):
        parts.append(
            sql.SQL("SELECT {sha}::text, {size} FROM {t} WHERE {sha} IS NOT NULL").format(
                sha=ident(sha), size=ident(size), t=qualified(schema, table)
            )
        )
    query = sql.SQL("SELECT DISTINCT ON (sha256) sha256, size FROM ({}) AS refs ORDER BY sha256").format(
        sql.SQL(" UNION ALL ").join(parts)
    )
    with conn.cursor(name="sfp_referenced_blobs") as cur:
        cur.itersize = 5000
        cur.execute(query)
        yield from ((str(sha).strip(), size) for sha, size in cur)


def body_column_tables(
    conn: psycopg.Connection[Any], object_name: str | None = None
) -> list[tuple[str, str, str, str]]:
    """(schema, table, sha256 column, size column) of every mirror and history table with file-body columns."""
    rows = conn.execute(
        """SELECT table_schema, table_name, column_name FROM information_schema.columns
           WHERE table_schema IN (%s, %s) AND column_name LIKE '\\_sfp\\_%%\\_sha256'
             AND (%s::text IS NULL OR table_name = %s)""",
        (
            MIRROR_SCHEMA,
            HISTORY_SCHEMA,
            object_name and table_name(object_name),
            object_name and table_name(object_name),
        ),
    ).fetchall()
    out = []
    for schema, table, column in rows:
        field = column[len("_sfp_") : -len("_sha256")]
        out.append((schema, table, column, size_column(field)))
    return out


# ====================================================================== a file as of an instant
KEY_PREFIXES = {"068": "ContentVersion", "069": "ContentDocument", "00P": "Attachment", "015": "Document"}
DEFAULT_FIELD = {"ContentVersion": "VersionData", "Attachment": "Body", "Document": "Body"}
NAME_COLUMNS = ("pathonclient", "name", "title")


class FileNotInBackupError(LookupError):
    """The backup holds no body for this file at that instant: the message says what it does hold."""


@dataclass(frozen=True)
class FileVersion:
    """One backed-up version of a file: whose record, which body (hash and size), and its name."""

    object_name: str
    record_id: str
    field: str
    sha256: str
    size: int | None
    name: str | None
    valid_from: datetime
    deleted: bool
    values: dict[str, Any]


def _history_rows(
    conn: psycopg.Connection[Any],
    object_name: str,
    where: sql.Composable,
    params: Mapping[str, Any],
) -> list[dict[str, Any]]:
    target = qualified(HISTORY_SCHEMA, table_name(object_name))
    if not conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f'"{HISTORY_SCHEMA}"."{table_name(object_name)}"',)
    ).fetchone()[0]:
        raise FileNotInBackupError(
            f"{object_name} is not backed up (no table {HISTORY_SCHEMA}.{table_name(object_name)})"
        )
    cur = conn.execute(sql.SQL("SELECT * FROM {} WHERE {} ORDER BY dbt_valid_from").format(target, where), params)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _at(rows: list[dict[str, Any]], moment: datetime | None) -> list[dict[str, Any]]:
    if moment is None:  # the latest version of each record
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            latest[row["id"]] = row
        return list(latest.values())
    return [
        r for r in rows if r["dbt_valid_from"] <= moment and (r["dbt_valid_to"] is None or r["dbt_valid_to"] > moment)
    ]


def file_version(
    conn: psycopg.Connection[Any],
    record_id: str,
    as_of: datetime | None = None,
    *,
    object_name: str | None = None,
    field: str | None = None,
) -> FileVersion:
    """The file body a record had at `as_of` (None: its latest backed-up version).

    A ContentDocument id answers with its latest version at that instant (highest VersionNumber); a
    ContentVersion, Attachment or Document id with that record's version then.
    """
    sobject = object_name or KEY_PREFIXES.get(record_id[:3])
    if sobject is None:
        raise FileNotInBackupError(
            f"{record_id} is not a ContentDocument, ContentVersion, Attachment or Document id; "
            "give the object of a record with a base64 field (--object)"
        )
    when = f" at {as_of.isoformat()}" if as_of else ""
    if sobject == "ContentDocument":
        rows = _at(
            _history_rows(conn, "ContentVersion", sql.SQL("contentdocumentid = %(id)s"), {"id": record_id}), as_of
        )
        if not rows:
            raise FileNotInBackupError(f"the backup has no version of ContentDocument {record_id}{when}")
        live = [r for r in rows if not r.get("isdeleted")]
        rows = live or rows
        rows.sort(key=lambda r: (int(r.get("versionnumber") or 0), r["dbt_valid_from"]))
        return _version("ContentVersion", rows[-1], field)
    rows = _at(_history_rows(conn, sobject, sql.SQL("id = %(id)s"), {"id": record_id}), as_of)
    if not rows:
        raise FileNotInBackupError(f"the backup has no version of {sobject} {record_id}{when}")
    return _version(sobject, rows[-1], field)


def _version(sobject: str, row: dict[str, Any], field: str | None) -> FileVersion:
    available = body_columns(row)
    wanted = (field or DEFAULT_FIELD.get(sobject) or next(iter(available), "")).lower()
    if wanted not in available:
        raise FileNotInBackupError(
            f"{sobject} has no backed-up body field {wanted or '(none)'}; its body fields: "
            f"{', '.join(sorted(available)) or 'none'}"
        )
    sha_col, size_col = available[wanted]
    sha = row.get(sha_col)
    if not sha:
        raise FileNotInBackupError(
            f"{sobject} {row['id']}: the version valid from {row['dbt_valid_from']} has no "
            "body in the backup (the org had none to give when it was backed up)"
        )
    name = next((row[c] for c in NAME_COLUMNS if row.get(c)), None)
    return FileVersion(
        sobject,
        row["id"],
        wanted,
        str(sha).strip(),
        row.get(size_col),
        name,
        row["dbt_valid_from"],
        bool(row.get("isdeleted")),
        row,
    )
