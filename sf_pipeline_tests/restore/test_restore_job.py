"""The restore job from the launchpad: an incident's suggested config, dry run, apply that plan, verify, re-run."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest
import yaml

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline_tests.anomalies.test_checks_e2e import (
    KEY,
    OBJECTS,
    T0,
    _check,
    _full_load,
    _partitions,
    _sensor_requests,
)
from sf_pipeline_tests.pipeline_fixtures import SavedState


@pytest.fixture(scope="module")
def backed_up(save_pipeline_state) -> SavedState:
    """`_org()` of the anomaly checks' tests (300 records, the full load backed up), built once for the module;
    each test starts on its own copy of the org and database."""
    return save_pipeline_state(_full_load, OBJECTS, partitions=_partitions())


def _launch(p, config: dict, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = p.defs().resolve_job_def("restore")
    return job.execute_in_process(
        run_config={"ops": {"restore": {"config": config}}}, instance=p.instance, raise_on_error=raise_on_error
    )


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


@pytest.mark.e2e
def test_incident_config_restores_every_opportunity_except_the_one_fixed_by_hand(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    sf = p.sf()
    original = {r["Id"]: r["AccountId"] for r in sf.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
    run_scenario(p.devorg.org, "orphan-opportunities", at=T0 + timedelta(hours=2))
    p.set_clock(T0 + timedelta(hours=3, minutes=10))
    assert p.backup((T0 + timedelta(hours=2)).strftime(KEY)).success
    request = {r.partition_key: r for r in _sensor_requests(p)}[(T0 + timedelta(hours=2)).strftime(KEY)]
    opp = {e.asset_key.path[1]: e for e in _check(p, request)}["Opportunity"]
    config = opp.metadata["restore_config_json"].value
    # the markdown shown in the UI is exactly the launchpad run config for the restore job: incident: <id>
    pasted = yaml.safe_load(opp.metadata["restore_config"].value.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert pasted["ops"]["restore"]["config"] == config and set(config) == {"incident", "target_org", "dry_run"}

    # 07:00: someone fixes one opportunity by hand, to a different account.
    p.set_clock(T0 + timedelta(hours=7))
    fixed = sorted(i for i, a in original.items() if a)[0]
    other_account = next(a for a in original.values() if a and a != original[fixed])
    p.sf("sales1").Opportunity.update(fixed, {"AccountId": other_account})
    p.set_clock(T0 + timedelta(hours=8))

    dry = _launch(p, config)
    meta = _output_metadata(dry)
    assert meta["dry_run"] is True and meta["counts"]["conflict"] == 1
    assert meta["records_to_write"] == sum(1 for a in original.values() if a) - 1
    assert all(
        r["AccountId"] is None
        for r in sf.query_all(f"SELECT AccountId FROM Opportunity WHERE Id != '{fixed}'")["records"]
    )  # nothing written

    # Writing needs the reviewed plan: dry_run: false alone is refused, before any write.
    refused = _launch(p, {**config, "dry_run": False}, raise_on_error=False)
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "dry_run: false needs plan: <run id of its dry run>" in failure.event_specific_data.error.message

    # The dry run's metadata holds the config that writes its plan: the same config, dry_run: false, plan: <its id>.
    apply_config = yaml.safe_load(meta["apply_config"].split("```yaml\n", 1)[1].split("```", 1)[0])
    written = apply_config["ops"]["restore"]["config"]
    assert written == {**config, "dry_run": False, "plan": dry.run_id}
    applied = _launch(p, written)
    meta = _output_metadata(applied)
    assert meta["plan_of"] == dry.run_id and meta["verified_records"] >= meta["records_to_write"]
    now = {r["Id"]: r["AccountId"] for r in sf.query_all("SELECT Id, AccountId FROM Opportunity")["records"]}
    assert now[fixed] == other_account  # the hand fix is kept (a conflict, skipped)
    assert {i: a for i, a in now.items() if i != fixed} == {i: a for i, a in original.items() if i != fixed}

    again = _output_metadata(_launch(p, config))
    assert again["records_to_write"] == 0  # a new dry run of the same config finds nothing left to write


@pytest.mark.e2e
def test_invalid_launchpad_config_fails_clearly_and_writes_nothing(pipeline_factory, backed_up):
    p = pipeline_factory(state=backed_up)
    with pytest.raises(dg.DagsterInvalidConfigError, match="target_org"):  # no default: production is never implied
        _launch(p, {"object": "Opportunity", "fields": ["AccountId"], "as_of": "2026-11-24T00:30:00Z"})
    for bad, words in [
        (
            {
                "object": "Opportunity",
                "fields": ["ExpectedRevenue"],
                "as_of": "2026-11-24T00:30:00Z",
                "target_org": "production",
            },
            "ExpectedRevenue",
        ),
        (
            {"object": "Nope__c", "as_of": "2026-11-24T00:30:00Z", "target_org": "production", "all_fields": True},
            "Nope__c",
        ),
        (
            {"object": "Opportunity", "as_of": "2026-11-24T00:30:00Z", "target_org": "production"},
            "names no fields and selects no records",
        ),
        (
            {
                "object": "Opportunity",
                "fields": ["AccountId"],
                "as_of": "2026-11-24T00:30:00Z",
                "target_org": "production",
                "dry_run": False,
                "plan": "no-such-run",
            },
            "no-such-run",
        ),
        ({"object": "Opportunity", "as_of": "2026-11-24T00:30:00Z", "target_org": "staging"}, "staging"),
        ({"incident": 4242, "target_org": "production"}, "there is no incident 4242"),
    ]:
        result = _launch(p, bad, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert words in str(failure.event_specific_data.error.message) + str(failure.event_specific_data.error.cause), (
            bad
        )
