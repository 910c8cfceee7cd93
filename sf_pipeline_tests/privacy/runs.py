"""Launching the privacy tests' jobs in process, as the launchpad would, on a Pipeline's instance."""

from __future__ import annotations

from typing import Any

import dagster as dg


def run_job(
    p, job: str, op: str, config: dict[str, Any], tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    """One run of a single-op job with `config` as its launchpad config."""
    return (
        p.defs()
        .resolve_job_def(job)
        .execute_in_process(
            instance=p.instance, raise_on_error=False, tags=tags, run_config={"ops": {op: {"config": config}}}
        )
    )


def restore_reviewed(p, config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    """A restore as the launchpad runs it: a dry run, then the plan it stored applied as reviewed."""
    dry = run_job(p, "restore", "restore", {**config, "dry_run": True})
    assert dry.success, [e.message for e in dry.all_events if e.event_type_value == "STEP_FAILURE"]
    return run_job(p, "restore", "restore", {**config, "dry_run": False, "plan": dry.run_id})


def step_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's one step output."""
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}
