"""Objects that do not behave like Opportunity, backed up end to end, each by the strategy its describe allows.

devorg serves them as a real org does (sf_pipeline/devorg/wide.py): AccountHistory (field history tracking: rows
written by the org, CreatedDate and no SystemModstamp), LoginHistory (no timestamp field at all), and
KnowledgeArticleVersionHistory (a history object that Bulk API refuses with INVALIDENTITY, which its describe
does not tell). Rows of the objects no API can create are written into devorg's store, as the org itself writes
them (logins, article events).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline.devorg.clock import format_datetime
from sf_pipeline.devorg.store import q
from sf_pipeline.warehouse import history_versions
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the fixtures' first hourly window
OBJECTS = ["Account", "AccountHistory", "LoginHistory", "KnowledgeArticleVersionHistory"]


def key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def org_writes(p: Pipeline, sobject: str, rows: list[dict]) -> list[str]:
    """Rows the org writes itself (no API creates LoginHistory or article history): straight into devorg's store."""
    store = p.devorg.org.store
    obj = p.devorg.org.schema.get(sobject)
    ids = []
    with store.lock, store.transaction():
        for row in rows:
            rid = store.new_id(obj)
            values = {"Id": rid, **row}
            if obj.has_field("IsDeleted"):
                values["IsDeleted"] = 0
            store.conn.execute(
                f"INSERT INTO {q(sobject)} ({', '.join(map(q, values))}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            ids.append(rid)
    return ids


def test_history_objects_no_timestamp_and_bulk_refused_objects_back_up_with_their_history(pipeline_factory):
    # bulk_threshold 1: every window of two records or more asks for Bulk API 2.0
    p = pipeline_factory(OBJECTS, bulk_threshold=1)
    sf = p.sf()
    p.set_clock(T0 + timedelta(minutes=5))
    accounts = [sf.Account.create({"Name": f"Acme {i}", "Industry": "Energy"})["id"] for i in range(2)]
    now = format_datetime(T0 + timedelta(minutes=6))
    logins = org_writes(
        p,
        "LoginHistory",
        [
            {"LoginTime": now, "Status": "Success", "SourceIp": f"10.0.0.{i}", "LoginType": "Application"}
            for i in range(3)
        ],
    )
    article = "ka0000000000001AAA"
    events = org_writes(
        p,
        "KnowledgeArticleVersionHistory",
        [{"CreatedDate": now, "EventType": "Published", "ParentId": article, "VersionNumber": i + 1} for i in range(2)],
    )
    first = p.backup(key(T0))
    assert first.success

    # each object's strategy, from its describe, in the asset metadata
    assert metadata(first, "salesforce/Account")["strategy"] == "incremental"
    assert metadata(first, "salesforce/Account")["extract_mode"] == "bulk"
    assert metadata(first, "salesforce/AccountHistory")["strategy"] == "append_only"
    assert metadata(first, "salesforce/LoginHistory")["strategy"] == "full_read"
    kavh = metadata(first, "salesforce/KnowledgeArticleVersionHistory")
    assert kavh["strategy"] == "append_only"
    assert kavh["extract_mode"] == "rest" and kavh["records_extracted"] == 2  # Bulk refused it: read through REST

    with p.conn() as conn:
        created = conn.execute(
            "SELECT accountid, field, systemmodstamp = createddate FROM salesforce.accounthistory ORDER BY accountid"
        ).fetchall()
        assert created == [(accounts[0], "created", True), (accounts[1], "created", True)]
        assert conn.execute("SELECT count(*) FROM salesforce.loginhistory").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM salesforce_history.knowledgearticleversionhistory").fetchone()[0] == 2

    # the next window: a tracked field changes (a new AccountHistory row), a login row changes, one disappears
    p.set_clock(T0 + timedelta(hours=1, minutes=5))
    sf.Account.update(accounts[0], {"Industry": "Banking", "Name": "Acme Bank"})
    store = p.devorg.org.store
    with store.lock, store.transaction():
        store.conn.execute('UPDATE "LoginHistory" SET Status = ? WHERE Id = ?', ("Failed", logins[0]))
        store.conn.execute('DELETE FROM "LoginHistory" WHERE Id = ?', (logins[2],))
    second = p.backup(key(T0 + timedelta(hours=1)))
    assert second.success
    login_meta = metadata(second, "salesforce/LoginHistory")
    assert (login_meta["records_extracted"], login_meta["records_updated"], login_meta["records_unchanged"]) == (
        2,
        1,
        1,
    )
    # only the rows the change wrote (Name and Industry are tracked), not the earlier ones again
    assert metadata(second, "salesforce/AccountHistory")["records_extracted"] == 2

    with p.conn() as conn:
        rows = conn.execute(
            "SELECT field, oldvalue, newvalue FROM salesforce_history.accounthistory "
            "WHERE accountid = %s ORDER BY createddate, field",
            (accounts[0],),
        ).fetchall()
        assert rows == [("created", None, None), ("Industry", "Energy", "Banking"), ("Name", "Acme 0", "Acme Bank")]
        # append-only rows never get a second version
        assert (
            conn.execute("SELECT count(*) - count(DISTINCT id) FROM salesforce_history.accounthistory").fetchone()[0]
            == 0
        )
        changed = history_versions(conn, "LoginHistory", logins[0])
        unchanged = history_versions(conn, "LoginHistory", logins[1])
        gone = history_versions(conn, "LoginHistory", logins[2])
        flags = conn.execute(
            "SELECT _sfp_vanished, _sfp_gone FROM salesforce.loginhistory WHERE id = %s", (logins[2],)
        ).fetchone()
    assert [v["status"] for v in changed] == ["Success", "Failed"]
    assert changed[0]["dbt_valid_to"] is not None and changed[1]["dbt_valid_to"] is None
    assert len(unchanged) == 1 and unchanged[0]["dbt_valid_to"] is None
    # the row the org no longer has: a closing version, "gone, cause unknown" (no delete log for such an object)
    assert len(gone) == 2 and gone[-1]["_sfp_vanished"] == "unknown"
    assert flags == ("unknown", True)
    assert events  # the article events stayed as they were
