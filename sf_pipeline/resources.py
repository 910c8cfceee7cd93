"""What every stage shares with Dagster: the resources (a Salesforce org by alias, the backup warehouse, dbt), the asset
keys, the org run tag and the org's concurrency pool. Settings file and environment only.

Anyone who can launch a run can set whatever a job's run config schema offers. Resources therefore are not
`ConfigurableResource`s (whose every field is a launchpad field): they are plain objects built from the settings
file, handed to Dagster by `locked_resource` with an empty, strict config schema, so `resources: <key>: config:`
in a run config is refused by Dagster's own validation. No executable, environment variable name, org alias,
API budget or timeout can be changed at launch; credentials are read from SALESFORCE_<ALIAS>_* and the database
URL from SF_PIPELINE_DATABASE_URL when a run needs them, never stored in config.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from dagster_dbt import DbtCliResource
from dagster_dbt.compat import DBT_PYTHON_VERSION
from packaging import version

from sf_pipeline.metadata import Markdown
from sf_pipeline.salesforce import HttpTimeouts, OrgCredentials, SalesforceClient, connect
from sf_pipeline.settings import BackupOrgSettings, SalesforceSettings, Settings

DATABASE_URL_ENV = "SF_PIPELINE_DATABASE_URL"


class SalesforceOrgResource:
    """An org alias with the settings file's API version, budget share, timeouts and retry backoff."""

    def __init__(
        self, alias: str = "production", *, budget_share: float = 0.5, connection: SalesforceSettings | None = None
    ):
        self.alias = alias
        self.budget_share = budget_share
        self.connection = connection or SalesforceSettings()

    @classmethod
    def from_settings(cls, settings: Settings, alias: str | None = None) -> SalesforceOrgResource:
        """The org `alias` (default: the backed-up org) as the settings file configures it."""
        return cls(alias or settings.backup_org, budget_share=settings.budget_share, connection=settings.salesforce)

    def for_org(self, alias: str) -> SalesforceOrgResource:
        """Another org alias with the same API version, budget share, timeouts and backoff: what restores,
        seeding and erasure ask for the org they write to or check (their target is chosen at launch among the
        settings file's aliases; the connection settings are not)."""
        return (
            self
            if alias == self.alias
            else SalesforceOrgResource(alias, budget_share=self.budget_share, connection=self.connection)
        )

    def credentials(self) -> OrgCredentials:
        return OrgCredentials.from_env(self.alias)

    def client(self) -> SalesforceClient:
        c = self.connection
        timeouts = HttpTimeouts(connect=c.connect_timeout_seconds, read=c.read_timeout_seconds)
        sf = connect(self.credentials(), c.api_version, timeouts, backoff=c.retry_backoff_seconds)
        return SalesforceClient(sf, alias=self.alias, budget_share=self.budget_share, backoff=c.retry_backoff_seconds)

    def __repr__(self) -> str:
        return f"SalesforceOrgResource(alias={self.alias!r}, budget_share={self.budget_share})"


def database_url_env(alias: str | None = None) -> str:
    """The variable holding a backup database URL: SF_PIPELINE_DATABASE_URL for the primary org, and
    SF_PIPELINE_<ALIAS>_DATABASE_URL for each other backed-up org (one database per org: each database
    remembers the one org it backs up, sf_pipeline.warehouse.org_identity)."""
    return DATABASE_URL_ENV if alias is None else f"SF_PIPELINE_{alias.upper()}_DATABASE_URL"


class WarehouseResource:
    """The backup database (PostgreSQL). Its URL comes from SF_PIPELINE_DATABASE_URL (another backed-up org's:
    SF_PIPELINE_<ALIAS>_DATABASE_URL), read when a run needs it."""

    def __init__(self, alias: str | None = None):
        self.env_var = database_url_env(alias)

    @property
    def database_url(self) -> str:
        url = os.environ.get(self.env_var)
        if not url:
            raise dg.Failure(
                f"{self.env_var} is not set: it must hold the backup database URL, "
                "e.g. postgresql://postgres@127.0.0.1:5432/sf_backup"
            )
        return url

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.database_url) as conn:
            yield conn


class DbtCli(DbtCliResource):
    """dagster-dbt's `DbtCliResource`, without its `dbt --version` subprocess when dbt is this environment's, and
    without the dbt adapter it builds in this process before every dbt call.

    dagster-dbt learns the dbt version by running `dbt --version` once per resource object, that is once per run
    (and per step process): seconds of CPU to import dbt in a new interpreter, for a version this interpreter
    already has (the dbt-core package installed beside it, whose `dbt` executable `dbt_executable()` picks).
    Any other executable (dbt from PATH, the fusion engine) is still asked.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if DBT_PYTHON_VERSION is not None and Path(self.dbt_executable) == Path(sys.executable).with_name("dbt"):
            return DBT_PYTHON_VERSION
        return DbtCliResource._cli_version.func(self)  # type: ignore[attr-defined]

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        """No adapter. dagster-dbt 0.29 builds one in this process before every `dbt` call (dbt's project, profile
        and every macro loaded: 0.35 s of CPU a call, 1.5 s the first in a process, BENCHMARKS.md suite-speed2)
        for `fetch_row_counts`/`fetch_column_metadata` alone, which the history asset does not call: the `dbt`
        subprocess does the work. With no adapter those two would attach nothing, so any use of them must come
        with this method removed."""
        return None


def locked_resource(value: Any, description: str) -> dg.ResourceDefinition:
    """`value` as a Dagster resource that run config cannot reach: its config schema is empty and strict.

    (`ResourceDefinition.hardcoded_resource` would accept any config and ignore it; this refuses it.)
    """
    return dg.ResourceDefinition(resource_fn=lambda _: value, config_schema={}, description=description)


def locked_io_manager() -> dg.IOManagerDefinition:
    """Dagster's default IO manager (pickles under the instance's storage directory) without its `base_dir`
    launch setting, which would let a run config write files anywhere the run process may."""
    return dg.IOManagerDefinition(
        resource_fn=lambda context: dg.FilesystemIOManager().create_io_manager(context),
        config_schema={},
        description="Op outputs pickled under the Dagster instance's storage directory (not settable at launch).",
    )


ORG_TAG = "sf_pipeline/org"
"""Run tag naming the org a run works on; dagster.yaml limits the runs per org with it."""


def salesforce_pool(alias: str) -> str:
    """The concurrency pool of an org: every step that calls its API holds one slot of it, across all runs.

    The instance sets the pool's limit (`concurrency: pools:` in dagster.yaml, or
    `dagster instance concurrency set salesforce_<alias> N`), bounded by the org's API limits.
    """
    return f"salesforce_{alias}"


def mirror_key(sobject: str, prefix: Sequence[str] = ()) -> dg.AssetKey:
    """`salesforce/<Object>`; an org other than the primary one adds its alias in front (`emea/salesforce/...`)."""
    return dg.AssetKey([*prefix, "salesforce", sobject])


def history_key(sobject: str, prefix: Sequence[str] = ()) -> dg.AssetKey:
    return dg.AssetKey([*prefix, "history", sobject])


def org_resource_keys(org: BackupOrgSettings) -> tuple[str, str]:
    """The resource keys of an org's Salesforce connection and backup database (the primary org: today's)."""
    return ("salesforce", "warehouse") if org.primary else (f"salesforce_{org.alias}", f"warehouse_{org.alias}")


def single_op_job(op: dg.OpDefinition, *, description: str, tags: Mapping[str, str]) -> dg.JobDefinition:
    """A job of one op that keeps the op's name, so that its launchpad config reads `ops: <name>: config:`.

    The graph between them gets a name of its own (`<name>_graph`): a code server refuses a repository where an
    op and a graph share a name."""
    return dg.GraphDefinition(name=f"{op.name}_graph", node_defs=[op]).to_job(
        name=op.name, description=description, tags=dict(tags)
    )


def dagster_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    """Run metadata from a library's plain values (sf_pipeline.metadata): a `Markdown` becomes Dagster's markdown
    kind; the rest stay as they are, for Dagster wraps str, int, float, bool, dict and list itself."""
    return {key: dg.MetadataValue.md(value) if isinstance(value, Markdown) else value for key, value in values.items()}
