"""The org's metadata: objects and fields, and the describe payloads built from them.

Field properties (type, createable, updateable, nillable, calculated, referenceTo, relationshipName)
follow real orgs' describes; a test compares them field by field with recorded describes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SalesforceError, invalid_type

SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
    "address": "urn:address",
    "location": "urn:location",
    "base64": "xsd:base64Binary",
    "anyType": "xsd:anyType",
}
TEXT_TYPES = {
    "string",
    "textarea",
    "picklist",
    "multipicklist",
    "email",
    "phone",
    "url",
    "combobox",
    "encryptedstring",
}
NUMBER_TYPES = {"double", "currency", "percent"}
COMPOUND_TYPES = {"address", "location"}


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    calculated: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    defaulted_on_create: bool = False
    external_id: bool = False
    unique: bool = False
    picklist: tuple[str, ...] = ()
    restricted_picklist: bool = False
    cascade_delete: bool = False  # deleting the referenced parent deletes this record too
    restricted_delete: bool = False  # the parent cannot be deleted while this record points at it
    label: str | None = None
    custom: bool = False

    @property
    def lower(self) -> str:
        return self.name.lower()

    @property
    def soap_type(self) -> str:
        return SOAP_TYPES.get(self.type, "xsd:string")

    @property
    def sqlite_type(self) -> str:
        if self.type in ("boolean", "int"):
            return "INTEGER"
        if self.type in NUMBER_TYPES:
            return "REAL"
        return "TEXT"

    @property
    def stored(self) -> bool:
        """Compound fields are views over their components and have no column of their own."""
        return self.type not in COMPOUND_TYPES

    @property
    def filterable(self) -> bool:
        return self.type not in COMPOUND_TYPES and not (self.type == "textarea" and self.length > 255)

    def describe(self) -> dict[str, Any]:
        is_text = self.type in TEXT_TYPES or self.type in ("id", "reference")
        label = self.label or _label_for(self.name)
        return {
            "aggregatable": self.type not in COMPOUND_TYPES and self.type != "textarea",
            "aiPredictionField": False,
            "autoNumber": self.name == "CaseNumber",
            "byteLength": self.length * 3 if is_text else 0,
            "calculated": self.calculated,
            "calculatedFormula": None,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": None,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": None,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": 9 if self.type == "int" else 0,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": None,
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.type not in NUMBER_TYPES and self.type not in COMPOUND_TYPES,
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.type == "id" or self.external_id,
            "inlineHelpText": None,
            "label": label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": len(self.reference_to) > 1,
            "nillable": self.nillable,
            "permissionable": self.nillable and self.type != "id" and self.createable,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v} for v in self.picklist
            ],
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "searchPrefilterable": self.type == "reference",
            "soapType": self.soap_type,
            "sortable": self.filterable,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


def F(name: str, type: str, length: int = 0, **kw: Any) -> FieldDef:  # noqa: N802 - a tiny DSL
    if type in ("id", "reference") and not length:
        length = 18
    return FieldDef(name=name, type=type, length=length, **kw)


def _label_for(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    if base.endswith("Id") and len(base) > 2:
        base = base[:-2] + " ID"
    out = []
    for i, ch in enumerate(base):
        if ch.isupper() and i and not base[i - 1].isupper() and base[i - 1] != " ":
            out.append(" ")
        out.append(ch)
    return "".join(out).replace("_", " ")


def system_fields(*, deletable: bool = True) -> list[FieldDef]:
    """Fields every record carries, maintained by the org (never writable through the API)."""
    ro = dict(createable=False, updateable=False, nillable=False, defaulted_on_create=True)
    out = [F("Id", "id", **ro)]
    if deletable:
        out.append(F("IsDeleted", "boolean", **ro))
    out += [
        F("CreatedDate", "datetime", **ro),
        F("CreatedById", "reference", reference_to=("User",), relationship_name="CreatedBy", **ro),
        F("LastModifiedDate", "datetime", **ro),
        F("LastModifiedById", "reference", reference_to=("User",), relationship_name="LastModifiedBy", **ro),
        F("SystemModstamp", "datetime", **ro),
    ]
    return out


SYSTEM_FIELD_NAMES = {
    "id",
    "isdeleted",
    "createddate",
    "createdbyid",
    "lastmodifieddate",
    "lastmodifiedbyid",
    "systemmodstamp",
}


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    fields: list[FieldDef]
    label: str | None = None
    label_plural: str | None = None
    custom: bool = False
    deletable: bool = True
    createable: bool = True
    updateable: bool = True
    flags: dict[str, Any] = field(default_factory=dict)  # describe-global flags that differ (see wide.py)
    by_lower: dict[str, FieldDef] = field(init=False, repr=False)
    by_relationship: dict[str, FieldDef] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_lower = {f.lower: f for f in self.fields}
        self.by_relationship = {f.relationship_name.lower(): f for f in self.fields if f.relationship_name}
        if len(self.by_lower) != len(self.fields):
            raise ValueError(f"duplicate field names on {self.name}")

    @property
    def lower(self) -> str:
        return self.name.lower()

    def copy(self) -> ObjectDef:
        """A copy an org can change (fields added, re-pointed) without changing this one: its own field list, lookups
        and flags; the fields themselves are shared, being immutable."""
        twin = copy.copy(self)
        twin.fields = list(self.fields)
        twin.flags = dict(self.flags)
        twin.by_lower = dict(self.by_lower)
        twin.by_relationship = dict(self.by_relationship)
        return twin

    def add_field(self, f: FieldDef) -> None:
        """A field created in Setup while the org runs (admins do this; backups must notice)."""
        if f.lower in self.by_lower:
            raise ValueError(f"{self.name}.{f.name} already exists")
        self.fields.append(f)
        self.by_lower[f.lower] = f
        if f.relationship_name:
            self.by_relationship[f.relationship_name.lower()] = f

    @property
    def stored_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if f.stored]

    def field(self, name: str) -> FieldDef:
        try:
            return self.by_lower[name.lower()]
        except KeyError:
            raise SalesforceError(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {self.name}", fields=[name]
            ) from None

    def has_field(self, name: str) -> bool:
        return name.lower() in self.by_lower

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "describe": f"{base}/describe",
            "sobject": base,
        }

    def global_entry(self, version: str) -> dict[str, Any]:
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": not self.custom,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label or self.name,
            "labelPlural": self.label_plural or (self.label or self.name) + "s",
            "layoutable": True,
            "mergeable": self.name in ("Account", "Contact", "Lead"),
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.deletable,
            "updateable": self.updateable,
            "urls": self.urls(version),
        } | self.flags

    def describe(self, version: str, schema: Schema) -> dict[str, Any]:
        out = self.global_entry(version)
        out.update(
            {
                "actionOverrides": [],
                "childRelationships": schema.child_relationships(self),
                "compactLayoutable": True,
                "fields": [f.describe() for f in self.fields],
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [
                    {
                        "active": True,
                        "available": True,
                        "defaultRecordTypeMapping": True,
                        "developerName": "Master",
                        "master": True,
                        "name": "Master",
                        "recordTypeId": "012000000000000AAA",
                        "urls": {
                            "layout": f"/services/data/v{version}/sobjects/{self.name}/describe/layouts/012000000000000AAA"
                        },
                    }
                ],
                "searchLayoutable": True,
                "supportedScopes": [
                    {"label": "All " + (self.label_plural or self.name), "name": "everything"},
                    {"label": "My " + (self.label_plural or self.name), "name": "mine"},
                ],
            }
        )
        return out


class Schema:
    """All objects of one org, looked up case-insensitively by API name or key prefix."""

    def __init__(self, objects: list[ObjectDef]):
        self.objects: dict[str, ObjectDef] = {}
        self.by_prefix: dict[str, ObjectDef] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: ObjectDef) -> None:
        if obj.lower in self.objects:
            raise ValueError(f"object {obj.name} defined twice")
        if obj.key_prefix in self.by_prefix:
            raise ValueError(
                f"key prefix {obj.key_prefix} of {obj.name} already used by {self.by_prefix[obj.key_prefix].name}"
            )
        self.objects[obj.lower] = obj
        self.by_prefix[obj.key_prefix] = obj

    def get(self, name: str) -> ObjectDef:
        try:
            return self.objects[name.lower()]
        except KeyError:
            raise invalid_type(name) from None

    def find(self, name: str) -> ObjectDef | None:
        return self.objects.get(name.lower())

    def object_for_id(self, record_id: str) -> ObjectDef | None:
        return self.by_prefix.get(record_id[:3])

    def references_to(self, target: ObjectDef) -> list[tuple[ObjectDef, FieldDef]]:
        """(child object, lookup field) pairs pointing at target (cached: deletes ask on every record)."""
        version = (len(self.objects), sum(len(o.fields) for o in self.objects.values()))
        cache = self.__dict__.setdefault("_references_cache", {})
        key = (target.name, version)
        if key not in cache:
            if len(cache) > 4096:
                cache.clear()
            cache[key] = self._references_to(target)
        return cache[key]

    def _references_to(self, target: ObjectDef) -> list[tuple[ObjectDef, FieldDef]]:
        out = []
        for obj in self.objects.values():
            for f in obj.fields:
                if (
                    f.type == "reference"
                    and target.name in f.reference_to
                    and f.name not in ("CreatedById", "LastModifiedById")
                ):
                    out.append((obj, f))
        return out

    def child_relationships(self, target: ObjectDef) -> list[dict[str, Any]]:
        out = []
        for obj, f in self.references_to(target):
            rel = CHILD_RELATIONSHIP_NAMES.get((obj.name, f.name)) or CHILD_RELATIONSHIP_NAMES.get(
                (target.name, obj.name, f.name)
            )  # per parent for polymorphic lookups (see wide.py)
            if rel is None and obj.custom:
                rel = obj.label_plural.replace(" ", "_") + "__r" if obj.label_plural else obj.name + "s"
            out.append(
                {
                    "cascadeDelete": f.cascade_delete,
                    "childSObject": obj.name,
                    "deprecatedAndHidden": False,
                    "field": f.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": rel,
                    "restrictedDelete": f.restricted_delete,
                }
            )
        return out

    def load_custom_objects(self, path: str | Path) -> list[ObjectDef]:
        """Add the custom objects declared in a YAML file (see custom_objects.yaml for the format)."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        added = []
        for name, spec in (data.get("objects") or {}).items():
            obj = custom_object(name, spec, self)
            self.add(obj)
            added.append(obj)
        return added


# Relationship names from the parent's side, as real orgs name them.
CHILD_RELATIONSHIP_NAMES = {
    ("Contact", "AccountId"): "Contacts",
    ("Opportunity", "AccountId"): "Opportunities",
    ("Case", "AccountId"): "Cases",
    ("Account", "ParentId"): "ChildAccounts",
    ("Case", "ContactId"): "Cases",
    ("Opportunity", "ContactId"): "Opportunities",
    ("OpportunityContactRole", "ContactId"): "OpportunityContactRoles",
    ("OpportunityContactRole", "OpportunityId"): "OpportunityContactRoles",
    ("Case", "ParentId"): "Cases",
    ("Contact", "ReportsToId"): None,
}

_CUSTOM_TYPE_DEFAULTS = {
    "string": {"length": 255},
    "textarea": {"length": 32768},
    "picklist": {"length": 255},
    "multipicklist": {"length": 4099},
    "email": {"length": 80},
    "phone": {"length": 40},
    "url": {"length": 255},
    "currency": {"precision": 18, "scale": 2},
    "double": {"precision": 18, "scale": 0},
    "percent": {"precision": 5, "scale": 2},
}

_next_custom_prefix = iter(
    f"a{c1}{c2}" for c1 in "0123456789ABCDEFGHIJ" for c2 in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def custom_object(name: str, spec: dict[str, Any], schema: Schema) -> ObjectDef:
    if not name.endswith("__c"):
        raise ValueError(f"custom object {name!r}: API names of custom objects end in __c")
    prefix = spec.get("keyPrefix")
    if not prefix:
        prefix = next(p for p in _next_custom_prefix if p not in schema.by_prefix)
    fields = [f for f in system_fields()]
    fields.insert(
        1,
        F(
            "OwnerId",
            "reference",
            nillable=False,
            reference_to=("Group", "User"),
            relationship_name="Owner",
            defaulted_on_create=True,
        ),
    )
    fields.insert(3, F("Name", "string", length=80, defaulted_on_create=True))
    fields += [
        F("LastViewedDate", "datetime", createable=False, updateable=False),
        F("LastReferencedDate", "datetime", createable=False, updateable=False),
    ]
    for fspec in spec.get("fields") or []:
        fields.append(custom_field(name, fspec))
    label = spec.get("label", name[:-3].replace("_", " "))
    return ObjectDef(
        name=name,
        key_prefix=prefix,
        fields=fields,
        label=label,
        label_plural=spec.get("labelPlural", label + "s"),
        custom=True,
    )


def custom_field(object_name: str, fspec: dict[str, Any]) -> FieldDef:
    """A custom field from its YAML/JSON spec: {name, type, length?, precision?, scale?, required?, ...}."""
    name = object_name
    fname = fspec["name"]
    if not fname.endswith("__c"):
        raise ValueError(f"custom field {name}.{fname}: API names of custom fields end in __c")
    ftype = fspec.get("type", "string")
    kw: dict[str, Any] = dict(_CUSTOM_TYPE_DEFAULTS.get(ftype, {}))
    for key, attr in (("length", "length"), ("precision", "precision"), ("scale", "scale"), ("label", "label")):
        if key in fspec:
            kw[attr] = fspec[key]
    if fspec.get("required"):
        kw["nillable"] = False
    if fspec.get("externalId"):
        kw["external_id"] = True
        kw["unique"] = bool(fspec.get("unique", True))
    if ftype == "reference":
        target = fspec["referenceTo"]
        kw["reference_to"] = (target,)
        kw["relationship_name"] = fspec.get("relationshipName", fname[:-3] + "__r")
        # deleteConstraint as in the field's metadata (SetNull, Restrict, Cascade); cascadeDelete: true is the
        # older shorthand for Cascade.
        constraint = str(fspec.get("deleteConstraint", "Cascade" if fspec.get("cascadeDelete") else "SetNull"))
        if constraint not in ("SetNull", "Restrict", "Cascade"):
            raise ValueError(
                f"custom field {name}.{fname}: deleteConstraint is SetNull, Restrict or Cascade, not {constraint!r}"
            )
        kw["cascade_delete"] = constraint == "Cascade"
        kw["restricted_delete"] = constraint == "Restrict"
    if ftype in ("picklist", "multipicklist"):
        kw["picklist"] = tuple(fspec.get("values", ()))
        kw["restricted_picklist"] = bool(fspec.get("restricted", False))
    if ftype == "boolean":
        kw["nillable"] = False
        kw["defaulted_on_create"] = True
    return F(fname, ftype, custom=True, **kw)
