"""`objects: all` end to end: the catalog from devorg's describe (every standard object of a real org), the
objects backed up and skipped with their reasons (`sf-pipeline objects`, asset metadata), and the Dagster
state-backed component refreshed by the real `dg utils refresh-defs-state`: a new custom object and a new field
appear after a refresh with no code or YAML change, and loading the definitions never calls Salesforce.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.objects_cli import objects as objects_command
from sf_pipeline.salesforce.catalog import ReadApi, SkippedObject, Strategy, plan_object, select

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
EXCLUDE = ["*Share", "*Feed", "*ChangeEvent"]


def _field(name: str, type_: str = "string", **extra) -> dict:
    return {"name": name, "type": type_, "updateable": False, **extra}


def test_strategy_comes_from_capabilities_not_from_the_name():
    flags = {"queryable": True, "retrieveable": True, "replicateable": True}
    # a custom object called like a history object, with SystemModstamp: incremental
    odd = plan_object(
        {"name": "NotReallyHistory__c", **flags}, {"fields": [_field("Id", "id"), _field("SystemModstamp", "datetime")]}
    )
    assert odd.strategy == Strategy.INCREMENTAL
    # an object with CreatedDate only, nothing updateable, whatever its name: append-only
    rows = plan_object(
        {"name": "Anything", **flags}, {"fields": [_field("Id", "id"), _field("CreatedDate", "datetime")]}
    )
    assert rows.strategy == Strategy.APPEND_ONLY
    # updateable without SystemModstamp: a full read, never trusted as append-only
    changes = plan_object(
        {"name": "Anything", **flags, "updateable": True},
        {"fields": [_field("Id", "id"), _field("CreatedDate", "datetime")]},
    )
    assert changes.strategy == Strategy.FULL_READ
    blob = plan_object(
        {"name": "Doc", **flags},
        {"fields": [_field("Id", "id"), _field("SystemModstamp", "datetime"), _field("Body", "base64")]},
    )
    assert blob.read_api == ReadApi.REST and "base64 field Body" in blob.reason
    share = plan_object(
        {"name": "Thing", "queryable": True, "retrieveable": True, "replicateable": False},
        {"fields": [_field("Id", "id"), _field("SystemModstamp", "datetime")]},
    )
    assert isinstance(share, SkippedObject) and "not replicateable" in share.reason
    chosen, skipped = select(
        [{"name": "AccountShare", **flags}, {"name": "Account", **flags}, {"name": "Event", "queryable": False}],
        explicit=None,
        include=[],
        exclude=EXCLUDE,
    )
    assert [e["name"] for e in chosen] == ["Account"]
    assert {s.name: s.reason for s in skipped} == {
        "AccountShare": "excluded by backup.exclude pattern '*Share'",
        "Event": "not queryable (describe global: queryable false)",
    }


def test_objects_all_backs_up_what_the_describe_allows_and_lists_the_rest(pipeline_factory, tmp_path, monkeypatch):
    p = pipeline_factory(["Account"])
    monkeypatch.setenv("SF_PIPELINE_STATE_DIR", str(tmp_path / "state"))
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["backup"].update(
        {
            "objects": "all",
            "include": ["Account", "AccountHistory", "LoginHistory", "Contact*"],
            "exclude": EXCLUDE,
            "per_object": [{"name": "Account", "exclude": ["Description"]}],
        }
    )
    p.settings_path.write_text(yaml.safe_dump(settings))
    p.set_clock(T0 + timedelta(minutes=5))
    sf = p.sf()
    account = sf.Account.create({"Name": "Acme", "Description": "kept out by per_object"})["id"]
    sf.Contact.create({"LastName": "Lovelace", "AccountId": account})

    runner = CliRunner()
    refreshed = runner.invoke(objects_command, ["--refresh", "--json"])
    assert refreshed.exit_code == 0, refreshed.output
    [org] = json.loads(refreshed.stdout)
    strategies = {r["object"]: r["strategy"] for r in org["objects"]}
    assert strategies == {
        "Account": "incremental",
        "AccountHistory": "append_only",
        "Contact": "incremental",
        "ContactHistory": "append_only",
        "ContactRequest": "incremental",
        "LoginHistory": "full_read",
    }
    skipped = {s["object"]: s["reason"] for s in org["skipped"]}
    assert skipped["ContactShare"] == "excluded by backup.exclude pattern '*Share'"
    assert skipped["ContactFeed"] == "excluded by backup.exclude pattern '*Feed'"
    assert skipped["Opportunity"] == (
        "not matched by backup.include ['Account', 'AccountHistory', 'LoginHistory', 'Contact*']"
    )
    assert all(r["last_backed_up_window"] is None for r in org["objects"])

    defs = p.defs(reload=True)
    result = p.backup(T0.strftime("%Y-%m-%d-%H:%M"))
    assert result.success
    backed_up = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }
    assert {f"salesforce/{o}" for o in strategies} | {f"history/{o}" for o in strategies} <= backed_up
    with p.conn() as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'salesforce' AND table_name = 'account'"
            )
        }
        assert "name" in columns and "description" not in columns  # per_object settings kept under `all`

    # the same catalog in the UI: each asset's strategy, and a catalog asset with the skipped objects
    login = asset_metadata(defs, "salesforce/LoginHistory")
    assert login["strategy"] == "full_read" and login["field_count"] == 18
    catalog = asset_metadata(defs, "salesforce_catalog")
    skipped_rows = {r.data["object"]: r.data["reason"] for r in catalog["skipped"].records}
    assert skipped_rows["ContactShare"] == "excluded by backup.exclude pattern '*Share'"

    listed = runner.invoke(objects_command, [])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert lines["LoginHistory"].split()[1:3] == ["full_read", "bulk_or_rest"]
    assert lines["LoginHistory"].split()[-1] == "2026-11-20-00:00"  # last backed-up window
    assert "excluded by backup.exclude pattern '*Feed'" in lines["ContactFeed"]


def _dg_refresh(project: Path, env: dict[str, str]) -> None:
    """The real `dg utils refresh-defs-state`, as a deploy step or a user would run it."""
    dg = Path(sys.executable).with_name("dg")
    proc = subprocess.run(
        [str(dg), "utils", "refresh-defs-state"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_component_picks_up_a_new_custom_object_and_field_after_a_state_refresh(
    tmp_path, monkeypatch, parsed_dbt_project
):
    from dagster.components.testing.utils import DefsFolderSandbox

    root = tmp_path / "my_dagster_project"
    defs_dir = root / "src" / "my_dagster_project" / "defs"
    (defs_dir / "salesforce_backup").mkdir(parents=True)
    (root / "src" / "my_dagster_project" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "my_dagster_project"\nversion = "0.1.0"\n\n[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "my_dagster_project"\n'
    )
    settings = tmp_path / "sf_pipeline.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "orgs": {"production": {}},
                "backup": {
                    "org": "production",
                    "objects": "all",
                    "include": ["Account", "AccountHistory", "Shipment__c"],
                    "exclude": EXCLUDE,
                    "partitions": {"cron": "0 * * * *", "start": "2026-11-20T00:00:00Z"},
                },
            }
        )
    )
    (defs_dir / "salesforce_backup" / "defs.yaml").write_text(
        yaml.safe_dump(
            {
                "type": "sf_pipeline.backup.component.SalesforceBackupComponent",
                "attributes": {"settings_path": str(settings)},
            }
        )
    )
    project = tmp_path / "dbt_snapshots"
    shutil.copytree(parsed_dbt_project(["Account", "AccountHistory"]), project)
    monkeypatch.setenv("SF_PIPELINE_DBT_PROJECT_DIR", str(project))
    sandbox = DefsFolderSandbox(project_root=root, defs_folder_path=defs_dir, project_name="my_dagster_project")

    new_object = tmp_path / "shipment.yaml"
    new_object.write_text(
        yaml.safe_dump(
            {
                "objects": {
                    "Shipment__c": {
                        "label": "Shipment",
                        "fields": [{"name": "Tracking__c", "type": "string", "length": 40}],
                    }
                }
            }
        )
    )
    org_dir = tmp_path / "devorg"
    with DevOrgServer(org_dir) as devorg:
        env = {
            **os.environ,
            **devorg.env("production"),
            "PYTHONPATH": str(root / "src"),
            "SF_PIPELINE_DBT_PROJECT_DIR": str(project),
        }
        env.pop("DAGSTER_HOME", None)
        for name, value in devorg.env("production").items():
            monkeypatch.setenv(name, value)
        _dg_refresh(root, env)
        before = devorg.org.api_usage()
        with sandbox.build_all_defs() as defs:
            keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
            account_fields = asset_metadata(defs, "salesforce/Account")["field_count"]
        assert devorg.org.api_usage() == before  # the code location loaded from the state, no Salesforce call
        assert {"salesforce/Account", "history/Account", "salesforce/AccountHistory"} <= keys
        assert "salesforce/Shipment__c" not in keys

    # an admin deploys a new custom object and adds a field to Account; nothing changes in code or YAML
    with DevOrgServer(org_dir, custom_objects=new_object) as devorg:
        devorg.org.add_custom_field("Account", {"name": "Tier__c", "type": "string", "length": 20})
        env.update(devorg.env("production"))
        for name, value in devorg.env("production").items():
            monkeypatch.setenv(name, value)
        with sandbox.build_all_defs() as defs:  # before the refresh: the state as it was
            assert not defs.resolve_asset_graph().has(_key("salesforce/Shipment__c"))
        _dg_refresh(root, env)
        with sandbox.build_all_defs() as defs:
            graph = defs.resolve_asset_graph()
            assert graph.has(_key("salesforce/Shipment__c")) and graph.has(_key("history/Shipment__c"))
            assert asset_metadata(defs, "salesforce/Account")["field_count"] == account_fields + 1
            assert defs.resolve_job_def("backup") is not None


def asset_metadata(defs, key: str) -> dict:
    return dict(defs.resolve_assets_def(_key(key)).specs_by_key[_key(key)].metadata)


def _key(text: str):
    import dagster as dg

    return dg.AssetKey.from_user_string(text)
