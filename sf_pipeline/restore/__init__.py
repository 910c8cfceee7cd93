"""Restore records from the backup history into an org: plan (dry run) -> apply -> verify, with audit and undo.

No Dagster here: the `restore` job calls these functions with a psycopg connection and a SalesforceClient.

    config = RestoreConfig.from_dict(launchpad_config, orgs=settings.orgs)
    plan = plan_restore(conn, client, config, run_id)      # the dry run: stores its plan, writes nothing
    # later, reviewed: the same config with dry_run: false and plan: <the dry run's run id>
    plan = load_plan(conn, apply_config, apply_run_id)     # exactly the stored plan, never planned again
    result = apply_plan(conn, client, plan)                 # refuses records changed since the dry run
    verify_plan(client, plan, conn=conn)
"""

from sf_pipeline.restore.apply import apply_plan
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.current import DEFAULT_BULK_THRESHOLD
from sf_pipeline.restore.decisions import CONFLICT, NOOP, NOT_RESTORABLE, RESTORE, FieldItem, RecordItem
from sf_pipeline.restore.errors import (
    RestoreApplyError,
    RestoreBusyError,
    RestoreConfigError,
    RestoreError,
    RestoreVerifyError,
)
from sf_pipeline.restore.plan import RestorePlan, plan_restore
from sf_pipeline.restore.results import ApplyResult, VerifyResult
from sf_pipeline.restore.reviewed import load_plan
from sf_pipeline.restore.tables import ensure_restore_tables
from sf_pipeline.restore.verify import verify_plan

__all__ = [
    "CONFLICT",
    "DEFAULT_BULK_THRESHOLD",
    "NOOP",
    "NOT_RESTORABLE",
    "RESTORE",
    "ApplyResult",
    "FieldItem",
    "RecordItem",
    "RestoreApplyError",
    "RestoreBusyError",
    "RestoreConfig",
    "RestoreConfigError",
    "RestoreError",
    "RestorePlan",
    "RestoreVerifyError",
    "VerifyResult",
    "apply_plan",
    "ensure_restore_tables",
    "load_plan",
    "plan_restore",
    "verify_plan",
]
