"""devorg's metadata agrees with describes recorded from real orgs, field by field."""

from __future__ import annotations

import json

import pytest

from sf_pipeline.devorg.org import Org
from sf_pipeline_tests.devorg_fixtures import shared_reference

CHECKED = ("type", "createable", "updateable", "nillable", "calculated", "referenceTo", "relationshipName")
OBJECTS = ["Account", "Contact", "Opportunity", "Lead", "Case", "OpportunityContactRole"]


def _real(name: str) -> dict:
    return json.loads(shared_reference("salesforce-describe", f"{name}.json").read_text())


@pytest.fixture(scope="module")
def org(tmp_path_factory) -> Org:
    custom = tmp_path_factory.mktemp("custom") / "custom.yaml"
    custom.write_text(
        "objects:\n  Custom__c:\n    label: Custom\n    fields:\n"
        "      - {name: CustomField__c, type: string, length: 80}\n"
    )
    org = Org(None, custom_objects=custom)
    yield org
    org.close()


@pytest.mark.parametrize("name", OBJECTS + ["Custom__c"])
def test_every_devorg_field_matches_the_real_describe(org: Org, name: str):
    real = _real(name)
    ours = org.schema.get(name).describe("59.0", org.schema)
    real_fields = {f["name"]: f for f in real["fields"]}
    compared = 0
    mismatches = []
    for field in ours["fields"]:
        theirs = real_fields.get(field["name"])
        if theirs is None:
            continue  # devorg-only field: nothing recorded to compare with
        compared += 1
        for key in CHECKED:
            if field[key] != theirs[key]:
                mismatches.append(f"{name}.{field['name']}.{key}: devorg {field[key]!r} != real {theirs[key]!r}")
    assert not mismatches, "\n".join(mismatches)
    # every field devorg defines on a recorded standard object exists in the real describe
    # (the recorded custom object was trimmed to three fields, so only standard objects are checked)
    unknown = [f["name"] for f in ours["fields"] if f["name"] not in real_fields]
    assert name == "Custom__c" or not unknown, f"{name}: fields not in the real describe: {unknown}"
    assert compared >= min(3, len(real_fields))
    if name != "Custom__c":
        assert ours["keyPrefix"] == real["keyPrefix"]


def test_the_standard_objects_cover_the_fields_a_backup_needs(org: Org):
    for name in OBJECTS:
        fields = {f.name for f in org.schema.get(name).fields}
        assert {"Id", "SystemModstamp", "LastModifiedById", "CreatedDate"} <= fields
    assert {"AccountId", "StageName", "Amount", "CloseDate", "OwnerId"} <= {
        f.name for f in org.schema.get("Opportunity").fields
    }


def test_global_describe_entries_match_real_shape(org: Org):
    real = json.loads(shared_reference("salesforce-describe", "_global.json").read_text())
    real_entry = next(o for o in real["sobjects"] if o["name"] == "Account")
    ours = org.schema.get("Account").global_entry("52.0")
    missing = set(real_entry) - set(ours)
    assert not missing, f"global describe keys missing: {missing}"
    for key in (
        "keyPrefix",
        "name",
        "label",
        "custom",
        "queryable",
        "createable",
        "updateable",
        "deletable",
        "undeletable",
    ):
        assert ours[key] == real_entry[key], key
    assert ours["urls"]["describe"] == real_entry["urls"]["describe"]


def test_child_relationships_and_cascade_match_real_describe(org: Org):
    real = _real("Account")
    ours = org.schema.get("Account").describe("59.0", org.schema)
    real_rel = {(c["childSObject"], c["field"]): c for c in real["childRelationships"]}
    for rel in ours["childRelationships"]:
        theirs = real_rel.get((rel["childSObject"], rel["field"]))
        if theirs is None:
            continue
        assert rel["relationshipName"] == theirs["relationshipName"], rel


def test_a_field_added_to_one_org_does_not_appear_in_another():
    first, second = Org(None), Org(None)
    try:
        first.add_custom_field("Account", {"name": "Region__c", "type": "string"})
        assert first.schema.get("Account").has_field("Region__c")
        assert not second.schema.get("Account").has_field("Region__c")
    finally:
        first.close()
        second.close()
