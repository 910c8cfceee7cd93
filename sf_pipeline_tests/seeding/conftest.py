"""A second devorg org, the sandbox, beside the pipeline's production org (SALESFORCE_SANDBOX_*)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sf_pipeline.devorg.runner import DevOrgServer


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrgServer]:
    """One sandbox org per module, beside `module_pipeline_factory`'s production org."""
    server = DevOrgServer(tmp_path_factory.mktemp("seeding") / "devorg-sandbox", name="sandbox", sandbox=True).start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            for key, value in server.env("sandbox").items():
                monkeypatch.setenv(key, value)
            # seeding masks personal data by default, with pseudonyms keyed by this secret
            monkeypatch.setenv("SF_PIPELINE_MASKING_KEY", "seeding-tests-masking-key-0123456789")
            yield server
    finally:
        server.stop()
