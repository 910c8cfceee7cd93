"""Anomaly thresholds are resolved when the code location loads: `dagster definitions validate` (the real CLI, as
a deploy runs it) fails on a bad `anomalies` block and names every bad key, and passes on a good one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR

ROOT = Path(__file__).resolve().parents[2]


def _validate(tmp_path: Path, anomalies: dict, per_object: dict | None = None) -> subprocess.CompletedProcess:
    settings = yaml.safe_load((ROOT / "sf_pipeline.yaml").read_text())
    settings["anomalies"] = anomalies
    if per_object:  # an object's own `anomalies` block, beside its name in backup.objects
        settings["backup"]["objects"] = [
            {"name": o, "anomalies": per_object[o]} if o in per_object else o for o in settings["backup"]["objects"]
        ]
    path = tmp_path / "sf_pipeline.yaml"
    path.write_text(yaml.safe_dump(settings))
    project = tmp_path / "dbt_snapshots"  # loading writes the dbt project: a private copy, not the checkout's
    if not project.exists():
        shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
    return subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "DAGSTER_HOME": str(tmp_path),
            "SF_PIPELINE_SETTINGS": str(path),
            "SF_PIPELINE_DBT_PROJECT_DIR": str(project),
        },
    )


def test_definitions_validate_fails_on_a_bad_threshold_naming_each_key(tmp_path) -> None:
    done = _validate(
        tmp_path,
        {
            "defaults": {"mass_nulling": {"min_share": "lots"}},  # not a number
            "objects": {"Opportunity": {"mass_nuling": {"min_records": 10}}},
        },  # a misspelt detector
        per_object={"Case": {"volume": {"spike_factor": "ten"}}},
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "All code locations passed validation" not in output
    assert "AnomalySettingsError" in output
    assert "anomalies.defaults.mass_nulling.min_share: expected a number >= 0, got 'lots'" in output
    assert "anomalies.objects.Opportunity: unknown detector 'mass_nuling'" in output
    assert "anomalies.objects.Case.volume.spike_factor: expected a number >= 0, got 'ten'" in output


def test_definitions_validate_passes_on_good_thresholds(tmp_path) -> None:
    done = _validate(
        tmp_path,
        {
            "defaults": {"mass_nulling": {"min_share": 0.3}, "volume": {"same_weekday": True}},
            "objects": {
                "Opportunity": {
                    "skip_fields": ["NextStep"],
                    "fields": {"AccountId": {"mass_nulling": {"min_records": 10}}},
                }
            },
        },
        per_object={"Case": {"volume": {"spike_factor": 5}}},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "All code locations passed validation" in output
