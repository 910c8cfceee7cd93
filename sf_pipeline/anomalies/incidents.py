"""Incident reports: everything an admin needs to understand a finding and undo it, stored in PostgreSQL.

An `IncidentReport` is built from a `Finding` (plain data, no database): what changed, how many records
and which share, when (first and last SystemModstamp, to the second), by whom, sample before/after
values, the change volume of the last 24 hours (chart), and a ready-to-paste launchpad config for the
restore job, as a dry run, selecting exactly the damaged records and fields with `as_of` one second
before the first damaging change. Reports are kept in `sf_pipeline.incidents`, one row per
(org, object, detector, window, fields): checking a window again updates its row.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from sf_pipeline.anomalies import registry
from sf_pipeline.anomalies.chart import bar_chart_png, sparkline
from sf_pipeline.anomalies.detectors import Finding, change_volume
from sf_pipeline.metadata import Markdown
from sf_pipeline.warehouse.names import ident, qualified

INCIDENT_SCHEMA = "sf_pipeline"
INCIDENT_TABLE = "incidents"
# Above this many records, a restore config selects by time span and user instead of listing ids (a
# launchpad config of 10,000 ids is ~250 KB; more makes the UI and the run's config unwieldy).
MAX_RESTORE_IDS = 10_000
DEFAULT_TARGET_ORG = "production"

_DDL_LOCK_KEY = 0x5F_414E_4F4D_414C  # "_ANOMAL": serializes concurrent creations of the incident table
_BARE_YAML = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})


def format_instant(ts: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC, to the second (the restore contract's format)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _floor_second(ts: datetime) -> datetime:
    return ts.replace(microsecond=0)


def _api(column: str, field_names: Mapping[str, str]) -> str:
    return field_names.get(column, field_names.get(column.lower(), column))


def restores_whole_records(finding: Finding) -> bool:
    """Deleted or vanished records come back whole: their restore names no field, so it takes every field the
    org's describe lets it create or update (history cannot tell formula or derived fields from others)."""
    return finding.restore_deleted or registry.restores_whole_records(finding.detector)


def restorable_fields(finding: Finding, writable: Collection[str] | None) -> tuple[str, ...]:
    """The finding's damaged columns a restore can write back: those describe says are updateable and not
    calculated (`writable`, lower-cased). The detectors list every column that changed, and the org derives
    some from others (`IsClosed`, `ForecastCategory`, `ExpectedRevenue` from `StageName`) or sets them itself
    (`MasterRecordId`): putting the damaged field back brings those back too. `writable` None: all of them."""
    if writable is None:
        return tuple(finding.restore_fields)
    allowed = {c.lower() for c in writable}
    return tuple(c for c in finding.restore_fields if c.lower() in allowed)


def restore_config_for(
    finding: Finding,
    field_names: Mapping[str, str] | None = None,
    *,
    target_org: str = DEFAULT_TARGET_ORG,
    max_record_ids: int = MAX_RESTORE_IDS,
    writable: Collection[str] | None = None,
) -> dict[str, Any] | None:
    """The restore selection that undoes a finding, as a dry run (stored with the incident; the launchpad
    gets `incident: <id>`, see `IncidentReport.launchpad_config`).

    Selects exactly the damaged records: their ids when there are at most `max_record_ids` (all of them are
    stored with the incident in `sf_pipeline.incident_records`), and always the time span of the damaging
    changes (`changed_between` = [first, last + 1 s), to the second) and, when one user made them all,
    `changed_by`. Fields: only those a restore can write (`writable`: lower-cased updateable, not calculated
    columns from describe), or none for records that come back whole. None when there is nothing to restore
    (a volume drop, or only fields the org computes changed).
    """
    if not finding.restorable or finding.first_change is None or finding.last_change is None:
        return None
    whole = restores_whole_records(finding)
    fields = () if whole else restorable_fields(finding, writable)
    if not whole and not fields:
        return None
    names = {k.lower(): v for k, v in (field_names or {}).items()}
    ids = finding.restore_record_ids if finding.restore_record_ids is not None else finding.record_ids
    first = _floor_second(finding.first_change)
    last = _floor_second(finding.last_change)
    before = _floor_second(finding.restore_as_of or finding.first_change)
    return {
        "object": finding.restore_object or finding.object,
        "fields": [_api(c, names) for c in fields],
        "as_of": format_instant(before - timedelta(seconds=1)),
        "record_ids": list(ids) if len(ids) <= max_record_ids else [],
        "changed_between": [format_instant(first), format_instant(last + timedelta(seconds=1))],
        "changed_by": finding.user_id if finding.acted_alone else None,
        "target_org": target_org,
        "dry_run": True,
        "on_conflict": "skip",
        "restore_deleted": finding.restore_deleted,
    }


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _BARE_YAML.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


@dataclass(frozen=True)
class IncidentReport:
    """One failed check, for people (`to_markdown`), machines (`to_json`) and the restore job
    (`restore_config`, `restore_config_yaml`). Field names are API names where the caller gave them.

    `record_ids` lists the damaged records when there are at most `MAX_RESTORE_IDS` (`record_count` is
    always the full number); `volume` is the change volume of the 24 hours up to the window end.
    """

    org: str
    object: str
    detector: str
    severity: str
    window_start: datetime
    window_end: datetime
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    affected_count: int
    share: float | None
    live_records: int | None
    first_change: datetime | None
    last_change: datetime | None
    user_id: str | None
    user_name: str | None
    acted_alone: bool
    sample: tuple[dict[str, Any], ...]
    record_ids: tuple[str, ...]
    record_count: int
    restore_config: dict[str, Any] | None
    restore_note: str
    volume: tuple[tuple[datetime, int], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    # Every record the restore selects (record_ids holds at most MAX_RESTORE_IDS): saved with the incident in
    # sf_pipeline.incident_records by save_incident, never in the report's JSON.
    restore_ids: tuple[str, ...] = field(default=(), repr=False, compare=False)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_finding(
        cls,
        finding: Finding,
        *,
        org: str = DEFAULT_TARGET_ORG,
        field_names: Mapping[str, str] | None = None,
        volume: Sequence[tuple[datetime, int]] = (),
        max_record_ids: int = MAX_RESTORE_IDS,
        writable: Collection[str] | None = None,
    ) -> IncidentReport:
        """The report of a finding. `field_names` maps lower-cased columns to API names (from describe;
        for orphans include the parent's); columns it lacks are shown as they are. `writable`: the lower-cased
        columns describe says a restore can write (updateable, not calculated); None: every damaged column."""
        if finding.window_start is None or finding.window_end is None:
            raise ValueError("a finding without its window cannot be reported; use run_detectors' findings")
        names = {k.lower(): v for k, v in (field_names or {}).items()}
        config = restore_config_for(finding, names, target_org=org, max_record_ids=max_record_ids, writable=writable)
        derived = (
            ()
            if restores_whole_records(finding)
            else tuple(c for c in finding.restore_fields if c not in restorable_fields(finding, writable))
        )
        sample_names = finding.details.get("sample_names", {})
        sample = tuple(
            {
                "id": change.record_id,
                "name": sample_names.get(change.record_id),
                "before": {_api(c, names): v for c, v in change.before.items()},
                "after": {_api(c, names): v for c, v in change.after.items()},
            }
            for change in finding.sample
        )
        details = {k: v for k, v in finding.details.items() if k != "sample_names"}
        if derived:
            details["not_restored_fields"] = [_api(c, names) for c in derived]
        restore_ids = finding.restore_record_ids if finding.restore_record_ids is not None else finding.record_ids
        return cls(
            org=org,
            object=finding.object,
            detector=finding.detector,
            severity=finding.severity,
            window_start=finding.window_start,
            window_end=finding.window_end,
            columns=tuple(sorted(finding.fields)),
            fields=tuple(_api(c, names) for c in sorted(finding.fields)),
            affected_count=finding.affected_count,
            share=finding.share,
            live_records=finding.live_records,
            first_change=finding.first_change,
            last_change=finding.last_change,
            user_id=finding.user_id,
            user_name=finding.user_name,
            acted_alone=finding.acted_alone,
            sample=sample,
            record_ids=finding.record_ids if len(finding.record_ids) <= max_record_ids else (),
            record_count=len(finding.record_ids),
            restore_config=config,
            restore_note=_restore_note(finding, config, max_record_ids, details.get("not_restored_fields", ())),
            volume=tuple(volume),
            details=details,
            restore_ids=tuple(restore_ids) if config is not None else (),
        )

    # --------------------------------------------------------------------------------- summaries
    @property
    def title(self) -> str:
        what = registry.title_of(self.detector)
        where = f"{self.object}.{', '.join(self.fields)}" if self.fields else self.object
        who = f" by {self.user_label}" if self.user_id else ""
        if not self.affected_count:
            return f"{what} on {where}"
        return f"{what} on {where}: {self.affected_count:,} records{who}"

    @property
    def user_label(self) -> str:
        if not self.user_id:
            return "unknown user"
        return f"{self.user_name} ({self.user_id})" if self.user_name else self.user_id

    def launchpad_config(self, incident_id: int | None) -> dict[str, Any] | None:
        """The restore job's launchpad config: `incident: <id>` (the restore takes the records, fields, window,
        object and user from the stored incident), the org and a dry run. Without an id (a report not stored
        yet): the whole selection. None when there is nothing to restore."""
        if self.restore_config is None:
            return None
        if incident_id is None:
            return dict(self.restore_config)
        return {"incident": incident_id, "target_org": self.restore_config.get("target_org", self.org), "dry_run": True}

    def launchpad_yaml(self, incident_id: int | None = None) -> str:
        """The restore config as the launchpad takes it: the contract keys under `ops: restore: config:`; with the
        stored incident's id, `incident: <id>` (a few lines, whatever the number of records)."""
        return "ops:\n  restore:\n    config:\n" + "".join(
            f"      {line}\n" if line else "\n" for line in self.restore_config_yaml(incident_id).splitlines()
        )

    def restore_config_yaml(self, incident_id: int | None = None) -> str:
        """The restore config as YAML to paste into the launchpad of the restore job (empty if none).

        With the stored incident's id it is `incident: <id>` with what it selects in comments: a few lines
        whatever the incident's size, never thousands of pasted ids."""
        config = self.restore_config
        if config is None:
            return ""
        if incident_id is not None:
            return self._incident_yaml(incident_id)
        lines = [
            f"# Undo: {self.title}",
            "# Dry run first: launch as is and review the plan it stores. Then write exactly that plan: launch this",
            "# config again with dry_run: false and plan: <the dry run's run id> (its apply_config metadata, ready",
            "# to paste); records changed in the org since the dry run are refused, not overwritten.",
        ]
        for key, value in config.items():
            if key == "record_ids" and not value and self.record_count:
                lines.append(
                    f"record_ids: []  # {self.record_count:,} records: too many to list, "
                    "selected by changed_between and changed_by"
                )
            elif key == "record_ids" and value:
                lines.append("record_ids:")
                lines.extend(f"  - {_yaml_scalar(v)}" for v in value)
            elif isinstance(value, list):
                lines.append(f"{key}: [{', '.join(_yaml_scalar(v) for v in value)}]")
            else:
                lines.append(f"{key}: {_yaml_scalar(value)}")
        return "\n".join(lines) + "\n"

    def _incident_yaml(self, incident_id: int) -> str:
        config = self.restore_config or {}
        count = len(self.restore_ids) or len(config.get("record_ids") or ()) or self.record_count
        fields = ", ".join(config.get("fields") or ()) or "every field it can write"
        lines = [
            f"# Undo: {self.title}",
            f"# incident {incident_id} selects {count:,} {config.get('object')} records ({fields}) as they were at "
            f"{config.get('as_of')}",
        ]
        if config.get("restore_deleted"):
            lines.append("# deleted records are brought back (undeleted, or re-created with new ids)")
        lines += [
            "# Keys beside incident narrow or override it (record_ids, fields, as_of, on_conflict, ...).",
            "# Dry run first: launch as is and review the plan it stores. Then write exactly that plan: launch this",
            "# config again with dry_run: false and plan: <the dry run's run id> (its apply_config metadata).",
        ]
        lines += [f"{key}: {_yaml_scalar(value)}" for key, value in (self.launchpad_config(incident_id) or {}).items()]
        return "\n".join(lines) + "\n"

    def _highlighted(self) -> list[bool]:
        if not self.volume:
            return []
        step = self.volume[1][0] - self.volume[0][0] if len(self.volume) > 1 else timedelta(minutes=5)
        low = self.first_change or self.window_start
        high = self.last_change or (self.window_end - timedelta(microseconds=1))
        return [start <= high and start + step > low for start, _ in self.volume]

    def chart_png(self) -> bytes:
        """A PNG bar chart of the change volume (5-minute buckets), the damaging span's bars in red."""
        return bar_chart_png([count for _, count in self.volume], self._highlighted())

    def chart_data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.chart_png()).decode("ascii")

    def chart_sparkline(self, width: int = 72) -> str:
        return sparkline([count for _, count in self.volume], width)

    def to_markdown(self, embed_chart: bool = True, incident_id: int | None = None) -> str:
        """A human summary: what changed, when, by whom, a sample, the change volume and how to undo it."""
        lines = [f"### {self.severity.upper()}: {self.title}", ""]
        share = (
            f" ({self.share:.1%} of {self.live_records:,} live {self.object} records)"
            if (self.share is not None and self.live_records is not None)
            else ""
        )
        lines.append(f"- **What**: {registry.what_changed(self)}")
        lines.append(f"- **Records affected**: {self.affected_count:,}{share}")
        if self.first_change and self.last_change:
            lines.append(
                f"- **When**: first change {format_instant(self.first_change)}, "
                f"last change {format_instant(self.last_change)} (SystemModstamp, UTC)"
            )
        lines.append(
            f"- **Window**: {format_instant(self.window_start)} to {format_instant(self.window_end)} (org `{self.org}`)"
        )
        if self.user_id:
            alone = (
                ""
                if self.acted_alone
                else (f" (made most of the changes; {self.details.get('users', 'several')} users were involved)")
            )
            lines.append(f"- **By**: {self.user_label}{alone}")
        if self.sample:
            lines += [
                "",
                "Sample (before -> after):",
                "",
                "| Record | Name | Before | After |",
                "|---|---|---|---|",
            ]
            for item in self.sample:
                lines.append(
                    f"| `{item['id']}` | {_cell(item.get('name'))} | {_cell(_values(item['before']))} "
                    f"| {_cell(_values(item['after']))} |"
                )
        if self.volume:
            peak_at, peak = max(self.volume, key=lambda bucket: bucket[1])
            lines += [
                "",
                f"Change volume of {self.object}, 24 hours to {format_instant(self.window_end)} "
                f"(5-minute buckets, peak {peak:,} at {format_instant(peak_at)}; red: the damaging changes):",
                "",
                "```",
                self.chart_sparkline(),
                "```",
            ]
            if embed_chart:
                lines += ["", f"![change volume]({self.chart_data_uri()})"]
        lines += ["", "#### How to undo", "", self.restore_note]
        if self.restore_config is not None:
            lines += ["", "```yaml", self.restore_config_yaml(incident_id).rstrip("\n"), "```"]
        return "\n".join(lines) + "\n"

    @property
    def what(self) -> str:
        """One sentence: what changed."""
        return registry.what_changed(self)

    # ------------------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data (instants as ISO strings); the full id list is stored apart."""
        data = asdict(self)
        data.pop("restore_ids", None)
        return _jsonable(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IncidentReport:
        """The report `to_dict` gave (as stored in `sf_pipeline.incidents.report`)."""

        def instant(value: Any) -> datetime | None:
            return datetime.fromisoformat(value) if isinstance(value, str) else value

        values = dict(data)
        for key in ("window_start", "window_end", "first_change", "last_change"):
            values[key] = instant(values.get(key))
        values["volume"] = tuple((instant(start), count) for start, count in values.get("volume") or ())
        for key in ("columns", "fields", "record_ids"):
            values[key] = tuple(values.get(key) or ())
        values["sample"] = tuple(values.get("sample") or ())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def _values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {'(empty)' if v is None else v}" for k, v in values.items())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")[:120]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def _restore_note(
    finding: Finding, config: dict[str, Any] | None, max_record_ids: int, derived: Sequence[str] = ()
) -> str:
    if config is None:
        if finding.detector == "volume_drop":
            return (
                "Nothing to restore: no record changed. Look at the backup run of this window and at the "
                "backup user's access to the object; re-run the window once it is fixed."
            )
        if finding.detector == "volume_spike" and finding.details.get("new_records"):
            # A restore puts values back and brings deleted records back; it never deletes what was created.
            return (
                f"Not restorable: this spike is {finding.details['new_records']:,} records created in the window "
                "(inserts), and a restore puts back values and deleted records; it never deletes records that "
                "were created. Review the records created in this window and delete the unwanted ones in the org "
                "(the backup keeps them, so that deletion can itself be restored)."
            )
        if derived:
            return (
                f"Nothing to restore: only fields the org computes or sets itself changed "
                f"({', '.join(derived)}); look for the change that drove them."
            )
        return "Nothing a restore could bring back was identified."
    ids = finding.restore_record_ids if finding.restore_record_ids is not None else finding.record_ids
    target = config["object"]
    parts = [
        "Run the restore job with the config below: a dry run, it stores its plan and writes nothing; then apply "
        "that reviewed plan with the same config, dry_run: false and plan: <the dry run's run id> (the dry run's "
        "apply_config shows it). It "
        f"puts back {', '.join(config['fields'][:8]) or 'every field it can write'}"
        f"{'...' if len(config['fields']) > 8 else ''} "
        f"of {len(ids):,} {target} records as they were at {config['as_of']}, one second before the first "
        "damaging change, and skips records changed again since (on_conflict: skip)."
    ]
    if derived:
        parts.append(
            f"Not restored, the org computes or sets them itself and they follow the restored fields: "
            f"{', '.join(derived)}."
        )
    if finding.restore_deleted:
        parts.append("Deleted records are brought back (restore_deleted: true).")
    if finding.details.get("cascade"):
        parts.append(
            f"The {finding.details.get('cascade_records', 0):,} records deleted with them come back in the "
            "same run: undeleting a record undeletes its cascade (re-created records bring theirs with "
            "with_children)."
        )
    if finding.detector == "mass_vanishing":
        parts.append(
            "They are no longer in the recycle bin, so they are re-created from history with new ids; "
            "records that pointed at them are not re-pointed."
        )
    if len(ids) > max_record_ids:
        parts.append(
            f"The incident keeps all {len(ids):,} record ids (sf_pipeline.incident_records): "
            "`incident: <id>` selects exactly them, nothing is pasted."
        )
    if finding.detector == "volume_spike":
        parts.append("A spike is not necessarily damage: read the dry run's plan before applying anything.")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------- storage
def report_incident(
    conn: psycopg.Connection[Any],
    finding: Finding,
    *,
    org: str = DEFAULT_TARGET_ORG,
    field_names: Mapping[str, str] | None = None,
    hours: int = 24,
    bucket_minutes: int = 5,
    writable: Collection[str] | None = None,
) -> IncidentReport:
    """The report of a finding with its change-volume chart data read from the history. `writable`: the
    lower-cased columns a restore can write (see `writable_columns`)."""
    if finding.window_end is None:
        raise ValueError("a finding without its window cannot be reported; use run_detectors' findings")
    volume = change_volume(conn, finding.object, finding.window_end, hours, bucket_minutes)
    return IncidentReport.from_finding(finding, org=org, field_names=field_names, volume=volume, writable=writable)


def writable_columns(describe_fields: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Lower-cased names of the fields a restore can write back on a live record: updateable per describe and
    not calculated (formulas, roll-ups)."""
    return frozenset(str(f["name"]).lower() for f in describe_fields if f.get("updateable") and not f.get("calculated"))


_RECORDS_TABLE = qualified(INCIDENT_SCHEMA, "incident_records")


_TABLE = qualified(INCIDENT_SCHEMA, INCIDENT_TABLE)

_CREATE = sql.SQL(
    """
    CREATE TABLE IF NOT EXISTS {table} (
        id bigserial PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        org text NOT NULL,
        object text NOT NULL,
        detector text NOT NULL,
        severity text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        fields text[] NOT NULL DEFAULT '{{}}',
        affected_count bigint NOT NULL,
        share double precision,
        first_change timestamptz,
        last_change timestamptz,
        user_id text,
        user_name text,
        report jsonb NOT NULL,
        restore_config jsonb,
        UNIQUE (org, object, detector, window_start, fields)
    )
    """
)

_UPSERT = sql.SQL(
    """
    INSERT INTO {table} (org, object, detector, severity, window_start, window_end, fields, affected_count,
                         share, first_change, last_change, user_id, user_name, report, restore_config)
    VALUES (%(org)s, %(object)s, %(detector)s, %(severity)s, %(window_start)s, %(window_end)s, %(fields)s,
            %(affected_count)s, %(share)s, %(first_change)s, %(last_change)s, %(user_id)s, %(user_name)s,
            %(report)s, %(restore_config)s)
    ON CONFLICT (org, object, detector, window_start, fields) DO UPDATE SET
        updated_at = now(), severity = EXCLUDED.severity, window_end = EXCLUDED.window_end,
        affected_count = EXCLUDED.affected_count, share = EXCLUDED.share,
        first_change = EXCLUDED.first_change, last_change = EXCLUDED.last_change,
        user_id = EXCLUDED.user_id, user_name = EXCLUDED.user_name,
        report = EXCLUDED.report, restore_config = EXCLUDED.restore_config
    RETURNING id
    """
)


def check_metadata(start: datetime, end: datetime, stored: Sequence[tuple[IncidentReport, int]]) -> dict[str, Any]:
    """What an anomaly check shows of its window (plain values, sf_pipeline.metadata): how many findings and
    errors; with findings, every stored report, and of the worst (the first) its records, user, span, the restore
    config to paste and the change volume of the last 24 hours."""
    metadata: dict[str, Any] = {
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "findings": len(stored),
        "errors": sum(report.severity == "error" for report, _ in stored),
    }
    if not stored:
        return metadata
    worst, worst_id = stored[0]
    metadata |= {
        "incident_ids": [incident_id for _, incident_id in stored],
        "incident": Markdown("\n\n---\n\n".join(r.to_markdown(incident_id=i) for r, i in stored)),
        "affected_records": worst.affected_count,
        "acting_user": worst.user_label,
        "first_change": worst.first_change.isoformat() if worst.first_change else "",
        "last_change": worst.last_change.isoformat() if worst.last_change else "",
    }
    if worst.restore_config:
        metadata["restore_config"] = Markdown(
            f"Paste into the `restore` job's launchpad (dry run):\n```yaml\n{worst.launchpad_yaml(worst_id)}```"
        )
        metadata["restore_config_json"] = json.loads(json.dumps(worst.launchpad_config(worst_id)))
    metadata["change_volume_24h"] = worst.chart_sparkline()
    return metadata


def ensure_incident_table(conn: psycopg.Connection[Any]) -> None:
    """Create schema `sf_pipeline` and table `sf_pipeline.incidents` unless they exist."""
    with conn.transaction():
        # CREATE ... IF NOT EXISTS is not safe against a concurrent twin (a unique violation in the
        # catalog): two checks storing their first incident at once serialize on this lock.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(INCIDENT_SCHEMA)))
        conn.execute(_CREATE.format(table=_TABLE))
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS incidents_latest ON {} (window_start DESC, id DESC)").format(_TABLE)
        )
        # Every record an incident's restore selects, however many: `incident: <id>` in a restore config
        # reads them here instead of a launchpad config of pasted ids.
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (incident_id bigint NOT NULL REFERENCES {} (id) ON DELETE CASCADE, "
                "record_id text NOT NULL, PRIMARY KEY (incident_id, record_id))"
            ).format(_RECORDS_TABLE, _TABLE)
        )
        # an erasure request (privacy/forget.py) finds the incidents whose sample shows a record by its id
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS incidents_sample ON {} USING gin ((report->'sample') jsonb_path_ops)"
            ).format(_TABLE)
        )


def save_incident(conn: psycopg.Connection[Any], report: IncidentReport) -> int:
    """Store a report (creating the table if needed); the same org, object, detector, window and fields
    again updates the existing row. Returns the incident's id."""
    ensure_incident_table(conn)
    params = {
        "org": report.org,
        "object": report.object,
        "detector": report.detector,
        "severity": report.severity,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "fields": sorted(report.columns),
        "affected_count": report.affected_count,
        "share": report.share,
        "first_change": report.first_change,
        "last_change": report.last_change,
        "user_id": report.user_id,
        "user_name": report.user_name,
        "report": Jsonb(report.to_dict()),
        "restore_config": Jsonb(report.restore_config) if report.restore_config is not None else None,
    }
    with conn.transaction():
        (incident_id,) = conn.execute(_UPSERT.format(table=_TABLE), params).fetchone()
        conn.execute(sql.SQL("DELETE FROM {} WHERE incident_id = %s").format(_RECORDS_TABLE), (incident_id,))
        if report.restore_ids:
            with conn.cursor().copy(
                sql.SQL("COPY {} (incident_id, record_id) FROM STDIN").format(_RECORDS_TABLE)
            ) as copy:
                for record_id in dict.fromkeys(report.restore_ids):
                    copy.write_row((incident_id, record_id))
    return incident_id


def incident_record_ids(conn: psycopg.Connection[Any], incident_id: int) -> list[str]:
    """Every record id an incident's restore selects, sorted (empty for incidents stored before the ids were)."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{INCIDENT_SCHEMA}.incident_records",)).fetchone()[0]
    if exists is None:
        return []
    query = sql.SQL("SELECT record_id FROM {} WHERE incident_id = %s ORDER BY record_id").format(_RECORDS_TABLE)
    return [row[0] for row in conn.execute(query, (incident_id,))]


def incident_restore_selection(conn: psycopg.Connection[Any], incident_id: int) -> dict[str, Any] | None:
    """What a restore config's `incident: <id>` stands for: the stored incident's restore selection (object,
    fields, as_of, changed_between, changed_by, restore_deleted) with every record id it selects. None when there
    is no such incident; `{}` when it has nothing to restore."""
    stored = get_incident(conn, incident_id)
    if stored is None:
        return None
    config = stored.report.restore_config
    if not config:
        return {}
    keys = ("object", "fields", "as_of", "record_ids", "changed_between", "changed_by", "restore_deleted")
    selection = {k: config[k] for k in keys if k in config}
    ids = incident_record_ids(conn, incident_id)
    if ids:
        selection["record_ids"] = ids
    return selection


@dataclass(frozen=True)
class StoredIncident:
    """An incident as listed from `sf_pipeline.incidents`."""

    id: int
    created_at: datetime
    updated_at: datetime
    report: IncidentReport

    @property
    def restore_config(self) -> dict[str, Any] | None:
        return self.report.restore_config

    def restore_config_yaml(self) -> str:
        """`incident: <id>` and what it selects, as the restore job's launchpad takes it."""
        return self.report.restore_config_yaml(self.id)

    def launchpad_config(self) -> dict[str, Any] | None:
        return self.report.launchpad_config(self.id)


def get_incident(conn: psycopg.Connection[Any], incident_id: int) -> StoredIncident | None:
    """One stored incident by its id (as `sf-pipeline incidents` lists it), or None."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{INCIDENT_SCHEMA}.{INCIDENT_TABLE}",)).fetchone()[0]
    if exists is None:
        return None
    query = sql.SQL("SELECT id, created_at, updated_at, report FROM {} WHERE id = %s").format(_TABLE)
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(query, (incident_id,)).fetchone()
    if row is None:
        return None
    return StoredIncident(row["id"], row["created_at"], row["updated_at"], IncidentReport.from_dict(row["report"]))


def list_incidents(conn: psycopg.Connection[Any], limit: int = 20, object: str | None = None) -> list[StoredIncident]:
    """Stored incidents, latest window first (then latest stored), optionally of one object only."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{INCIDENT_SCHEMA}.{INCIDENT_TABLE}",)).fetchone()[0]
    if exists is None:
        return []
    where = sql.SQL("WHERE lower(object) = lower(%(object)s)") if object else sql.SQL("")
    # A cascade's root (the incident holding `details.cascade`) comes first in its window: undo it first.
    query = sql.SQL(
        "SELECT id, created_at, updated_at, report FROM {} {} ORDER BY window_start DESC, "
        "(report -> 'details' ? 'cascade') DESC, id DESC LIMIT %(limit)s"
    ).format(_TABLE, where)
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query, {"object": object, "limit": limit}).fetchall()
    return [
        StoredIncident(row["id"], row["created_at"], row["updated_at"], IncidentReport.from_dict(row["report"]))
        for row in rows
    ]
