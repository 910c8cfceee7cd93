"""Masked seeding: which fields of a seeded record are personal, and what a sandbox gets instead.

Plain functions over plain data (no Dagster, no org): `MaskingSettings.from_dict` reads the settings file's
`masking:` block, `masks_for(object, describe fields)` decides per field, `Pseudonyms` makes the values.

A pseudonym is deterministic: HMAC-SHA256(secret, kind + value) picks from Faker's en_US vocabularies (first
and last names, street suffixes, lorem words), so the same input gives the same fake value in every object,
record and reseed (duplicates stay duplicates, an e-mail looked up on a Lead and a Contact still matches) while nobody without the secret can test a guess. Outputs fit the field:
no longer than its describe `length`, e-mails on reserved example domains (RFC 2606: mail to them goes
nowhere), and a unique or external-id field gets a hash suffix so distinct inputs stay distinct.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from faker.providers.address.en_US import Provider as AddressProvider
from faker.providers.lorem.en_US import Provider as LoremProvider
from faker.providers.person.en_US import Provider as PersonProvider

from sf_pipeline.privacy.errors import MaskingKeyMissingError, PrivacySettingsError

KEY_ENV = "SF_PIPELINE_MASKING_KEY"
# Only `sf-pipeline demo`, whose orgs are devorg's generated ones, sets this key when none is given.
DEMO_KEY = "sf-pipeline-devorg-demo-masking-key"
MIN_KEY_LENGTH = 16
# `masking.files`: a file's content and title cannot be masked field by field, so a masked seed copies no file
# (skip), a placeholder with a pseudonymous name and no original byte (placeholder), or the files as they are (keep)
FILE_RULES = ("skip", "placeholder", "keep")


class Rule(StrEnum):
    """What a masked field receives in the sandbox."""

    PSEUDONYM = "pseudonym"  # a fake value of the field's kind, the same for the same input
    KEEP = "keep"  # the backed-up value (the field is not personal here)
    EMPTY = "empty"  # nothing
    FIXED = "fixed"  # one value for every record


class Kind(StrEnum):
    """The kinds of personal data a pseudonym can imitate."""

    EMAIL = "email"
    PHONE = "phone"
    NAME = "name"
    STREET = "street"
    TEXT = "text"


# Salesforce field types whose values are free text: the only ones a pseudonym or fixed text can go into.
# Picklists, references, numbers and dates are never rewritten (picklists stay valid, lookups stay remapped);
# they can only be kept or emptied.
TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url", "encryptedstring", "combobox"})

# The standard objects' personal fields, by kind (settings add to and override these). User lookups are
# never masked: users are matched to the sandbox's own users, not copied (seeding/users.py).
DEFAULT_FIELDS: Mapping[str, Mapping[str, Kind | Rule]] = {
    "Contact": {
        "FirstName": Kind.NAME,
        "LastName": Kind.NAME,
        "MiddleName": Kind.NAME,
        "Suffix": Rule.EMPTY,
        "AssistantName": Kind.NAME,
        "Email": Kind.EMAIL,
        "Phone": Kind.PHONE,
        "MobilePhone": Kind.PHONE,
        "HomePhone": Kind.PHONE,
        "OtherPhone": Kind.PHONE,
        "AssistantPhone": Kind.PHONE,
        "Fax": Kind.PHONE,
        "MailingStreet": Kind.STREET,
        "OtherStreet": Kind.STREET,
        "Birthdate": Rule.EMPTY,
        "Description": Kind.TEXT,
    },
    "Lead": {
        "FirstName": Kind.NAME,
        "LastName": Kind.NAME,
        "MiddleName": Kind.NAME,
        "Suffix": Rule.EMPTY,
        "Email": Kind.EMAIL,
        "Phone": Kind.PHONE,
        "MobilePhone": Kind.PHONE,
        "Fax": Kind.PHONE,
        "Street": Kind.STREET,
        "Description": Kind.TEXT,
    },
    # Person accounts carry a contact's fields on the account; business accounts only phones and addresses.
    "Account": {
        "Phone": Kind.PHONE,
        "Fax": Kind.PHONE,
        "BillingStreet": Kind.STREET,
        "ShippingStreet": Kind.STREET,
        "FirstName": Kind.NAME,
        "LastName": Kind.NAME,
        "PersonEmail": Kind.EMAIL,
        "PersonMobilePhone": Kind.PHONE,
        "PersonHomePhone": Kind.PHONE,
        "PersonOtherPhone": Kind.PHONE,
        "PersonMailingStreet": Kind.STREET,
        "PersonOtherStreet": Kind.STREET,
        "PersonBirthdate": Rule.EMPTY,
        "Description": Kind.TEXT,
    },
    "Case": {
        "SuppliedName": Kind.NAME,
        "SuppliedEmail": Kind.EMAIL,
        "SuppliedPhone": Kind.PHONE,
        "Description": Kind.TEXT,
    },
}
# Any object's fields of these describe types are personal unless configured otherwise.
DEFAULT_BY_TYPE: Mapping[str, Kind] = {"email": Kind.EMAIL, "phone": Kind.PHONE}
DEFAULT_RULES: Mapping[Kind, Rule] = {k: Rule.PSEUDONYM for k in Kind}


@dataclass(frozen=True)
class FieldSetting:
    """One `masking.fields` entry: a kind, a rule, or both, and the value of a fixed rule."""

    kind: Kind | None = None
    rule: Rule | None = None
    value: str | None = None


@dataclass(frozen=True)
class MaskingSettings:
    """The settings file's `masking:` block (contract, see README "Privacy")."""

    enabled: bool = True
    defaults: bool = True  # include DEFAULT_FIELDS and DEFAULT_BY_TYPE
    types: Mapping[Kind, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    fields: Mapping[tuple[str, str], FieldSetting] = field(default_factory=dict)  # (object, field), lower-cased
    fixed: Mapping[Kind, str] = field(default_factory=dict)  # the value of `types: {kind: {fixed: ...}}`
    # the files of seeded records (seeding/files.py): skip (default) | placeholder | keep
    files: str = "skip"

    @classmethod
    def from_dict(cls, data: Any, where: str = "masking") -> MaskingSettings:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PrivacySettingsError(f"{where} must be a mapping (enabled, defaults, types, fields), got {data!r}")
        unknown = set(data) - {"enabled", "defaults", "types", "fields", "files"}
        if unknown:
            raise PrivacySettingsError(
                f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}; the keys are "
                "enabled, defaults, types, fields, files"
            )
        if data.get("files", "skip") not in FILE_RULES:
            raise PrivacySettingsError(
                f"{where}.files must be one of {', '.join(FILE_RULES)} (what a masked seed "
                f"does with the seeded records' files), got {data['files']!r}"
            )
        for flag in ("enabled", "defaults"):
            if not isinstance(data.get(flag, True), bool):
                raise PrivacySettingsError(f"{where}.{flag} must be true or false, got {data[flag]!r}")
        types: dict[Kind, Rule] = dict(DEFAULT_RULES)
        fixed: dict[Kind, str] = {}
        raw_types = data.get("types") or {}
        if not isinstance(raw_types, Mapping):
            raise PrivacySettingsError(f"{where}.types must map a kind ({_kinds()}) to a rule, got {raw_types!r}")
        for name, raw in raw_types.items():
            kind = _kind(name, f"{where}.types")
            setting = _field_setting(raw, f"{where}.types.{name}")
            if setting.rule is None or setting.kind is not None:
                raise PrivacySettingsError(
                    f"{where}.types.{name} must be a rule ({_rules()}) or {{fixed: value}}, got {raw!r}"
                )
            types[kind] = setting.rule
            if setting.value is not None:
                fixed[kind] = setting.value
        fields: dict[tuple[str, str], FieldSetting] = {}
        raw_fields = data.get("fields") or {}
        if not isinstance(raw_fields, Mapping):
            raise PrivacySettingsError(
                f"{where}.fields must map Object.Field to a kind or a rule, e.g. "
                f"{{Contact.Title: name, Invoice__c.Notes__c: empty}}, got {raw_fields!r}"
            )
        for name, raw in raw_fields.items():
            parts = str(name).split(".")
            if len(parts) != 2 or not all(parts):
                raise PrivacySettingsError(f"{where}.fields: {name!r} is not Object.Field (e.g. Contact.Email)")
            fields[(parts[0].lower(), parts[1].lower())] = _field_setting(raw, f"{where}.fields.{name}")
        return cls(
            enabled=data.get("enabled", True),
            defaults=data.get("defaults", True),
            types=types,
            fields=fields,
            fixed=fixed,
            files=data.get("files", "skip"),
        )


def _kinds() -> str:
    return ", ".join(k.value for k in Kind)


def _rules() -> str:
    return ", ".join(r.value for r in Rule if r is not Rule.FIXED)


def _kind(name: Any, where: str) -> Kind:
    try:
        return Kind(str(name))
    except ValueError:
        raise PrivacySettingsError(
            f"{where}: {name!r} is not a kind of personal data; the kinds are {_kinds()}"
        ) from None


def _field_setting(raw: Any, where: str) -> FieldSetting:
    """`email` (a kind: its rule), `keep` (a rule), `{fixed: "x"}`, or `{kind: email, rule: pseudonym}`."""
    if isinstance(raw, str):
        if raw in Kind.__members__.values():
            return FieldSetting(kind=Kind(raw))
        if raw in (Rule.PSEUDONYM, Rule.KEEP, Rule.EMPTY):
            return FieldSetting(rule=Rule(raw))
        raise PrivacySettingsError(
            f"{where}: {raw!r} is neither a kind ({_kinds()}) nor a rule ({_rules()}, or {{fixed: value}})"
        )
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"kind", "rule", "fixed"}
        if unknown:
            raise PrivacySettingsError(
                f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}; use kind, rule or fixed"
            )
        if "fixed" in raw:
            if "rule" in raw or not isinstance(raw["fixed"], str | int | float) or isinstance(raw["fixed"], bool):
                raise PrivacySettingsError(f"{where}: fixed takes one text value and no rule, got {dict(raw)!r}")
            return FieldSetting(
                kind=_kind(raw["kind"], where) if "kind" in raw else None, rule=Rule.FIXED, value=str(raw["fixed"])
            )
        rule = raw.get("rule")
        if rule is not None and rule not in (Rule.PSEUDONYM, Rule.KEEP, Rule.EMPTY):
            raise PrivacySettingsError(f"{where}: rule {rule!r} is not one of {_rules()} (or use fixed: value)")
        return FieldSetting(
            kind=_kind(raw["kind"], where) if "kind" in raw else None, rule=Rule(rule) if rule else None
        )
    raise PrivacySettingsError(f"{where}: expected a kind, a rule or a mapping, got {raw!r}")


@dataclass(frozen=True)
class FieldMask:
    """The decision for one field of one object: its rule and, for pseudonyms, the kind to imitate."""

    field: str
    rule: Rule
    kind: Kind | None
    length: int | None = None  # describe `length` of a text field
    unique: bool = False  # unique or external id: distinct inputs must stay distinct
    value: str | None = None  # a fixed rule's value

    def describe(self) -> str:
        if self.rule is Rule.FIXED:
            return "fixed"
        return (
            f"{self.rule.value} ({self.kind.value})" if self.rule is Rule.PSEUDONYM and self.kind else self.rule.value
        )


def masks_for(
    settings: MaskingSettings, sobject: str, describe_fields: Sequence[Mapping[str, Any]]
) -> dict[str, FieldMask]:
    """Field API name -> how it is masked, for the fields of `sobject` that are not kept as they are.

    Raises PrivacySettingsError for a configured field the object does not have, or a rule that cannot fit
    the field (a pseudonym into a picklist or a number, an empty required field).
    """
    if not settings.enabled:
        return {}
    by_name = {str(f["name"]).lower(): f for f in describe_fields}
    defaults = {k.lower(): v for k, v in DEFAULT_FIELDS.get(sobject, {}).items()} if settings.defaults else {}
    configured = {fname: s for (obj, fname), s in settings.fields.items() if obj == sobject.lower()}
    for fname in configured:
        if fname not in by_name:
            raise PrivacySettingsError(f"masking.fields names {sobject}.{fname}, but {sobject} has no such field")
    out: dict[str, FieldMask] = {}
    for lname, desc in by_name.items():
        ftype = str(desc.get("type", "")).lower()
        if ftype in ("id", "reference"):
            continue  # ids are remapped through the id map; user lookups matched (seeding/users.py)
        setting = configured.get(lname)
        default = defaults.get(lname)
        kind: Kind | None = None
        rule: Rule | None = None
        value: str | None = None
        if isinstance(default, Kind):
            kind = default
        elif isinstance(default, Rule):
            rule = default
        elif settings.defaults and ftype in DEFAULT_BY_TYPE:
            kind = DEFAULT_BY_TYPE[ftype]
        explicit = setting is not None
        if setting is not None:
            kind = setting.kind or kind
            rule = setting.rule
            value = setting.value
            if setting.kind is not None and setting.rule is None:
                rule = None  # a kind named here takes that kind's rule
        if kind is None and rule is None:
            continue
        if rule is None:
            if kind is None:
                continue
            rule = settings.types.get(kind, Rule.PSEUDONYM)
            if rule is Rule.FIXED:
                value = settings.fixed.get(kind)
        if rule is Rule.KEEP:
            continue
        name = str(desc["name"])
        if rule in (Rule.PSEUDONYM, Rule.FIXED) and ftype not in TEXT_TYPES:
            if explicit:
                raise PrivacySettingsError(
                    f"masking: {sobject}.{name} is a {ftype} field; a {rule.value} value "
                    "cannot go into it (picklists, numbers and dates can be kept or emptied)"
                )
            rule = Rule.EMPTY  # a default (say a person account's date) the org types otherwise: empty is safe
        if rule is Rule.PSEUDONYM and kind is None:
            kind = Kind.EMAIL if ftype == "email" else Kind.PHONE if ftype == "phone" else Kind.TEXT
        if rule is Rule.EMPTY and desc.get("nillable") is False and desc.get("createable", True):
            if explicit:
                raise PrivacySettingsError(
                    f"masking: {sobject}.{name} is required; it cannot be emptied (use pseudonym or fixed)"
                )
            rule, kind = Rule.PSEUDONYM, kind or Kind.TEXT
        out[name] = FieldMask(
            name,
            rule,
            kind,
            length=int(desc["length"]) if desc.get("length") else None,
            unique=bool(desc.get("unique") or desc.get("externalId")),
            value=value,
        )
    return out


# Faker's en_US vocabularies, picked by the keyed hash: a pick costs a few microseconds, where reseeding a Faker
# instance per value and calling its providers costs 50-200 (and its weighted name lists ~600).
_FIRST = tuple(PersonProvider.first_names)
_LAST = tuple(PersonProvider.last_names)
_STREET_SUFFIXES = tuple(AddressProvider.street_suffixes)
_WORDS = tuple(LoremProvider.word_list)
_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: reserved, mail to them goes nowhere
# The names as an e-mail's local part takes them (lower-cased, letters and digits only), made once.
_FIRST_LOCAL = tuple("".join(ch for ch in n.lower() if ch.isalnum() or ch == ".") for n in _FIRST)
_LAST_LOCAL = tuple("".join(ch for ch in n.lower() if ch.isalnum() or ch == ".") for n in _LAST)


def _words(digest: bytes, size: int) -> str:
    """Lorem words for free text of about `size` characters, picked by a stream derived from the keyed hash
    (SHAKE-256 of it, two bytes a word): a few microseconds, where seeding random.Random per value cost ~10."""
    stream = hashlib.shake_256(digest).digest(2 * size)  # a word takes at least 2 characters with its space
    n = len(_WORDS)
    words: list[str] = []
    used = 0  # characters of the words so far plus one separator each
    for i in range(0, 2 * size, 2):
        word = _WORDS[(stream[i] << 8 | stream[i + 1]) % n]
        words.append(word)
        used += len(word) + 1
        if used >= size:
            break
    return " ".join(words)


class Pseudonyms:
    """Deterministic fake values keyed by a secret; one instance per run (it caches what it made)."""

    def __init__(self, key: str):
        if len(key) < MIN_KEY_LENGTH:
            raise MaskingKeyMissingError(
                f"{KEY_ENV} is too short ({len(key)} characters): use a random secret of "
                f"at least {MIN_KEY_LENGTH}, e.g. `openssl rand -hex 32`"
            )
        self._key = key.encode()
        self._cache: dict[tuple[str, str, int | None, bool, int], str] = {}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Pseudonyms:
        key = (environ if environ is not None else os.environ).get(KEY_ENV)
        if not key:
            raise MaskingKeyMissingError(
                f"masking is on (masking.enabled in the settings file) but {KEY_ENV} is not set: pseudonyms are "
                "keyed with that secret so they cannot be reversed by guessing. Set it to a random value (e.g. "
                "`openssl rand -hex 32`), the same for every run so reseeds give the same pseudonyms; or set "
                "masking.enabled: false to copy personal data into sandboxes as it is"
            )
        return cls(key)

    def digest(self, kind: str, value: str) -> bytes:
        # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest() at a third of the cost
        return hmac.digest(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256)

    def pseudonym(
        self, kind: Kind, value: Any, *, length: int | None = None, unique: bool = False, variant: str = ""
    ) -> str:
        """A fake value of `kind` for `value`; the same arguments always give the same result."""
        text = value if isinstance(value, str) else str(value)
        if kind is Kind.PHONE:
            normal = "".join(filter(str.isdigit, text)) or text.strip()
        elif kind is Kind.EMAIL or kind is Kind.NAME:
            normal = text.strip().lower()
        else:
            normal = text.strip()
        # free text keeps about its length (bounded), so a masked payload weighs what the original did
        size = min(max(len(text), 20), 200) if kind is Kind.TEXT else 0
        label = kind + variant  # a StrEnum: its value, as a plain str
        key = (label, normal, length, unique, size)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        digest = self.digest(label, normal)
        number = int.from_bytes(digest, "big")

        def pick(options: tuple[str, ...], slot: int) -> str:
            return options[(number >> (24 * slot)) % len(options)]

        tag = digest[-4:].hex()  # 8 hex digits: what keeps distinct inputs distinct
        if kind is Kind.EMAIL:
            local = f"{pick(_FIRST_LOCAL, 0)}.{pick(_LAST_LOCAL, 1)}.{tag}"
            domain = pick(_DOMAINS, 2)
            room = (length or 80) - len(domain) - 1
            out = f"{local[-room:] if len(local) > room else local}@{domain}"
        elif kind is Kind.PHONE:
            digits = f"{number % 10**10:010d}"
            out = (
                f"+1 {2 + int(digits[0]) % 8}{digits[1:3]}-555-{digits[3:7]}"
                if (length or 40) >= 15
                else digits[: min(length or 10, 10)]
            )
        elif kind is Kind.NAME:
            out = (
                pick(_FIRST, 0)
                if variant == "first"
                else pick(_LAST, 1)
                if variant == "last"
                else f"{pick(_FIRST, 0)} {pick(_LAST, 1)}"
            )
        elif kind is Kind.STREET:
            out = f"{number % 9899 + 100} {pick(_LAST, 1)} {pick(_STREET_SUFFIXES, 2)}"
        else:
            out = _words(digest, size)[: size - 1].rstrip().capitalize() + "."
        if unique and kind is not Kind.EMAIL:
            out = f"{out[: max(0, (length or 255) - 9)]}-{tag}" if length is None or length > 9 else tag[:length]
        if length is not None and len(out) > length:
            out = out[:length]
        self._cache[key] = out
        return out


def name_variant(field_name: str) -> str:
    """FirstName-like fields get first names, LastName-like last names, any other name field full names."""
    lower = field_name.lower()
    if "first" in lower or "middle" in lower:
        return "first"
    if "last" in lower:
        return "last"
    return ""


_MISSING = object()


class RecordMasker:
    """Applies one object's FieldMasks to the values written to a sandbox.

    Remembers, per field, what each distinct backed-up value became: a value seen again (a shared last name, a
    company's switchboard number, the same record in a reseed) costs one dict lookup.
    """

    def __init__(self, masks: Mapping[str, FieldMask], pseudonyms: Pseudonyms | None):
        self.masks = dict(masks)
        self.pseudonyms = pseudonyms
        if pseudonyms is None and any(m.rule is Rule.PSEUDONYM for m in self.masks.values()):
            raise MaskingKeyMissingError(f"pseudonym rules need {KEY_ENV} (see Pseudonyms.from_environment)")
        self.variants = {f: name_variant(f) for f, m in self.masks.items() if m.kind is Kind.NAME}
        self._memo: dict[str, dict[Any, Any]] = {f: {} for f in self.masks}

    def value(self, field_name: str, value: Any) -> Any:
        """What the sandbox gets for this field's backed-up value."""
        memo = self._memo.get(field_name)
        if memo is None or value is None or value == "":
            return value
        out = memo.get(value, _MISSING)
        if out is _MISSING:
            out = memo[value] = self._masked(self.masks[field_name], field_name, value)
        return out

    def _masked(self, mask: FieldMask, field_name: str, value: Any) -> Any:
        if mask.rule is Rule.EMPTY:
            return None
        if mask.rule is Rule.FIXED:
            return mask.value if mask.length is None else (mask.value or "")[: mask.length]
        return self.pseudonyms.pseudonym(
            mask.kind or Kind.TEXT,
            value,
            length=mask.length,
            unique=mask.unique,
            variant=self.variants.get(field_name, ""),
        )

    def summary(self) -> dict[str, str]:
        return {f: m.describe() for f, m in sorted(self.masks.items())}


def masking_for_seeding(
    privacy_settings: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> tuple[MaskingSettings, Pseudonyms | None]:
    """The settings file's masking and, when masking is on, the keyed pseudonyms (the secret from the
    environment); raises a PrivacyError naming what to fix before anything is read or written."""
    settings = MaskingSettings.from_dict(privacy_settings.get("masking"))
    if not settings.enabled:
        return settings, None
    return settings, Pseudonyms.from_environment(environ)
