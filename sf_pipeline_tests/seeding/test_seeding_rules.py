"""Seeding's decisions without an org: insert order and cycles, user matching, config errors."""

from __future__ import annotations

import pytest

from sf_pipeline.seeding import (
    Reference,
    SeedConfig,
    SeedConfigError,
    SeedingError,
    insert_order,
    match_users,
)


def test_parents_go_before_children_and_self_references_are_set_afterwards():
    order = insert_order(
        {
            "OpportunityContactRole": [
                Reference("OpportunityId", ("Opportunity",), False),
                Reference("ContactId", ("Contact",), False),
            ],
            "Opportunity": [Reference("AccountId", ("Account",))],
            "Contact": [Reference("AccountId", ("Account",)), Reference("ReportsToId", ("Contact",))],
            "Account": [Reference("ParentId", ("Account",))],
        }
    )
    assert order.objects == ["Account", "Opportunity", "Contact", "OpportunityContactRole"]
    assert order.deferred == {"Account": {"ParentId"}, "Contact": {"ReportsToId"}}


def test_a_cycle_between_two_objects_is_broken_at_a_field_that_may_be_empty():
    order = insert_order(
        {
            "Account": [Reference("Primary_Contact__c", ("Contact",), True)],
            "Contact": [Reference("AccountId", ("Account",), False)],
        }
    )
    assert order.objects == ["Account", "Contact"]
    assert order.deferred == {"Account": {"Primary_Contact__c"}}


def test_a_cycle_of_required_references_is_refused_with_the_objects_named():
    with pytest.raises(SeedingError, match=r"only through required fields \(A -> \['B'\], B -> \['A'\]\)"):
        insert_order({"A": [Reference("B__c", ("B",), False)], "B": [Reference("A__c", ("A",), False)]})


def test_polymorphic_references_order_after_every_possible_parent():
    order = insert_order(
        {
            "Task": [Reference("WhatId", ("Account", "Opportunity"))],
            "Opportunity": [Reference("AccountId", ("Account",))],
            "Account": [],
        }
    )
    assert order.objects == ["Account", "Opportunity", "Task"]


def test_users_match_by_sandbox_username_then_email_then_unique_name():
    source = [
        {"Id": "005A", "Username": "ada@acme.com", "Email": "ada@acme.com", "Name": "Ada Lovelace"},
        {"Id": "005B", "Username": "bob@acme.com", "Email": "bob@acme.com", "Name": "Bob Stone"},
        {"Id": "005C", "Username": "cy@acme.com", "Email": "cy@acme.com", "Name": "Cy Young"},
        {"Id": "005D", "Username": "dee@acme.com", "Email": "dee@acme.com", "Name": "Dee Two"},
    ]
    target = [
        {"Id": "005a", "Username": "ada@acme.com.uat", "Email": "ada@acme.com.invalid", "Name": "Ada Lovelace"},
        {"Id": "005b", "Username": "robert@acme.com.uat", "Email": "bob@acme.com.invalid", "Name": "Robert Stone"},
        {"Id": "005c", "Username": "cyy@other.com", "Email": "cyy@other.com", "Name": "Cy Young"},
        {"Id": "005d1", "Username": "d1@x.com", "Email": "d1@x.com", "Name": "Dee Two"},
        {"Id": "005d2", "Username": "d2@x.com", "Email": "d2@x.com", "Name": "Dee Two"},
    ]
    assert match_users(source, target) == {"005A": "005a", "005B": "005b", "005C": "005c"}  # Dee is ambiguous


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target_org": "production"}, "never writes to the org it copies from"),
        ({"target_org": "staging"}, "unknown org alias 'staging' for target_org"),
        ({"as_of": None}, "as_of is required"),
        ({"as_of": "2026-11-24 02:30"}, "needs a time zone"),
        ({"objects": []}, "nothing selected"),
        ({"record_ids": ["006xyz"]}, "is not a Salesforce record id"),
        ({"incident": "last"}, "incident must be the id of an incident"),
        ({"include_parents": "yes"}, "include_parents must be true or false"),
        ({"objekts": ["Account"]}, "unknown seed config key(s) objekts"),
    ],
)
def test_seed_config_errors_name_the_problem(change, message):
    data = {"as_of": "2026-11-24T02:30:00Z", "objects": ["Account"], **change}
    with pytest.raises(SeedConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SeedConfig.from_dict(
            {k: v for k, v in data.items() if v is not None or k != "as_of"}, orgs=["production", "sandbox"]
        )
