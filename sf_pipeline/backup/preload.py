"""Imported once by the backup executor's forkserver, so every step process it forks starts with
Dagster, dagster-dbt and the code location already loaded (Dagster 1.13 does not preload the code
location by itself), and with the backup jobs already resolved: a step process looks its job up in the
repository (`ReconstructableJob.get_definition`), which builds the repository and the job's asset graph
on first use, seconds of CPU for hundreds of objects if each step process did it again (BENCHMARKS.md,
launch-window). A failure here is only logged: a step process then does what it needs itself, as it
would without a forkserver."""

from __future__ import annotations

import logging

try:
    import sf_pipeline.definitions

    repository = sf_pipeline.definitions.defs.get_repository_def()  # cached on `defs`, which each step finds
    for name in repository.job_names:
        if name == "backup" or name.startswith("backup_"):
            repository.get_job(name)  # cached in the repository
except Exception as exc:  # noqa: BLE001 - never break the executor over an optimisation
    logging.getLogger(__name__).warning("forkserver preload of sf_pipeline.definitions failed: %s", exc)
