from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "sf_pipeline_tests.pg_fixtures",
    "sf_pipeline_tests.devorg_fixtures",
    "sf_pipeline_tests.pipeline_fixtures",
    "sf_pipeline_tests.blob_fixtures",
]

# The longest modules, longest first (their durations on 2 busy cores: 2.5 min down to 25 s).
LONGEST_FIRST = [
    "deploy/test_daemon_e2e.py",
    "backup/test_backup_e2e.py",
    "anomalies/test_checks_e2e.py",
    "restore/test_restore_e2e.py",
    "anomalies/test_anomalies_e2e.py",
    "ui/test_browser.py",
    "test_demo.py",
    "seeding/test_seeding_e2e.py",
    "restore/test_restore_job.py",
    "deploy/test_parallel_steps.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest modules first, then the other modules with end-to-end tests, then the rest; each module's
    tests together and in their own order.

    With the two xdist workers of pyproject.toml (`--dist loadfile --no-loadscope-reorder`) a module goes to
    whichever worker is free, in this order: a long module handed out last would keep one worker busy while the
    other sits idle.
    """
    here = Path(__file__).parent
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(Path(item.path).relative_to(here).as_posix(), []).append(item)

    def rank(module: str) -> tuple[int, int]:
        if module in LONGEST_FIRST:
            return 0, LONGEST_FIRST.index(module)
        return (1 if any(t.get_closest_marker("e2e") for t in modules[module]) else 2), 0

    ordered = sorted(modules, key=rank)  # stable: otherwise the collection's order
    items[:] = [item for module in ordered for item in modules[module]]
