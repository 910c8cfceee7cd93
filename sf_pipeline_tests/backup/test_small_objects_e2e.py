"""Small objects share one step per window; a large one keeps its own (issue 14, "API cost").

At hundreds of objects one Dagster step per object and window is itself the cost, so the objects the catalog
counted fewer than `backup.shared_step_below_records` records in are one subsettable multi-asset step: each is
still its own asset `salesforce/<Object>` with its own materialization, and a run or a backfill of one of them
runs that step for it alone. Real devorg, PostgreSQL, Dagster and dbt.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from sf_pipeline.backup.catalog_state import refresh_state_file
from sf_pipeline.devorg.generator import generate_org
from sf_pipeline.resources import salesforce_pool
from sf_pipeline.settings import load_settings

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)  # the fixtures' first hourly window
SMALL = ["Account", "Contact"]
LARGE = "Opportunity"
SHARED_STEP = "salesforce_small_objects"


def key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def mirror(name: str) -> dg.AssetKey:
    return dg.AssetKey(["salesforce", name])


def steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {e.step_key for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)}


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.path[0] == "salesforce":
            out[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_small_objects_share_one_subsettable_step_and_a_large_one_keeps_its_own(pipeline_factory):
    p = pipeline_factory([*SMALL, LARGE], shared_step_below_records=60)
    p.set_clock(T0 - timedelta(minutes=5))
    generate_org(p.devorg.org, 100)  # 100 Opportunities; ten times fewer Accounts, a few Contacts each
    sf = p.sf()
    counts = {name: sf.query(f"SELECT COUNT() FROM {name}")["totalSize"] for name in [*SMALL, LARGE]}
    assert all(counts[name] < 60 for name in SMALL) and counts[LARGE] >= 60, counts
    # the catalog (state refreshed on deploy) counts each object's records: that decides who shares the step
    refresh_state_file(load_settings(p.settings_path))

    backup = p.defs(reload=True).resolve_job_def("backup")
    nodes = {node.name: node for node in backup.graph.node_defs}
    assert set(nodes) == {SHARED_STEP, f"salesforce__{LARGE}", "history_production"}
    shared = p.defs().get_assets_def(mirror("Account"))
    assert shared.keys == {mirror(name) for name in SMALL} and shared.can_subset
    assert p.defs().get_assets_def(mirror(LARGE)).keys == {mirror(LARGE)}
    assert nodes[SHARED_STEP].pool == nodes[f"salesforce__{LARGE}"].pool == salesforce_pool("production")
    # first in a launched run's queue: its stream of events beside the large objects' steps, not after them
    assert nodes[SHARED_STEP].tags.get("dagster/priority") == "1"
    assert nodes[f"salesforce__{LARGE}"].tags.get("dagster/priority") is None

    # one window: two mirror steps for three objects, each object its own materialization and figures
    p.set_clock(T0 + timedelta(hours=1, minutes=15))
    first = p.backup(key(T0))
    assert steps(p.instance, first.run_id) == {SHARED_STEP, f"salesforce__{LARGE}", "history_production"}
    figures = materialized(first)
    assert {name: figures[name]["records_extracted"] for name in figures} == counts
    with p.conn() as conn:
        for name in [*SMALL, LARGE]:
            assert conn.execute(f"SELECT count(*) FROM salesforce.{name.lower()}").fetchone()[0] == counts[name]

    # a change in one small object; the next window materializes that object alone (a subset of the shared step)
    p.set_clock(T0 + timedelta(hours=1, minutes=20))
    contact = sf.query("SELECT Id FROM Contact ORDER BY Id LIMIT 1")["records"][0]["Id"]
    sf.Contact.update(contact, {"LastName": "Subset"})
    p.set_clock(T0 + timedelta(hours=2, minutes=15))
    window = key(T0 + timedelta(hours=1))
    # (the selection as a launch from the UI or a backfill makes it, without the assets' checks)
    alone = backup.get_subset(asset_selection={mirror("Contact")}, asset_check_selection=set()).execute_in_process(
        partition_key=window, instance=p.instance
    )
    assert steps(p.instance, alone.run_id) == {SHARED_STEP}
    assert set(materialized(alone)) == {"Contact"}
    assert materialized(alone)["Contact"]["records_extracted"] == 1
    account = p.instance.get_latest_materialization_event(mirror("Account"))
    assert account.run_id == first.run_id  # not touched by the subset
    with p.conn() as conn:
        assert conn.execute("SELECT lastname FROM salesforce.contact WHERE id = %s", (contact,)).fetchone() == (
            "Subset",
        )

    # a backfill of one small object over a range of windows: one run, the shared step for that object alone
    p.set_clock(T0 + timedelta(hours=4, minutes=15))
    backfill = backup.get_subset(asset_selection={mirror("Account")}, asset_check_selection=set()).execute_in_process(
        instance=p.instance,
        tags={
            "dagster/asset_partition_range_start": key(T0 + timedelta(hours=1)),
            "dagster/asset_partition_range_end": key(T0 + timedelta(hours=3)),
        },
    )
    assert steps(p.instance, backfill.run_id) == {SHARED_STEP}
    assert set(materialized(backfill)) == {"Account"}
    assert materialized(backfill)["Account"]["window_start"] == (T0 + timedelta(hours=1)).isoformat()
    assert materialized(backfill)["Account"]["window_end"] == (T0 + timedelta(hours=4)).isoformat()

    # an unchanged window: every object keeps its own materialization and figures (history too, skipped), and the
    # shared step logs one line for its unchanged objects instead of two each (each log line is an event written
    # to Dagster's event log: at hundreds of objects, seconds of every window)
    quiet_window = T0 + timedelta(hours=3)
    quiet = p.backup(key(quiet_window))
    figures = materialized(quiet)
    assert set(figures) == {*SMALL, LARGE}
    assert all(f["records_extracted"] == 0 and f["vanished_total"] == 0 for f in figures.values()), figures
    lines = [
        e.user_message
        for e in p.instance.all_logs(quiet.run_id)
        if e.dagster_event is None and e.step_key == SHARED_STEP
    ]
    assert len(lines) == 1 and lines[0].startswith("2 of 2 objects unchanged"), lines
    assert all(name in lines[0] for name in SMALL), lines
    for name in [*SMALL, LARGE]:
        history = dg.AssetKey(["history", name])
        assert key(quiet_window) in p.instance.get_materialized_partitions(history)
        latest = p.instance.get_latest_materialization_event(history).asset_materialization
        assert latest.partition == key(quiet_window)
        assert latest.metadata["snapshot"].value.startswith("skipped: the window changed nothing")
