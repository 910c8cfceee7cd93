"""Which Salesforce user a restore writes as: the org's own credentials, or a dedicated integration user.

Admins run data restores as a dedicated integration user so that the org's automation can tell them apart
(flows and triggers skip records changed by it, validation rules exempt it) and so that every record the
restore wrote carries that user in `LastModifiedById`. The settings file names the user
(`orgs: <alias>: restore: run_as: <username>`); whoever launches a run cannot change it. Its credentials come
from the environment, as every org credential does: `SALESFORCE_<ALIAS>_RESTORE_*` with the usual names
(`USERNAME` defaults to `run_as`; `PASSWORD`, `SECURITY_TOKEN`, `ACCESS_TOKEN` only from the `RESTORE_`
variables, never the org's; the connected app and URLs, `INSTANCE_URL`, `LOGIN_URL`, `CA_BUNDLE`,
`CLIENT_ID`, `CLIENT_SECRET`, `PRIVATE_KEY_FILE`, from the `RESTORE_` variables or else the org's). Before
anything is read or written, the session's user (OAuth userinfo) must be `run_as`; otherwise the run stops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sf_pipeline.resources import SalesforceOrgResource
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.connection import OrgCredentials
from sf_pipeline.salesforce.writes import _send
from sf_pipeline.settings import Settings

from .errors import RestoreError

USER_BOUND = ("USERNAME", "PASSWORD", "SECURITY_TOKEN", "ACCESS_TOKEN")  # never taken from the org's variables
SHARED = ("INSTANCE_URL", "LOGIN_URL", "CA_BUNDLE", "CLIENT_ID", "CLIENT_SECRET", "PRIVATE_KEY_FILE")


def restore_credentials(alias: str, run_as: str, environ: dict[str, str] | None = None) -> OrgCredentials:
    """The restore user's credentials for `alias` (see the module docstring)."""
    env = os.environ if environ is None else environ
    org, own = f"SALESFORCE_{alias.upper()}_", f"SALESFORCE_{alias.upper()}_RESTORE_"
    values: dict[str, str | None] = {n.lower(): env.get(own + n) or None for n in USER_BOUND}
    values["username"] = values["username"] or run_as
    values.update({n.lower(): env.get(own + n) or env.get(org + n) or None for n in SHARED})
    return OrgCredentials(alias=alias, **values)


class RestoreUserResource(SalesforceOrgResource):
    """The org alias as the settings file's restore user (`run_as`) reaches it."""

    def __init__(self, alias: str, run_as: str, **kwargs: Any):
        super().__init__(alias, **kwargs)
        self.run_as = run_as

    def credentials(self) -> OrgCredentials:
        return restore_credentials(self.alias, self.run_as)


@dataclass(frozen=True)
class RestoreUser:
    """Who the restore's session is (shown in the run's metadata as `written_as`)."""

    username: str | None
    user_id: str | None
    configured: bool  # named by `run_as` in the settings file (else the org's own credentials)
    serial: bool

    def as_metadata(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "user_id": self.user_id,
            "source": "orgs.<alias>.restore.run_as" if self.configured else "the org's credentials",
            "writes": "serial (sObject Collections, one call at a time)" if self.serial else "parallel allowed",
        }


def _whoami(client: SalesforceClient) -> tuple[str | None, str | None]:
    """(username, user id) of the client's session, from OAuth userinfo (which also accepts a SOAP session)."""
    body = _send(client, "GET", lambda: f"https://{client.sf.sf_instance}/services/oauth2/userinfo", "userinfo").json()
    return body.get("preferred_username"), body.get("user_id")


def restore_client(
    salesforce: SalesforceOrgResource, settings: Settings, alias: str
) -> tuple[SalesforceClient, RestoreUser]:
    """A client for restores into `alias` (asked of the `salesforce` resource), as the settings file says: the
    `run_as` user (checked) and serial writes."""
    chosen = settings.restore_settings(alias)
    kwargs = {"budget_share": salesforce.budget_share, "connection": salesforce.connection}
    if chosen.run_as is None:  # the org's own credentials, as always: no extra call (the audit has the user id)
        org = salesforce.for_org(alias)
        client = org.client()
        client.serial_writes = chosen.serial
        return client, RestoreUser(org.credentials().username, None, False, chosen.serial)
    client = RestoreUserResource(alias, chosen.run_as, **kwargs).client()
    client.serial_writes = chosen.serial
    username, user_id = _whoami(client)
    if (username or "").lower() != chosen.run_as.lower():
        raise RestoreError(
            f"restores into {alias!r} run as {chosen.run_as} (orgs.{alias}.restore.run_as in {settings.path}), but "
            f"SALESFORCE_{alias.upper()}_RESTORE_* log in as {username or 'an unknown user'}: set that user's "
            "credentials there; nothing was read or written"
        )
    return client, RestoreUser(username, user_id, True, chosen.serial)
