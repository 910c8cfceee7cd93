"""Records that vanish, end to end: devorg over HTTPS → Dagster → the mirror's `_sfp_` flags and a closing
version in history, shown by `sf-pipeline history` and `as-of`.

Each way a record leaves a real org is done the way an org does it (sources in sf_pipeline/devorg/recycle_bin.py,
merge.py): a Bulk API 2.0 hardDelete job, a delete followed by SOAP emptyRecycleBin, a SOAP merge, and, for
"gone, cause unknown", rows removed straight from devorg's store so that no API can tell.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from sf_pipeline.history_cli import as_of_command, history
from sf_pipeline.warehouse import as_of, history_versions
from sf_pipeline_tests.devorg.test_vanishing_records import _empty_bin, _merge
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def at(p: Pipeline, hour: int, minute: int) -> datetime:
    moment = T0 + timedelta(hours=hour, minutes=minute)
    p.set_clock(moment)
    return moment


def mirror_row(p: Pipeline, sobject: str, record_id: str) -> dict:
    with p.conn() as conn:
        cur = conn.execute(f'SELECT * FROM salesforce."{sobject.lower()}" WHERE id = %s', (record_id,))
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


def metadata(result, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == key:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


def ids_as_of(p: Pipeline, sobject: str, moment: datetime) -> set[str]:
    with p.conn() as conn:
        return {r["id"] for r in as_of(conn, sobject, moment, ["Id"])}


def remove_from_store(p: Pipeline, sobject: str, record_id: str) -> None:
    """Delete a row inside devorg's SQLite: no recycle bin, no delete log, no job: nothing any API reports."""
    store = p.devorg.org.store
    with store.lock, store.transaction():
        store.conn.execute(f'DELETE FROM "{sobject}" WHERE Id = ?', (record_id,))


def test_hard_delete_purge_merge_and_unknown_each_end_as_a_closing_version_and_a_flagged_row(pipeline: Pipeline):
    p = pipeline
    sf = p.sf()
    at(p, 0, 5)
    master = sf.Account.create({"Name": "Acme"})["id"]
    loser = sf.Account.create({"Name": "ACME Inc"})["id"]
    keep = sf.Account.create({"Name": "Kept"})["id"]
    opp = {
        name: sf.Opportunity.create(
            {"Name": name, "StageName": "Prospecting", "CloseDate": "2026-12-31", "AccountId": keep}
        )["id"]
        for name in ("hard", "purged", "unknown", "kept")
    }
    at(p, 1, 10)
    first = p.backup("2026-11-24-00:00")
    assert metadata(first, "salesforce/Opportunity")["reconcile_reason"].startswith("first load")

    # Window 01:00-02:00: a Bulk hard delete, a delete emptied from the recycle bin, a merge.
    hard_at = at(p, 1, 20)
    job = sf.bulk2.Opportunity.hard_delete(records=[{"Id": opp["hard"]}], wait=0.2)
    assert job[0]["numberRecordsFailed"] == 0
    purged_at = at(p, 1, 30)
    sf.Opportunity.delete(opp["purged"])
    assert _empty_bin(p.devorg, [opp["purged"]])[0]["success"]
    merged_at = at(p, 1, 40)
    assert _merge(p.devorg, "Account", master, [loser])["success"]
    at(p, 2, 10)
    w1 = p.backup("2026-11-24-01:00")
    meta = metadata(w1, "salesforce/Opportunity")
    assert meta["reconciled"] is True
    # the purge moved the delete log's start past the window's start: a full reconciliation, and it says why
    assert "delete log starts at" in meta["reconcile_reason"]
    assert meta["vanished_flagged"] == "hard-deleted: 1, purged: 1"

    admin = p.devorg.org.user("admin").user_id
    hard = mirror_row(p, "Opportunity", opp["hard"])
    assert (hard["isdeleted"], hard["_sfp_vanished"], hard["_sfp_vanished_by"], hard["_sfp_gone"]) == (
        True,
        "hard-deleted",
        admin,
        True,
    )
    assert hard_at <= hard["_sfp_vanished_at"] < hard_at + timedelta(minutes=1)
    purged = mirror_row(p, "Opportunity", opp["purged"])
    assert (purged["isdeleted"], purged["_sfp_vanished"], purged["_sfp_gone"]) == (True, "purged", True)
    # deleted and purged before any backup saw it: gone at the latest when the log's start moved (its deletion)
    assert purged["_sfp_vanished_at"] == purged_at
    assert purged["_sfp_vanished_after"] is not None
    loser_row = mirror_row(p, "Account", loser)
    assert (loser_row["isdeleted"], loser_row["_sfp_vanished"], loser_row["_sfp_merged_into"]) == (
        True,
        "merged",
        master,
    )
    assert mirror_row(p, "Opportunity", opp["kept"])["_sfp_vanished"] is None

    # Window 02:00-03:00: a row vanishes that no API reports.
    at(p, 2, 30)
    remove_from_store(p, "Opportunity", opp["unknown"])
    at(p, 3, 10)
    before_run = datetime.now(UTC)
    w2 = p.backup("2026-11-24-02:00")
    meta = metadata(w2, "salesforce/Opportunity")
    assert meta["reconcile_reason"].startswith("every window")
    assert meta["vanished_flagged"] == "unknown: 1"
    unknown = mirror_row(p, "Opportunity", opp["unknown"])
    assert (unknown["isdeleted"], unknown["_sfp_vanished"], unknown["_sfp_gone"]) == (True, "unknown", True)
    assert unknown["_sfp_found_at"] >= before_run
    assert unknown["_sfp_vanished_after"] < at(p, 0, 6)  # last seen: its only version, stamped at 00:05
    assert unknown["_sfp_vanished_at"] == unknown["_sfp_found_at"]

    # History: every vanished record ends with a closing version, flagged deleted, from its closing time.
    with p.conn() as conn:
        for sobject, rid, closing in (
            ("Opportunity", opp["hard"], hard["_sfp_vanished_at"]),
            ("Opportunity", opp["purged"], purged_at),
            ("Account", loser, None),
            ("Opportunity", opp["unknown"], unknown["_sfp_vanished_at"]),
        ):
            versions = history_versions(conn, sobject, rid)
            assert len(versions) == 2, (sobject, rid, versions)
            assert versions[-1]["isdeleted"] is True and versions[-1]["dbt_valid_to"] is None
            assert versions[0]["dbt_valid_to"] == versions[-1]["dbt_valid_from"]
            if closing is not None:
                assert versions[-1]["dbt_valid_from"] == closing
        assert history_versions(conn, "Account", loser)[-1]["_sfp_merged_into"] == master
    assert (
        merged_at
        <= history_versions(p.conn(), "Account", loser)[-1]["dbt_valid_from"]
        < merged_at + timedelta(minutes=1)
    )

    # Point in time: there before, gone after; the record never stays live.
    alive = ids_as_of(p, "Opportunity", at(p, 1, 0))
    assert {opp["hard"], opp["purged"], opp["unknown"], opp["kept"]} <= alive
    assert ids_as_of(p, "Opportunity", at(p, 2, 0)) == {opp["unknown"], opp["kept"]}
    assert ids_as_of(p, "Opportunity", datetime.now(UTC) + timedelta(seconds=1)) == {opp["kept"]}
    assert loser not in ids_as_of(p, "Account", at(p, 2, 0))

    runner = CliRunner()
    shown = runner.invoke(history, ["Opportunity", opp["hard"]])
    assert shown.exit_code == 0, shown.output
    assert (
        "[DELETED]" in shown.output and f"vanished: hard-deleted (never in the recycle bin) by {admin}" in shown.output
    )
    shown = runner.invoke(history, ["Account", loser])
    assert f"vanished: merged into {master}" in shown.output
    shown = runner.invoke(history, ["Opportunity", opp["unknown"]])
    assert "vanished: gone, cause unknown, some time after 2026-11-24 00:05" in shown.output
    listed = runner.invoke(as_of_command, ["Opportunity", "2026-11-24T02:00:00Z", "--fields", "Id"])
    assert listed.exit_code == 0 and opp["hard"] not in listed.output and opp["unknown"] in listed.output


def test_an_expired_delete_log_reconciles_a_large_object_in_full(pipeline_factory):
    # every_window_below 1: no object is small enough to be reconciled every window, so only the expired
    # delete log can make this window reconcile.
    p = pipeline_factory(["Opportunity"], reconcile={"every_window_below": 1, "large_every_hours": 10_000})
    sf = p.sf()
    at(p, 0, 5)
    ids = [
        sf.Opportunity.create({"Name": f"Deal {i}", "StageName": "Prospecting", "CloseDate": "2026-12-31"})["id"]
        for i in range(3)
    ]
    at(p, 1, 10)
    p.backup("2026-11-24-00:00")
    at(p, 2, 10)
    quiet = metadata(p.backup("2026-11-24-01:00"), "salesforce/Opportunity")
    # an unchanged window: the run's preflight counts answer the reconciliation's first comparison, no id is read
    assert quiet["reconciled"] is True and quiet["reconcile_reason"].startswith(
        "counts equal: the org and the mirror hold 3 records"
    )
    assert quiet["reconcile_api_calls"] == 0 and quiet["delete_log_ids"] == 0
    assert quiet["delete_log_coverage"] == "not read: nothing changed (empty window, equal counts)"

    # 16 days without a backup: the recycle bin's retention purged a record deleted meanwhile, and the log
    # no longer reaches back to the last backup.
    at(p, 3, 0)
    sf.Opportunity.delete(ids[0])
    p.set_clock(T0 + timedelta(days=16, hours=3))
    sf = p.sf()
    sf.query("SELECT COUNT() FROM Opportunity")  # any API call purges what is due
    p.set_clock(T0 + timedelta(days=16, hours=3, minutes=10))
    result = p.backup("2026-11-24-02:00")
    meta = metadata(result, "salesforce/Opportunity")
    assert meta["reconciled"] is True
    assert "delete log starts at" in meta["reconcile_reason"] and "every id is reconciled" in meta["reconcile_reason"]
    assert meta["delete_log_coverage"].startswith("starts at")
    assert meta["vanished_flagged"] == "purged: 1"
    assert mirror_row(p, "Opportunity", ids[0])["_sfp_vanished"] == "purged"
