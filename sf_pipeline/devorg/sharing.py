"""Record-level access, minimal: an object whose organization-wide default is Private shows each user only the
records it owns, unless the user has View All Data.

Salesforce Help, "Organization-Wide Sharing Defaults": with Private, "only the record owner, and users above
that role in the hierarchy, can view, edit, and report on those records"; "View All Data" / "Modify All Data"
(System Administrator profile) bypass sharing. The APIs honour the running user's access: a query or queryAll
returns only the records the user can see (the others are simply absent, exactly as if deleted), sObject
Collections retrieve answers `null` for a record it cannot return ("Get Records Using sObject Collections": "If
you don't have access to an object, or if a passed ID is invalid, the array returns null"), a record GET answers
404 `NOT_FOUND` (REST API Developer Guide, "Status Codes and Error Responses": 404 "The requested resource
couldn't be found. Check the URI for errors, and verify that there are no sharing issues"), and an update or
delete of such a record fails with `INSUFFICIENT_ACCESS_OR_READONLY` "insufficient access rights on object id"
(SOAP API, StatusCode; the URLs and quotes are in test_sharing_and_automation.py).

devorg's users: `admin` (System Administrator) has View All Data; the others do not. Not emulated: the role
hierarchy, sharing rules, manual shares and teams (the `*Share` objects are stored, not enforced), Public Read
Only, Controlled by Parent (a child of a private parent stays visible), field-level security.
`POST /_devorg/sharing {"objects": {"Opportunity": "Private"}}` sets the defaults ("Public Read/Write" or
omitted: everyone sees everything, as before); they live with the org's data (meta `sharing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SalesforceError

if TYPE_CHECKING:
    from .org import Org
    from .schema import ObjectDef

META = "sharing"
PRIVATE = "Private"
VIEW_ALL_DATA = ("admin",)  # user keys whose profile has View All Data (System Administrator)


class Sharing:
    """Which objects are Private, and which users see everything."""

    def __init__(self, private: set[str], view_all: set[str]):
        self.private = private
        self.view_all = view_all

    def restricts(self, obj: ObjectDef, user_id: str | None) -> bool:
        """Whether `user_id` sees only its own records of `obj` (None: an internal call, sees everything)."""
        return (
            user_id is not None
            and obj.name in self.private
            and user_id not in self.view_all
            and obj.has_field("OwnerId")
        )

    def can_see(self, obj: ObjectDef, row: dict[str, Any], user_id: str | None) -> bool:
        return not self.restricts(obj, user_id) or row.get("OwnerId") == user_id


def set_defaults(org: Org, objects: dict[str, str]) -> dict[str, str]:
    """Set organization-wide defaults per object (Private or Public Read/Write); returns every Private one."""
    current = dict(org.store.get_meta(META) or {})
    for name, level in objects.items():
        obj = org.schema.get(name)
        if level not in (PRIVATE, "Public Read/Write"):
            raise SalesforceError("INVALID_INPUT", f"devorg emulates Private and Public Read/Write, not {level!r}")
        if level == PRIVATE and not obj.has_field("OwnerId"):
            raise SalesforceError("INVALID_INPUT", f"{obj.name} has no owner: its sharing is controlled by its parent")
        current.pop(obj.name, None)
        if level == PRIVATE:
            current[obj.name] = PRIVATE
    org.store.set_meta(META, current)
    install(org)
    return current


def install(org: Org) -> None:
    """Hook the defaults into the store and the query engine (none Private: no hook, no cost)."""
    private = set(org.store.get_meta(META) or {})
    view_all = {c.user_id for c in org.credentials.values() if c.key in VIEW_ALL_DATA}
    org.store.sharing = Sharing(private, view_all) if private else None


def insufficient_access() -> SalesforceError:
    return SalesforceError("INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", status=400)
