"""Dagster asset checks: after each backup window, look for damage in `history/<Object>` and explain it.

Thin glue over the detectors: the check runs every detector on the window, stores an incident report
per finding, alerts on every error-level finding, and shows the reports (what, when, who, how much,
a change-volume chart and a ready-to-paste restore config) as check metadata.
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import psycopg

from sf_pipeline.resources import SalesforceOrgResource, WarehouseResource, dagster_metadata, history_key
from sf_pipeline.salesforce import soql
from sf_pipeline.settings import ObjectSettings, Settings

from .alerts import check_url, incident_summary, send_alert
from .detectors import Finding, user_names_from_backup
from .incidents import IncidentReport, check_metadata, report_incident, save_incident, writable_columns
from .registry import check_description, run_detectors
from .thresholds import AnomalyThresholds

CHECK_NAME = "no_mass_damage"
log = logging.getLogger(__name__)


def check_key(sobject: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(history_key(sobject), CHECK_NAME)


def _user_names(conn, salesforce: SalesforceOrgResource, user_ids: list[str]) -> dict[str, str]:
    names = user_names_from_backup(conn, user_ids)
    missing = [u for u in user_ids if u and u not in names]
    if missing:
        quoted = soql.id_list(u for u in missing if soql.is_record_id(u))
        try:
            rows = salesforce.client().restful(
                "query", params={"q": f"SELECT Id, Name FROM User WHERE Id IN ({quoted})"}
            )
            names.update({r["Id"]: r["Name"] for r in rows.get("records", [])})
        except Exception as exc:  # noqa: BLE001 - names are a courtesy; the report stands without them
            log.warning("could not read user names from the org: %s", exc)
    return names


def store_incidents(
    conn: psycopg.Connection[Any],
    salesforce: SalesforceOrgResource,
    sobject: str,
    org: str,
    findings: Sequence[Finding],
    warn: Callable[[str], Any],
) -> list[tuple[IncidentReport, int]]:
    """Each finding as a stored incident report, with its id: acting users named (from the backup, else the org),
    fields by their API names, a suggested restore naming only fields the org lets it write back."""
    if not findings:
        return []
    names = _user_names(conn, salesforce, sorted({f.user_id for f in findings if f.user_id}))
    try:
        describe = salesforce.client().describe(sobject)
        field_names = {f["name"].lower(): f["name"] for f in describe["fields"]}
        writable = writable_columns(describe["fields"])
    except Exception as exc:  # noqa: BLE001 - fall back to column names
        warn(f"describe of {sobject} failed, using column names: {exc}")
        field_names, writable = {}, None
    stored = []
    for finding in findings:
        if finding.user_id and not finding.user_name:
            finding.user_name = names.get(finding.user_id)
        report = report_incident(conn, finding, org=org, field_names=field_names, writable=writable)
        stored.append((report, save_incident(conn, report)))
    return stored


def announce(context: dg.AssetCheckExecutionContext, settings: Settings, reports: Sequence[IncidentReport]) -> None:
    """An error-level finding is logged and alerted; a warning is logged. Counts, object, fields, user and window
    only: record values and ids stay in the check's metadata and in sf_pipeline.incidents, out of logs that are
    shipped and kept elsewhere."""
    for report in reports:
        if report.severity != "error":
            continue
        link = check_url(settings.dagster_base_url, report.object, CHECK_NAME)
        context.log.error(
            f"INCIDENT {incident_summary(report)}. The full incident and its restore config "
            f"are in this check's metadata{f' ({link})' if link else ''}."
        )
        send_alert(report, link, logger=context.log)
    for report in reports:
        if report.severity != "error":
            context.log.warning(incident_summary(report))


def anomaly_check(
    obj: ObjectSettings,
    settings: Settings,
    partitions: dg.TimeWindowPartitionsDefinition,
    thresholds: AnomalyThresholds,
) -> dg.AssetChecksDefinition:
    """The check of one object, with its thresholds resolved when the code location loaded."""

    @dg.asset_check(
        asset=history_key(obj.name),
        name=CHECK_NAME,
        partitions_def=partitions,
        blocking=False,
        description=check_description(obj.name),
    )
    def _check(
        context: dg.AssetCheckExecutionContext,
        warehouse: dg.ResourceParam[WarehouseResource],
        salesforce: dg.ResourceParam[SalesforceOrgResource],
    ) -> dg.AssetCheckResult:
        window = context.partition_time_window
        if window.start <= partitions.start:
            # The first window is the full load: every record is "new", there is nothing to compare with.
            return dg.AssetCheckResult(
                passed=True,
                metadata={"note": "first window (full load): nothing to compare with"},
            )
        with warehouse.connect() as conn:
            findings = run_detectors(
                conn, obj.name, window.start, window.end, thresholds, history_start=partitions.start
            )
            stored = store_incidents(conn, salesforce, obj.name, settings.backup_org, findings, context.log.warning)
            conn.commit()
        announce(context, settings, [report for report, _ in stored])
        metadata = dagster_metadata(check_metadata(window.start, window.end, stored))
        if not stored:
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        errors = any(report.severity == "error" for report, _ in stored)
        severity = dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN
        return dg.AssetCheckResult(passed=False, severity=severity, metadata=metadata)

    return _check
