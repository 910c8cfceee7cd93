"""Each launchpad config (what the Dagster UI shows and takes) and its library model (what reads and checks it) are
one contract: the same keys, defaults, descriptions and choices, and what the launchpad accepts the model reads."""

from __future__ import annotations

from enum import Enum

import dagster as dg
import pytest
from dagster._config import ConfigTypeKind

from sf_pipeline.privacy.definitions import ForgetRunConfig, forget_job
from sf_pipeline.privacy.forget import ForgetRequest
from sf_pipeline.restore.config import RestoreConfig
from sf_pipeline.restore.dagster_job import RestoreRunConfig, restore_job
from sf_pipeline.restore.decisions import OnConflict
from sf_pipeline.seeding.config import SeedConfig
from sf_pipeline.seeding.dagster_job import SeedRunConfig, seed_job
from sf_pipeline.settings import DEFAULT_SETTINGS, load_settings

SETTINGS = load_settings(DEFAULT_SETTINGS)
CONTRACTS = [  # (library model, launchpad config, the job, its op, keys a launch may leave out)
    (RestoreConfig, RestoreRunConfig, restore_job(SETTINGS), "restore", {"object"}),
    (SeedConfig, SeedRunConfig, seed_job(SETTINGS), "seed_sandbox", set()),
    (ForgetRequest, ForgetRunConfig, forget_job(SETTINGS), "forget", set()),
]


@pytest.mark.parametrize(("model", "launchpad", "job", "op", "optional"), CONTRACTS, ids=[c[3] for c in CONTRACTS])
def test_the_launchpad_config_is_the_library_model(model, launchpad, job, op, optional):
    keys = [k for k, info in model.model_fields.items() if not info.exclude]
    assert list(launchpad.model_fields) == keys and issubclass(launchpad, dg.Config)
    for key in keys:
        ours, theirs = model.model_fields[key], launchpad.model_fields[key]
        assert theirs.description == ours.description and ours.description, key
        if key in optional:
            assert ours.is_required() and theirs.default is None, key
        elif ours.is_required():
            assert theirs.is_required(), key
        else:
            default = list(ours.default) if isinstance(ours.default, tuple | frozenset) else ours.default
            assert theirs.default == default, key
    # the job's op takes exactly these keys, each with the model's default
    schema = job.graph.node_named(op).definition.config_schema.config_type
    assert set(schema.fields) == set(keys)
    for key, field in schema.fields.items():
        info = model.model_fields[key]
        assert field.is_required == (info.is_required() and key not in optional), key
        if key in optional:
            assert field.default_value is None, key
        elif field.default_provided:
            default = info.default.value if isinstance(info.default, Enum) else info.default
            assert field.default_value == (list(default) if isinstance(default, tuple) else default), key


def test_the_launchpad_shows_the_choices_of_on_conflict():
    schema = restore_job(SETTINGS).graph.node_named("restore").definition.config_schema.config_type
    choice = schema.fields["on_conflict"].config_type
    if choice.kind == ConfigTypeKind.NONEABLE:  # Dagster's form of a key with a default
        choice = choice.inner_type
    assert choice.kind == ConfigTypeKind.ENUM
    assert [v.config_value for v in choice.enum_values] == [c.value for c in OnConflict] == ["skip", "overwrite"]
    assert schema.fields["on_conflict"].default_value == "skip"


def test_what_the_launchpad_takes_the_model_reads():
    launched = RestoreRunConfig(
        object="Opportunity",
        fields=["AccountId"],
        as_of="2026-11-24T01:59:59Z",
        target_org="production",
        on_conflict="overwrite",
    )
    raw = {k: v for k, v in launched.model_dump(mode="json").items() if v not in (None, [])}
    config = RestoreConfig.from_dict(raw, orgs=["production"])
    assert config.on_conflict is OnConflict.overwrite and config.to_dict()["on_conflict"] == "overwrite"
    seeded = SeedConfig.from_dict(
        {
            k: v
            for k, v in SeedRunConfig(as_of="2026-11-24T02:30:00Z", objects=["Account"]).model_dump(mode="json").items()
            if v not in (None, [])
        },
        orgs=["production", "sandbox"],
    )
    assert (seeded.source_org, seeded.target_org, seeded.include_parents) == ("production", "sandbox", True)
