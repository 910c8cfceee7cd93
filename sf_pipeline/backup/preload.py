"""Imported once by the backup executor's forkserver, so every step process it forks starts with
Dagster, dagster-dbt and the code location already loaded (Dagster 1.13 does not preload the code
location by itself). A failure here is only logged: a step process then imports what it needs itself,
as it would without a forkserver."""

from __future__ import annotations

import logging

try:
    import sf_pipeline.definitions  # noqa: F401
except Exception as exc:  # noqa: BLE001 - never break the executor over an optimisation
    logging.getLogger(__name__).warning("forkserver preload of sf_pipeline.definitions failed: %s", exc)
