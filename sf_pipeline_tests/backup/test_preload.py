"""The backup executor's forkserver preloads the code location, and never fails over it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR
from sf_pipeline_tests.pipeline_fixtures import write_settings

PROBE = (
    "import sys, sf_pipeline.backup.preload; print('sf_pipeline.definitions' in sys.modules); "
    "d = sys.modules.get('sf_pipeline.definitions'); "
    # the backup job already resolved in the repository each forked step process finds (no second build there)
    "print(d is not None and d.defs.has_resolved_repository_def() and "
    "'backup' in d.defs.get_repository_def()._repository_data._jobs._definition_cache)"
)


def _preload(settings: Path) -> subprocess.CompletedProcess:
    project = settings.parent / "dbt_snapshots"  # the code location writes its dbt models: into a copy
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    env = {**os.environ, "SF_PIPELINE_SETTINGS": str(settings), "SF_PIPELINE_DBT_PROJECT_DIR": str(project)}
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)


def test_preload_loads_the_code_location(tmp_path: Path):
    done = _preload(write_settings(tmp_path / "sf_pipeline.yaml", ["Opportunity"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_a_broken_settings_file_only_logs_a_warning(tmp_path: Path):
    done = _preload(tmp_path / "missing.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
    assert "forkserver preload of sf_pipeline.definitions failed" in done.stderr
