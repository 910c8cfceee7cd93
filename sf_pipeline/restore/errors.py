"""Errors raised by the restore job, each with a message a user can act on."""

from __future__ import annotations

import requests
from simple_salesforce.exceptions import SalesforceError

from sf_pipeline.restore.results import ApplyResult, VerifyResult
from sf_pipeline.salesforce.errors import (
    ApiBudgetExceeded,
    SalesforceExtractError,
    SalesforceSessionError,
    SalesforceTimeoutError,
    SalesforceWriteError,
)


class RestoreError(Exception):
    """Base class for every error of the restore job."""


class RestoreConfigError(RestoreError, ValueError):
    """The restore config cannot be carried out as given; nothing was written to any org."""


class RestoreBusyError(RestoreError):
    """Another restore of the same object into the same org is being applied; nothing was written."""


class RestoreApplyError(RestoreError):
    """Some records could not be written (or the run was interrupted); `result` says which, record by record.

    Everything that was written is in `sf_pipeline.restore_audit`; re-running the same config finishes
    the job (records already restored plan as `noop`).
    """

    def __init__(self, message: str, result: ApplyResult):
        super().__init__(message)
        self.result = result


class RestoreVerifyError(RestoreError):
    """After applying, the org does not hold the values the plan wrote (e.g. automation changed them again)."""

    def __init__(self, message: str, result: VerifyResult):
        super().__init__(message)
        self.result = result


# Failures that stop a restore part-way (the org's errors, the network, the budget); what was written so far
# stays audited.
INTERRUPTIONS = (
    SalesforceError,
    requests.RequestException,
    ApiBudgetExceeded,
    SalesforceWriteError,
    SalesforceExtractError,
    SalesforceSessionError,
    SalesforceTimeoutError,
)
