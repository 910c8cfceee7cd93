"""The right to be forgotten: remove a data subject's records from everything the backup keeps.

A request names records (object + ids) or an e-mail address, matched on the configured fields in every
version of the backup. `forget` then deletes, in one transaction: the mirror rows, every history version,
restore plan items and audit rows (their before/after values), incident samples, and id map entries (the
seeded copies' mapping; the copies' ids in the sandboxes are reported so they can be deleted there). The ids
go on the suppression list (sf_pipeline.erased_records) so later windows never bring them back, and an
erasure log row (sf_pipeline.erasure_log) records who asked, when, which record ids and how many rows
went: ids and counts, never a value.

Plain functions over a psycopg connection; the Dagster job is glue (privacy/definitions.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, model_validator

from sf_pipeline.anomalies.incidents import ensure_incident_table
from sf_pipeline.contract import Contract, problem
from sf_pipeline.privacy.errors import ForgetConfigError, PrivacySettingsError
from sf_pipeline.privacy.files import FileErasure, remove_queued
from sf_pipeline.restore.tables import ensure_restore_tables
from sf_pipeline.salesforce.values import id18
from sf_pipeline.warehouse.erased import add_erased, ensure_erased_table
from sf_pipeline.warehouse.lookups import DEFAULT_MATCH_FIELDS, ensure_lookup_indexes, match_field_names
from sf_pipeline.warehouse.names import (
    HISTORY_SCHEMA,
    MIRROR_SCHEMA,
    column_name,
    ident,
    qualified,
    table_name,
)

__all__ = [
    "DEFAULT_MATCH_FIELDS",
    "ForgetRequest",
    "ForgetResult",
    "find_subject",
    "forget",
    "match_fields",
    "note_still_in_org",
]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOG_DDL = """CREATE TABLE IF NOT EXISTS sf_pipeline.erasure_log (
    id bigserial PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    requested_by text NOT NULL,
    run_id text,
    dry_run boolean NOT NULL,
    matched_by text NOT NULL,
    records jsonb NOT NULL,
    rows_removed jsonb NOT NULL,
    seeded_copies jsonb NOT NULL,
    still_in_org jsonb)"""


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ForgetConfigError(f"dry_run must be true or false, not {value!r}")
    return value


class ForgetRequest(Contract):
    """The forget job's launchpad config (contract, README "Privacy"): the data subject's records by object and
    ids, or an e-mail address; a dry run unless told otherwise. The launchpad's config is derived from it."""

    object: str | None = Field(default=None, description="API name of the object of record_ids, e.g. Contact.")
    record_ids: tuple[str, ...] = Field(default=(), description="Ids of the data subject's records (of `object`).")
    email: str | None = Field(
        default=None,
        description="Or: an e-mail address, matched (case-insensitively) on the settings' forget.match_fields in "
        "every backed-up version. Note the run's config, kept by Dagster, then holds the address: prefer "
        "record_ids when you have them.",
    )
    dry_run: Annotated[bool, BeforeValidator(_flag)] = Field(
        default=True, description="Count what would be erased, erase nothing (the default). Set false to erase."
    )

    @model_validator(mode="before")
    @classmethod
    def _subject(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        email, ids = data.get("email"), data.get("record_ids") or ()
        if (email is None) == (not ids):
            raise ForgetConfigError("give either record_ids (with object) or email: whose records to erase")
        if email is not None:
            if not isinstance(email, str) or not _EMAIL.match(email.strip()):
                raise ForgetConfigError("email must be one e-mail address (name@domain)")
            return {**data, "email": email.strip(), "object": None, "record_ids": ()}
        backed_up = (info.context or {}).get("backed_up") or ()
        sobject = data.get("object")
        known = {o.lower(): o for o in backed_up}
        if not isinstance(sobject, str) or sobject.lower() not in known:
            raise ForgetConfigError(f"object must be a backed-up object ({', '.join(backed_up)}), not {sobject!r}")
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ForgetConfigError("record_ids must be a list of record ids")
        try:
            record_ids = tuple(dict.fromkeys(id18(str(v)) for v in ids))
        except ValueError as exc:
            raise ForgetConfigError(f"record_ids: {exc}") from None
        return {**data, "object": known[sobject.lower()], "record_ids": record_ids}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], backed_up: Sequence[str]) -> ForgetRequest:
        """Read a launched config; `backed_up` are the backed-up objects (`object` must be one of them)."""
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise ForgetConfigError(
                f"unknown keys {', '.join(sorted(unknown))}; the keys are object, record_ids, email, dry_run"
            )
        try:
            return cls.model_validate(dict(data), context={"backed_up": list(backed_up)})
        except ValidationError as exc:
            raise ForgetConfigError(problem(exc)) from None

    @property
    def matched_by(self) -> str:
        # The log says how the records were found, never the address itself.
        return "email" if self.email else "record_ids"


@dataclass
class ForgetResult:
    records: dict[str, list[str]] = field(default_factory=dict)  # object -> erased record ids
    rows_removed: dict[str, int] = field(default_factory=dict)  # table -> rows deleted (or updated, incidents)
    seeded_copies: dict[str, list[str]] = field(default_factory=dict)  # target alias -> ids of seeded copies
    still_in_org: dict[str, list[str]] = field(default_factory=dict)  # object -> ids the org still has
    indexes_built: list[str] = field(default_factory=list)  # lookup indexes no backup window had made yet
    dry_run: bool = True
    erasure_id: int | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows_removed.values())

    def summary(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "erasure_id": self.erasure_id,
            "records": self.records,
            "rows_removed": self.rows_removed,
            "seeded_copies": self.seeded_copies,
            "still_in_org": self.still_in_org,
            "indexes_built": self.indexes_built,
        }

    def as_metadata(self) -> dict[str, Any]:
        """What the run shows (plain values, sf_pipeline.metadata): the records erased (or, dry, found) per object,
        the rows removed (to remove) per table, seeded copies and records the org still has."""
        return {
            "dry_run": self.dry_run,
            "erasure_id": self.erasure_id or 0,
            "records": self.records,
            "rows_to_remove" if self.dry_run else "rows_removed": self.rows_removed,
            "total_rows": self.total_rows,
            "seeded_copies": self.seeded_copies,
            "still_in_org": self.still_in_org,
            # the backup makes the e-mail lookup indexes with the tables; one built here means a slow request
            "indexes_built": self.indexes_built,
        }


def match_fields(privacy_settings: Mapping[str, Any], backed_up: Sequence[str]) -> list[tuple[str, str]]:
    """(object, field) pairs an e-mail address is matched on: `forget: match_fields` or the defaults."""
    block = privacy_settings.get("forget") or {}
    if not isinstance(block, Mapping) or set(block) - {"match_fields"}:
        raise PrivacySettingsError(f"forget must be a mapping with match_fields, got {block!r}")
    configured = block.get("match_fields")
    names = match_field_names(privacy_settings)
    known = {o.lower(): o for o in backed_up}
    out = []
    for name in names:
        parts = str(name).split(".")
        if len(parts) != 2:
            raise PrivacySettingsError(f"forget.match_fields: {name!r} is not Object.Field (e.g. Contact.Email)")
        if parts[0].lower() in known:
            out.append((known[parts[0].lower()], parts[1]))
        elif configured is not None:
            raise PrivacySettingsError(f"forget.match_fields: {parts[0]} is not a backed-up object")
    return out


def _exists(conn: psycopg.Connection[Any], schema: str, table: str, column: str | None = None) -> bool:
    if column is None:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',)).fetchone()[0]
    return conn.execute(
        "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = %s AND "
        "table_name = %s AND column_name = %s)",
        (schema, table, column),
    ).fetchone()[0]


def find_subject(
    conn: psycopg.Connection[Any],
    request: ForgetRequest,
    fields: Iterable[tuple[str, str]],
    indexes_built: list[str] | None = None,
) -> dict[str, list[str]]:
    """Object -> ids of the records a request names: its ids, or every record one of whose versions (in the
    mirror or the history) has the e-mail address in a match field (case-insensitive, through an index).

    The backup makes the `lower(field)` indexes with the tables (warehouse/lookups.py); one still missing (a
    match field configured since the last window) is built here, and its name appended to `indexes_built`."""
    if request.email is None:
        assert request.object is not None
        return {request.object: list(request.record_ids)}
    found: dict[str, set[str]] = {}
    for sobject, fname in fields:
        column = column_name(fname)
        for schema in (MIRROR_SCHEMA, HISTORY_SCHEMA):
            table = table_name(sobject)
            if not _exists(conn, schema, table, column):
                continue
            built = ensure_lookup_indexes(conn, schema, sobject, [column])
            if indexes_built is not None:
                indexes_built += [f"{schema}.{name}" for name in built]
            rows = conn.execute(
                sql.SQL("SELECT DISTINCT id FROM {} WHERE lower({}) = lower(%s)").format(
                    qualified(schema, table), ident(column)
                ),
                (request.email,),
            )
            found.setdefault(sobject, set()).update(r[0] for r in rows)
    return {o: sorted(ids) for o, ids in found.items() if ids}


def _count_or_delete(
    conn: psycopg.Connection[Any], table: sql.Composable, where: sql.Composable, params: Sequence[Any], delete: bool
) -> int:
    verb = sql.SQL("DELETE FROM {} WHERE {}") if delete else sql.SQL("SELECT count(*) FROM {} WHERE {}")
    cur = conn.execute(verb.format(table, where), params)
    return cur.rowcount if delete else cur.fetchone()[0]


def forget(
    conn: psycopg.Connection[Any],
    request: ForgetRequest,
    *,
    backed_up: Sequence[str],
    fields: Iterable[tuple[str, str]],
    requested_by: str,
    run_id: str | None = None,
    blob_store: Any = None,
) -> ForgetResult:
    """Erase (or with dry_run, count) a data subject's records everywhere the backup keeps them; see the
    module doc. Commits its own transaction; the erasure log row is written in the same one. With `blob_store`,
    the file bodies only the erased rows referred to are removed from it too (privacy/files.py)."""
    result = ForgetResult(dry_run=request.dry_run)
    # The tables a forget searches by record id, with their record-id indexes (made with the tables; on a
    # database from before those indexes, this adds them once). Idempotent, and cheap when they exist.
    ensure_restore_tables(conn)
    ensure_incident_table(conn)
    result.records = find_subject(conn, request, fields, result.indexes_built)
    ids = sorted({rid for v in result.records.values() for rid in v})
    delete = not request.dry_run
    removed = result.rows_removed
    files = FileErasure(result.records) if blob_store is not None else None
    created = _created_dates(conn, result.records)
    with conn.transaction():
        if files is not None:
            files.collect(conn)
        for sobject, object_ids in result.records.items():
            table = table_name(sobject)
            for schema in (MIRROR_SCHEMA, HISTORY_SCHEMA):
                if _exists(conn, schema, table):
                    removed[f"{schema}.{table}"] = _count_or_delete(
                        conn, qualified(schema, table), sql.SQL("id = ANY(%s)"), (object_ids,), delete
                    )
        if _exists(conn, "sf_pipeline", "id_map"):
            rows = conn.execute(
                "SELECT target_alias, target_id FROM sf_pipeline.id_map WHERE source_id = ANY(%s) "
                "AND source_alias <> target_alias",
                (ids,),
            ).fetchall()
            for alias, tid in rows:
                result.seeded_copies.setdefault(alias, []).append(tid)
            removed["sf_pipeline.id_map"] = _count_or_delete(
                conn,
                qualified("sf_pipeline", "id_map"),
                sql.SQL("source_id = ANY(%s) OR target_id = ANY(%s)"),
                (ids, ids),
                delete,
            )
        # a rehearsal on a sandbox audits the copy's id
        copies = [tid for v in result.seeded_copies.values() for tid in v]
        if _exists(conn, "sf_pipeline", "restore_items"):
            for name in ("restore_items", "restore_audit"):
                removed[f"sf_pipeline.{name}"] = _count_or_delete(
                    conn, qualified("sf_pipeline", name), sql.SQL("record_id = ANY(%s)"), (ids + copies,), delete
                )
        if _exists(conn, "sf_pipeline", "incidents"):
            # Incident samples show a record's before/after values and name: drop the subject's entries. The
            # incidents showing one are found by containment (`sample @> [{"id": ...}]`) through their GIN index.
            shows = sql.SQL("(report->'sample') @> ANY(%s::jsonb[])")
            probes = [Jsonb([{"id": rid}]) for rid in ids]
            samples = sql.SQL("jsonb_array_elements(report->'sample')")
            removed["sf_pipeline.incidents (samples)"] = conn.execute(
                sql.SQL("SELECT count(*) FROM sf_pipeline.incidents, {} s WHERE {} AND s->>'id' = ANY(%s)").format(
                    samples, shows
                ),
                (probes, ids),
            ).fetchone()[0]
            if delete:
                conn.execute(
                    sql.SQL(
                        "UPDATE sf_pipeline.incidents SET report = jsonb_set(report, '{{sample}}', (SELECT "
                        "coalesce(jsonb_agg(s), '[]'::jsonb) FROM {} s WHERE NOT (s->>'id' = ANY(%s)))), "
                        "updated_at = now() WHERE {}"
                    ).format(samples, shows),
                    (ids, probes),
                )
        if files is not None:
            removed.update(files.finish(conn, delete))
        conn.execute("CREATE SCHEMA IF NOT EXISTS sf_pipeline")
        conn.execute(_LOG_DDL)
        (result.erasure_id,) = conn.execute(
            "INSERT INTO sf_pipeline.erasure_log (requested_by, run_id, dry_run, matched_by, records, rows_removed, "
            "seeded_copies) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                requested_by,
                run_id,
                request.dry_run,
                request.matched_by,
                Jsonb(result.records),
                Jsonb(removed),
                Jsonb(result.seeded_copies),
            ),
        ).fetchone()
        if delete:
            ensure_erased_table(conn)
            for sobject, object_ids in result.records.items():
                add_erased(conn, sobject, object_ids, result.erasure_id, created.get(sobject))
            if files is not None:
                files.queue(conn, result.erasure_id)
    if not conn.autocommit:
        conn.commit()
    if files is not None and delete:
        remove_queued(conn, blob_store)  # after the commit: a store delete cannot be rolled back
    return result


def _created_dates(conn: psycopg.Connection[Any], records: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Object -> id -> CreatedDate as the backup holds it (the erased-records list keeps it: an id
    reconciliation bounded by creation time counts an erased record only from then on)."""
    out: dict[str, dict[str, Any]] = {}
    for sobject, ids in records.items():
        for schema in (HISTORY_SCHEMA, MIRROR_SCHEMA):
            if _exists(conn, schema, table_name(sobject), "createddate"):
                out.setdefault(sobject, {}).update(
                    conn.execute(
                        sql.SQL("SELECT id, min(createddate) FROM {} WHERE id = ANY(%s) GROUP BY id").format(
                            qualified(schema, table_name(sobject))
                        ),
                        (ids,),
                    ).fetchall()
                )
    return out


def note_still_in_org(conn: psycopg.Connection[Any], result: ForgetResult, still: Mapping[str, list[str]]) -> None:
    """Record in the erasure log which erased records the org still has (erasing them there is the org's job)."""
    result.still_in_org = {k: v for k, v in still.items() if v}
    if result.erasure_id is not None:
        conn.execute(
            "UPDATE sf_pipeline.erasure_log SET still_in_org = %s WHERE id = %s",
            (Jsonb(result.still_in_org), result.erasure_id),
        )
        if not conn.autocommit:
            conn.commit()
