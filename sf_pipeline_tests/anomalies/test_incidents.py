"""Incident reports: the restore config, the markdown an admin reads, the chart, and their storage."""

from __future__ import annotations

import json
import re
import struct
import zlib
from datetime import datetime, timedelta

import psycopg
import pytest
import yaml

from sf_pipeline.anomalies import (
    MAX_RESTORE_IDS,
    Finding,
    IncidentReport,
    SampleChange,
    get_incident,
    list_incidents,
    report_incident,
    run_detectors,
    save_incident,
)
from sf_pipeline.anomalies.chart import HIGHLIGHT, sparkline
from sf_pipeline_tests.anomalies.builders import (
    INTEGRATION,
    USER_NAMES,
    WINDOW_END,
    WINDOW_START,
    History,
    record_id,
    spread,
)

FIELD_NAMES = {"accountid": "AccountId", "stagename": "StageName"}


def nulling_finding(count: int = 3, *, acted_alone: bool = True, first_ms: int = 0) -> Finding:
    ids = tuple(record_id("Opportunity", i) for i in range(count))
    first = WINDOW_START.replace(microsecond=first_ms * 1000)
    return Finding(
        detector="mass_nulling",
        severity="error",
        object="Opportunity",
        fields=("accountid",),
        affected_count=count,
        share=0.5,
        first_change=first,
        last_change=WINDOW_START + timedelta(minutes=3, microseconds=500_000),
        user_id=INTEGRATION,
        user_name="Integration User",
        sample=(SampleChange(ids[0], {"accountid": "001000000000000042"}, {"accountid": None}),),
        record_ids=ids,
        restore_fields=("accountid",),
        details={
            "per_field": [{"field": "accountid", "records": count}],
            "sample_names": {ids[0]: "Big | deal"},
        },
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        acted_alone=acted_alone,
        live_records=count * 2,
    )


def volume(spike_at: datetime | None = None) -> list[tuple[datetime, int]]:
    since = WINDOW_END - timedelta(hours=24)
    return [
        (since + i * timedelta(minutes=5), 900 if since + i * timedelta(minutes=5) == spike_at else 3 + i % 4)
        for i in range(288)
    ]


def png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw RGB rows (filter bytes included) of a PNG made by `encode_png`."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (depth, color) == (8, 2)
    data, pos = b"", 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(data)


# ------------------------------------------------------------------------------------ restore config
def test_restore_config_selects_the_damaged_records_with_as_of_one_second_before_the_first_change() -> None:
    report = IncidentReport.from_finding(nulling_finding(first_ms=250), field_names=FIELD_NAMES)

    assert report.restore_config == {
        "object": "Opportunity",
        "fields": ["AccountId"],
        "as_of": "2026-11-24T01:59:59Z",
        "record_ids": [record_id("Opportunity", i) for i in range(3)],
        "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:03:01Z"],
        "changed_by": INTEGRATION,
        "target_org": "production",
        "dry_run": True,
        "on_conflict": "skip",
        "restore_deleted": False,
    }
    text = report.restore_config_yaml()
    assert yaml.safe_load(text) == report.restore_config
    assert 'as_of: "2026-11-24T01:59:59Z"' in text and "fields: [AccountId]" in text
    assert "object: Opportunity" in text and "dry_run: true" in text


def test_more_than_ten_thousand_records_keep_every_id_for_incident_instead_of_pasting_them() -> None:
    report = IncidentReport.from_finding(nulling_finding(MAX_RESTORE_IDS + 1), field_names=FIELD_NAMES)

    config = report.restore_config
    assert config["record_ids"] == [] and config["changed_by"] == INTEGRATION
    assert config["changed_between"] == ["2026-11-24T02:00:00Z", "2026-11-24T02:03:01Z"]
    assert report.record_ids == () and report.record_count == MAX_RESTORE_IDS + 1
    assert len(report.restore_ids) == MAX_RESTORE_IDS + 1 and "restore_ids" not in report.to_dict()
    assert "keeps all 10,001 record ids" in report.restore_note
    # the launchpad config of the stored incident: three keys, whatever its size
    text = report.restore_config_yaml(7)
    assert yaml.safe_load(text) == {"incident": 7, "target_org": "production", "dry_run": True}
    assert "10,001 Opportunity records (AccountId)" in text and len(text.encode()) < 1024

    at_limit = IncidentReport.from_finding(nulling_finding(MAX_RESTORE_IDS))
    assert len(at_limit.restore_config["record_ids"]) == MAX_RESTORE_IDS


def test_damage_by_several_users_has_no_changed_by() -> None:
    report = IncidentReport.from_finding(nulling_finding(MAX_RESTORE_IDS + 5, acted_alone=False))

    assert report.restore_config["changed_by"] is None
    assert len(report.restore_ids) == MAX_RESTORE_IDS + 5


def _overwrite_of_stage(count: int = 60) -> Finding:
    """StageName set to Closed Lost: the org derives IsClosed, ForecastCategory, Probability, ExpectedRevenue."""
    finding = nulling_finding(count)
    derived = ("expectedrevenue", "forecastcategory", "forecastcategoryname", "isclosed", "probability", "stagename")
    return Finding(**{**finding.__dict__, "detector": "mass_overwrite", "fields": derived, "restore_fields": derived})


def test_suggested_restore_names_only_fields_the_org_lets_it_write() -> None:
    writable = {"stagename", "probability", "forecastcategoryname", "accountid", "amount"}
    report = IncidentReport.from_finding(
        _overwrite_of_stage(),
        field_names={
            "stagename": "StageName",
            "probability": "Probability",
            "isclosed": "IsClosed",
            "forecastcategoryname": "ForecastCategoryName",
        },
        writable=writable,
    )
    assert report.restore_config["fields"] == ["ForecastCategoryName", "Probability", "StageName"]
    assert report.details["not_restored_fields"] == ["expectedrevenue", "forecastcategory", "IsClosed"]
    assert "IsClosed" in report.restore_note and "computes or sets them itself" in report.restore_note
    # only derived fields changed: nothing a restore could write
    only_derived = IncidentReport.from_finding(_overwrite_of_stage(), writable={"amount"})
    assert only_derived.restore_config is None and "computes or sets itself" in only_derived.restore_note


def test_deleted_records_come_back_whole_with_no_field_list() -> None:
    finding = nulling_finding(60)
    deleted = Finding(
        **{
            **finding.__dict__,
            "detector": "mass_delete",
            "fields": (),
            "restore_fields": ("masterrecordid", "name", "accountid"),
            "restore_deleted": True,
        }
    )
    config = IncidentReport.from_finding(deleted, writable={"name"}).restore_config
    assert config["fields"] == [] and config["restore_deleted"] is True
    assert len(config["record_ids"]) == 60


def test_a_finding_with_nothing_to_restore_has_no_config() -> None:
    drop = Finding(
        "volume_drop",
        "warning",
        "Lead",
        (),
        0,
        None,
        None,
        None,
        None,
        (),
        (),
        (),
        {"baseline_median": 80},
        WINDOW_START,
        WINDOW_END,
    )
    report = IncidentReport.from_finding(drop)

    assert report.restore_config is None and report.restore_config_yaml() == ""
    assert "permissions" in report.to_markdown()


# ------------------------------------------------------------------------------------ markdown and chart
def test_markdown_says_what_changed_when_by_whom_and_how_to_undo() -> None:
    spike_at = WINDOW_START
    report = IncidentReport.from_finding(nulling_finding(1234), field_names=FIELD_NAMES, volume=volume(spike_at))

    text = report.to_markdown()

    assert "Integration User" in text and INTEGRATION in text
    assert "1,234" in text and "50.0% of 2,468 live Opportunity records" in text
    assert "`AccountId` went from a value to empty" in text
    assert "first change 2026-11-24T02:00:00Z, last change 2026-11-24T02:03:00Z" in text
    assert "Big \\| deal" in text and "AccountId: 001000000000000042" in text and "AccountId: (empty)" in text
    assert "#### How to undo" in text
    yaml_block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    assert yaml.safe_load(yaml_block) == report.restore_config
    assert "![change volume](data:image/png;base64," in text
    assert "█" in text
    assert "data:image" not in report.to_markdown(embed_chart=False)


def test_chart_shows_the_damaging_buckets_in_red() -> None:
    report = IncidentReport.from_finding(nulling_finding(), volume=volume(WINDOW_START))

    width, height, raw = png_pixels(report.chart_png())

    assert (width, height) == (8 * 2 + 288 * 4 - 1, 160)
    rows = [raw[y * (width * 3 + 1) + 1 : (y + 1) * (width * 3 + 1)] for y in range(height)]
    red_columns = {x for row in rows for x in range(width) if row[3 * x : 3 * x + 3] == bytes(HIGHLIGHT)}
    # The damage spans 02:00:00-02:03:00.5, one bucket: bucket 276 of 288 (24 h back from 03:00).
    assert red_columns == {8 + 276 * 4 + dx for dx in range(3)}
    spike_height = sum(1 for row in rows if row[3 * (8 + 276 * 4) : 3 * (8 + 276 * 4) + 3] == bytes(HIGHLIGHT))
    assert spike_height > 100


def test_sparkline_sums_buckets_to_fit_its_width() -> None:
    assert sparkline([0, 0, 0, 8]) == "▁▁▁█"
    assert sparkline([1] * 288, width=72) == "█" * 72
    line = sparkline([3] * 276 + [900] + [3] * 11)
    assert len(line) == 72 and line.index("█") == 69 and set(line) - {"█"} == {"▂"}


# ------------------------------------------------------------------------------------ storage
def damaged_opportunities(history: History) -> list[str]:
    history.create("Opportunity", {"accountid": "varchar(18)", "name": "text", "stagename": "text"})
    ids = history.insert(
        "Opportunity",
        [
            {"id": record_id("Opportunity", i), "accountid": "001000000000000001", "name": f"Deal {i}"}
            for i in range(120)
        ],
    )
    history.update(
        "Opportunity",
        ids,
        {"accountid": None},
        spread(WINDOW_START, WINDOW_START + timedelta(minutes=3), 120),
        INTEGRATION,
    )
    return ids


def test_checking_a_window_twice_updates_its_incident_instead_of_adding_one(
    pg_conn: psycopg.Connection, history: History
) -> None:
    damaged_opportunities(history)
    saved = []
    for _ in range(2):
        findings = run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END, user_names=USER_NAMES)
        saved.append([save_incident(pg_conn, report_incident(pg_conn, f, field_names=FIELD_NAMES)) for f in findings])

    assert saved[0] == saved[1] and len(saved[0]) == len(set(saved[0]))
    rows = pg_conn.execute(
        "SELECT detector, fields, affected_count, user_name, created_at < updated_at, "
        "restore_config->>'as_of', report->>'record_count' FROM sf_pipeline.incidents ORDER BY detector"
    ).fetchall()
    assert (
        "mass_nulling",
        ["accountid"],
        120,
        "Integration User",
        True,
        "2026-11-24T01:59:59Z",
        "120",
    ) in rows
    assert len(rows) == len(saved[0])


def test_incidents_are_listed_latest_first_with_their_restore_config(
    pg_conn: psycopg.Connection, history: History
) -> None:
    assert list_incidents(pg_conn) == []  # no table yet
    damaged_opportunities(history)
    finding = [
        f for f in run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END) if f.detector == "mass_nulling"
    ][0]
    older = IncidentReport.from_finding(finding, field_names=FIELD_NAMES, volume=volume())
    newer_window = {
        "window_start": WINDOW_START + timedelta(hours=5),
        "window_end": WINDOW_END + timedelta(hours=5),
    }
    newer = IncidentReport.from_dict(older.to_dict() | {k: v.isoformat() for k, v in newer_window.items()})
    other = IncidentReport.from_dict(older.to_dict() | {"object": "Case"})
    for report in (older, newer, other):
        save_incident(pg_conn, report)

    listed = list_incidents(pg_conn)
    assert [(i.report.object, i.report.window_start) for i in listed] == [
        ("Opportunity", WINDOW_START + timedelta(hours=5)),
        ("Case", WINDOW_START),
        ("Opportunity", WINDOW_START),
    ]
    assert listed[-1].report == older  # stored and read back unchanged
    assert listed[-1].restore_config["record_ids"] == sorted(finding.record_ids)
    assert yaml.safe_load(listed[-1].restore_config_yaml()) == {
        "incident": listed[-1].id,
        "target_org": "production",
        "dry_run": True,
    }
    assert "as they were at 2026-11-24T01:59:59Z" in listed[-1].restore_config_yaml()
    assert [i.report.object for i in list_incidents(pg_conn, object="case")] == ["Case"]
    assert len(list_incidents(pg_conn, limit=1)) == 1


def test_report_json_round_trips(pg_conn: psycopg.Connection, history: History) -> None:
    damaged_opportunities(history)
    finding = run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)[0]
    report = report_incident(pg_conn, finding)

    assert IncidentReport.from_dict(json.loads(report.to_json())) == report
    assert len(report.volume) == 288 and sum(n for _, n in report.volume) == 120


def test_a_finding_without_its_window_cannot_be_reported() -> None:
    finding = Finding(
        "mass_nulling",
        "error",
        "Opportunity",
        ("accountid",),
        1,
        1.0,
        WINDOW_START,
        WINDOW_START,
        None,
        (),
        ("006",),
        ("accountid",),
    )
    with pytest.raises(ValueError, match="window"):
        IncidentReport.from_finding(finding)


def test_an_incident_keeps_every_record_id_for_the_restore(pg_conn: psycopg.Connection) -> None:
    from sf_pipeline.anomalies.incidents import incident_record_ids, incident_restore_selection

    report = IncidentReport.from_finding(nulling_finding(MAX_RESTORE_IDS + 3), field_names=FIELD_NAMES)
    number = save_incident(pg_conn, report)
    assert incident_record_ids(pg_conn, number) == sorted(report.restore_ids)
    # retention keeps every version of every one of them, not only the 10,000 in the report
    from sf_pipeline.privacy.retention import protected_ids

    assert set(report.restore_ids) <= set(protected_ids(pg_conn))
    selection = incident_restore_selection(pg_conn, number)
    assert len(selection["record_ids"]) == MAX_RESTORE_IDS + 3
    assert selection["fields"] == ["AccountId"] and selection["as_of"] == "2026-11-24T01:59:59Z"
    assert incident_restore_selection(pg_conn, number + 1) is None
    stored = get_incident(pg_conn, number)
    assert stored.launchpad_config() == {"incident": number, "target_org": "production", "dry_run": True}
    assert (
        "AccountId" in stored.restore_config_yaml() and record_id("Opportunity", 1) not in stored.restore_config_yaml()
    )
    # checked again: the same row, its ids replaced
    again = IncidentReport.from_finding(nulling_finding(4), field_names=FIELD_NAMES)
    assert save_incident(pg_conn, again) == number
    assert incident_record_ids(pg_conn, number) == sorted(again.restore_ids)
