"""Shared steps of the restore tests: a small org, backed up through Dagster, damaged by a scenario."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline.restore import RestoreConfig, RestorePlan, load_plan, plan_restore
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline_tests.pipeline_fixtures import Pipeline

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
AS_OF = "2026-11-24T01:59:59Z"
DAMAGE_WINDOW = ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00Z"]


def at(p: Pipeline, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """Freeze the devorg clock at T0 + the given time."""
    moment = T0 + timedelta(hours=hour, minutes=minute, seconds=second)
    p.set_clock(moment)
    return moment


def client(p: Pipeline, **options: Any) -> SalesforceClient:
    """The restore's own connection, from the SALESFORCE_PRODUCTION_* variables the fixture exported."""
    options.setdefault("backoff", 0.01)
    return SalesforceClient(connect(OrgCredentials.from_env("production")), alias="production", **options)


def config(**values: Any) -> RestoreConfig:
    base: dict[str, Any] = {
        "object": "Opportunity",
        "fields": ["AccountId"],
        "as_of": AS_OF,
        "changed_between": DAMAGE_WINDOW,
        "target_org": "production",
    }
    base.update(values)
    return RestoreConfig.from_dict(base, orgs=("production", "sandbox"))


def reviewed(conn: Any, c: SalesforceClient, run_id: str, **values: Any) -> RestorePlan:
    """What a user does: a dry run of the config (run `<run_id>-dry`), then run `run_id` applying that plan."""
    plan_restore(conn, c, config(**values), f"{run_id}-dry")
    return load_plan(conn, config(**values, dry_run=False, plan=f"{run_id}-dry"), run_id)


def create(p: Pipeline, sobject: str, records: list[dict[str, Any]], user: str = "admin") -> list[str]:
    """Create records through sObject Collections (200 a call) as `user`; returns their ids."""
    sf = p.sf(user)
    ids: list[str] = []
    for i in range(0, len(records), 200):
        answer = sf.restful(
            "composite/sobjects",
            method="POST",
            json={"allOrNone": True, "records": [{"attributes": {"type": sobject}, **r} for r in records[i : i + 200]]},
        )
        assert all(r["success"] for r in answer), answer
        ids.extend(r["id"] for r in answer)
    return ids


@dataclass
class OpportunityOrg:
    accounts: list[str]
    opportunities: list[str]
    original_account: dict[str, str]


def orphaned_opportunities(p: Pipeline, count: int = 30, accounts: int = 5) -> OpportunityOrg:
    """`count` Opportunities over `accounts` Accounts, backed up; at 02:00 the integration user orphans them
    all (`orphan-opportunities`), and the 02:00 window is backed up at 03:10."""
    at(p, 0, 10)
    account_ids = create(p, "Account", [{"Name": f"Account {i}"} for i in range(accounts)])
    opp_ids = create(
        p,
        "Opportunity",
        [
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "Amount": 1000 + i,
                "AccountId": account_ids[i % accounts],
            }
            for i in range(count)
        ],
    )
    original = {oid: account_ids[i % accounts] for i, oid in enumerate(opp_ids)}
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    result = run_scenario(p.devorg.org, "orphan-opportunities", at=at(p, 2, 0))
    assert sorted(result.changed["Opportunity"]) == sorted(opp_ids)
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    return OpportunityOrg(account_ids, opp_ids, original)


def account_ids_in_org(p: Pipeline, ids: list[str]) -> dict[str, str | None]:
    rows = p.devorg.org.queries.run("SELECT Id, AccountId FROM Opportunity", include_deleted=True, batch_size=2000)[
        "records"
    ]
    wanted = set(ids)
    return {r["Id"]: r["AccountId"] for r in rows if r["Id"] in wanted}


def org_snapshot(p: Pipeline, sobject: str, fields: str = "Id, AccountId, SystemModstamp, LastModifiedById") -> list:
    """Every record of an object as devorg holds it, to prove a run wrote nothing."""
    rows = p.devorg.org.queries.run(f"SELECT {fields} FROM {sobject}", include_deleted=True, batch_size=2000)["records"]
    return sorted(tuple((k, str(v)) for k, v in sorted(r.items())) for r in rows)
