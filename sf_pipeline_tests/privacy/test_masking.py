"""Masking rules and pseudonyms, over the recorded describes of real orgs (../shared/reference); no org needed."""

from __future__ import annotations

import json
import re

import pytest

from sf_pipeline.privacy.errors import MaskingKeyMissingError, PrivacySettingsError
from sf_pipeline.privacy.masking import (
    Kind,
    MaskingSettings,
    Pseudonyms,
    RecordMasker,
    Rule,
    masking_for_seeding,
    masks_for,
)
from sf_pipeline_tests.devorg_fixtures import shared_reference

KEY = "unit-test-masking-key-0123456789"


def describe(name: str) -> list[dict]:
    return json.loads(shared_reference("salesforce-describe", f"{name}.json").read_text())["fields"]


def test_standard_personal_fields_of_contacts_and_leads_are_masked_by_default():
    contact = masks_for(MaskingSettings(), "Contact", describe("Contact"))
    assert contact["Email"].kind is Kind.EMAIL and contact["Email"].rule is Rule.PSEUDONYM
    assert {contact[f].kind for f in ("Phone", "MobilePhone", "HomePhone")} == {Kind.PHONE}
    assert contact["FirstName"].kind is Kind.NAME and contact["LastName"].kind is Kind.NAME
    assert contact["MailingStreet"].kind is Kind.STREET and contact["Description"].kind is Kind.TEXT
    assert contact["Birthdate"].rule is Rule.EMPTY
    # lookups (owner, account) and the fields the org computes or that are not personal stay as they are
    assert not {"OwnerId", "AccountId", "Title", "LeadSource", "Id"} & set(contact)
    lead = masks_for(MaskingSettings(), "Lead", describe("Lead"))
    assert {"Email", "Phone", "FirstName", "LastName", "Street"} <= set(lead)
    assert "Status" not in lead and "Company" not in lead  # a picklist, and the company (not a person)
    # any object's email and phone typed fields, custom ones included
    case = masks_for(MaskingSettings(), "Case", describe("Case"))
    assert case["SuppliedEmail"].kind is Kind.EMAIL and case["SuppliedName"].kind is Kind.NAME


def test_settings_name_fields_by_object_and_rules_by_kind():
    settings = MaskingSettings.from_dict(
        {
            "types": {"text": "empty", "phone": {"fixed": "+1 000-555-0000"}},
            "fields": {
                "Contact.Title": "name",
                "Contact.Email": "keep",
                "Contact.Department": {"fixed": "Dept"},
                "Contact.AssistantName": {"kind": "name", "rule": "empty"},
            },
        }
    )
    masks = masks_for(settings, "Contact", describe("Contact"))
    assert "Email" not in masks
    assert masks["Description"].rule is Rule.EMPTY  # the text kind's rule
    assert masks["Phone"].rule is Rule.FIXED and masks["Phone"].value == "+1 000-555-0000"
    assert masks["Title"].rule is Rule.PSEUDONYM and masks["Title"].kind is Kind.NAME
    assert masks["Department"].describe() == "fixed" and masks["AssistantName"].rule is Rule.EMPTY
    assert masks_for(MaskingSettings.from_dict({"enabled": False}), "Contact", describe("Contact")) == {}
    bare = masks_for(
        MaskingSettings.from_dict({"defaults": False, "fields": {"Contact.Email": "email"}}),
        "Contact",
        describe("Contact"),
    )
    assert list(bare) == ["Email"]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"fields": {"Contact": "email"}}, "is not Object.Field"),
        ({"fields": {"Contact.Email": "scramble"}}, "neither a kind"),
        ({"types": {"address": "empty"}}, "not a kind of personal data"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"mask": {}}, "unknown keys mask"),
    ],
)
def test_a_bad_masking_block_is_refused_with_the_key_named(block, message):
    with pytest.raises(PrivacySettingsError, match=message):
        MaskingSettings.from_dict(block)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Contact.LeadSource": "name"}, "picklist field; a pseudonym value cannot go into it"),
        ({"Contact.LastName": "empty"}, "LastName is required"),
        ({"Contact.Nickname__c": "name"}, "Contact has no such field"),
    ],
)
def test_a_rule_that_cannot_fit_the_field_is_refused(fields, message):
    with pytest.raises(PrivacySettingsError, match=message):
        masks_for(MaskingSettings.from_dict({"fields": fields}), "Contact", describe("Contact"))


def test_pseudonyms_are_deterministic_keyed_and_valid_for_the_field():
    one, again, other_key = Pseudonyms(KEY), Pseudonyms(KEY), Pseudonyms(KEY + "x")
    email = one.pseudonym(Kind.EMAIL, "Ada.Lovelace@acme.com", length=80)
    assert email == again.pseudonym(Kind.EMAIL, "ada.lovelace@ACME.com ", length=80)  # same person, same pseudonym
    assert email != other_key.pseudonym(Kind.EMAIL, "ada.lovelace@acme.com", length=80)
    assert re.fullmatch(r"[a-z0-9._-]+@example\.(com|net|org)", email), email
    assert "lovelace" not in email and "acme" not in email
    assert len(one.pseudonym(Kind.EMAIL, "ada@acme.com", length=20)) <= 20
    phone = one.pseudonym(Kind.PHONE, "(415) 555-0100", length=40)
    assert phone == one.pseudonym(Kind.PHONE, "415.555.0100", length=40)  # the digits make the number
    assert re.fullmatch(r"\+1 \d{3}-555-\d{4}", phone)
    assert len(one.pseudonym(Kind.TEXT, "a long description " * 50, length=32000)) <= 200
    assert len(one.pseudonym(Kind.STREET, "1 Infinite Loop", length=12)) <= 12
    # distinct inputs stay distinct in a unique field, even when Faker's names collide
    uniques = {one.pseudonym(Kind.NAME, f"customer {i}", length=40, unique=True) for i in range(2000)}
    assert len(uniques) == 2000 and max(map(len, uniques)) <= 40


def test_a_record_masker_keeps_empty_values_empty_and_needs_the_key():
    masks = masks_for(MaskingSettings(), "Contact", describe("Contact"))
    masker = RecordMasker(masks, Pseudonyms(KEY))
    assert masker.value("Email", None) is None and masker.value("Birthdate", "1970-01-01") is None
    assert masker.value("Title", "CEO") == "CEO"
    assert masker.value("FirstName", "Ada") == masker.value("FirstName", "ada") != "Ada"
    with pytest.raises(MaskingKeyMissingError):
        RecordMasker(masks, None)
    with pytest.raises(MaskingKeyMissingError, match="SF_PIPELINE_MASKING_KEY is not set"):
        masking_for_seeding({}, environ={})
    with pytest.raises(MaskingKeyMissingError, match="too short"):
        masking_for_seeding({}, environ={"SF_PIPELINE_MASKING_KEY": "short"})
    off, none = masking_for_seeding({"masking": {"enabled": False}}, environ={})
    assert not off.enabled and none is None
