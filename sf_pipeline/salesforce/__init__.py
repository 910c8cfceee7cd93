"""Talking to a Salesforce org: connection from environment variables, API budget, retries, extraction.

No Dagster here, so the package can be reused and tested alone.
"""

from .client import (
    ApiBudgetExceeded,
    SalesforceClient,
    SalesforceExtractError,
    SalesforceSessionError,
    SalesforceTimeoutError,
)
from .connection import HttpTimeouts, MissingCredentials, OrgCredentials, connect
from .soql import UnsafeSoqlValue

__all__ = ["ApiBudgetExceeded", "HttpTimeouts", "MissingCredentials", "OrgCredentials", "SalesforceClient",
           "SalesforceExtractError", "SalesforceSessionError", "SalesforceTimeoutError", "UnsafeSoqlValue",
           "connect"]
