"""Talking to a Salesforce org: connection from environment variables, API budget, retries, extraction.

No Dagster here, so the package can be reused and tested alone.
"""

from .client import SalesforceClient
from .connection import HttpTimeouts, OrgCredentials, connect
from .errors import (
    ApiBudgetExceeded,
    MissingCredentials,
    SalesforceError,
    SalesforceExtractError,
    SalesforceSessionError,
    SalesforceTimeoutError,
    UnsafeSoqlValue,
)

__all__ = [
    "ApiBudgetExceeded",
    "SalesforceError",
    "HttpTimeouts",
    "MissingCredentials",
    "OrgCredentials",
    "SalesforceClient",
    "SalesforceExtractError",
    "SalesforceSessionError",
    "SalesforceTimeoutError",
    "UnsafeSoqlValue",
    "connect",
]
