"""The seeding tests' sandbox org (a second devorg org, SALESFORCE_SANDBOX_*, with the masking key set)."""

from sf_pipeline_tests.seeding.conftest import sandbox  # noqa: F401 - a fixture, shared
