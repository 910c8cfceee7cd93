"""Several orgs side by side: `backup: orgs:` names two devorgs; the first keeps today's asset keys, the other has
its alias in front of its keys, its own group, pool, job, schedule, check and database, and each database holds
only its own org's records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
import yaml

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import connect
from sf_pipeline_tests.pg_fixtures import create_database, drop_database

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def emea_database():
    url = create_database("sfp_emea")
    yield url
    drop_database(url)


def test_two_orgs_back_up_side_by_side_each_in_its_own_assets_pool_schedule_and_database(
    pipeline_factory, tmp_path, monkeypatch, emea_database
):
    p = pipeline_factory(["Account", "Contact"])
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["orgs"]["emea"] = {}
    for key in ("org", "objects"):
        settings["backup"].pop(key)
    settings["backup"]["orgs"] = {"production": {"objects": ["Account"]}, "emea": {"objects": ["Account", "Contact"]}}
    p.settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))  # the first org listed keeps today's keys

    with DevOrgServer(tmp_path / "emea_org", name="emea") as emea:
        for name, value in emea.env("emea").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("SF_PIPELINE_EMEA_DATABASE_URL", emea_database)
        for org in (p.devorg, emea):
            org.org.set_clock(T0 + timedelta(minutes=5), freeze=True)
        p.sf().Account.create({"Name": "Home Office"})
        emea_sf = connect(emea)
        acc = emea_sf.Account.create({"Name": "Berlin GmbH"})["id"]
        emea_sf.Contact.create({"LastName": "Meyer", "AccountId": acc})

        defs = p.defs(reload=True)
        graph = defs.resolve_asset_graph()
        keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
        assert {"salesforce/Account", "history/Account"} <= keys, sorted(keys)  # the first org: today's keys
        assert {
            "emea/salesforce/Account",
            "emea/salesforce/Contact",
            "emea/history/Account",
            "emea/history/Contact",
        } <= keys, sorted(keys)
        assert "salesforce/Contact" not in keys
        emea_account = graph.get(dg.AssetKey(["emea", "salesforce", "Account"]))
        assert (
            emea_account.group_name == "emea"
            and graph.get(dg.AssetKey(["salesforce", "Account"])).group_name == "production"
        )
        assert defs.resolve_assets_def(dg.AssetKey(["emea", "salesforce", "Account"])).op.pool == "salesforce_emea"
        assert defs.resolve_assets_def(dg.AssetKey(["salesforce", "Account"])).op.pool == "salesforce_production"
        assert {s.name for s in defs.schedules} >= {"backup_schedule", "backup_emea_schedule"}
        assert defs.resolve_job_def("backup_emea").tags["sf_pipeline/org"] == "emea"

        window = T0.strftime("%Y-%m-%d-%H:%M")
        assert p.backup(window).success
        emea_run = defs.resolve_job_def("backup_emea").execute_in_process(partition_key=window, instance=p.instance)
        assert emea_run.success
        done = {
            e.event_specific_data.materialization.asset_key.to_user_string()
            for e in emea_run.get_asset_materialization_events()
        }
        assert done == {
            "emea/salesforce/Account",
            "emea/salesforce/Contact",
            "emea/history/Account",
            "emea/history/Contact",
        }

    with p.conn() as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM salesforce.account")] == ["Home Office"]
        assert conn.execute("SELECT to_regclass('salesforce.contact')").fetchone()[0] is None
    with psycopg.connect(emea_database) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM salesforce.account")] == ["Berlin GmbH"]
        assert [r[0] for r in conn.execute("SELECT lastname FROM salesforce_history.contact")] == ["Meyer"]
