"""Every error the Salesforce package raises, under one base class (as simple-salesforce's `exceptions.py`).

`except SalesforceError` catches anything this package reports about an org; each class also keeps the
built-in base it always had (`RuntimeError`, `ValueError`), so existing handlers keep working.
"""

from __future__ import annotations


class SalesforceError(Exception):
    """Base of every error raised by `sf_pipeline.salesforce`."""


# Connection and session
class MissingCredentials(SalesforceError, RuntimeError):
    """The environment does not say how to log in to an org alias."""


class OrgUnreachable(SalesforceError, RuntimeError):
    """Logging in to an org timed out or lost its connection on every attempt."""


class SalesforceSessionError(SalesforceError, RuntimeError):
    """The org refused the session (INVALID_SESSION_ID) and the pipeline cannot log in again."""


class InvalidSession(SalesforceError, RuntimeError):
    """Raised by the pipeline's own HTTP calls when the org answers 401 INVALID_SESSION_ID."""


class SalesforceTimeoutError(SalesforceError, RuntimeError):
    """A call got no answer within the configured timeouts, on every attempt."""


class ApiBudgetExceeded(SalesforceError, RuntimeError):
    """Stopping before the org's daily API budget share is spent."""


class OrganizationUnreadable(SalesforceError, RuntimeError):
    """The org did not answer its Organization record (so which org this is cannot be told)."""


# Reading
class UnsafeSoqlValue(SalesforceError, ValueError):
    """A name or id that is not a Salesforce API name or record id, refused before it reaches a query."""


class SoqlTooLongError(SalesforceError, RuntimeError):
    """A SOQL query too long for a REST query URL (use the Bulk API 2.0, whose query travels in the body)."""


class SalesforceExtractError(SalesforceError, RuntimeError):
    """Extraction could not complete; nothing partial is reported as success."""


class BlobUnavailable(SalesforceExtractError):
    """The org has no bytes for this field of this record (deleted since the query, or an empty body)."""


class CatalogError(SalesforceError, ValueError):
    """A catalog (the stored describe of an org) cannot be read or does not fit the settings."""


# Writing
class SalesforceWriteError(SalesforceError, RuntimeError):
    """A write call failed as a whole (not record by record), e.g. a Bulk job that ended Failed."""
