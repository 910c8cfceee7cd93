"""Mass vanishing: many records of an object gone for good in one window (hard delete, purge, merge, unknown).

The backup closes each vanished record with a version flagged `_sfp_vanished` and stamped with the window whose
run found it (`_sfp_found_in_window`, warehouse/vanished.py). A hard delete leaves the record's last editor in
`lastmodifiedbyid`, so the mass-delete detector, which clusters by acting user, misses it (purging 150 of 400
Opportunities would raise no incident). This detector groups the closing versions a window found by
cause and by who did it where Salesforce tells (the Bulk job's owner, `_sfp_vanished_by`), and raises an
incident whose restore config re-creates the records from history (the restore re-creates a record the org no
longer has, with a new id).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from sf_pipeline.anomalies.detectors import Finding, SampleChange
from sf_pipeline.anomalies.thresholds import AUDIT_COLUMNS, AnomalyThresholds, is_skipped_column
from sf_pipeline.warehouse.history import history_columns
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, qualified, table_name
from sf_pipeline.warehouse.schema import table_columns

GONE_CAUSES = ("hard-deleted", "purged", "unknown", "merged")
SAMPLE_SIZE = 5

_FOUND = sql.SQL(
    """
    SELECT h._sfp_vanished AS cause, h._sfp_vanished_by AS by_user, count(*) AS n,
           min(h.dbt_valid_from) AS first_change, max(h.dbt_valid_from) AS last_change,
           min(h._sfp_vanished_after) AS earliest_possible, array_agg(h.id ORDER BY h.id) AS ids,
           array_agg(h._sfp_merged_into ORDER BY h.id) AS masters, min(live.until) AS last_live
    FROM {history} AS h
    -- when each record stopped being live: its deletion (a purge empties a bin of records deleted earlier),
    -- else the closing version itself
    CROSS JOIN LATERAL (
        SELECT max(v.dbt_valid_to) AS until FROM {history} AS v WHERE v.id = h.id AND v.isdeleted IS NOT TRUE
    ) AS live
    WHERE h._sfp_found_in_window = %(end)s AND h._sfp_vanished = ANY(%(causes)s) AND h.dbt_valid_to IS NULL
    GROUP BY 1, 2
    """
)
_LIVE_BEFORE = sql.SQL(
    # live just before the first closing version (at that instant the vanished records already count as gone)
    "SELECT count(*) FROM {history} AS h WHERE h.dbt_valid_from < %(at)s "
    "AND (h.dbt_valid_to >= %(at)s OR h.dbt_valid_to IS NULL) AND h.isdeleted IS NOT TRUE"
)

_WORDS = {
    "hard-deleted": "hard-deleted (Bulk API hardDelete: never in the recycle bin)",
    "purged": "purged from the recycle bin",
    "unknown": "gone from the org, cause unknown",
    "merged": "merged into other records",
}


def detect_mass_vanishing(
    conn: psycopg.Connection[Any], object_name: str, start: datetime, end: datetime, thresholds: AnomalyThresholds
) -> list[Finding]:
    """Findings for the records the run of window [start, end) found gone, one per cause and actor."""
    limits = thresholds.mass_vanishing
    if not limits.enabled:
        return []
    history = qualified(HISTORY_SCHEMA, table_name(object_name))
    present = {name for name, _ in table_columns(conn, HISTORY_SCHEMA, table_name(object_name))}
    if "_sfp_found_in_window" not in present:
        return []  # no vanished record was ever closed in this history
    with conn.cursor(row_factory=dict_row) as cursor:
        groups = cursor.execute(_FOUND.format(history=history), {"end": end, "causes": list(GONE_CAUSES)}).fetchall()
    if not groups:
        return []
    first = min(g["first_change"] for g in groups)
    live = conn.execute(_LIVE_BEFORE.format(history=history), {"at": first}).fetchone()[0]
    columns = history_columns(conn, object_name)
    restorable = tuple(c for c in columns if not is_skipped_column(c) and c not in AUDIT_COLUMNS)
    findings = []
    for g in groups:
        share = g["n"] / max(live, g["n"], 1)
        severity = limits.classify(g["n"], share)
        if severity is None:
            continue
        ids = tuple(g["ids"])
        masters = sorted({m for m in g["masters"] if m})
        details: dict[str, Any] = {
            "cause": _WORDS.get(g["cause"], g["cause"]),
            "how_learnt": g["cause"],
            "found_in_window_ending": end.isoformat(),
        }
        if g["earliest_possible"] is not None:
            # no API gave the time: it happened between the records' last version and the closing time
            details["vanished_between"] = f"{g['earliest_possible'].isoformat()} .. {g['last_change'].isoformat()}"
        if masters:
            details["merged_into"] = len(masters)
        if g["by_user"]:
            details["done_by"] = f"{g['by_user']} (as Salesforce reports it, e.g. the Bulk job's owner)"
        findings.append(
            Finding(
                detector="mass_vanishing",
                severity=severity,
                object=object_name,
                fields=(),
                affected_count=g["n"],
                share=share,
                first_change=g["first_change"],
                last_change=g["last_change"],
                user_id=g["by_user"],
                sample=tuple(SampleChange(rid, {}, {"_sfp_vanished": g["cause"]}) for rid in ids[:SAMPLE_SIZE]),
                record_ids=ids,
                restore_fields=restorable,
                details=details,
                window_start=start,
                window_end=end,
                # the closing versions keep the records' last editor: the restore must not select by user
                acted_alone=False,
                restore_deleted=True,
                live_records=live,
                # records purged from the recycle bin were deleted before: restore them as they were then
                restore_as_of=min(g["last_live"], g["first_change"]) if g["last_live"] is not None else None,
            )
        )
    return findings


def without_vanished_deletions(
    conn: psycopg.Connection[Any], object_name: str, findings: list[Finding]
) -> list[Finding]:
    """Mass-delete findings less the records whose deletion version is a vanished record's closing version:
    those keep their last editor as `lastmodifiedbyid`, so mass_delete would blame the wrong user; the
    mass-vanishing detector reports them instead."""
    deletes = [f for f in findings if f.detector == "mass_delete"]
    if not deletes:
        return findings
    present = {name for name, _ in table_columns(conn, HISTORY_SCHEMA, table_name(object_name))}
    if "_sfp_vanished" not in present:
        return findings
    ids = sorted({i for f in deletes for i in f.record_ids})
    vanished = {
        r[0]
        for r in conn.execute(
            sql.SQL(
                "SELECT DISTINCT h.id FROM {} AS h WHERE h.id = ANY(%s) AND h.isdeleted AND h._sfp_vanished = ANY(%s)"
            ).format(qualified(HISTORY_SCHEMA, table_name(object_name))),
            (ids, list(GONE_CAUSES)),
        )
    }
    if not vanished:
        return findings
    kept = []
    for f in findings:
        if f.detector != "mass_delete":
            kept.append(f)
            continue
        rest = tuple(i for i in f.record_ids if i not in vanished)
        if rest:
            kept.append(
                replace(
                    f,
                    record_ids=rest,
                    affected_count=len(rest),
                    sample=tuple(s for s in f.sample if s.record_id not in vanished),
                )
            )
    return kept
