"""Whoever can launch a run sets its run config: it must carry the user's intent (what to restore, which window),
never executables, environment variable names, org aliases or API budgets of the resources (issue 15)."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from dagster._config import ConfigTypeKind

from sf_pipeline.settings import DEFAULT_SETTINGS, load_settings

# Run config a launch may set, by top-level key. Resources: none at all.
ALLOWED = {
    "ops": None,  # each op's own `Config` (restore, seed_sandbox): the user's intent, validated by the op
    "execution": {"config": {"max_concurrent"}},
    "loggers": None,  # log level and logger name of the console logger
    "resources": {},
}

ATTACKS = {
    "run dbt as python with code": {
        "resources": {
            "dbt": {
                "config": {
                    "project_dir": "dbt_snapshots",
                    "dbt_executable": "python3",
                    "global_config_flags": ["-c", "open('/tmp/pwned', 'w')"],
                }
            }
        }
    },
    "read a secret through the database URL's variable name": {
        "resources": {"warehouse": {"config": {"database_url_env": "SALESFORCE_PRODUCTION_PASSWORD"}}}
    },
    "back up another org into production's history": {"resources": {"salesforce": {"config": {"alias": "sandbox"}}}},
    "lift the API budget": {"resources": {"salesforce": {"config": {"budget_share": 1.0}}}},
    "write pickles anywhere": {"resources": {"io_manager": {"config": {"base_dir": "/tmp/elsewhere"}}}},
    "import a module in the forkserver": {
        "execution": {
            "config": {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["antigravity"]}}}}
        }
    },
}


@pytest.fixture(scope="module")
def code_location(parsed_dbt_project) -> dg.Definitions:
    """The real code location: what `sf_pipeline.definitions` builds from the repository's settings file (on a
    private, already parsed copy of the dbt project)."""
    from sf_pipeline.definitions import build_definitions

    project = parsed_dbt_project([o.name for o in load_settings(DEFAULT_SETTINGS).objects])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SF_PIPELINE_DBT_PROJECT_DIR", str(project))
        return build_definitions(str(DEFAULT_SETTINGS))


def _jobs(defs: dg.Definitions) -> list[dg.JobDefinition]:
    repo = defs.get_repository_def()
    jobs = list(repo.get_all_jobs())  # includes the implicit asset job the UI's "Materialize" launches
    assert {"backup", "anomaly_checks", "restore", "seed_sandbox"} <= {j.name for j in jobs}
    return jobs


def _leaves(config_type: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every settable path of a config type, e.g. `resources/dbt/config/dbt_executable`; `<any>` where anything goes."""
    kind = config_type.kind
    if kind in (ConfigTypeKind.STRICT_SHAPE, ConfigTypeKind.PERMISSIVE_SHAPE, ConfigTypeKind.SELECTOR):
        out = ["/".join((*path, "<any key>"))] if kind == ConfigTypeKind.PERMISSIVE_SHAPE else []
        for name, field in config_type.fields.items():
            out += _leaves(field.config_type, (*path, name))
        return out
    if kind in (ConfigTypeKind.ARRAY, ConfigTypeKind.NONEABLE):
        return _leaves(config_type.inner_type, path)
    if kind in (ConfigTypeKind.ANY, ConfigTypeKind.MAP):
        return ["/".join((*path, "<any>"))]
    return ["/".join(path)]


def test_no_job_of_the_code_location_lets_a_launch_configure_a_resource(code_location):
    for job in _jobs(code_location):
        schema = job.run_config_schema.config_type
        assert set(schema.fields) <= set(ALLOWED), (job.name, set(schema.fields))
        resources = schema.fields["resources"].config_type
        for key, field in resources.fields.items():
            config = field.config_type.fields["config"].config_type
            # strict and empty: Dagster refuses any `resources: <key>: config:` value, rather than ignoring it
            assert config.kind == ConfigTypeKind.STRICT_SHAPE and not config.fields, (job.name, key, _leaves(config))
        settable = [leaf for leaf in _leaves(resources, ("resources",)) if leaf != "resources/<any key>"]
        assert settable == [], (job.name, settable)
        execution = _leaves(schema.fields["execution"].config_type, ("execution",))
        assert execution == ["execution/config/max_concurrent"], (job.name, execution)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_launching_with_an_attackers_resource_config_is_refused(code_location, attack):
    for job in _jobs(code_location):
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(job, ATTACKS[attack])


def test_a_backup_launched_with_dbt_as_python_fails_validation_before_any_step(code_location, tmp_path):
    job = code_location.resolve_job_def("backup")
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError, match="dbt_executable"):
            job.execute_in_process(
                run_config=ATTACKS["run dbt as python with code"], instance=instance, partition_key="2026-11-01-00:00"
            )
        assert instance.get_runs() == []  # refused at launch: no run, nothing executed
