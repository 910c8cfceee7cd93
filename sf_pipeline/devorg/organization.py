"""The `Organization` sObject: one read-mostly row per org, whose Id is the org id (key prefix 00D).

Clients tell a sandbox from production by `SELECT IsSandbox FROM Organization` (simple-salesforce's
`is_sandbox()` does exactly that, salesforce-api-fidelity.md section 3), and tell one org from another
by its Id. Fields and properties follow Salesforce's object reference, "Organization"
(https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_organization.htm):
Name, Division, address and phone fields and the locale keys are updateable; IsSandbox, OrganizationType,
InstanceName, NamespacePrefix and TrialExpirationDate are read only; the object can be neither created nor
deleted through the API. The describe global flags are those of a real org's entry
(reference/salesforce-describe/_global.json: createable/deletable false, updateable, queryable and
replicateable true, not searchable, not triggerable, not layoutable). Only a useful subset of its fields
is defined, as for the other standard objects.

Each org has its own id, persisted with its data: a fresh org draws one at random, and an org whose data
was made before devorg had per-org ids keeps the id every org had then (`LEGACY_ORG_ID`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from . import ids
from .schema import F, ObjectDef, system_fields

KEY_PREFIX = "00D"
LEGACY_ORG_ID = "00D5J0000000001AAA"
# Salesforce's editions as OrganizationType lists them (object reference, Organization.OrganizationType).
EDITIONS = (
    "Team Edition",
    "Professional Edition",
    "Enterprise Edition",
    "Developer Edition",
    "Personal Edition",
    "Unlimited Edition",
    "Contact Manager Edition",
    "Base Edition",
)
# Production instances are named like NA1/EU5, sandbox instances like CS1 (object reference, InstanceName).
PRODUCTION_INSTANCE = "NA1"
SANDBOX_INSTANCE = "CS1"
_LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE")
_LANGUAGES = ("en_US", "fr", "de")
_TIME_ZONES = ("America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Paris", "GMT")
# The entry real orgs give Organization in the describe global, where it differs from a data object's.
_GLOBAL_FLAGS = {
    "createable": False,
    "deletable": False,
    "undeletable": False,
    "updateable": True,
    "searchable": False,
    "triggerable": False,
    "layoutable": False,
    "mruEnabled": False,
    "feedEnabled": False,
    "mergeable": False,
    "queryable": True,
    "replicateable": True,
    "retrieveable": True,
}


@dataclass
class OrganizationObject(ObjectDef):
    """ObjectDef with the describe-global flags of Organization (not a data object: no search, no triggers)."""

    def global_entry(self, version: str) -> dict[str, Any]:
        return {**super().global_entry(version), **_GLOBAL_FLAGS}


_RO = dict(createable=False, updateable=False)


def organization_object() -> OrganizationObject:
    system = system_fields(deletable=False)  # Organization has no IsDeleted: it is never deleted
    return OrganizationObject(
        name="Organization",
        key_prefix=KEY_PREFIX,
        label="Organization",
        label_plural="Organizations",
        deletable=False,
        createable=False,
        fields=[
            system[0],
            F("Name", "string", length=80, createable=False, nillable=False),
            F("Division", "string", length=80, createable=False),
            F("Street", "textarea", length=255, createable=False),
            F("City", "string", length=40, createable=False),
            F("State", "string", length=80, createable=False),
            F("PostalCode", "string", length=20, createable=False),
            F("Country", "string", length=80, createable=False),
            F("Phone", "phone", length=40, createable=False),
            F("Fax", "phone", length=40, createable=False),
            F("PrimaryContact", "string", length=80, createable=False),
            F("DefaultLocaleSidKey", "picklist", length=40, createable=False, nillable=False, picklist=_LOCALES),
            F("LanguageLocaleKey", "picklist", length=40, createable=False, nillable=False, picklist=_LANGUAGES),
            F("TimeZoneSidKey", "picklist", length=40, createable=False, nillable=False, picklist=_TIME_ZONES),
            F("FiscalYearStartMonth", "int", **_RO),
            F("IsSandbox", "boolean", nillable=False, defaulted_on_create=True, **_RO),
            F("OrganizationType", "picklist", length=40, restricted_picklist=True, picklist=EDITIONS, **_RO),
            F("InstanceName", "string", length=5, **_RO),
            F("NamespacePrefix", "string", length=15, **_RO),
            F("TrialExpirationDate", "datetime", **_RO),
            *system[1:],
        ],
    )


def new_org_id() -> str:
    """A fresh, checksummed org id (00D + pod + a random counter), distinct from every other org's."""
    return ids.make_id(KEY_PREFIX, 1 + secrets.randbelow(62**9 - 1))


def organization_row(org_id: str, *, name: str, sandbox: bool, admin_id: str, now: str) -> dict[str, Any]:
    """The stored row of a new org's Organization record (created by its first user, as in a real org)."""
    return {
        "Id": org_id,
        "Name": name,
        "Country": "US",
        "DefaultLocaleSidKey": "en_US",
        "LanguageLocaleKey": "en_US",
        "TimeZoneSidKey": "GMT",
        "FiscalYearStartMonth": 1,
        "IsSandbox": int(sandbox),
        "OrganizationType": "Enterprise Edition",
        "InstanceName": SANDBOX_INSTANCE if sandbox else PRODUCTION_INSTANCE,
        "CreatedDate": now,
        "CreatedById": admin_id,
        "LastModifiedDate": now,
        "LastModifiedById": admin_id,
        "SystemModstamp": now,
    }
