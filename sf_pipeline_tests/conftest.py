from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "sf_pipeline_tests.pg_fixtures",
    "sf_pipeline_tests.devorg_fixtures",
    "sf_pipeline_tests.pipeline_fixtures",
    "sf_pipeline_tests.blob_fixtures",
]

# The longest modules, longest first, from the summary below (pytest_terminal_summary); refresh it from a CI run.
LONGEST_FIRST = [  # CI run of 2026-12-07: 273.6 s down to 57.1 s
    "deploy/test_daemon_e2e.py",
    "restore/test_incident_restores_e2e.py",
    "backup/test_backup_e2e.py",
    "restore/test_restore_e2e.py",
    "anomalies/test_checks_e2e.py",
    "files/test_file_backup_e2e.py",
    "devorg/test_client_sfdmu.py",
    "warehouse/test_warehouse_history.py",
    "anomalies/test_anomalies_e2e.py",
    "privacy/test_forget_e2e.py",
    "devorg/test_client_cumulusci.py",
    "restore/test_restore_tree_e2e.py",
    "restore/test_interrupted_restore_e2e.py",
    "backup/test_discovery_e2e.py",
    "privacy/test_retention_e2e.py",
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


# Seconds per module (setup, call and teardown of its tests, module fixtures included), as the reports reach this
# process (with xdist: the controller), for the summary below: the data LONGEST_FIRST is kept in order with.
_MODULE_SECONDS: dict[str, float] = {}
LONGEST_MODULES_SHOWN = 15


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::")[0].removeprefix("sf_pipeline_tests/")
    _MODULE_SECONDS[module] = _MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _MODULE_SECONDS or config.option.collectonly:
        return
    longest = sorted(_MODULE_SECONDS.items(), key=lambda kv: -kv[1])[:LONGEST_MODULES_SHOWN]
    terminalreporter.write_sep(
        "=", f"{len(longest)} longest modules (for LONGEST_FIRST in sf_pipeline_tests/conftest.py)"
    )
    for module, seconds in longest:
        mark = "" if module in LONGEST_FIRST else "  (not in LONGEST_FIRST)"
        terminalreporter.write_line(f"{seconds:8.1f}s {module}{mark}")
