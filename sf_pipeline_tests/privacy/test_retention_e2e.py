"""Retention on histories built by the real backup (devorg, Dagster, dbt snapshots), then more snapshots.

An account changes several times a day over two days, each change backed up in its window. Retention thins
the history to one version per day; the next window's dbt snapshot must then close the current version and
add the new one exactly as before, and as-of answers must stay consistent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from sf_pipeline.warehouse.history import as_of
from sf_pipeline_tests.privacy.runs import run_job, step_metadata

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
KEY = "%Y-%m-%d-%H:%M"


def _chain(p, rid: str):
    with p.conn() as conn:
        return conn.execute(
            "SELECT dbt_valid_from, dbt_valid_to, description FROM salesforce_history.account "
            "WHERE id = %s ORDER BY dbt_valid_from",
            (rid,),
        ).fetchall()


@pytest.mark.e2e
def test_snapshots_after_retention_keep_the_history_consistent(pipeline_factory):
    p = pipeline_factory(["Account"], partitions={"cron": "0 * * * *", "start": "2026-11-23T00:00:00Z"})
    p.set_clock(T0 - timedelta(minutes=30))
    sf = p.sf()
    rid = sf.Account.create({"Name": "Retained Ltd", "Description": "v0"})["id"]
    other = sf.Account.create({"Name": "Quiet Ltd"})["id"]
    # v0 at 23:30 the day before, v1..v3 on day one, v4 on day two; each backed up in its window
    windows = [T0 - timedelta(hours=1)]
    p.set_clock(T0 + timedelta(minutes=5))
    assert p.backup(windows[0].strftime(KEY)).success
    for n, at in enumerate(
        [
            T0 + timedelta(hours=1, minutes=10),
            T0 + timedelta(hours=2, minutes=10),
            T0 + timedelta(hours=3, minutes=10),
            T0 + timedelta(hours=26, minutes=10),
        ],
        1,
    ):
        p.set_clock(at)
        sf.Account.update(rid, {"Description": f"v{n}"})
        windows.append(at.replace(minute=0))
        p.set_clock(windows[-1] + timedelta(hours=1, minutes=5))
        assert p.backup(windows[-1].strftime(KEY)).success
    assert [v[2] for v in _chain(p, rid)] == ["v0", "v1", "v2", "v3", "v4"]

    # the scheduled job applies the settings' retention (as its schedule would ten days later)
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["retention"] = {"keep_all_days": 1, "daily_until_days": 30}
    p.settings_path.write_text(yaml.safe_dump(settings))
    defs = p.defs(reload=True)
    assert defs.resolve_schedule_def("apply_retention_schedule").cron_schedule == "30 3 * * *"
    run = run_job(
        p,
        "apply_retention",
        "apply_retention",
        {},
        tags={"dagster/scheduled_execution_time": (T0 + timedelta(days=10)).isoformat()},
    )
    assert run.success
    meta = step_metadata(run)
    account = meta["objects"]["Account"]
    assert meta["versions_removed"] == 2 and account["stretched"] == 1  # v1, v2 go; v0 now reaches v3
    assert account["versions_before"] == 6 and account["method"] == "rewrite"  # a third of the versions went
    assert meta["bytes_removed"] == account["table_bytes_before"] - account["table_bytes_after"] >= 0
    chain = _chain(p, rid)
    assert [v[2] for v in chain] == ["v0", "v3", "v4"]
    assert chain[0][1] == chain[1][0] and chain[1][1] == chain[2][0] and chain[2][1] is None
    with p.conn() as conn:
        at_noon = {r["id"]: r["description"] for r in as_of(conn, "Account", T0 + timedelta(hours=12))}
        during = {r["id"]: r["description"] for r in as_of(conn, "Account", T0 + timedelta(hours=1, minutes=30))}
    assert at_noon[rid] == "v3" and other in at_noon  # the end of day one
    assert during[rid] == "v0"  # a thinned hour answers with the last state kept before it

    # the next change: dbt's snapshot closes the current version and adds the new one, no duplicate
    p.set_clock(T0 + timedelta(hours=30, minutes=10))
    sf.Account.update(rid, {"Description": "v5"})
    p.set_clock(T0 + timedelta(hours=31, minutes=10))
    assert p.backup((T0 + timedelta(hours=30)).strftime(KEY)).success
    # re-running an old window (a backfill) adds nothing either
    assert p.backup(windows[1].strftime(KEY)).success
    chain = _chain(p, rid)
    assert [v[2] for v in chain] == ["v0", "v3", "v4", "v5"]
    assert all(a[1] == b[0] for a, b in zip(chain, chain[1:], strict=False)) and chain[-1][1] is None
    assert len(_chain(p, other)) == 1
