"""Retention over a real PostgreSQL history table shaped as dbt snapshots build it (SCD-2 validity)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sf_pipeline.privacy.errors import PrivacySettingsError
from sf_pipeline.privacy.retention import RetentionPolicy, RetentionSettings, apply_retention
from sf_pipeline.warehouse.history import as_of

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = RetentionPolicy(keep_all_days=7, daily_until_days=60, monthly_until_days=365)


def make_history(conn: psycopg.Connection, versions: dict[str, list[datetime]]) -> None:
    conn.execute("CREATE SCHEMA salesforce_history")
    conn.execute(
        "CREATE TABLE salesforce_history.contact (id varchar(18), lastname text, isdeleted boolean, "
        "systemmodstamp timestamptz, dbt_scd_id text, dbt_updated_at timestamptz, "
        "dbt_valid_from timestamptz, dbt_valid_to timestamptz)"
    )
    rows = []
    for rid, stamps in versions.items():
        stamps = sorted(stamps)
        for n, stamp in enumerate(stamps):
            until = stamps[n + 1] if n + 1 < len(stamps) else None
            scd = hashlib.md5(f"{rid}|{stamp.isoformat()}".encode()).hexdigest()
            rows.append((rid, f"{rid}-v{n}", False, stamp, scd, stamp, stamp, until))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO salesforce_history.contact VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    conn.execute("CREATE INDEX ON salesforce_history.contact (id, dbt_valid_from)")


def chain(conn: psycopg.Connection, rid: str) -> list[tuple[datetime, datetime | None, str]]:
    return conn.execute(
        "SELECT dbt_valid_from, dbt_valid_to, lastname FROM salesforce_history.contact WHERE id = %s "
        "ORDER BY dbt_valid_from",
        (rid,),
    ).fetchall()


@pytest.mark.parametrize("method", ["in place", "rewrite"])
def test_history_is_thinned_per_day_then_month_keeping_validity_gap_free(pg_conn, method):
    hours = [NOW - timedelta(days=d, hours=h) for d in range(0, 400, 1) for h in (2, 9, 15)]
    make_history(pg_conn, {"003A": hours, "003B": hours[:50], "003C": hours[-4:], "003P": hours})
    before = {
        t: {r["id"]: r["lastname"] for r in as_of(pg_conn, "Contact", t)}
        for t in (NOW - timedelta(days=d, hours=1) for d in (1, 3, 10, 20, 100, 200))
    }
    indexes = pg_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'contact'").fetchall()
    result = apply_retention(pg_conn, "Contact", POLICY, NOW, protected=["003P"], method=method)
    assert result.removed > 0 and result.bytes_removed > 0 and result.versions_before == 3 * 400 * 2 + 50 + 4
    assert result.method == method
    assert (
        pg_conn.execute("SELECT count(*) FROM salesforce_history.contact").fetchone()[0]
        == result.versions_before - result.removed
    )
    # a rewrite gives the space back at once and leaves the same indexes
    assert pg_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'contact'").fetchall() == indexes
    if method == "rewrite":
        assert result.table_bytes_after < result.table_bytes_before

    versions = chain(pg_conn, "003A")
    for (_, until, _), (start, _, _) in zip(versions, versions[1:], strict=False):
        assert until == start  # no gap, no overlap
    assert versions[-1][1] is None and versions[-1][2] == "003A-v1199"  # the latest version is kept as it was
    recent = [v for v in versions if v[0] >= NOW - timedelta(days=7)]
    assert len(recent) == 3 * 7 + 1 or len(recent) == 3 * 7  # every version of the last 7 days
    daily = [v for v in versions if NOW - timedelta(days=60) <= v[0] < NOW - timedelta(days=8)]
    days = [v[0].date() for v in daily]
    assert len(days) == len(set(days))  # one per day, the last of each day
    assert all(v[0].hour == (NOW - timedelta(hours=2)).hour for v in daily)
    monthly = [v for v in versions if NOW - timedelta(days=365) <= v[0] < NOW - timedelta(days=61)]
    months = [(v[0].year, v[0].month) for v in monthly]
    assert len(months) == len(set(months)) and len(months) >= 9
    assert not [v for v in versions if v[0] < NOW - timedelta(days=366)]  # beyond the maximum age
    # a record with only old versions keeps its latest; the protected record keeps everything
    assert chain(pg_conn, "003B")[-1][1] is None and len(chain(pg_conn, "003P")) == 1200
    assert len(chain(pg_conn, "003C")) == 1  # four versions 400 days old: only the latest remains

    # as-of inside the kept-everything period answers as before; in a thinned day, with the state kept for it
    after = {t: {r["id"]: r["lastname"] for r in as_of(pg_conn, "Contact", t)} for t in before}
    for t in before:
        if t >= NOW - timedelta(days=7):
            assert after[t] == before[t]
        assert set(after[t]) == set(before[t]) - ({"003C"} if t < NOW - timedelta(days=366) else set())
    # the end of a thinned day shows that day's last state
    day_end = NOW - timedelta(days=20, hours=1)
    assert after[day_end]["003A"] == before[day_end]["003A"]

    again = apply_retention(pg_conn, "Contact", POLICY, NOW, protected=["003P"], method=method)
    assert again.removed == 0 and again.stretched == 0  # idempotent


def _expected(versions: dict[str, list[datetime]], protected: set[str]) -> dict[str, list[tuple]]:
    """The policy read literally, record by record (module doc of retention.py): the latest version; every
    version younger than keep_all_days; a protected record's; then the last of each UTC day; then the last of
    each UTC month (of the versions before the daily period); nothing older than the maximum age. Each kept
    version's validity ends where the next kept one starts."""
    all_from, daily_from = NOW - timedelta(days=POLICY.keep_all_days), NOW - timedelta(days=POLICY.daily_until_days)
    monthly_from = NOW - timedelta(days=POLICY.monthly_until_days)
    out = {}
    for rid, stamps in versions.items():
        stamps = sorted(stamps)
        kept = []
        for n, t in enumerate(stamps):
            later = stamps[n + 1 :]
            if (
                not later
                or t >= all_from
                or rid in protected
                or (t >= daily_from and not [u for u in later if u.date() == t.date()])
                or (
                    monthly_from <= t < daily_from
                    and not [u for u in later if u < daily_from and (u.year, u.month) == (t.year, t.month)]
                )
            ):
                kept.append(t)
        out[rid] = [(t, kept[n + 1] if n + 1 < len(kept) else None) for n, t in enumerate(kept)]
    return out


@pytest.mark.parametrize("method", ["in place", "rewrite"])
def test_batches_of_a_few_versions_thin_as_the_policy_says(pg_conn, method):
    # 40 records of 3 to 30 versions at irregular hours over 400 days, decided 7 versions at a time: records
    # fall on batch edges, and each batch decides only whole records
    versions = {
        f"003R{r:02d}": [NOW - timedelta(hours=(r * 37 + v * v * 53) % (400 * 24) + 1) for v in range(3 + r % 28)]
        for r in range(40)
    }
    versions = {rid: sorted(set(stamps)) for rid, stamps in versions.items()}
    make_history(pg_conn, versions)
    total = sum(len(v) for v in versions.values())
    dry = apply_retention(pg_conn, "Contact", POLICY, NOW, protected=["003R05"], dry_run=True, batch_versions=7)
    result = apply_retention(pg_conn, "Contact", POLICY, NOW, protected=["003R05"], method=method, batch_versions=7)
    assert result.method == method and result.batches >= total // 30 and dry.batches == result.batches
    assert (dry.versions_before, dry.removed, dry.stretched) == (
        result.versions_before,
        result.removed,
        result.stretched,
    )
    expected = _expected(versions, {"003R05"})
    assert result.versions_before == total and result.removed == total - sum(len(v) for v in expected.values())
    assert result.removed > 0 and result.stretched > 0
    got = {rid: [(start, until) for start, until, _ in chain(pg_conn, rid)] for rid in versions}
    assert got == expected


def test_a_dry_run_counts_and_removes_nothing(pg_conn):
    make_history(pg_conn, {"003A": [NOW - timedelta(days=30, hours=h) for h in range(1, 11)]})  # one day
    dry = apply_retention(pg_conn, "Contact", POLICY, NOW, dry_run=True)
    assert dry.removed == 9 and len(chain(pg_conn, "003A")) == 10


def test_retention_settings_give_per_object_policies_and_name_bad_keys():
    settings = RetentionSettings.from_dict({"keep_all_days": 14, "objects": {"Case": {"daily_until_days": 30}}})
    assert settings.policy("Contact") == RetentionPolicy(14, 365, None)
    assert settings.policy("case") == RetentionPolicy(14, 30, None)
    assert "one version per day" in settings.policy("Case").resolution(NOW - timedelta(days=20), NOW)
    assert "every version" in settings.policy("Case").resolution(NOW - timedelta(days=2), NOW)
    assert "per month" in settings.policy("Case").resolution(NOW - timedelta(days=40), NOW)
    assert RetentionSettings.from_dict(None) is None
    with pytest.raises(PrivacySettingsError, match="the ages must grow"):
        RetentionSettings.from_dict({"keep_all_days": 90, "daily_until_days": 30})
    with pytest.raises(PrivacySettingsError, match="unknown keys keep"):
        RetentionSettings.from_dict({"keep": 3})
    with pytest.raises(PrivacySettingsError, match="whole number of days"):
        RetentionSettings.from_dict({"objects": {"Case": {"keep_all_days": "7"}}})


def test_as_of_and_history_state_the_resolution_of_the_periods_they_show(pg_url, pg_conn, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sf_pipeline.history_cli import as_of_command

    make_history(pg_conn, {"003A": [datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC)]})
    settings = tmp_path / "sf_pipeline.yaml"
    settings.write_text("backup: {objects: [Contact]}\nretention: {keep_all_days: 7, daily_until_days: 60}\n")
    monkeypatch.setenv("SF_PIPELINE_SETTINGS", str(settings))
    monkeypatch.setenv("SF_PIPELINE_DATABASE_URL", pg_url)
    old = CliRunner().invoke(as_of_command, ["Contact", "2026-01-05T12:00:00Z"])
    assert old.exit_code == 0 and "003A-v0" in old.stdout
    assert "history resolution at 2026-01-05T12:00:00+00:00: one version per month" in old.stderr
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = CliRunner().invoke(as_of_command, ["Contact", now])
    assert "every version (no thinning yet)" in recent.stderr

    # `history` of a record says what each period of its history keeps
    from sf_pipeline.history_cli import history

    versions = CliRunner().invoke(history, ["Contact", "003A"])
    assert versions.exit_code == 0 and "version 2: from 2026-01-06" in versions.stdout
    today = datetime.now(UTC)
    assert (
        f"history resolution of Contact (retention): every version since "
        f"{today - timedelta(days=7):%Y-%m-%d}; one version per day from {today - timedelta(days=60):%Y-%m-%d} "
        f"to {today - timedelta(days=7):%Y-%m-%d}; one version per month before "
        f"{today - timedelta(days=60):%Y-%m-%d}"
    ) in versions.stderr
