"""An org as wide as a real one: every standard object, generated custom objects, and the objects
that do not behave like Opportunity.

Standard objects: devorg fully emulates a few (standard_objects.py); every other object of a real org
comes from `standard_catalog.json` (derived from jsforce's standard schema, MIT, see
LICENSE-jsforce.txt beside it) with its fields and lookups, and is queryable (empty unless something
writes to it). The flags of the describe global (queryable, replicateable, createable, ...) follow
Salesforce's object reference ("SOAP API Developer Guide > Standard Objects", section "Supported
Calls" of each object, and "Associated Objects" for *Feed, *History, *Share, *ChangeEvent:
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_associated_objects.htm);
a test compares them, object by object, with a global describe recorded from a real org.

Objects that do not behave like Opportunity:
- history objects (AccountHistory, OpportunityFieldHistory, <Custom>__History): append-only, CreatedDate
  but no SystemModstamp, not createable through the API; devorg writes a row when a tracked field
  changes (and a `created` row on insert), as field history tracking does ("Field History Tracking",
  Salesforce Help; "AccountHistory", Object Reference);
- objects with no timestamp fields at all (48 standard objects, e.g. DashboardComponent);
- objects Bulk API refuses to query, answered with Salesforce's error (`check_bulk_query`);
- objects queryable but not replicateable (*Share, setup objects);
- *Share and *Feed objects.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import ids
from .errors import SalesforceError
from .schema import CHILD_RELATIONSHIP_NAMES, F, FieldDef, ObjectDef, Schema

CATALOG_PATH = Path(__file__).with_name("standard_catalog.json")

FLAG_LETTERS = {
    "q": "queryable",
    "r": "replicateable",
    "t": "retrieveable",
    "c": "createable",
    "u": "updateable",
    "d": "deletable",
    "U": "undeletable",
    "L": "layoutable",
    "s": "searchable",
    "T": "triggerable",
    "m": "mergeable",
    "M": "mruEnabled",
    "f": "feedEnabled",
    "D": "deepCloneable",
}

# Supported calls of standard objects, from each object's page of the Object Reference ("Supported Calls":
# create -> c, update -> u, delete -> d, undelete -> U, query -> q, retrieve -> t, getUpdated/getDeleted
# -> r) and the describe flags a real org reports for them (layoutable, searchable, triggerable, ...).
STANDARD_FLAGS = {
    "Account": "qrtcudULsTmMf",
    "Contact": "qrtcudULsTmMf",
    "Lead": "qrtcudULsTmMf",
    "Opportunity": "qrtcudULsTMfD",
    "Case": "qrtcudULsTMf",
    "Campaign": "qrtcudULsTMD",
    "CampaignMember": "qrtcudLT",
    "OpportunityContactRole": "qrtcudLT",
    "User": "qrtcuLsTMf",
    "Organization": "qrtu",
    "Event": "qrtcudULsTMf",
    "Task": "qrtcudULsTMf",
    "Asset": "qrtcudULsTMf",
    "Contract": "qrtcudULsTMf",
    "Order": "qrtcudULsTMf",
    "Product2": "qrtcudULsTMf",
    "Pricebook2": "qrtcudULsTM",
    "PricebookEntry": "qrtcudLT",
    "OpportunityLineItem": "qrtcudLT",
    "OrderItem": "qrtcudLT",
    "ContractLineItem": "qrtcudULT",
    "Solution": "qrtcudULsTMf",
    "Idea": "qrtcudLsTM",
    "Entitlement": "qrtcudULsTMf",
    "ServiceContract": "qrtcudULsTMf",
    "WorkOrder": "qrtcudULsTMf",
    "WorkOrderLineItem": "qrtcudULsTMf",
    "CaseComment": "qrtcudLT",
    "CaseContactRole": "qrtcudT",
    "AccountContactRole": "qrtcudT",
    "ContractContactRole": "qrtcudT",
    "OpportunityCompetitor": "qrtcudT",
    "Note": "qrtcudUT",
    "Attachment": "qrtcudUT",
    "Document": "qrtcudUsT",
    "Folder": "qrtcud",
    "ContentVersion": "qrtcuLsTM",
    "ContentDocument": "qrtudULsTM",
    "ContentDocumentLink": "qtcudT",
    "EmailMessage": "qrtcudULsT",
    "Individual": "qrtcudULsTMf",
    "DuplicateRecordSet": "qrtcudULsTM",
    "DuplicateRecordItem": "qrtcudLT",
    "Macro": "qrtcudULsTM",
    "QuickText": "qrtcudULsTM",
    "SocialPost": "qrtcudULsTMf",
    "SocialPersona": "qrtcudLsT",
    "CollaborationGroup": "qrtcudLsTM",
    "Topic": "qrtcudsT",
    "TopicAssignment": "qrtcdT",
    "FeedItem": "qrtcud",
    "FeedComment": "qrtcud",
    "Group": "qrtcud",
    "GroupMember": "qrtcd",
    "UserRole": "qrtcuds",
    "Profile": "qtu",
    "PermissionSet": "qrtcud",
    "PermissionSetAssignment": "qrtcd",
    "RecordType": "qrtcu",
    "UserAppInfo": "qrtcudU",
    "UserAppMenuCustomization": "qrtcudU",
    "UserAppMenuItem": "qLsM",
    "UserEntityAccess": "q",
    "UserFieldAccess": "q",
    "UserPermissionAccess": "q",
    "UserRecordAccess": "q",
    "UserLicense": "qt",
    "UserListView": "qtcud",
    "UserListViewCriterion": "qtcud",
    "UserLogin": "qtu",
    "UserPackageLicense": "qtcd",
    "UserPreference": "qtcud",
    "UserProvAccount": "qrtcudUT",
    "UserProvAccountStaging": "qrtcudUT",
    "UserProvMockTarget": "qrtcudUT",
    "UserProvisioningConfig": "qtcud",
    "UserProvisioningLog": "qrtcudUT",
    "UserProvisioningRequest": "qrtcudULT",
    "VerificationHistory": "qt",
    "VisualforceAccessMetrics": "qt",
    "Vote": "qrtcud",
    "WebLink": "qrtcuds",
    "WorkAccess": "qrtcudU",
    "WorkBadge": "qrtcudULsTM",
    "WorkBadgeDefinition": "qrtcudULsTM",
    "WorkOrderLineItemStatus": "qt",
    "WorkOrderStatus": "qt",
    "WorkThanks": "qrtcudULT",
    "UndecidedEventRelation": "qt",
    "AcceptedEventRelation": "qt",
    "DeclinedEventRelation": "qt",
    "EventRelation": "qrtcudT",
    "OpportunityHistory": "qrt",
    "LoginHistory": "qrt",
    "SetupAuditTrail": "qrt",
    "ApexClass": "qrtcud",
    "ApexTrigger": "qrtcud",
    "ApexPage": "qrtcud",
    "StaticResource": "qrtcud",
    "EmailTemplate": "qrtcudLs",
    "AsyncApexJob": "qt",
    "CronTrigger": "qtd",
    "ApexLog": "qtd",
    "RecentlyViewed": "qu",
    "CaseStatus": "qt",
    "ContractStatus": "qt",
    "LeadStatus": "qt",
    "OpportunityStage": "qt",
    "PartnerRole": "qt",
    "SolutionStatus": "qt",
    "TaskPriority": "qt",
    "TaskStatus": "qt",
    "KnowledgeArticle": "qt",
    "KnowledgeArticleVersion": "qtu",
    "KnowledgeArticleViewStat": "qt",
    "KnowledgeArticleVoteStat": "qt",
}

# Key prefixes of standard objects (the first three characters of their record ids).
KEY_PREFIXES = {
    "Attachment": "00P",
    "Document": "015",
    "Folder": "00l",
    "ContentVersion": "068",
    "ContentDocument": "069",
    "ContentDocumentLink": "06A",
    "Note": "002",
    "Task": "00T",
    "Event": "00U",
    "Campaign": "701",
    "CampaignMember": "00v",
    "Contract": "800",
    "Order": "801",
    "OrderItem": "802",
    "Product2": "01t",
    "Pricebook2": "01s",
    "PricebookEntry": "01u",
    "OpportunityLineItem": "00k",
    "Asset": "02i",
    "Solution": "501",
    "Idea": "087",
    "Group": "00G",
    "GroupMember": "011",
    "Profile": "00e",
    "UserRole": "00E",
    "RecordType": "012",
    "Organization": "00D",
    "PermissionSet": "0PS",
    "PermissionSetAssignment": "0Pa",
    "ApexClass": "01p",
    "ApexTrigger": "01q",
    "ApexPage": "066",
    "StaticResource": "081",
    "EmailTemplate": "00X",
    "EmailMessage": "02s",
    "FeedItem": "0D5",
    "FeedComment": "0D7",
    "CaseComment": "00a",
    "Period": "026",
    "BusinessHours": "01m",
    "Holiday": "0C0",
    "Entitlement": "550",
    "ServiceContract": "810",
    "ContractLineItem": "811",
    "WorkOrder": "0WO",
    "WorkOrderLineItem": "1WL",
    "Report": "00O",
    "Dashboard": "01Z",
    "Topic": "0TO",
    "TopicAssignment": "0FT",
    "CollaborationGroup": "0F9",
    "AsyncApexJob": "707",
    "CronTrigger": "08e",
    "ApexLog": "07L",
    "Individual": "0PK",
    "DuplicateRecordSet": "0GK",
    "UserAppInfo": "0Ds",
    "UserAppMenuCustomization": "0Nw",
    "UserAppMenuItem": "07p",
    "UserEntityAccess": "07u",
    "UserFieldAccess": "4fp",
    "UserLicense": "100",
    "UserListView": "0Na",
    "UserListViewCriterion": "0JU",
    "UserLogin": "0Yw",
    "UserPackageLicense": "051",
    "UserPermissionAccess": "0up",
    "UserPreference": "03u",
    "UserProvAccount": "0Ni",
    "UserProvAccountStaging": "0HY",
    "UserProvMockTarget": "0HX",
    "UserProvisioningConfig": "0Je",
    "UserProvisioningLog": "0Hs",
    "UserProvisioningRequest": "0HP",
    "VerificationHistory": "0Qt",
    "VisualforceAccessMetrics": "0OP",
    "Vote": "083",
    "WebLink": "00b",
    "WorkAccess": "0W5",
    "WorkBadge": "0W2",
    "WorkBadgeDefinition": "0W1",
    "WorkThanks": "0W0",
    "UserShare": "0N2",
    "Account": "001",
}

# Objects whose records have no key prefix in a real org's describe global.
NO_KEY_PREFIX = {
    "UndecidedEventRelation",
    "AcceptedEventRelation",
    "DeclinedEventRelation",
    "UserRecordAccess",
    "WorkOrderLineItemStatus",
    "WorkOrderStatus",
    "AggregateResult",
}

# Objects the Bulk API does not support ("Bulk API 2.0 and Bulk API Developer Guide > Bulk API 2.0 and
# Bulk API Limits > General Limits: ... these objects aren't supported"): a query job on them is refused
# with INVALIDENTITY "Entity '<name>' is not supported by the Bulk API." (the answer recorded in
# airbytehq/airbyte#13088 and #7518; custom share objects are named by their custom object's id).
BULK_UNSUPPORTED = {
    "CaseStatus",
    "ContractStatus",
    "KnowledgeArticle",
    "KnowledgeArticleVersion",
    "KnowledgeArticleVersionHistory",
    "KnowledgeArticleViewStat",
    "KnowledgeArticleVoteStat",
    "LeadStatus",
    "OpportunityStage",
    "PartnerRole",
    "RecentlyViewed",
    "SolutionStatus",
    "TaskPriority",
    "UserRecordAccess",
}
BULK_UNSUPPORTED_SUFFIXES = ("__kav", "__ka", "__ViewStat", "__VoteStat", "__DataCategorySelection", "__Share")

# Dates (not datetimes) among catalog fields typed only as "DateString".
DATE_FIELDS = {
    "ActivityDate",
    "CloseDate",
    "StartDate",
    "EndDate",
    "Birthdate",
    "LastActivityDate",
    "InstallDate",
    "PurchaseDate",
    "UsageEndDate",
    "EffectiveDate",
    "ActivatedDate",
    "ExpirationDate",
    "ReminderDate",
    "ServiceDate",
    "DueDate",
    "ConvertedDate",
    "TrialExpirationDate",
}

SYSTEM_NAMES = {
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "LastViewedDate",
    "LastReferencedDate",
}

# Field history tracking (the fields an admin typically tracks; Setup > Object > Fields > Set History
# Tracking). Object -> (history object, its lookup to the record, tracked fields).
TRACKED = {
    "Account": (
        "AccountHistory",
        "AccountId",
        ("Name", "Type", "Industry", "OwnerId", "Phone", "AnnualRevenue", "ParentId"),
    ),
    "Contact": ("ContactHistory", "ContactId", ("FirstName", "LastName", "Email", "AccountId", "OwnerId", "Title")),
    "Opportunity": (
        "OpportunityFieldHistory",
        "OpportunityId",
        ("StageName", "Amount", "CloseDate", "OwnerId", "AccountId", "Name"),
    ),
    "Case": ("CaseHistory", "CaseId", ("Status", "Priority", "OwnerId", "AccountId", "ContactId")),
    "Lead": ("LeadHistory", "LeadId", ("Status", "OwnerId", "Company", "Email")),
}


@lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    return json.loads(CATALOG_PATH.read_text())["objects"]


def associate_kind(name: str, known: set[str]) -> tuple[str, str] | None:
    """('History'|'Share'|'Feed'|'ChangeEvent', parent) for an associated object, else None."""
    if name == "OpportunityFieldHistory":
        return "History", "Opportunity"
    for kind in ("ChangeEvent", "History", "Share", "Feed"):
        if name.endswith(kind):
            base = name[: -len(kind)]
            if base.endswith("__"):
                base = base + "c"
            if base in known and name != "OpportunityHistory":
                return kind, base
    return None


_ASSOCIATE_FLAGS = {
    # Associated Objects (Object Reference): history rows are read-only and replicated; shares are written
    # through the API but not replicated; feed items are deleted but not created through *Feed; change
    # events are not queried at all.
    "History": "qrt",
    "Share": "qtcud",
    "Feed": "qrtd",
    "ChangeEvent": "tT",
}


def flags_from_letters(letters: str) -> dict[str, bool]:
    return {flag: letter in letters for letter, flag in FLAG_LETTERS.items()}


def standard_flags(name: str, field_names: set[str], known: set[str]) -> dict[str, Any]:
    """The describe-global flags of a standard object (see STANDARD_FLAGS and the associated-object rules)."""
    assoc = associate_kind(name, known)
    if assoc:
        kind, parent = assoc
        out: dict[str, Any] = flags_from_letters(_ASSOCIATE_FLAGS[kind])
        out.update(associateEntityType=kind, associateParentEntity=parent)
        out["keyPrefix"] = KEY_PREFIXES.get(name)
        return out
    letters = STANDARD_FLAGS.get(name)
    if letters is None:
        # Not in the table: a read-only object, replicated when it carries SystemModstamp.
        letters = "qt" + ("r" if "SystemModstamp" in field_names else "")
    out = flags_from_letters(letters)
    if name in NO_KEY_PREFIX:
        out["keyPrefix"] = None
    return out


# ====================================================================== catalog objects
class _Prefixes:
    """Key prefixes for objects whose real prefix devorg does not know (or that share one, like *History)."""

    def __init__(self, schema: Schema):
        self.taken = set(schema.by_prefix) | set(KEY_PREFIXES.values())
        self._pool = (f"Z{a}{b}" for a in ids._BASE62 for b in ids._BASE62)

    def next(self) -> str:
        for p in self._pool:
            if p not in self.taken:
                self.taken.add(p)
                return p
        raise RuntimeError("out of key prefixes")


# What deleting an Account or a Contact does to the catalog objects that point at it. jsforce's catalog has no
# delete semantics, so these come from Salesforce's documentation: "Delete Accounts" and "Delete Contacts"
# (Salesforce Help: deleting an account or contact also deletes its activities, assets, partner relationships,
# campaign memberships, notes and attachments; an account with orders or contracts, or a contact who signed
# a contract, authorized an order or is a service contract's contact, cannot be deleted), which the
# childRelationships of a real org's describe (cascadeDelete / restrictedDelete) state per relationship.
# (child object, field) -> (cascadeDelete, restrictedDelete).
DELETE_RULES: dict[tuple[str, str], tuple[bool, bool]] = {
    **{
        (child, field): (True, False)
        for child, field in (
            ("AccountBrand", "AccountId"),
            ("AccountPartner", "AccountFromId"),
            ("AccountPartner", "AccountToId"),
            ("ActivityHistory", "AccountId"),
            ("ActivityHistory", "WhoId"),
            ("Asset", "AccountId"),
            ("Asset", "ContactId"),
            ("AttachedContentDocument", "LinkedEntityId"),
            ("CollaborationGroupRecord", "RecordId"),
            ("CombinedAttachment", "ParentId"),
            ("ContentDistribution", "RelatedRecordId"),
            ("EntitySubscription", "ParentId"),
            ("Event", "WhatId"),
            ("Event", "WhoId"),
            ("NoteAndAttachment", "ParentId"),
            ("OpenActivity", "AccountId"),
            ("OpenActivity", "WhoId"),
            ("OpportunityPartner", "AccountToId"),
            ("Partner", "AccountFromId"),
            ("Partner", "AccountToId"),
            ("ProcessInstance", "TargetObjectId"),
            ("RecordAction", "RecordId"),
            ("Task", "WhatId"),
            ("Task", "WhoId"),
            ("CampaignMember", "ContactId"),
            ("CaseTeamMember", "MemberId"),
            ("EmailMessageRelation", "RelationId"),
            ("EmailStatus", "WhoId"),
            ("EntitlementContact", "ContactId"),
        )
    },
    ("Contract", "AccountId"): (True, True),
    ("Order", "AccountId"): (True, True),
    ("Contract", "CustomerSignedId"): (False, True),
    ("Order", "CustomerAuthorizedById"): (False, True),
    ("ServiceContract", "ContactId"): (False, True),
}


def _catalog_field(
    obj_name: str,
    fname: str,
    ftype: str,
    nullable: bool,
    parents_by_field: dict[str, str],
    writable: tuple[bool, bool],
    cascade: bool,
) -> FieldDef:
    createable, updateable = writable
    system = fname in SYSTEM_NAMES
    kw: dict[str, Any] = dict(
        createable=createable and not system,
        updateable=updateable and not system,
        nillable=nullable or ftype == "boolean",
    )
    if fname == "Id":
        return F("Id", "id", createable=False, updateable=False, nillable=False, defaulted_on_create=True)
    if fname in parents_by_field:
        rel, target = parents_by_field[fname]
        cascade_delete, restricted_delete = DELETE_RULES.get(
            (obj_name, fname), (cascade and not nullable and target != "User", False)
        )
        return F(
            fname,
            "reference",
            reference_to=(target,),
            relationship_name=rel,
            cascade_delete=cascade_delete,
            restricted_delete=restricted_delete,
            **kw,
        )
    if ftype == "boolean":
        return F(fname, "boolean", defaulted_on_create=True, **kw)
    if ftype == "number":
        return F(fname, "double", precision=18, scale=0, **kw)
    if ftype == "datetime":
        return F(fname, "date" if fname in DATE_FIELDS else "datetime", **kw)
    if ftype == "base64":
        return F(fname, "base64", length=0, **kw)
    if ftype == "address":
        return F(fname, "address", createable=False, updateable=False, nillable=True)
    if ftype == "location":
        return F(fname, "location", createable=False, updateable=False, nillable=True)
    if ftype == "any":
        return F(fname, "anyType", **kw)
    return F(fname, "string", length=255, **kw)


_BUILT_CATALOGS: dict[tuple[tuple[str, str], ...], list[ObjectDef]] = {}
_BUILT_CATALOGS_LOCK = threading.Lock()


def catalog_objects(schema: Schema) -> list[ObjectDef]:
    """Every catalog object devorg does not already define, as describe-able, queryable objects: copies of the ones
    built once per process for a schema of the same objects and key prefixes (what building them depends on), for
    an org may change its own (`ObjectDef.copy`)."""
    key = tuple((o.name, o.key_prefix) for o in schema.objects.values())
    with _BUILT_CATALOGS_LOCK:
        built = _BUILT_CATALOGS.get(key)
        if built is None:
            built = _BUILT_CATALOGS[key] = _build_catalog_objects(schema)
            while len(_BUILT_CATALOGS) > 8:
                _BUILT_CATALOGS.pop(next(iter(_BUILT_CATALOGS)))
    return [obj.copy() for obj in built]


def _build_catalog_objects(schema: Schema) -> list[ObjectDef]:
    cat = catalog()
    known = set(cat) | {o.name for o in schema.objects.values()}
    prefixes = _Prefixes(schema)
    out = []
    for name, spec in cat.items():
        if schema.find(name) is not None or name in ("AggregateResult", "Name"):
            continue
        field_names = {f[0] for f in spec["fields"]}
        if "Id" not in field_names:
            continue  # platform events (AssetTokenEvent, LogoutEventStream, ...): published, never stored
        flags = standard_flags(name, field_names, known)
        parents_by_field = {}
        for rel, target in spec["parents"].items():
            fname = rel + "Id" if rel + "Id" in field_names else rel
            parents_by_field[fname] = (rel, target)
        writable = (flags["createable"], flags["updateable"])
        cascade = associate_kind(name, known) is not None or flags["deletable"]
        fields = [
            _catalog_field(name, fn, ft, nl, parents_by_field, writable, cascade) for fn, ft, nl in spec["fields"]
        ]
        fields.sort(key=lambda f: (f.name != "Id", f.name != "IsDeleted"))
        prefix = KEY_PREFIXES.get(name)
        if prefix is None or prefix in schema.by_prefix:
            prefix = prefixes.next()
        obj = ObjectDef(
            name=name,
            key_prefix=prefix,
            fields=fields,
            label=_label(name),
            label_plural=_plural(_label(name)),
            deletable=flags["deletable"],
            createable=flags["createable"],
            updateable=flags["updateable"],
        )
        obj.flags = flags
        out.append(obj)
    return out


def _label(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append(" ")
        out.append(ch)
    return "".join(out).replace("__", " ").replace("_", " ")


def _plural(label: str) -> str:
    if label.endswith("y") and not label.endswith(("ay", "ey", "oy")):
        return label[:-1] + "ies"
    if label.endswith(("s", "x", "ch", "sh")):
        return label + "es"
    return label + "s"


def child_relationship_names() -> dict[tuple[str, str], str]:
    """(child object, lookup field) -> relationship name on the parent, from the catalog's child lists.

    When a child has several lookups to the same parent (Asset: AccountId, AssetProvidedById,
    AssetServicedById), each relationship name goes to the lookup whose words it shares most.
    """
    cat = catalog()
    out: dict[tuple[str, str], str] = {}
    for parent, spec in cat.items():
        by_child: dict[str, list[str]] = {}
        for rel, child in spec.get("children", {}).items():
            by_child.setdefault(child, []).append(rel)
        for child, rels in by_child.items():
            cspec = cat.get(child)
            if cspec is None:
                continue
            fields = {f[0] for f in cspec["fields"]}
            candidates = [
                prel + "Id" if prel + "Id" in fields else prel
                for prel, target in cspec["parents"].items()
                if target in (parent, "Name")
            ]
            direct = {
                prel + "Id" if prel + "Id" in fields else prel
                for prel, target in cspec["parents"].items()
                if target == parent
            }
            scored = sorted(
                (
                    (_shared_words(f, rel), (child, f) in _WHAT_LOOKUPS, f in direct, f, rel)
                    for f in candidates
                    for rel in rels
                ),
                reverse=True,
            )
            used_f: set[str] = set()
            used_r: set[str] = set()
            for *_, f, rel in scored:
                if f in used_f or rel in used_r:
                    continue
                used_f.add(f)
                used_r.add(rel)
                out[(parent, child, f)] = rel
    return out


# Activities hang from their parent through WhatId (Task.AccountId is derived and has no relationship).
_WHAT_LOOKUPS = {("Task", "WhatId"), ("Event", "WhatId"), ("ContactRequest", "WhatId")}


def _words(name: str) -> set[str]:
    words, cur = set(), ""
    for ch in name:
        if ch.isupper() and cur:
            words.add(cur)
            cur = ""
        cur += ch
    words.add(cur)
    return words - {"Id", "By"}


def _shared_words(field_name: str, rel: str) -> int:
    return sum(1 for w in _words(field_name) if w in rel)


def resolve_polymorphic(schema: Schema) -> None:
    """Lookups to "Name" (any object, e.g. Attachment.ParentId) point at every object records can hang from."""
    schema.__dict__.pop("_references_cache", None)
    targets = tuple(
        sorted(
            o.name
            for o in schema.objects.values()
            if (o.flags.get("layoutable", True) and o.flags.get("createable", o.createable)) or o.custom
        )
    )
    for obj in schema.objects.values():
        for i, f in enumerate(obj.fields):
            if f.type == "reference" and f.reference_to == ("Name",):
                new = dataclasses.replace(f, reference_to=targets)
                obj.fields[i] = new
                obj.by_lower[new.lower] = new
                if new.relationship_name:
                    obj.by_relationship[new.relationship_name.lower()] = new


def widen(schema: Schema) -> None:
    """Give a schema the breadth of a real org: flags for the emulated standard objects, then the catalog."""
    known = set(catalog()) | {o.name for o in schema.objects.values()}
    for obj in list(schema.objects.values()):
        if not obj.custom and not obj.flags:
            obj.flags = standard_flags(obj.name, {f.name for f in obj.fields}, known)
    CHILD_RELATIONSHIP_NAMES.update(
        {k: v for k, v in child_relationship_names().items() if k[1:] not in CHILD_RELATIONSHIP_NAMES}
    )
    for obj in catalog_objects(schema):
        schema.add(obj)


# ====================================================================== generated custom objects
NOUNS = (
    "Project",
    "Shipment",
    "Contract_Term",
    "Warranty",
    "Visit",
    "Survey",
    "Device",
    "License",
    "Inspection",
    "Booking",
    "Claim",
    "Milestone",
    "Campaign_Touch",
    "Invoice_Line",
    "Quote_Line",
    "Site",
    "Route",
    "Vehicle",
    "Course",
    "Enrollment",
    "Ticket",
    "Policy",
    "Asset_Check",
    "Reading",
)
CURRENCY_CODES = ("USD", "EUR", "GBP", "JPY")


def extra_object_specs(n: int, seed: int = 7) -> dict[str, dict[str, Any]]:
    """N custom objects of varied shapes (as custom_objects.yaml would declare them).

    Every fourth object is a detail (master-detail to an earlier generated object: required,
    cascade delete); the others look up Account, Contact or an earlier object. Fields mix picklists,
    long text areas, currency, dates, numbers, checkboxes and external ids.
    """
    rnd = random.Random(seed)
    specs: dict[str, dict[str, Any]] = {}
    names: list[str] = []
    for i in range(n):
        noun = NOUNS[i % len(NOUNS)]
        name = f"{noun}_{i:03d}__c"
        fields: list[dict[str, Any]] = [
            {"name": "Code__c", "type": "string", "length": 40, "externalId": True},
            {"name": "Status__c", "type": "picklist", "values": ["New", "Active", "On Hold", "Done", "Cancelled"]},
            {"name": "Amount__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Start_Date__c", "type": "date"},
        ]
        kind = i % 4
        if kind == 3 and names:
            master = names[rnd.randrange(len(names))]
            fields.insert(
                0,
                {
                    "name": "Master__c",
                    "type": "reference",
                    "referenceTo": master,
                    "relationshipName": "Master__r",
                    "required": True,
                    "cascadeDelete": True,
                    "masterDetail": True,
                },
            )
        elif kind == 2 and names:
            fields.insert(
                0,
                {
                    "name": "Related__c",
                    "type": "reference",
                    "referenceTo": names[rnd.randrange(len(names))],
                    "relationshipName": "Related__r",
                },
            )
        else:
            fields.insert(
                0,
                {"name": "Account__c", "type": "reference", "referenceTo": "Account", "relationshipName": "Account__r"},
            )
        if i % 3 == 0:
            fields.append({"name": "Notes__c", "type": "textarea", "length": 32768})
        if i % 3 == 1:
            fields.append(
                {"name": "Contact__c", "type": "reference", "referenceTo": "Contact", "relationshipName": "Contact__r"}
            )
        if i % 2 == 0:
            fields += [
                {"name": "Quantity__c", "type": "double", "precision": 12, "scale": 2},
                {"name": "Approved__c", "type": "boolean"},
                {"name": "Due__c", "type": "datetime"},
            ]
        if i % 5 == 0:
            fields.append({"name": "Tags__c", "type": "multipicklist", "values": ["Red", "Green", "Blue"]})
        specs[name] = {
            "label": name[:-3].replace("_", " "),
            "fields": fields,
            # history tracking on half of them, a feed on a fifth; detail objects have no share object
            # (their sharing is controlled by the master record)
            "trackHistory": i % 2 == 0,
            "trackFeed": i % 5 == 1,
            "sharing": "Private" if kind != 3 else "ControlledByParent",
        }
        names.append(name)
    return specs


def associated_custom_objects(obj: ObjectDef, spec: dict[str, Any], schema: Schema) -> list[ObjectDef]:
    """<Base>__History, __Share and __Feed for a custom object, as Salesforce creates them."""
    base = obj.name[:-3]
    out = []
    prefixes = _Prefixes(schema)
    ro = dict(createable=False, updateable=False, nillable=False, defaulted_on_create=True)
    parent = F(
        "ParentId",
        "reference",
        reference_to=(obj.name,),
        relationship_name="Parent",
        nillable=False,
        createable=False,
        updateable=False,
        cascade_delete=True,
    )
    known = {o.name for o in schema.objects.values()} | {obj.name}
    if spec.get("trackHistory"):
        fields = [
            F("Id", "id", **ro),
            F("IsDeleted", "boolean", **ro),
            parent,
            F("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy", **ro),
            F("CreatedDate", "datetime", **ro),
            F("Field", "picklist", length=255, createable=False, updateable=False, nillable=False),
            F("DataType", "picklist", length=255, createable=False, updateable=False),
            F("OldValue", "anyType", createable=False, updateable=False),
            F("NewValue", "anyType", createable=False, updateable=False),
        ]
        out.append(_assoc(f"{base}__History", fields, prefixes, known, obj))
    if spec.get("sharing") == "Private":
        w = dict(createable=True, updateable=False, nillable=False)
        fields = [
            F("Id", "id", **ro),
            F("ParentId", "reference", reference_to=(obj.name,), relationship_name="Parent", cascade_delete=True, **w),
            F("UserOrGroupId", "reference", reference_to=("Group", "User"), relationship_name="UserOrGroup", **w),
            F(
                "AccessLevel",
                "picklist",
                length=40,
                createable=True,
                updateable=True,
                nillable=False,
                picklist=("Read", "Edit", "All"),
                restricted_picklist=True,
            ),
            F(
                "RowCause",
                "picklist",
                length=40,
                createable=True,
                updateable=False,
                defaulted_on_create=True,
                picklist=("Owner", "Manual", "Rule"),
            ),
            F("LastModifiedDate", "datetime", **ro),
            F("LastModifiedById", "reference", reference_to=("User",), relationship_name="LastModifiedBy", **ro),
            F("IsDeleted", "boolean", **ro),
        ]
        out.append(_assoc(f"{base}__Share", fields, prefixes, known, obj))
    if spec.get("trackFeed"):
        fields = [
            F("Id", "id", **ro),
            F(
                "ParentId",
                "reference",
                reference_to=(obj.name,),
                relationship_name="Parent",
                nillable=False,
                createable=False,
                updateable=False,
                cascade_delete=True,
            ),
            F("Type", "picklist", length=40, createable=False, updateable=False),
            F("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy", **ro),
            F("CreatedDate", "datetime", **ro),
            F("IsDeleted", "boolean", **ro),
            F("LastModifiedDate", "datetime", **ro),
            F("SystemModstamp", "datetime", **ro),
            F("CommentCount", "int", createable=False, updateable=False, nillable=False),
            F("LikeCount", "int", createable=False, updateable=False, nillable=False),
            F("Title", "string", length=255, createable=False, updateable=False),
            F("Body", "textarea", length=10000, createable=False, updateable=False),
            F("LinkUrl", "url", length=1000, createable=False, updateable=False),
        ]
        out.append(_assoc(f"{base}__Feed", fields, prefixes, known, obj))
    return out


def _assoc(name: str, fields: list[FieldDef], prefixes: _Prefixes, known: set[str], parent: ObjectDef) -> ObjectDef:
    flags = standard_flags(name, {f.name for f in fields}, known | {name})
    flags["custom"] = True
    obj = ObjectDef(
        name=name,
        key_prefix=prefixes.next(),
        fields=fields,
        label=f"{parent.label} {name.rsplit('__', 1)[1]}",
        label_plural=f"{parent.label} {name.rsplit('__', 1)[1]}",
        custom=True,
        deletable=flags["deletable"],
        createable=flags["createable"],
        updateable=flags["updateable"],
    )
    obj.flags = flags
    CHILD_RELATIONSHIP_NAMES[(name, "ParentId")] = {"History": "Histories", "Share": "Shares", "Feed": "Feeds"}[
        name.rsplit("__", 1)[1]
    ]
    return obj


def add_extra_objects(schema: Schema, n: int, seed: int = 7) -> list[ObjectDef]:
    """Add N generated custom objects (and their history/share/feed objects) to a schema."""
    from .schema import custom_object

    added = []
    for name, spec in extra_object_specs(n, seed).items():
        obj = custom_object(name, spec, schema)
        for i, f in enumerate(obj.fields):
            if f.name == "Master__c":  # master-detail: reparenting is off by default, so not updateable
                obj.fields[i] = dataclasses.replace(f, updateable=False)
                obj.by_lower[f.lower] = obj.fields[i]
                obj.by_relationship["master__r"] = obj.fields[i]
        obj.flags = {"feedEnabled": bool(spec.get("trackFeed"))}
        obj.generated_extra = True  # type: ignore[attr-defined]
        schema.add(obj)
        added.append(obj)
        for assoc in associated_custom_objects(obj, spec, schema):
            schema.add(assoc)
            added.append(assoc)
        if spec.get("trackHistory"):
            obj.history_tracking = (
                f"{name[:-3]}__History",
                "ParentId",  # type: ignore[attr-defined]
                tuple(f["name"] for f in spec["fields"] if f["type"] != "textarea"),
            )
    return added


# ====================================================================== field history
class FieldHistory:
    """Writes history rows when tracked fields change (store.on_change hook)."""

    def __init__(self, schema: Schema):
        self.schema = schema

    def tracked(self, obj: ObjectDef) -> tuple[ObjectDef, str, tuple[str, ...]] | None:
        spec = TRACKED.get(obj.name) or getattr(obj, "history_tracking", None)
        if spec is None:
            return None
        hist = self.schema.find(spec[0])
        if hist is None:
            return None
        return hist, spec[1], tuple(f for f in spec[2] if obj.has_field(f))

    def __call__(
        self,
        store: Any,
        obj: ObjectDef,
        rid: str,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        user_id: str,
        now: str,
    ) -> None:
        t = self.tracked(obj)
        if t is None:
            return
        hist, parent_field, fields = t
        if before is None:
            rows = [("created", None, None)]
        else:
            rows = [(f, before.get(f), after.get(f)) for f in fields if before.get(f) != after.get(f)]
        for field, old, new in rows:
            hid = store.new_id(hist)
            cols = {
                "Id": hid,
                "IsDeleted": 0,
                parent_field: rid,
                "CreatedById": user_id,
                "CreatedDate": now,
                "Field": field,
                "OldValue": old,
                "NewValue": new,
            }
            cols = {k: v for k, v in cols.items() if hist.has_field(k)}
            names = ", ".join(f'"{k}"' for k in cols)
            store.conn.execute(
                f'INSERT INTO "{hist.name}" ({names}) VALUES ({", ".join("?" * len(cols))})', list(cols.values())
            )


# ====================================================================== query restrictions
_CDL_FILTER = re.compile(r"\bWHERE\b.*\b(ContentDocumentId|LinkedEntityId)\s*(=|\bIN\b)", re.I | re.S)


def check_query_restrictions(obj: ObjectDef, text: str) -> None:
    """SOQL that Salesforce refuses for the object itself (REST and Bulk alike)."""
    if not obj.flags.get("queryable", True):
        # e.g. AccountChangeEvent: describe says queryable false; SOQL answers INVALID_TYPE.
        raise SalesforceError("INVALID_TYPE", f"sObject type '{obj.name}' is not supported.")
    if obj.name == "ContentDocumentLink" and not _CDL_FILTER.search(text):
        # Object Reference, ContentDocumentLink: "you must filter on ContentDocumentId or LinkedEntityId".
        raise SalesforceError(
            "MALFORMED_QUERY",
            "Implementation restriction: ContentDocumentLink requires a filter by a single Id "
            "on ContentDocumentId or LinkedEntityId using the equals operator or multiple Id's using the IN "
            "operator.",
        )


# ====================================================================== replication
def append_only_changes(org: Any, obj: ObjectDef, kind: str, start: Any, end: Any) -> dict[str, Any]:
    """`/updated/` and `/deleted/` for objects without SystemModstamp.

    Objects the describe marks not replicateable (e.g. *Share) refuse replication calls
    (INVALID_TYPE_FOR_OPERATION; exact message UNVERIFIED). Append-only objects (history) are replicated by
    CreatedDate: a row is "updated" once, when it is written; their rows leave only with their parent
    record, and without a modification stamp no deletion date is kept, so `/deleted/` lists none.
    """
    from .clock import format_datetime as fmt
    from .store import q as quote

    if not obj.flags.get("replicateable", True) or not obj.has_field("CreatedDate"):
        raise SalesforceError("INVALID_TYPE_FOR_OPERATION", f"entity type {obj.name} does not support replication")
    now = org.clock.now()
    start = start.replace(second=0, microsecond=0)
    end = min(end.replace(second=0, microsecond=0), now.replace(second=0, microsecond=0))
    s, e = fmt(start), fmt(end)
    if kind == "deleted":
        from datetime import timedelta

        return {"deletedRecords": [], "earliestDateAvailable": fmt(now - timedelta(days=15)), "latestDateCovered": e}
    with org.store.lock:
        rows = org.store.conn.execute(
            f"SELECT Id FROM {quote(obj.name)} WHERE CreatedDate >= ? AND CreatedDate < ? AND IsDeleted = 0 "
            "ORDER BY CreatedDate",
            (s, e),
        ).fetchall()
    return {"ids": [r[0] for r in rows], "latestDateCovered": e}


# ====================================================================== Bulk API refusals
def check_bulk_query(schema: Schema, obj: ObjectDef, selected: list[FieldDef]) -> None:
    """Refuse a Bulk API query the way Salesforce does: unsupported objects, then base64 fields."""
    if obj.name in BULK_UNSUPPORTED or obj.name.endswith(BULK_UNSUPPORTED_SUFFIXES):
        shown = obj.name
        if obj.name.endswith("__Share"):
            # A custom share object is named by its custom object's id, e.g. "01I4x000001fDs9.Share".
            shown = ids.make_id("01I", int.from_bytes(obj.name.encode()[:4], "big") % 10**8)[:15] + ".Share"
        raise SalesforceError("INVALIDENTITY", f"Entity '{shown}' is not supported by the Bulk API.")
    if not obj.flags.get("queryable", True):
        raise SalesforceError("INVALIDENTITY", f"Entity '{obj.name}' is not supported by the Bulk API.")
    blobs = [f.name for f in selected if f.type == "base64"]
    if blobs:
        # Bulk API does not return base64 fields ("Bulk API Query: ... base64 fields aren't supported");
        # Bulk 1.0 jobs report "FeatureNotEnabled : Binary field not supported".
        raise SalesforceError("FeatureNotEnabled", "Binary field not supported")
