"""Dagster resources: a Salesforce org (by alias) and the backup warehouse. No secrets in config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect


class SalesforceOrgResource(dg.ConfigurableResource):
    """An org alias. Credentials are read from SALESFORCE_<ALIAS>_* at run time, never stored in config."""

    alias: str = "production"
    api_version: str = "59.0"
    budget_share: float = 0.5
    retry_backoff: float = 0.5  # seconds before the first retry of a transient failure; doubles each time

    def credentials(self) -> OrgCredentials:
        return OrgCredentials.from_env(self.alias)

    def client(self) -> SalesforceClient:
        return SalesforceClient(connect(self.credentials(), self.api_version), alias=self.alias,
                                budget_share=self.budget_share, backoff=self.retry_backoff)


class WarehouseResource(dg.ConfigurableResource):
    """The backup database (PostgreSQL). Its URL comes from SF_PIPELINE_DATABASE_URL."""

    database_url_env: str = "SF_PIPELINE_DATABASE_URL"

    @property
    def database_url(self) -> str:
        url = os.environ.get(self.database_url_env)
        if not url:
            raise dg.Failure(f"{self.database_url_env} is not set: it must hold the backup database URL, "
                             "e.g. postgresql://postgres@127.0.0.1:5432/sf_backup")
        return url

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.database_url) as conn:
            yield conn
