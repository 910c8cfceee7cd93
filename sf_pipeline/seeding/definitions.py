"""The seeding stage's Definitions: the `seed_sandbox` job."""

import dagster as dg

from sf_pipeline.settings import Settings

from .dagster_job import seed_job


def seeding_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(jobs=[seed_job(settings)])
