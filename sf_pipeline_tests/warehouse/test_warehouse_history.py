"""History by dbt snapshot, window by window, and what the backup says a record was at any instant."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml

from sf_pipeline.warehouse import (
    DBT_PROJECT_DIR,
    HistoryNotFoundError,
    SnapshotError,
    as_of,
    as_of_sql,
    dbt_env_from_url,
    ensure_mirror_table,
    history_versions,
    load_window,
    run_snapshot,
    snapshot_args,
    snapshot_env,
    write_snapshot_definitions,
)
from sf_pipeline.warehouse.dbt_project import dbt_executable, prepare_manifest
from sf_pipeline_tests.warehouse.builders import OPPORTUNITY_FIELDS, csv_batch, opportunity


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


JAN_1, JAN_2, JAN_3, JAN_5, JAN_6 = (at(f"2026-01-0{d}") for d in (1, 2, 3, 5, 6))
A, B, C, D, E = (f"00600000000000{n}AAA" for n in "1234" + "5")


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A copy of the repository's dbt project, so generating definitions never touches the checkout."""
    copy = tmp_path / "dbt_snapshots"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    return copy


def test_one_database_url_becomes_every_dbt_connection_setting() -> None:
    assert dbt_env_from_url("postgresql://backup:s%40cret@db.internal:6543/crm?sslmode=require") == {
        "SF_PIPELINE_PG_HOST": "db.internal",
        "SF_PIPELINE_PG_PORT": "6543",
        "SF_PIPELINE_PG_USER": "backup",
        "SF_PIPELINE_PG_PASSWORD": "s@cret",
        "SF_PIPELINE_PG_DBNAME": "crm",
        "SF_PIPELINE_PG_SSLMODE": "require",
    }
    assert dbt_env_from_url("postgresql+psycopg2://postgres@127.0.0.1/test")["SF_PIPELINE_PG_PORT"] == "5432"


def test_snapshot_definitions_follow_the_configured_object_list(project_dir: Path) -> None:
    write_snapshot_definitions(project_dir, ["Opportunity", "Invoice__c"])

    snapshots = yaml.safe_load((project_dir / "snapshots" / "salesforce_snapshots.yml").read_text())["snapshots"]
    assert [s["name"] for s in snapshots] == ["invoice__c", "opportunity"]
    opportunity_snapshot = snapshots[1]
    assert opportunity_snapshot["relation"] == "ref('opportunity_window')"
    assert opportunity_snapshot["config"] == {
        "schema": "salesforce_history",
        "strategy": "timestamp",
        "unique_key": "id",
        "updated_at": "systemmodstamp",
        "hard_deletes": "ignore",
    }
    sources = yaml.safe_load((project_dir / "models" / "sources.yml").read_text())["sources"]
    assert [(s["name"], s["schema"], [t["name"] for t in s["tables"]]) for s in sources] == [
        ("salesforce", "salesforce", ["invoice__c", "opportunity"])
    ]
    window_model = (project_dir / "models" / "windows" / "opportunity_window.sql").read_text()
    assert "source('salesforce', 'opportunity')" in window_model and "salesforce_window_filter()" in window_model

    write_snapshot_definitions(project_dir, ["Opportunity"])
    assert not (project_dir / "models" / "windows" / "invoice__c_window.sql").exists()


def test_snapshot_command_selects_the_objects_and_its_environment_holds_the_window() -> None:
    # the window is not an argument: dbt parses the whole project again whenever --vars change
    assert snapshot_args(["Opportunity", "Account"]) == ["snapshot", "--select", "opportunity", "account"]
    assert snapshot_env(JAN_1, JAN_2) == {
        "SF_PIPELINE_WINDOW_START": "2026-01-01T00:00:00+00:00",
        "SF_PIPELINE_WINDOW_END": "2026-01-02T00:00:00+00:00",
    }
    with pytest.raises(ValueError, match="empty window"):
        snapshot_env(JAN_2, JAN_1)
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_env(datetime(2026, 1, 1), JAN_2)


def test_history_of_an_object_never_snapshotted_says_so(pg_conn: psycopg.Connection) -> None:
    with pytest.raises(HistoryNotFoundError, match="run the dbt snapshot"):
        history_versions(pg_conn, "Opportunity", A)


@pytest.mark.e2e
def test_snapshot_of_a_missing_mirror_table_fails_with_dbts_reason(project_dir: Path, pg_url: str) -> None:
    write_snapshot_definitions(project_dir, ["Opportunity"])

    with pytest.raises(SnapshotError, match=r"(?s)dbt snapshot of opportunity.*failed.*opportunity"):
        run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_1, JAN_2)


@pytest.mark.e2e
def test_history_keeps_every_version_and_as_of_shows_each_past_state(
    project_dir: Path, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    write_snapshot_definitions(project_dir, ["Opportunity"])
    mirror = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)

    # Window 1: three new opportunities.
    load_window(
        pg_conn,
        mirror,
        [
            csv_batch(
                [
                    opportunity(A, "2026-01-01T10:00:00.000Z", amount="100"),
                    opportunity(B, "2026-01-01T11:00:00.000Z", amount="200"),
                    opportunity(C, "2026-01-01T12:00:00.000Z", amount="300"),
                ]
            )
        ],
        JAN_1,
        JAN_2,
    )
    first = run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_1, JAN_2)
    assert first["snapshots"]["opportunity"]["status"] == "success"

    # Window 2: A's amount changes, B is deleted, D is created. C does not change.
    load_window(
        pg_conn,
        mirror,
        [
            csv_batch(
                [
                    opportunity(A, "2026-01-02T09:00:00.000Z", amount="150"),
                    opportunity(B, "2026-01-02T10:00:00.000Z", amount="200", deleted=True),
                    opportunity(D, "2026-01-02T11:00:00.000Z", amount="400"),
                ]
            )
        ],
        JAN_2,
        JAN_3,
    )
    # A later window is already extracted when window 2 is snapshotted: its rows must wait for theirs.
    load_window(pg_conn, mirror, [csv_batch([opportunity(E, "2026-01-05T08:00:00.000Z")])], JAN_5, JAN_6)
    run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_2, JAN_3)

    def versions(record_id: str) -> list[tuple[datetime, datetime | None, Decimal | None, bool]]:
        return [
            (v["dbt_valid_from"], v["dbt_valid_to"], v["amount"], v["isdeleted"])
            for v in history_versions(pg_conn, "Opportunity", record_id)
        ]

    assert versions(A) == [
        (at("2026-01-01T10:00"), at("2026-01-02T09:00"), Decimal("100"), False),
        (at("2026-01-02T09:00"), None, Decimal("150"), False),
    ]
    assert versions(B) == [
        (at("2026-01-01T11:00"), at("2026-01-02T10:00"), Decimal("200"), False),
        (at("2026-01-02T10:00"), None, Decimal("200"), True),
    ]
    assert versions(C) == [(at("2026-01-01T12:00"), None, Decimal("300"), False)]
    assert versions(D) == [(at("2026-01-02T11:00"), None, Decimal("400"), False)]
    assert versions(E) == []  # stamped outside window 2: not snapshotted by it

    def state(instant: str) -> dict[str, Decimal | None]:
        return {r["id"]: r["amount"] for r in as_of(pg_conn, "Opportunity", at(instant))}

    assert state("2026-01-01T09:59:59") == {}
    assert state("2026-01-01T10:00") == {A: Decimal("100")}
    assert state("2026-01-01T23:00") == {A: Decimal("100"), B: Decimal("200"), C: Decimal("300")}
    assert state("2026-01-02T09:00") == {A: Decimal("150"), B: Decimal("200"), C: Decimal("300")}
    assert state("2026-01-02T10:00") == {A: Decimal("150"), C: Decimal("300")}
    assert state("2026-01-02T12:00") == {A: Decimal("150"), C: Decimal("300"), D: Decimal("400")}
    assert state("2026-01-09T00:00") == state("2026-01-02T12:00")

    # The same question as composable SQL, e.g. for a seeding query.
    rows = pg_conn.execute(as_of_sql("Opportunity", ["Id", "Name"]), {"as_of": at("2026-01-01T10:30")}).fetchall()
    assert rows == [(A, "Big deal")]
    # Every column of the record, without dbt's bookkeeping.
    full = next(as_of(pg_conn, "Opportunity", at("2026-01-01T10:30")))
    assert list(full) == [f["name"].lower() for f in OPPORTUNITY_FIELDS]

    index = pg_conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'salesforce_history' AND tablename = 'opportunity'"
    ).fetchall()
    assert [d for (d,) in index if d.endswith("(id, dbt_valid_from)")]


def _two_windows_of(pg_conn: psycopg.Connection, object_name: str) -> None:
    """A mirror of `object_name` with record A stamped in window JAN_1..JAN_2 and record B in JAN_2..JAN_3."""
    mirror = ensure_mirror_table(pg_conn, object_name, OPPORTUNITY_FIELDS)
    load_window(pg_conn, mirror, [csv_batch([opportunity(A, "2026-01-01T10:00:00.000Z")])], JAN_1, JAN_2)
    load_window(pg_conn, mirror, [csv_batch([opportunity(B, "2026-01-02T10:00:00.000Z")])], JAN_2, JAN_3)


def _history_ids(pg_conn: psycopg.Connection, object_name: str) -> list[str]:
    table = object_name.lower()
    return [r for (r,) in pg_conn.execute(f'SELECT id FROM salesforce_history."{table}" ORDER BY id').fetchall()]


@pytest.mark.e2e
def test_consecutive_windows_reuse_dbts_parse_of_the_project_on_their_database(
    project_dir: Path, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    # The project parsed where the code location loads: without the database's settings (dbt's default profile).
    prepare_manifest(project_dir, ["Opportunity"])
    _two_windows_of(pg_conn, "Opportunity")

    first = run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_1, JAN_2)
    # another connection than the manifest's parse: dbt parses the project again, once
    assert first["parse"] == "full: profile has changed"
    second = run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_2, JAN_3)
    assert second["parse"] == "reused"  # a new window is no reason to parse: it is read only when dbt executes
    assert second["snapshots"]["opportunity"]["status"] == "success"
    assert _history_ids(pg_conn, "Opportunity") == [A, B]  # each window snapshotted its own record

    # Parsed knowing the database the snapshots run on (the code location with SF_PIPELINE_DATABASE_URL set): even
    # the first window reuses the parse.
    other = project_dir.parent / "parsed_on_the_database"
    shutil.copytree(DBT_PROJECT_DIR, other, ignore=shutil.ignore_patterns("target", "logs"))
    prepare_manifest(other, ["Opportunity"], pg_url)
    assert run_snapshot(other, pg_url, ["Opportunity"], JAN_2, JAN_3)["parse"] == "reused"


@pytest.mark.e2e
def test_a_copy_of_the_project_starts_from_the_parse_kept_for_its_database_and_parses_a_changed_snapshot_again(
    project_dir: Path, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    # What the suite's fixtures rely on (each test on a copy of a parsed project, on a database name used before):
    # the parse kept for a database serves any copy of the project, and dbt still parses again what changed.
    write_snapshot_definitions(project_dir, ["Opportunity"])
    _two_windows_of(pg_conn, "Opportunity")
    mirror = ensure_mirror_table(pg_conn, "Opportunity", OPPORTUNITY_FIELDS)
    load_window(pg_conn, mirror, [csv_batch([opportunity(C, "2026-01-05T10:00:00.000Z")])], JAN_5, JAN_6)
    assert run_snapshot(project_dir, pg_url, ["Opportunity"], JAN_1, JAN_2)["parse"].startswith("full")

    unchanged = project_dir.parent / "unchanged_copy"
    shutil.copytree(project_dir, unchanged)  # with target/partial_parse/, the parse kept for pg_url's database
    assert run_snapshot(unchanged, pg_url, ["Opportunity"], JAN_2, JAN_3)["parse"] == "reused"

    # The snapshot file changed in the copy: its history now goes to another schema. A stale parse would write it
    # into salesforce_history.
    changed = project_dir.parent / "changed_copy"
    shutil.copytree(unchanged, changed)
    snapshots_file = changed / "snapshots" / "salesforce_snapshots.yml"
    snapshots_file.write_text(
        snapshots_file.read_text().replace("schema: salesforce_history", "schema: salesforce_history_moved")
    )
    assert run_snapshot(changed, pg_url, ["Opportunity"], JAN_5, JAN_6)["parse"] == "partial"
    assert _history_ids(pg_conn, "Opportunity") == [A, B]
    moved = pg_conn.execute('SELECT id FROM salesforce_history_moved."opportunity"').fetchall()
    assert moved == [(C,)]


@pytest.mark.e2e
def test_windows_snapshotted_at_once_each_see_only_their_own(
    project_dir: Path, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    # Two runs at once on one project and database (two partitions of two objects), sharing the kept parse.
    _two_windows_of(pg_conn, "Opportunity")
    _two_windows_of(pg_conn, "Invoice__c")
    write_snapshot_definitions(project_dir, ["Opportunity", "Invoice__c"])
    run_snapshot(project_dir, pg_url, ["Opportunity", "Invoice__c"], JAN_5, JAN_6)  # the first parse, kept
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(run_snapshot, project_dir, pg_url, ["Opportunity"], JAN_1, JAN_2)
        second = pool.submit(run_snapshot, project_dir, pg_url, ["Invoice__c"], JAN_2, JAN_3)
        assert first.result()["parse"] == second.result()["parse"] == "reused"
    assert _history_ids(pg_conn, "Opportunity") == [A]
    assert _history_ids(pg_conn, "Invoice__c") == [B]


@pytest.mark.e2e
def test_plain_dbt_cli_takes_the_window_from_its_environment_and_requires_it(
    project_dir: Path, pg_url: str, pg_conn: psycopg.Connection
) -> None:
    """The command dbt_snapshots/README.md documents, as a user types it."""
    _two_windows_of(pg_conn, "Opportunity")
    write_snapshot_definitions(project_dir, ["Opportunity"])
    base = [dbt_executable(), "snapshot", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    env = {**os.environ, **dbt_env_from_url(pg_url)}
    for name in snapshot_env(JAN_1, JAN_2):
        env.pop(name, None)

    def dbt(*args: str, **window: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], env={**env, **window}, capture_output=True, text=True, check=False)

    missing = dbt("--select", "opportunity")
    assert missing.returncode != 0
    assert "need the window to snapshot in SF_PIPELINE_WINDOW_START and SF_PIPELINE_WINDOW_END" in missing.stdout
    only_start = dbt("--select", "opportunity", SF_PIPELINE_WINDOW_START="2026-01-01T00:00:00Z")
    assert only_start.returncode != 0 and "SF_PIPELINE_WINDOW_END" in only_start.stdout
    as_vars = dbt("--select", "opportunity", "--vars", "{window_start: 2026-01-01T00:00:00Z, window_end: 2026-01-02}")
    assert as_vars.returncode != 0 and "read from the environment, not from --vars" in as_vars.stdout
    assert not pg_conn.execute("SELECT to_regclass('salesforce_history.opportunity')").fetchone()[0]

    done = dbt(
        "--select",
        "opportunity",
        SF_PIPELINE_WINDOW_START="2026-01-01T00:00:00Z",
        SF_PIPELINE_WINDOW_END="2026-01-02T00:00:00Z",
    )
    assert done.returncode == 0, done.stdout
    assert _history_ids(pg_conn, "Opportunity") == [A]
