"""A second devorg org, the sandbox, beside the pipeline's production org (SALESFORCE_SANDBOX_*)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sf_pipeline.devorg.runner import DevOrgServer


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevOrgServer]:
    server = DevOrgServer(tmp_path / "devorg-sandbox", name="sandbox").start()
    for key, value in server.env("sandbox").items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()
