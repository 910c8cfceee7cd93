"""The detectors against real history tables: the damage scenarios are found exactly, a normal day is not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sf_pipeline.anomalies import (
    baseline,
    change_volume,
    detect_mass_nulling,
    detect_orphans,
    detect_volume,
    report_incident,
    run_detectors,
    thresholds_for,
    window_changes,
)
from sf_pipeline.warehouse import HistoryNotFoundError
from sf_pipeline.warehouse.run_state import ensure_run_state, keep_calculated_columns
from sf_pipeline_tests.anomalies.builders import (
    ADMIN,
    CREATED,
    INTEGRATION,
    SALES1,
    SALES2,
    SALES3,
    SUPPORT,
    USER_NAMES,
    WINDOW_END,
    WINDOW_START,
    History,
    record_id,
    spread,
)

OPPORTUNITY = {
    "accountid": "varchar(18)",
    "name": "text",
    "stagename": "text",
    "amount": "numeric",
    "ownerid": "varchar(18)",
    "closedate": "date",
}
ACCOUNT = {"name": "text", "ownerid": "varchar(18)", "industry": "text"}
CASE = {"accountid": "varchar(18)", "subject": "text", "status": "text", "ownerid": "varchar(18)"}
INVOICE = {"name": "text", "status__c": "text", "account__c": "varchar(18)", "amount__c": "numeric"}
SALES = [SALES1, SALES2, SALES3]
M10 = timedelta(minutes=10)
STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Proposal", "Closed Won", "Closed Lost"]


def at(hour: int, minute: int = 0, second: int = 0, ms: int = 0, day: datetime = WINDOW_START) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second, microsecond=ms * 1000)


def accounts(history: History, count: int = 100) -> list[str]:
    history.create("Account", ACCOUNT)
    return history.insert(
        "Account",
        [
            {
                "id": record_id("Account", i),
                "name": f"Account {i}",
                "ownerid": SALES[i % 3],
                "industry": "Energy",
            }
            for i in range(1, count + 1)
        ],
    )


def opportunities(history: History, count: int, account_ids: list[str], without_account: int = 0) -> list[str]:
    history.create("Opportunity", OPPORTUNITY)
    return history.insert(
        "Opportunity",
        [
            {
                "id": record_id("Opportunity", i),
                "accountid": None if i <= without_account else account_ids[i % len(account_ids)],
                "name": f"Deal {i}",
                "stagename": STAGES[i % 4],
                "amount": 1000 + i,
                "ownerid": SALES[i % 3],
                "closedate": CREATED.date() + timedelta(days=60 + i % 30),
            }
            for i in range(1, count + 1)
        ],
    )


def cases(history: History, count: int, account_ids: list[str] | None = None) -> list[str]:
    history.create("Case", CASE)
    return history.insert(
        "Case",
        [
            {
                "id": record_id("Case", i),
                "subject": f"Printer {i} jammed",
                "status": "New",
                "ownerid": SUPPORT,
                "accountid": account_ids[i % len(account_ids)] if account_ids else None,
            }
            for i in range(count)
        ],
    )


def errors(findings: list) -> list:
    return [f for f in findings if f.severity == "error"]


# ----------------------------------------------------------------------------------- damage scenarios
def test_integration_user_nulling_account_id_on_every_opportunity_is_an_error_with_an_exact_restore(
    pg_conn: psycopg.Connection, history: History
) -> None:
    account_ids = accounts(history)
    all_ids = opportunities(history, 1000, account_ids, without_account=40)
    with_account = all_ids[40:]
    # Ordinary work in the same window: stage changes, an account switched (not nulled).
    history.update("Opportunity", all_ids[900:910], {"stagename": "Closed Won"}, at(2, 15), SALES2)
    history.update("Opportunity", all_ids[50:53], {"accountid": account_ids[7]}, at(2, 20), SALES1)
    # The damage: in batches of 200 from 02:00:00.250 to 02:03:00.750, every Opportunity that has an account.
    damaged = [i for i in with_account if i not in all_ids[50:53] and i not in all_ids[900:910]]
    history.update(
        "Opportunity",
        damaged,
        {"accountid": None},
        spread(at(2, 0, 0, 250), at(2, 3, 0, 750), len(damaged)),
        INTEGRATION,
    )

    findings = run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    nulling = [f for f in findings if f.detector == "mass_nulling"]
    assert len(nulling) == 1
    finding = nulling[0]
    assert finding.severity == "error"
    assert finding.object == "Opportunity"
    assert finding.fields == ("accountid",)
    assert finding.user_id == INTEGRATION and finding.user_name == "Integration User" and finding.acted_alone
    assert finding.affected_count == len(damaged) == 947
    assert finding.share == pytest.approx(947 / 1000)
    assert finding.first_change.replace(microsecond=0) == at(2, 0, 0)
    assert finding.last_change.replace(microsecond=0) == at(2, 3, 0)
    assert sorted(finding.record_ids) == sorted(damaged)
    assert len(finding.sample) == 5
    first = finding.sample[0]
    assert first.after == {"accountid": None} and first.before["accountid"] in account_ids
    # 960 changes where the same hour of the previous days had none is a spike too, by the same user; the
    # nulled lookups are not orphans (nothing points at a missing parent), and nothing else is an error.
    assert sorted((f.detector, f.user_id) for f in errors(findings)) == [
        ("mass_nulling", INTEGRATION),
        ("volume_spike", INTEGRATION),
    ]

    report = report_incident(pg_conn, finding, field_names={"accountid": "AccountId", "stagename": "StageName"})
    assert report.restore_config == {
        "object": "Opportunity",
        "fields": ["AccountId"],
        "as_of": "2026-11-24T01:59:59Z",
        "record_ids": sorted(damaged),
        "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:03:01Z"],
        "changed_by": INTEGRATION,
        "target_org": "production",
        "dry_run": True,
        "on_conflict": "skip",
        "restore_deleted": False,
    }


def test_sales_user_deleting_most_cases_is_a_mass_deletion_restoring_whole_records(
    pg_conn: psycopg.Connection, history: History
) -> None:
    ids = cases(history, 200)
    doomed = random.Random(3).sample(ids, 180)
    history.delete("Case", doomed, spread(at(2, 10), at(2, 12, 30), len(doomed)), SALES3)
    history.update("Case", [i for i in ids if i not in doomed][:5], {"status": "Closed"}, at(2, 30), SUPPORT)

    findings = run_detectors(pg_conn, "Case", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    deletes = [f for f in findings if f.detector == "mass_delete"]
    assert len(deletes) == 1
    finding = deletes[0]
    assert (finding.severity, finding.user_id, finding.user_name) == ("error", SALES3, "Sid Sales")
    assert finding.affected_count == 180 and finding.share == pytest.approx(0.9)
    assert sorted(finding.record_ids) == sorted(doomed)
    assert (finding.first_change, finding.last_change) == (at(2, 10), at(2, 12, 30))
    assert finding.restore_deleted
    # Deleted records are not "nulled" or "overwritten" field by field.
    assert not [f for f in findings if f.detector in ("mass_nulling", "mass_overwrite")]

    config = report_incident(pg_conn, finding, field_names={"subject": "Subject", "status": "Status"}).restore_config
    assert config["restore_deleted"] is True and config["object"] == "Case"
    assert config["record_ids"] == sorted(doomed)
    # whole records: no field list, so the restore takes every field describe lets it write (a listed
    # MasterRecordId made the suggested restore fail)
    assert config["fields"] == []
    assert {"subject", "status", "accountid", "ownerid"} <= set(finding.restore_fields)
    assert not {"id", "isdeleted", "systemmodstamp", "lastmodifiedbyid", "createddate"} & set(finding.restore_fields)
    assert config["as_of"] == "2026-11-24T02:09:59Z"


def test_owner_takeover_of_most_accounts_is_a_mass_overwrite_by_that_user(
    pg_conn: psycopg.Connection, history: History
) -> None:
    ids = accounts(history, 300)
    owned_by_others = [i for i, owner in history.current("Account", "ownerid").items() if owner != SALES1]
    taken = sorted(random.Random(5).sample(owned_by_others, int(len(owned_by_others) * 0.8)))
    history.update("Account", taken, {"ownerid": SALES1}, spread(at(2, 40), at(2, 44), len(taken)), SALES1)
    history.update("Account", ids[:4], {"industry": "Retail"}, at(2, 50), SALES2)

    findings = run_detectors(pg_conn, "Account", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    overwrite = [f for f in findings if f.detector == "mass_overwrite"]
    assert len(overwrite) == 1
    finding = overwrite[0]
    assert (finding.severity, finding.fields, finding.user_id) == ("error", ("ownerid",), SALES1)
    assert finding.affected_count == len(taken) == 160
    assert finding.details["per_field"] == [
        {"field": "ownerid", "records": 160, "users": 1, "severity": "error", "value": SALES1}
    ]
    assert list(finding.record_ids) == taken
    # The same user changing over half of the accounts is also reported, as a warning.
    assert [(f.detector, f.severity) for f in findings if f.detector == "user_share"] == [("user_share", "warning")]


def test_picklist_wiped_on_most_invoices_is_a_mass_nulling_of_that_field(
    pg_conn: psycopg.Connection, history: History
) -> None:
    history.create("Invoice__c", INVOICE)
    statuses = ["Draft", "Sent", "Paid", None]
    ids = history.insert(
        "Invoice__c",
        [
            {
                "id": record_id("Invoice__c", i),
                "name": f"INV-{i:05}",
                "status__c": statuses[i % 4],
                "amount__c": i * 10,
            }
            for i in range(1, 401)
        ],
    )
    with_status = [i for i, s in history.current("Invoice__c", "status__c").items() if s is not None]
    wiped = sorted(random.Random(8).sample(with_status, int(len(with_status) * 0.85)))
    history.update("Invoice__c", wiped, {"status__c": None}, spread(at(2, 5), at(2, 6), len(wiped)), INTEGRATION)
    history.update("Invoice__c", ids[:3], {"amount__c": 5}, at(2, 7), SALES1)

    findings = run_detectors(pg_conn, "Invoice__c", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    damage = [f for f in errors(findings) if f.detector != "volume_spike"]
    assert [(f.detector, f.fields, f.user_id) for f in damage] == [("mass_nulling", ("status__c",), INTEGRATION)]
    finding = damage[0]
    assert finding.affected_count == len(wiped) == 255
    assert list(finding.record_ids) == wiped
    report = report_incident(pg_conn, finding, field_names={"status__c": "Status__c"})
    assert report.restore_config["fields"] == ["Status__c"]
    assert report.restore_config["object"] == "Invoice__c"
    assert report.sample[0]["before"]["Status__c"] in ("Draft", "Sent", "Paid")
    assert report.sample[0]["after"] == {"Status__c": None}
    assert report.sample[0]["name"].startswith("INV-")


def test_nulling_spread_over_many_users_is_reported_for_all_of_them_without_changed_by(
    pg_conn: psycopg.Connection, history: History
) -> None:
    """A trigger running as whoever edits: no single user reaches the threshold, all of them together do."""
    ids = opportunities(history, 250, accounts(history, 20))
    users = [f"005000000000{n:03}USR" for n in range(5)]
    for n, user in enumerate(users):
        history.update("Opportunity", ids[n * 40 : (n + 1) * 40], {"accountid": None}, at(2, 10 + n), user)

    findings = detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)

    assert len(findings) == 1
    finding = findings[0]
    assert finding.severity == "error" and not finding.acted_alone
    assert finding.affected_count == 200 and finding.details["users"] == 5
    assert finding.user_id in users
    config = report_incident(pg_conn, finding).restore_config
    assert config["changed_by"] is None and len(config["record_ids"]) == 200


def test_field_thresholds_from_settings_catch_a_small_nulling_the_defaults_ignore(
    pg_conn: psycopg.Connection, history: History
) -> None:
    ids = opportunities(history, 500, accounts(history, 20))
    history.update("Opportunity", ids[:12], {"accountid": None}, at(2, 30), INTEGRATION)
    settings = {
        "objects": {"Opportunity": {"fields": {"AccountId": {"mass_nulling": {"min_records": 10, "min_share": 0.01}}}}}
    }

    assert detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END) == []
    found = detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END, settings)
    assert [(f.fields, f.affected_count, f.severity) for f in found] == [(("accountid",), 12, "error")]
    resolved = thresholds_for("Opportunity", overrides=settings)
    assert found == detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END, resolved)


def test_many_nulled_records_in_a_large_org_are_a_warning_even_below_the_share(
    pg_conn: psycopg.Connection, history: History
) -> None:
    ids = opportunities(history, 6000, accounts(history, 50))
    history.update("Opportunity", ids[:1100], {"accountid": None}, spread(at(2, 1), at(2, 4), 1100), INTEGRATION)

    findings = detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)

    assert [(f.severity, f.affected_count) for f in findings] == [("warning", 1100)]


# ------------------------------------------------------------------------------------ orphans
def test_children_of_parents_deleted_in_the_window_are_orphans_restored_by_undeleting_the_parents(
    pg_conn: psycopg.Connection, history: History
) -> None:
    account_ids = accounts(history, 60)
    history.create("Contact", {"accountid": "varchar(18)", "lastname": "text"})
    contacts = history.insert(
        "Contact",
        [{"id": record_id("Contact", i), "accountid": account_ids[i % 60], "lastname": f"Doe {i}"} for i in range(120)],
    )
    gone = account_ids[:30]
    history.delete("Account", gone, spread(at(2, 20), at(2, 21), 30), SALES2)
    # One contact is moved by hand to an account the backup never saw.
    history.update("Contact", [contacts[59]], {"accountid": "001999999999999XYZ"}, at(2, 25), SALES1)

    findings = run_detectors(pg_conn, "Contact", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    orphans = [f for f in findings if f.detector == "orphans"]
    assert len(orphans) == 1
    finding = orphans[0]
    stranded = [contacts[i] for i in range(120) if i % 60 < 30]
    assert finding.severity == "error" and finding.fields == ("accountid",)
    assert list(finding.record_ids) == stranded and finding.affected_count == 60
    assert (finding.user_id, finding.user_name) == (SALES2, "Sue Sales")
    assert (finding.first_change, finding.last_change) == (at(2, 20), at(2, 21))
    assert finding.restore_object == "Account" and finding.restore_deleted
    assert sorted(finding.restore_record_ids) == sorted(gone)
    config = report_incident(pg_conn, finding).restore_config
    assert config["object"] == "Account" and config["record_ids"] == sorted(gone)
    assert config["restore_deleted"] is True and config["as_of"] == "2026-11-24T02:19:59Z"
    # A single dangling lookup stays below the threshold.
    assert not [f for f in findings if f.detector == "dangling_references"]


def test_lookups_set_to_parents_missing_from_the_backup_are_dangling_references(
    pg_conn: psycopg.Connection, history: History
) -> None:
    account_ids = accounts(history, 10)
    history.create("Invoice__c", INVOICE)
    ids = history.insert(
        "Invoice__c",
        [{"id": record_id("Invoice__c", i), "name": f"INV-{i}", "account__c": account_ids[i % 10]} for i in range(40)],
    )
    # An import re-points invoices at account ids of another org.
    history.update("Invoice__c", ids[:25], lambda row: {"account__c": "0019" + row["id"][4:]}, at(2, 33), INTEGRATION)

    # a custom lookup named after its object is inferred (`account__c` -> Account), as describe would say
    inferred = detect_orphans(pg_conn, "Invoice__c", WINDOW_START, WINDOW_END)
    findings = detect_orphans(pg_conn, "Invoice__c", WINDOW_START, WINDOW_END, references={"Account__c": "Account"})
    assert inferred == findings

    assert [(f.detector, f.fields, f.affected_count, f.user_id) for f in findings] == [
        ("dangling_references", ("account__c",), 25, INTEGRATION)
    ]
    assert findings[0].details["parents_missing"] == 25
    assert findings[0].restore_fields == ("account__c",) and findings[0].restore_object is None


def test_lookups_cleared_by_their_parents_deletion_are_orphans_not_a_mass_nulling(
    pg_conn: psycopg.Connection, history: History
) -> None:
    """Salesforce clears an optional lookup when its parent is deleted and stamps the child like the deletion
    (devorg store._delete_one): the backup sees `account__c` emptied at the deletion's stamp. Those invoices are
    orphans whose restore brings the accounts back; a mass nulling to put the lookup back (at a deleted account)
    is not reported for them. A lookup a user empties by hand in the same window stays a nulling of its own."""
    account_ids = accounts(history, 20)
    history.create("Invoice__c", INVOICE)
    ids = history.insert(
        "Invoice__c",
        [{"id": record_id("Invoice__c", i), "name": f"INV-{i}", "account__c": account_ids[i % 20]} for i in range(120)],
    )
    gone = account_ids[:10]
    stamps = [at(2, 20, s) for s in range(10)]
    history.delete("Account", gone, stamps, SALES2)
    stamp_of = dict(zip(gone, stamps, strict=True))
    cleared = [i for n, i in enumerate(ids) if n % 20 < 10]
    current = history.current("Invoice__c", "account__c")
    history.update("Invoice__c", cleared, {"account__c": None}, [stamp_of[current[i]] for i in cleared], SALES2)
    by_hand = [i for n, i in enumerate(ids) if n % 20 >= 10][:30]
    history.update("Invoice__c", by_hand, {"account__c": None}, at(2, 40), SALES1)

    findings = run_detectors(
        pg_conn, "Invoice__c", WINDOW_START, WINDOW_END, {"defaults": {"mass_nulling": {"min_records": 10}}}
    )

    orphans = [f for f in findings if f.detector == "orphans"]
    assert [(f.fields, f.affected_count, f.user_id) for f in orphans] == [(("account__c",), 60, SALES2)]
    assert sorted(orphans[0].record_ids) == sorted(cleared) and orphans[0].details["lookups_cleared"] == 60
    assert orphans[0].restore_object == "Account" and sorted(orphans[0].restore_record_ids) == sorted(gone)
    assert orphans[0].sample[0].after == {"account__c": None} and orphans[0].sample[0].before["account__c"] in gone
    nulling = [f for f in findings if f.detector == "mass_nulling"]
    assert [(f.user_id, sorted(f.record_ids)) for f in nulling] == [(SALES1, sorted(by_hand))]


# ------------------------------------------------------------------------------------ change volume
def leads_with_daily_changes(history: History, per_day: int, days: int = 14, window_changes: int = 0) -> list[str]:
    """`per_day` new Leads in the 02:00-03:00 hour of each of the `days` days before the window, a few at
    other hours, and `window_changes` in the window itself; returns the ids of the Leads made before it."""
    history.create("Lead", {"lastname": "text", "status": "text"})
    rng = random.Random(11)
    n = 0
    for day in range(days, -1, -1):
        count = window_changes if day == 0 else per_day
        start = WINDOW_START - timedelta(days=day)
        stamps = sorted(start + timedelta(seconds=rng.randrange(3600)) for _ in range(count))
        stamps += [start + timedelta(hours=5, minutes=m) for m in range(3)]
        history.insert(
            "Lead",
            [
                {"id": record_id("Lead", n + i), "lastname": f"Lead {n + i}", "status": "Open"}
                for i in range(len(stamps))
            ],
            at=stamps,
            user=SALES[day % 3],
        )
        n += len(stamps)
    return sorted(i for i, created in history.current("Lead", "createddate").items() if created < WINDOW_START)


def test_change_volume_far_above_the_same_hour_of_previous_days_is_a_spike(
    pg_conn: psycopg.Connection, history: History
) -> None:
    lead_ids = leads_with_daily_changes(history, per_day=40, window_changes=40)
    rng = random.Random(2)
    history.update(
        "Lead",
        lead_ids[:450],
        lambda row: {"status": rng.choice(["A", "B", "C", "D", "E", "F", "G", "H"])},
        spread(at(2, 30), at(2, 35), 450),
        INTEGRATION,
    )

    usual = baseline(pg_conn, "Lead", WINDOW_START, WINDOW_END)
    assert usual.current == 490 and usual.previous == (40,) * 14 and usual.median == 40

    findings = detect_volume(pg_conn, "Lead", WINDOW_START, WINDOW_END)
    assert len(findings) == 1
    spike = findings[0]
    assert (spike.detector, spike.severity, spike.user_id) == ("volume_spike", "error", INTEGRATION)
    assert spike.details["baseline_median"] == 40 and spike.details["window_versions"] == 490
    assert spike.affected_count == 450 and spike.restore_fields == ("status",)
    assert (spike.first_change, spike.last_change) == (at(2, 30), at(2, 35))


def test_no_volume_alarm_without_enough_history(pg_conn: psycopg.Connection, history: History) -> None:
    leads_with_daily_changes(history, per_day=30, window_changes=600)

    assert detect_volume(pg_conn, "Lead", WINDOW_START, WINDOW_END)[0].detector == "volume_spike"
    # The backup started three days ago: the earlier "days" are the full load, not a baseline.
    started = WINDOW_START - timedelta(days=3)
    assert baseline(pg_conn, "Lead", WINDOW_START, WINDOW_END, history_start=started).previous == (30, 30, 30)
    assert detect_volume(pg_conn, "Lead", WINDOW_START, WINDOW_END, history_start=started) == []


def test_a_spike_of_inserts_says_plainly_that_a_restore_cannot_undo_it(
    pg_conn: psycopg.Connection, history: History
) -> None:
    """600 Leads created in the window where 30 a day is usual: a spike, but a restore never deletes created
    records, so the incident has no restore config and its note says why (issue 16: every detector's suggested
    config runs as suggested, or says it is not restorable)."""
    leads_with_daily_changes(history, per_day=30, window_changes=600)
    [spike] = detect_volume(pg_conn, "Lead", WINDOW_START, WINDOW_END)
    assert spike.detector == "volume_spike" and spike.details["new_records"] == 600
    report = report_incident(pg_conn, spike)
    assert report.restore_config is None and report.launchpad_config(None) is None
    assert report.restore_note.startswith("Not restorable: this spike is 600 records created in the window")
    assert "never deletes records that were created" in report.restore_note


def test_a_window_with_no_change_where_there_always_are_many_is_a_volume_drop_warning(
    pg_conn: psycopg.Connection, history: History
) -> None:
    leads_with_daily_changes(history, per_day=80, window_changes=0)

    findings = detect_volume(pg_conn, "Lead", WINDOW_START, WINDOW_END)

    assert [(f.detector, f.severity, f.affected_count) for f in findings] == [("volume_drop", "warning", 0)]
    assert findings[0].details["baseline_median"] == 80
    assert report_incident(pg_conn, findings[0]).restore_config is None


def test_change_volume_counts_versions_in_five_minute_buckets_over_24_hours(
    pg_conn: psycopg.Connection, history: History
) -> None:
    history.create("Lead", {"lastname": "text"})
    since = WINDOW_END - timedelta(hours=24)
    stamps = [
        at(2, 0, 10),
        at(2, 4, 59, 999),
        at(2, 5),
        at(2, 59, 59),
        at(3, 0),
        since + timedelta(minutes=1),
        since - timedelta(seconds=1),
    ]
    history.insert("Lead", [{"id": record_id("Lead", i), "lastname": "x"} for i in range(len(stamps))], at=stamps)

    volume = change_volume(pg_conn, "Lead", WINDOW_END)

    assert len(volume) == 288
    assert volume[0][0] == WINDOW_END - timedelta(hours=24)
    assert all(b - a == timedelta(minutes=5) for (a, _), (b, _) in zip(volume, volume[1:], strict=False))
    counts = {start: n for start, n in volume if n}
    assert counts == {at(2, 0): 2, at(2, 5): 1, at(2, 55): 1, since: 1}


# ------------------------------------------------------------------------------------ a normal day
def test_a_normal_day_of_scattered_changes_raises_no_error(pg_conn: psycopg.Connection, history: History) -> None:
    rng = random.Random(42)
    day = WINDOW_START.replace(hour=9)
    window = (day, day + timedelta(hours=1))
    account_ids = accounts(history, 200)
    opportunity_ids = opportunities(history, 800, account_ids)
    case_ids = cases(history, 300, account_ids)
    history.create("Invoice__c", INVOICE)
    invoice_ids = history.insert(
        "Invoice__c",
        [
            {
                "id": record_id("Invoice__c", i),
                "name": f"INV-{i}",
                "status__c": "Sent",
                "account__c": account_ids[i % 200],
            }
            for i in range(300)
        ],
    )
    users = [SALES1, SALES2, SALES3, SUPPORT, ADMIN]

    def scattered(object_name: str, ids: list[str], count: int, change, start: datetime) -> None:
        """`count` records changed one by one by random users within 10 minutes after `start`."""
        for record in rng.sample(ids, count):
            stamp = start + timedelta(seconds=rng.randrange(600))
            history.update(object_name, [record], change, stamp, rng.choice(users))

    # Two weeks of ordinary mornings, then the day itself, all alike.
    for back in range(14, -1, -1):
        start = window[0] - timedelta(days=back)
        scattered("Opportunity", opportunity_ids, 25, lambda row: {"stagename": rng.choice(STAGES)}, start)
        scattered("Opportunity", opportunity_ids, 6, lambda row: {"amount": rng.randrange(500, 90000)}, start + M10)
        scattered(
            "Case",
            case_ids,
            12,
            lambda row: {"status": rng.choice(["Working", "Escalated", "Closed"])},
            start,
        )
    start = window[0]
    scattered("Opportunity", opportunity_ids, 3, {"accountid": None}, start + 2 * M10)
    scattered("Opportunity", opportunity_ids, 4, lambda row: {"ownerid": rng.choice(users)}, start + 3 * M10)
    scattered("Account", account_ids, 8, lambda row: {"industry": rng.choice(["Retail", "Media", "Energy"])}, start)
    scattered("Invoice__c", invoice_ids, 15, lambda row: {"status__c": rng.choice(["Paid", "Sent", None])}, start)
    history.delete("Case", rng.sample(case_ids, 2), start + 4 * M10, SUPPORT)

    for object_name in ("Opportunity", "Account", "Case", "Invoice__c"):
        findings = run_detectors(pg_conn, object_name, *window, user_names=USER_NAMES, history_start=CREATED)
        assert findings == [], f"{object_name}: {[(f.detector, f.severity, f.affected_count) for f in findings]}"


# ------------------------------------------------------------------------------------ plumbing
def test_detectors_need_a_history_table(pg_conn: psycopg.Connection) -> None:
    with pytest.raises(HistoryNotFoundError, match="Opportunity"):
        run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)


def test_windows_must_be_timezone_aware(pg_conn: psycopg.Connection, history: History) -> None:
    opportunities(history, 3, ["001000000000000001"])
    with pytest.raises(ValueError, match="timezone-aware"):
        run_detectors(pg_conn, "Opportunity", datetime(2026, 11, 24, 2), WINDOW_END)


def test_window_changes_hold_one_row_per_changed_field_and_leave_no_table_behind(
    pg_conn: psycopg.Connection, history: History
) -> None:
    ids = opportunities(history, 10, ["001000000000000001"])
    history.update("Opportunity", ids[:2], {"stagename": "Closed Won", "amount": 5}, at(2, 1), SALES1)
    history.update("Opportunity", ids[2:3], {"amount": 1003.000}, at(2, 2), SALES1)  # same number: no change
    history.insert("Opportunity", [{"id": record_id("Opportunity", 99), "name": "New"}], at=at(2, 3))

    with window_changes(pg_conn, "Opportunity", WINDOW_START, WINDOW_END) as changes:
        rows = pg_conn.execute(
            f"SELECT id, field, before, after, user_id FROM {changes.table.as_string(pg_conn)} ORDER BY id, field"
        ).fetchall()
        assert (changes.live_records, changes.window_versions, changes.changed_records) == (10, 4, 2)
    assert rows == [
        (ids[0], "amount", "1001", "5", SALES1),
        (ids[0], "stagename", "Qualification", "Closed Won", SALES1),
        (ids[1], "amount", "1002", "5", SALES1),
        (ids[1], "stagename", "Needs Analysis", "Closed Won", SALES1),
    ]
    leftover = pg_conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'sfp_window_changes_%%'").fetchone()
    assert leftover == (0,)


@pytest.mark.parametrize("autocommit", [True, False])
def test_detectors_work_inside_a_callers_transaction_too(pg_url: str, autocommit: bool) -> None:
    with psycopg.connect(pg_url, autocommit=autocommit) as conn:
        history = History(conn)
        ids = opportunities(history, 100, ["001000000000000001"])
        history.update("Opportunity", ids, {"stagename": "Closed Lost"}, at(2, 1), INTEGRATION)
        findings = run_detectors(conn, "Opportunity", WINDOW_START, WINDOW_END)
        assert ("mass_overwrite", "error") in [(f.detector, f.severity) for f in findings]
        conn.execute("SELECT 1")  # the connection is still usable


def test_normalized_instants_come_back_in_utc(pg_conn: psycopg.Connection, history: History) -> None:
    pg_conn.execute("SET TIME ZONE 'America/New_York'")
    ids = opportunities(history, 100, ["001000000000000001"])
    history.update("Opportunity", ids, {"accountid": None}, at(2, 1, 5), INTEGRATION)
    finding = detect_mass_nulling(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)[0]
    assert finding.first_change == at(2, 1, 5)
    assert report_incident(pg_conn, finding).restore_config["as_of"] == "2026-11-24T02:01:04Z"
    assert finding.first_change.astimezone(UTC).hour == 2


VANISHED = {
    "name": "text",
    "_sfp_vanished": "text",
    "_sfp_vanished_by": "varchar(18)",
    "_sfp_merged_into": "varchar(18)",
    "_sfp_vanished_after": "timestamptz",
    "_sfp_found_in_window": "timestamptz",
}


def test_records_hard_deleted_by_an_integration_are_one_mass_vanishing_incident_not_a_mass_deletion(
    pg_conn: psycopg.Connection, history: History
) -> None:
    history.create("Opportunity", VANISHED)
    ids = history.insert(
        "Opportunity", [{"id": record_id("Opportunity", n), "name": f"Deal {n}"} for n in range(400)], user=SALES1
    )
    gone = sorted(random.Random(5).sample(ids, 150))
    # The closing versions the backup writes: deleted, flagged, stamped at the Bulk job's time, and still carrying
    # the records' last editor (a hard delete leaves no trace of who did it on the record).
    history.update(
        "Opportunity",
        gone,
        {
            "isdeleted": True,
            "_sfp_vanished": "hard-deleted",
            "_sfp_vanished_by": INTEGRATION,
            "_sfp_found_in_window": WINDOW_END,
        },
        at(2, 20),
        SALES1,
    )

    findings = run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END, user_names=USER_NAMES)

    assert [f.detector for f in findings if f.severity == "error"] == ["mass_vanishing"]
    finding = findings[0]
    assert (finding.user_id, finding.user_name, finding.affected_count) == (INTEGRATION, "Integration User", 150)
    assert sorted(finding.record_ids) == gone and finding.share == pytest.approx(150 / 400)
    assert (finding.first_change, finding.last_change) == (at(2, 20), at(2, 20))
    assert finding.details["how_learnt"] == "hard-deleted" and not finding.acted_alone
    config = report_incident(pg_conn, finding).restore_config
    assert config["restore_deleted"] is True and config["fields"] == [] and config["changed_by"] is None
    assert config["record_ids"] == gone


def test_a_few_vanished_records_raise_nothing(pg_conn: psycopg.Connection, history: History) -> None:
    history.create("Opportunity", VANISHED)
    ids = history.insert("Opportunity", [{"id": record_id("Opportunity", n)} for n in range(400)])
    history.update(
        "Opportunity",
        ids[:3],
        {"isdeleted": True, "_sfp_vanished": "unknown", "_sfp_found_in_window": WINDOW_END},
        at(2, 20),
        ADMIN,
    )
    findings = run_detectors(pg_conn, "Opportunity", WINDOW_START, WINDOW_END)
    assert not [f for f in findings if f.detector in ("mass_vanishing", "mass_delete")]


# ----------------------------------------------------------------------------------- calculated fields
def test_a_roll_up_recalculated_on_most_leads_raises_nothing_once_the_backup_knows_it_is_calculated(
    pg_conn: psycopg.Connection, history: History
) -> None:
    # Score__c is a roll-up (describe: calculated true). Its definition changes; the platform recalculates it
    # on 450 Leads, touching their SystemModstamp with no user edit: 450 versions that differ only in it.
    lead_ids = leads_with_daily_changes(history, per_day=40, window_changes=40)
    pg_conn.execute("ALTER TABLE salesforce_history.lead ADD COLUMN score__c numeric DEFAULT 50")
    history.update("Lead", lead_ids[:450], {"score__c": None}, spread(at(2, 30), at(2, 35), 450), INTEGRATION)

    # Unknown as calculated (no backup recorded its describe), it looks like damage: the test can fail.
    before = {f.detector for f in errors(run_detectors(pg_conn, "Lead", WINDOW_START, WINDOW_END))}
    assert {"mass_nulling", "volume_spike"} <= before

    # The mirror asset records the calculated fields of each describe it backs up.
    ensure_run_state(pg_conn)
    keep_calculated_columns(pg_conn, "Lead", ["Score__c"])
    assert run_detectors(pg_conn, "Lead", WINDOW_START, WINDOW_END) == []
    # A real edit in the same window is still seen, with the drift left out of it.
    history.update(
        "Lead", lead_ids[:300], {"status": "Closed", "score__c": 7}, spread(at(2, 40), at(2, 45), 300), INTEGRATION
    )
    findings = errors(run_detectors(pg_conn, "Lead", WINDOW_START, WINDOW_END))
    assert findings and all("score__c" not in f.fields for f in findings)
    assert "status" in {field for f in findings for field in f.fields}
