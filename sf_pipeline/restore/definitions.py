"""The restore stage's Definitions: the `restore` job (launchpad)."""

import dagster as dg

from sf_pipeline.settings import Settings

from .dagster_job import restore_job


def restore_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(jobs=[restore_job(settings)])
