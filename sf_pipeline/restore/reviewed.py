"""The plan a dry run stored, loaded to be applied as it was reviewed (`dry_run: false, plan: <run id>`).

A restore never plans again when it writes: what someone reviewed (records, fields, the values the org held
then and the values to write) is exactly what apply may write. A record whose org value moved since the
dry run is refused by apply as a conflict (decisions.changes_to_write), never overwritten unseen.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sf_pipeline.restore import tables
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.errors import RestoreConfigError
from sf_pipeline.restore.plan import PlanTally, RestorePlan
from sf_pipeline.restore.stored import StoredRecords
from sf_pipeline.salesforce.values import format_datetime, parse_datetime


def load_plan(conn: psycopg.Connection[Any], config: RestoreConfig, run_id: str) -> RestorePlan:
    """The stored plan of dry run `config.plan`, as run `run_id`'s plan; RestoreConfigError before any write
    when there is no such dry run or `config` is not the config it planned (apart from dry_run and plan)."""
    if config.dry_run or not config.plan:
        raise RestoreConfigError(
            "load_plan applies a dry run's plan: the config needs dry_run: false and plan: <run id of the dry run>"
        )
    tables.ensure_restore_tables(conn)
    dry = config.plan
    row = tables.plan_row(conn, dry)
    if row is None:
        raise RestoreConfigError(
            f"plan: there is no restore run {dry!r} in sf_pipeline.restore_plans; give the run "
            "id of the dry run whose plan to apply (launch the config with dry_run: true first)"
        )
    stored = dict(row["config"] or {})
    if stored.get("dry_run") is not True:
        raise RestoreConfigError(
            f"plan: run {dry!r} is not a dry run (it applied plan {stored.get('plan')!r}); give the run id of a dry run"
        )
    details = dict(row["details"] or {})
    if "field_types" not in details and "tree" not in details:
        raise RestoreConfigError(
            f"plan: dry run {dry!r} was stored by an older version without what applying it "
            "needs; launch the config as a dry run again and apply that run's plan"
        )
    planned = {k: v for k, v in stored.items() if k not in ("dry_run", "plan")}
    planned.setdefault("all_fields", False)
    planned.setdefault("with_children", False)
    asked = config.planned_as()
    differ = sorted(k for k in set(planned) | set(asked) if planned.get(k) != asked.get(k))
    if differ:
        shown = "; ".join(f"{k}: the dry run had {planned.get(k)!r}, this config has {asked.get(k)!r}" for k in differ)
        raise RestoreConfigError(
            f"plan: this config is not the one dry run {dry!r} planned ({shown}). Apply a plan "
            "with the config of its dry run plus dry_run: false and plan: <its run id>, or make "
            "a new dry run of this config"
        )
    if "tree" in details:  # --- hook: a whole-hierarchy plan (hierarchy.py)
        from sf_pipeline.restore.hierarchy import load_tree_plan

        notes = [
            *config.notes,
            *(details.get("notes") or []),
            f"applies the plan of dry run {dry}, as stored then (made {_when(row)})",
        ]
        return load_tree_plan(conn, config, run_id, row, notes)
    types: dict[str, str] = dict(details["field_types"])
    fields: list[str] = list(details.get("fields") or [])
    create_fields: list[str] = list(details.get("create_fields") or [])
    since = parse_datetime(details["since"]) if details.get("since") else None
    notes = [
        *config.notes,
        *(details.get("notes") or []),
        f"applies the plan of dry run {dry}, as stored then (made {_when(row)})",
    ]
    tables.copy_plan(
        conn,
        plan_of=dry,
        run_id=run_id,
        config=config.to_dict(),
        details={
            "plan_of": dry,
            "fields": fields,
            "field_types": types,
            "create_fields": create_fields,
            "since": details.get("since"),
            "notes": notes,
        },
    )
    records = StoredRecords(conn, run_id, types, [*fields, *create_fields])
    tally = PlanTally(config.on_conflict)
    for chunk in records.chunks():  # the counts and preview, a chunk of records at a time
        tally.add(chunk)
    return RestorePlan(
        run_id=run_id,
        config=config,
        source_org=row["source_org"],
        fields=fields,
        create_fields=create_fields,
        field_types=types,
        records=records,
        since=since,
        fetch_mode="stored",
        notes=notes,
        plan_of=dry,
        tally=tally,
    )


def _when(row: dict[str, Any]) -> str:
    return format_datetime(row["created_at"]) if row.get("created_at") else "by that run"


__all__ = ["load_plan"]
