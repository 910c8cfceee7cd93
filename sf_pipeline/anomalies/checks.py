"""Dagster asset checks: after each backup window, look for damage in `history/<Object>` and explain it.

Thin glue over the detectors: the check runs every detector on the window, stores an incident report
per finding, alerts on every error-level finding, and shows the reports (what, when, who, how much,
a change-volume chart and a ready-to-paste restore config) as check metadata.
"""

import json
import logging

import dagster as dg

from sf_pipeline.resources import SalesforceOrgResource, WarehouseResource, history_key
from sf_pipeline.salesforce import soql
from sf_pipeline.settings import ObjectSettings, Settings

from .alerts import check_url, incident_summary, send_alert
from .detectors import user_names_from_backup
from .incidents import IncidentReport, report_incident, save_incident, writable_columns
from .registry import check_description, run_detectors
from .thresholds import AnomalyThresholds

CHECK_NAME = "no_mass_damage"
log = logging.getLogger(__name__)


def check_key(sobject: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(history_key(sobject), CHECK_NAME)


def launchpad_yaml(report: IncidentReport, incident_id: int | None = None) -> str:
    """The restore config as the launchpad takes it: the contract keys under `ops: restore: config:`; with the
    stored incident's id, `incident: <id>` (a few lines, whatever the number of records)."""
    inner = report.restore_config_yaml(incident_id)
    return "ops:\n  restore:\n    config:\n" + "".join(
        f"      {line}\n" if line else "\n" for line in inner.splitlines()
    )


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
            reports: list[IncidentReport] = []
            ids: list[int] = []
            if findings:
                names = _user_names(conn, salesforce, sorted({f.user_id for f in findings if f.user_id}))
                try:
                    describe = salesforce.client().describe(obj.name)
                    field_names = {f["name"].lower(): f["name"] for f in describe["fields"]}
                    # a suggested restore names only fields the org lets it write back
                    writable = writable_columns(describe["fields"])
                except Exception as exc:  # noqa: BLE001 - fall back to column names
                    context.log.warning(f"describe of {obj.name} failed, using column names: {exc}")
                    field_names, writable = {}, None
                for finding in findings:
                    if finding.user_id and not finding.user_name:
                        finding.user_name = names.get(finding.user_id)
                    report = report_incident(
                        conn, finding, org=settings.backup_org, field_names=field_names, writable=writable
                    )
                    ids.append(save_incident(conn, report))
                    reports.append(report)
            conn.commit()
        errors = [r for r in reports if r.severity == "error"]
        for report in errors:
            # Counts, object, fields, user and window only: record values and ids stay in the check's
            # metadata and in sf_pipeline.incidents, out of logs that are shipped and kept elsewhere.
            link = check_url(settings.dagster_base_url, report.object, CHECK_NAME)
            context.log.error(
                f"INCIDENT {incident_summary(report)}. The full incident and its restore config "
                f"are in this check's metadata{f' ({link})' if link else ''}."
            )
            send_alert(report, link, logger=context.log)
        for report in reports:
            if report.severity != "error":
                context.log.warning(incident_summary(report))
        metadata: dict = {
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "findings": len(reports),
            "errors": len(errors),
        }
        if reports:
            worst, worst_id = reports[0], ids[0]
            metadata["incident_ids"] = dg.MetadataValue.json(ids)
            metadata["incident"] = dg.MetadataValue.md(
                "\n\n---\n\n".join(r.to_markdown(incident_id=i) for r, i in zip(reports, ids, strict=True))
            )
            metadata["affected_records"] = worst.affected_count
            metadata["acting_user"] = worst.user_label
            metadata["first_change"] = worst.first_change.isoformat() if worst.first_change else ""
            metadata["last_change"] = worst.last_change.isoformat() if worst.last_change else ""
            if worst.restore_config:
                metadata["restore_config"] = dg.MetadataValue.md(
                    "Paste into the `restore` job's launchpad (dry run):\n"
                    f"```yaml\n{launchpad_yaml(worst, worst_id)}```"
                )
                metadata["restore_config_json"] = dg.MetadataValue.json(
                    json.loads(json.dumps(worst.launchpad_config(worst_id)))
                )
            metadata["change_volume_24h"] = worst.chart_sparkline()
        if errors:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
        if reports:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)
        return dg.AssetCheckResult(passed=True, metadata=metadata)

    return _check
