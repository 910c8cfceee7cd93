"""Talking to a Salesforce org: connection from environment variables, API budget, retries, extraction.

No Dagster here, so the package can be reused and tested alone.
"""

from .client import ApiBudgetExceeded, SalesforceClient, SalesforceExtractError
from .connection import MissingCredentials, OrgCredentials, connect

__all__ = ["ApiBudgetExceeded", "MissingCredentials", "OrgCredentials", "SalesforceClient",
           "SalesforceExtractError", "connect"]
