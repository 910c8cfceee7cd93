"""SOQL parsing, compilation and execution in devorg (no HTTP): soql.py and query.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from sf_pipeline.devorg import ids, query
from sf_pipeline.devorg.clock import Clock
from sf_pipeline.devorg.errors import SalesforceError
from sf_pipeline.devorg.query import QueryEngine
from sf_pipeline.devorg.schema import Schema
from sf_pipeline.devorg.soql import compile_soql, date_literal_range
from sf_pipeline.devorg.standard_objects import STANDARD_OBJECTS
from sf_pipeline.devorg.store import OrgStore

CUSTOM_OBJECTS = Path(__file__).resolve().parents[2] / "sf_pipeline/devorg/custom_objects.yaml"
NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday
TODAY = NOW.date()
LOCATOR_URL = re.compile(r"^/services/data/v(?P<ver>[0-9.]+)/query/(?P<loc>01g[0-9A-Za-z]{15})-(?P<off>[0-9]+)$")


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


class Org:
    """An in-memory org with a frozen clock and a small, known data set."""

    def __init__(self) -> None:
        self.schema = Schema(STANDARD_OBJECTS)
        self.schema.load_custom_objects(CUSTOM_OBJECTS)
        self.clock = Clock()
        self.clock.set(NOW, freeze=True)
        self.store = OrgStore(self.schema, None, self.clock)
        self.engine = QueryEngine(self.store, self.schema)
        self.user = ids.make_id("005", 1)
        self.users = {}
        for first, last in (("Ada", "Lovelace"), ("Grace", "Hopper")):
            self.users[last] = self.insert(
                "User",
                dict(
                    Username=f"{last.lower()}@example.com",
                    LastName=last,
                    FirstName=first,
                    Alias=last[:5].lower(),
                    Email=f"{last.lower()}@example.com",
                    TimeZoneSidKey="GMT",
                    LocaleSidKey="en_US",
                    EmailEncodingKey="UTF-8",
                    LanguageLocaleKey="en_US",
                ),
            )
        assert self.users["Lovelace"] == self.user

    def insert(self, obj: str, values: dict, at: datetime | None = None) -> str:
        if at is not None:
            self.clock.set(at, freeze=True)
        try:
            return self.store.insert(self.schema.get(obj), values, user_id=self.user)
        finally:
            self.clock.set(NOW, freeze=True)

    def run(self, soql: str, *, all_rows: bool = False, **kw) -> dict:
        return self.engine.run(soql, include_deleted=all_rows, **kw)

    def records(self, soql: str, **kw) -> list[dict]:
        page = self.run(soql, **kw)
        assert page["done"] is True
        assert page["totalSize"] == len(page["records"])
        return page["records"]

    def names(self, soql: str, **kw) -> list[str]:
        return [r["Name"] for r in self.records(soql, **kw)]

    def error(self, soql: str, *, all_rows: bool = False) -> SalesforceError:
        with pytest.raises(SalesforceError) as info:
            self.run(soql, all_rows=all_rows)
        return info.value


@pytest.fixture
def org() -> Org:
    o = Org()
    hopper = o.users["Hopper"]
    o.acme = o.insert(
        "Account",
        dict(
            Name="Acme",
            Industry="Banking",
            OwnerId=hopper,
            BillingStreet="1 Main St",
            BillingCity="Paris",
            BillingCountry="France",
            NumberOfEmployees=250,
        ),
        at=datetime(2026, 3, 18, 9, 0, tzinfo=UTC),
    )
    o.beta = o.insert(
        "Account", dict(Name="beta corp", NumberOfEmployees=12), at=datetime(2026, 3, 17, 23, 59, 59, tzinfo=UTC)
    )
    o.gamma = o.insert(
        "Account", dict(Name="Gamma", Industry="Retail", AnnualRevenue=1234), at=datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
    )
    o.obrien = o.insert(
        "Account",
        dict(Name="O'Brien & Sons", Industry="Retail", ParentId=None),
        at=datetime(2025, 12, 31, 23, 0, tzinfo=UTC),
    )
    o.opps = {}
    for name, stage, close, amount, account in (
        ("Alpha deal", "Prospecting", day(0), 1000, o.acme),
        ("Bravo deal", "Closed Won", day(-1), 250000.5, o.acme),
        ("charlie deal", "Qualification", day(1), None, o.beta),
        ("Delta deal", "Closed Lost", day(-8), 50, None),
        ("Echo deal", "Negotiation/Review", day(-40), 75000, o.gamma),
        ("Foxtrot_100%", "Prospecting", day(400), 10, o.obrien),
    ):
        o.opps[name] = o.insert(
            "Opportunity", dict(Name=name, StageName=stage, CloseDate=close, Amount=amount, AccountId=account)
        )
    o.contact = o.insert("Contact", dict(LastName="Turing", FirstName="Alan", AccountId=o.acme))
    o.case = o.insert("Case", dict(Subject="Broken", AccountId=o.acme, ContactId=o.contact))
    o.invoice = o.insert(
        "Invoice__c",
        dict(
            Name="INV-1",
            Account__c=o.acme,
            Opportunity__c=o.opps["Alpha deal"],
            Amount__c=99.99,
            Paid__c=True,
            Due_Date__c=day(30),
        ),
    )
    o.invoice2 = o.insert("Invoice__c", dict(Name="INV-2", Amount__c=5))
    return o


# ====================================================================== record shape
def test_record_shape_types_and_canonical_names(org: Org):
    recs = org.records(
        "select id, NAME, amount, isWON, fiscalyear, closedate, createddate, description, probability "
        "from OPPORTUNITY where name = 'bravo DEAL'"
    )
    assert len(recs) == 1
    rec = recs[0]
    oid = org.opps["Bravo deal"]
    assert list(rec) == [
        "attributes",
        "Id",
        "Name",
        "Amount",
        "IsWon",
        "FiscalYear",
        "CloseDate",
        "CreatedDate",
        "Description",
        "Probability",
    ]
    assert rec["attributes"] == {"type": "Opportunity", "url": f"/services/data/v59.0/sobjects/Opportunity/{oid}"}
    assert rec["Id"] == oid and rec["Name"] == "Bravo deal"
    assert rec["Amount"] == 250000.5 and isinstance(rec["Amount"], float)
    assert rec["IsWon"] is True
    assert rec["FiscalYear"] == 2026 and isinstance(rec["FiscalYear"], int)
    assert rec["CloseDate"] == day(-1)
    assert rec["CreatedDate"] == "2026-03-18T15:30:00.000+0000"
    assert "Description" in rec and rec["Description"] is None
    assert rec["Probability"] == 100.0
    orjson.dumps(rec)  # serializable as is


def test_url_uses_api_version(org: Org):
    rec = org.records("SELECT Id, Account.Name FROM Opportunity WHERE Name = 'Alpha deal'", api_version="62.0")[0]
    assert rec["attributes"]["url"].startswith("/services/data/v62.0/sobjects/Opportunity/")
    assert rec["Account"]["attributes"]["url"] == f"/services/data/v62.0/sobjects/Account/{org.acme}"


def test_boolean_false_and_int_values(org: Org):
    rec = org.records("SELECT IsDeleted, IsPrivate, IsWon, IsClosed FROM Opportunity WHERE Name = 'Alpha deal'")[0]
    assert rec["IsDeleted"] is False and rec["IsPrivate"] is False and rec["IsWon"] is False
    rec = org.records("SELECT NumberOfEmployees FROM Account WHERE Name = 'Acme'")[0]
    assert rec["NumberOfEmployees"] == 250 and isinstance(rec["NumberOfEmployees"], int)


# ====================================================================== relationships
def test_parent_paths_nested_with_attributes(org: Org):
    rec = org.records(
        "SELECT Name, Account.Name, Account.Owner.Name, Owner.Name, CreatedBy.Alias, Account.Industry "
        "FROM Opportunity WHERE Name = 'Alpha deal'"
    )[0]
    assert list(rec) == ["attributes", "Name", "Account", "Owner", "CreatedBy"]
    acc = rec["Account"]
    assert list(acc) == ["attributes", "Name", "Owner", "Industry"]
    assert acc["attributes"] == {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{org.acme}"}
    assert acc["Name"] == "Acme" and acc["Industry"] == "Banking"
    hopper = org.users["Hopper"]
    assert acc["Owner"] == {
        "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{hopper}"},
        "Name": "Grace Hopper",
    }
    assert rec["Owner"]["Name"] == "Ada Lovelace"
    assert rec["CreatedBy"] == {
        "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{org.user}"},
        "Alias": "lovel",
    }


def test_null_parent_is_null(org: Org):
    rec = org.records("SELECT Name, Account.Name, Account.Owner.Name FROM Opportunity WHERE Name = 'Delta deal'")[0]
    assert rec == {"attributes": rec["attributes"], "Name": "Delta deal", "Account": None}


def test_custom_relationship_and_polymorphic_owner(org: Org):
    recs = org.records(
        "SELECT Name, Account__r.Name, Opportunity__r.Account.Name, Paid__c, Amount__c, Due_Date__c "
        "FROM Invoice__c ORDER BY Name"
    )
    assert recs[0]["Account__r"]["Name"] == "Acme"
    assert recs[0]["Opportunity__r"]["Account"]["Name"] == "Acme"
    assert recs[0]["Paid__c"] is True and recs[0]["Amount__c"] == 99.99 and recs[0]["Due_Date__c"] == day(30)
    assert recs[1]["Account__r"] is None and recs[1]["Opportunity__r"] is None and recs[1]["Paid__c"] is False
    # Case.OwnerId references Group and User: devorg resolves Owner to User (no Group object)
    rec = org.records("SELECT Subject, Owner.Name, Account.Name, Contact.Name FROM Case")[0]
    assert rec["Owner"]["attributes"]["type"] == "User" and rec["Owner"]["Name"] == "Ada Lovelace"
    assert rec["Contact"]["Name"] == "Alan Turing"


def test_parent_path_in_where_and_order(org: Org):
    assert org.names("SELECT Name FROM Opportunity WHERE Account.Name = 'ACME' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE Account.Owner.Name LIKE 'grace%' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
    ]
    # null parents sort first ascending, last descending
    assert org.names("SELECT Name FROM Opportunity ORDER BY Account.Name, Name") == [
        "Delta deal",
        "Alpha deal",
        "Bravo deal",
        "charlie deal",
        "Echo deal",
        "Foxtrot_100%",
    ]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Account.Name DESC, Name") == [
        "Foxtrot_100%",
        "Echo deal",
        "charlie deal",
        "Alpha deal",
        "Bravo deal",
        "Delta deal",
    ]


def test_compound_address_in_rest(org: Org):
    recs = org.records(
        "SELECT Name, BillingAddress, ShippingAddress FROM Account WHERE Name IN ('Acme', 'Gamma') ORDER BY Name"
    )
    assert recs[0]["BillingAddress"] == {
        "city": "Paris",
        "country": "France",
        "geocodeAccuracy": None,
        "latitude": None,
        "longitude": None,
        "postalCode": None,
        "state": None,
        "street": "1 Main St",
    }
    assert recs[0]["ShippingAddress"] is None
    assert recs[1]["BillingAddress"] is None
    rec = org.records("SELECT Account.BillingAddress FROM Contact")[0]
    assert rec["Account"]["BillingAddress"]["city"] == "Paris"


def test_object_alias_and_object_name_prefix(org: Org):
    assert org.names("SELECT a.Name FROM Account a WHERE a.Industry = 'Retail' ORDER BY a.Name") == [
        "Gamma",
        "O'Brien & Sons",
    ]
    assert org.names("SELECT Account.Name FROM Account WHERE Account.Name = 'acme'") == ["Acme"]


def test_user_object_has_no_isdeleted(org: Org):
    assert org.names("SELECT Name FROM User ORDER BY Name") == ["Ada Lovelace", "Grace Hopper"]
    assert org.names("SELECT Name FROM User ORDER BY Name", all_rows=True) == ["Ada Lovelace", "Grace Hopper"]


# ====================================================================== COUNT
def test_count_only(org: Org):
    assert org.run("SELECT COUNT() FROM Opportunity") == {"totalSize": 6, "done": True, "records": []}
    assert org.run("select count() from opportunity where Amount > 100")["totalSize"] == 3
    assert org.run("SELECT COUNT() FROM Opportunity LIMIT 2")["totalSize"] == 2
    assert org.run("SELECT COUNT() FROM Account WHERE Name = 'nobody'") == {"totalSize": 0, "done": True, "records": []}


def test_count_field_aggregate(org: Org):
    page = org.run("SELECT COUNT(Id) FROM Opportunity")
    assert page == {"totalSize": 1, "done": True, "records": [{"attributes": {"type": "AggregateResult"}, "expr0": 6}]}
    rec = org.run(
        "SELECT COUNT(Id) total, COUNT(Amount), COUNT(AccountId), COUNT(Account.Industry) ind FROM Opportunity"
    )["records"][0]
    assert rec == {"attributes": {"type": "AggregateResult"}, "total": 6, "expr0": 5, "expr1": 5, "ind": 4}
    assert org.run("SELECT COUNT(Id) FROM Opportunity WHERE Amount = null")["records"][0]["expr0"] == 1


def test_max_and_min_aggregates(org: Org):
    """MAX()/MIN() over a datetime and a number, with COUNT() beside them (SOQL and SOSL Reference, "Aggregate
    Functions": "MAX() Returns the maximum value of a field", available on date, datetime, number and text
    fields); the backup's preflight asks COUNT(Id) and MAX(SystemModstamp) in one query."""
    rec = org.run("SELECT COUNT(Id) n, MAX(SystemModstamp) m, MIN(CreatedDate), MAX(Amount) FROM Opportunity")[
        "records"
    ][0]
    stamps = [r["SystemModstamp"] for r in org.run("SELECT SystemModstamp FROM Opportunity")["records"]]
    created = [r["CreatedDate"] for r in org.run("SELECT CreatedDate FROM Opportunity")["records"]]
    amounts = [r["Amount"] for r in org.run("SELECT Amount FROM Opportunity")["records"] if r["Amount"] is not None]
    assert rec == {
        "attributes": {"type": "AggregateResult"},
        "n": 6,
        "m": max(stamps),
        "expr0": min(created),
        "expr1": max(amounts),
    }
    assert org.run("SELECT MAX(SystemModstamp) m FROM Opportunity WHERE Name = 'nobody'")["records"][0]["m"] is None
    e = org.error("SELECT MAX(IsDeleted) FROM Opportunity")
    assert e.error_code == "MALFORMED_QUERY" and "does not support aggregate operator MAX" in e.message


def test_count_errors(org: Org):
    e = org.error("SELECT COUNT(Id), Name FROM Account")
    assert e.error_code == "MALFORMED_QUERY" and e.message.endswith("Field must be grouped or aggregated: Name")
    e = org.error("SELECT COUNT(), Name FROM Account")
    assert e.error_code == "MALFORMED_QUERY"
    e = org.error("SELECT COUNT(Id) FROM Account ORDER BY Name")
    assert e.error_code == "MALFORMED_QUERY" and "Ordered field must be grouped or aggregated: Name" in e.message
    e = org.error("SELECT COUNT(Foo) FROM Account")
    assert e.error_code == "INVALID_FIELD" and "No such column 'Foo' on entity 'Account'" in e.message


# ====================================================================== WHERE
def test_comparison_operators_on_numbers(org: Org):
    q = "SELECT Name FROM Opportunity WHERE Amount {} 1000 ORDER BY Name"
    assert org.names(q.format("=")) == ["Alpha deal"]
    assert org.names(q.format("!=")) == ["Bravo deal", "charlie deal", "Delta deal", "Echo deal", "Foxtrot_100%"]
    assert org.names(q.format("<>")) == org.names(q.format("!="))
    assert org.names(q.format("<")) == ["Delta deal", "Foxtrot_100%"]
    assert org.names(q.format("<=")) == ["Alpha deal", "Delta deal", "Foxtrot_100%"]
    assert org.names(q.format(">")) == ["Bravo deal", "Echo deal"]
    assert org.names(q.format(">=")) == ["Alpha deal", "Bravo deal", "Echo deal"]
    assert org.names("SELECT Name FROM Opportunity WHERE Amount > 250000.25") == ["Bravo deal"]
    assert org.names("SELECT Name FROM Opportunity WHERE Amount < -1") == []
    assert org.names("SELECT Name FROM Account WHERE NumberOfEmployees >= 100") == ["Acme"]


def test_null_semantics(org: Org):
    assert org.names("SELECT Name FROM Opportunity WHERE Amount = null") == ["charlie deal"]
    assert len(org.names("SELECT Name FROM Opportunity WHERE Amount != null")) == 5
    # != and NOT IN match nulls like Salesforce; <, > and IN never do; NOT is two-valued
    assert org.names("SELECT Name FROM Account WHERE Industry != 'Retail' ORDER BY Name") == ["Acme", "beta corp"]
    assert org.names("SELECT Name FROM Account WHERE Industry NOT IN ('Banking') ORDER BY Name") == [
        "beta corp",
        "Gamma",
        "O'Brien & Sons",
    ]
    assert org.names("SELECT Name FROM Account WHERE NOT Industry = 'Retail' ORDER BY Name") == ["Acme", "beta corp"]
    assert org.names("SELECT Name FROM Account WHERE Industry > 'A' ORDER BY Name") == [
        "Acme",
        "Gamma",
        "O'Brien & Sons",
    ]
    assert org.names("SELECT Name FROM Account WHERE Industry IN ('Banking', null) ORDER BY Name") == [
        "Acme",
        "beta corp",
    ]


def test_text_comparison_is_case_insensitive(org: Org):
    assert org.names("SELECT Name FROM Account WHERE Name = 'BETA CORP'") == ["beta corp"]
    assert org.names("SELECT Name FROM Account WHERE Name IN ('acme', 'GAMMA') ORDER BY Name") == ["Acme", "Gamma"]
    assert org.names("SELECT Name FROM Account WHERE Industry = 'retail' ORDER BY Name") == ["Gamma", "O'Brien & Sons"]
    assert org.names("SELECT Name FROM Account WHERE Name > 'b' AND Name < 'H' ORDER BY Name") == ["beta corp", "Gamma"]


def test_like_and_escapes(org: Org):
    assert org.names("SELECT Name FROM Opportunity WHERE Name LIKE '%DEAL' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
        "charlie deal",
        "Delta deal",
        "Echo deal",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE Name LIKE '_lpha%'") == ["Alpha deal"]
    assert org.names("SELECT Name FROM Opportunity WHERE Name LIKE '%\\_100\\%'") == ["Foxtrot_100%"]
    assert org.names("SELECT Name FROM Opportunity WHERE Name LIKE 'Foxtrot\\_1%'") == ["Foxtrot_100%"]
    assert org.names("SELECT Name FROM Opportunity WHERE Name LIKE 'Alpha\\_%'") == []
    assert org.names("SELECT Name FROM Account WHERE Name = 'O\\'Brien & Sons'") == ["O'Brien & Sons"]
    assert org.names("SELECT Name FROM Account WHERE Name LIKE 'o\\'b%'") == ["O'Brien & Sons"]
    assert org.names("SELECT Name FROM Account WHERE NOT Name LIKE '%a%' ORDER BY Name") == ["O'Brien & Sons"]


def test_string_escape_sequences(org: Org):
    org.insert("Account", dict(Name='Tab\there "quoted" back\\slash'))
    assert org.names("SELECT Name FROM Account WHERE Name = 'Tab\\there \\\"quoted\\\" back\\\\slash'") == [
        'Tab\there "quoted" back\\slash'
    ]
    assert org.names("SELECT Name FROM Account WHERE Name LIKE '%back\\\\slash'") == ['Tab\there "quoted" back\\slash']
    e = org.error("SELECT Name FROM Account WHERE Name = 'bad \\q escape'")
    assert e.error_code == "MALFORMED_QUERY" and "Illegal character sequence '\\q'" in e.message


def test_in_and_not_in(org: Org):
    assert org.names("SELECT Name FROM Opportunity WHERE StageName IN ('closed won', 'Closed Lost') ORDER BY Name") == [
        "Bravo deal",
        "Delta deal",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE Amount IN (10, 50) ORDER BY Name") == [
        "Delta deal",
        "Foxtrot_100%",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE Amount NOT IN (10, 50, 1000) ORDER BY Name") == [
        "Bravo deal",
        "charlie deal",
        "Echo deal",
    ]


def test_and_or_not_parentheses(org: Org):
    assert org.names(
        "SELECT Name FROM Opportunity WHERE (Amount > 1000 OR Amount = null) AND StageName != "
        "'Closed Won' ORDER BY Name"
    ) == ["charlie deal", "Echo deal"]
    assert org.names(
        "SELECT Name FROM Opportunity WHERE Amount > 1000 OR (Amount = null AND Name LIKE 'c%') ORDER BY Name"
    ) == ["Bravo deal", "charlie deal", "Echo deal"]
    assert org.names("SELECT Name FROM Opportunity WHERE NOT (Amount > 1000 OR Amount = null) ORDER BY Name") == [
        "Alpha deal",
        "Delta deal",
        "Foxtrot_100%",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE NOT NOT Amount = 50") == ["Delta deal"]
    e = org.error("SELECT Name FROM Opportunity WHERE Amount > 1 AND Amount < 5 OR Amount = 7")
    assert e.error_code == "MALFORMED_QUERY" and e.message.endswith("unexpected token: OR")


def test_bare_and_not_is_malformed_as_in_real_soql(org: Org):
    """`A AND NOT B` is refused by Salesforce ("unexpected token: 'NOT'", soql-parser-js#201 checked against
    a real org); `A AND (NOT B)` is how it is written."""
    for op in ("AND", "OR"):
        e = org.error(f"SELECT Name FROM Opportunity WHERE Name != null {op} NOT (Amount > 1000)")
        assert e.error_code == "MALFORMED_QUERY" and e.message.endswith("unexpected token: NOT")
    assert org.names(
        "SELECT Name FROM Opportunity WHERE Name != null AND (NOT Amount > 1000) ORDER BY Name"
    ) == org.names("SELECT Name FROM Opportunity WHERE NOT Amount > 1000 ORDER BY Name")
    assert org.names(
        "SELECT Name FROM Opportunity WHERE (NOT (Amount > 1000 OR Amount = null)) AND Name != null ORDER BY Name"
    ) == ["Alpha deal", "Delta deal", "Foxtrot_100%"]


def test_boolean_filters(org: Org):
    assert org.names("SELECT Name FROM Opportunity WHERE IsWon = true") == ["Bravo deal"]
    assert org.names("SELECT Name FROM Opportunity WHERE IsClosed = TRUE AND IsWon = False") == ["Delta deal"]
    assert len(org.names("SELECT Name FROM Opportunity WHERE IsWon != true")) == 5
    assert org.names("SELECT Name FROM Invoice__c WHERE Paid__c = true") == ["INV-1"]


def test_id_filters_accept_15_and_18_char_ids(org: Org):
    acme18 = org.acme
    acme15 = acme18[:15]
    assert org.names(f"SELECT Name FROM Account WHERE Id = '{acme15}'") == ["Acme"]
    assert org.names(f"SELECT Name FROM Account WHERE Id = '{acme15.lower()}'") == []  # 15-char: case matters
    assert org.names(f"SELECT Name FROM Account WHERE Id = '{acme18.lower()}'") == ["Acme"]  # 18-char: it doesn't
    assert org.names(f"SELECT Name FROM Opportunity WHERE AccountId = '{acme15}' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
    ]
    assert org.names(f"SELECT Name FROM Opportunity WHERE AccountId IN ('{acme15}', '{org.beta}') ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
        "charlie deal",
    ]
    assert org.names(f"SELECT Name FROM Opportunity WHERE Account.Id = '{acme15}' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
    ]
    assert org.names("SELECT Name FROM Opportunity WHERE AccountId = ''") == ["Delta deal"]
    assert org.names(f"SELECT Name FROM Account WHERE Id > '{org.beta}' ORDER BY Id") == ["Gamma", "O'Brien & Sons"]
    e = org.error("SELECT Name FROM Account WHERE Id = 'abc'")
    assert e.error_code == "INVALID_QUERY_FILTER_OPERATOR" and e.message.endswith("invalid ID field: abc")
    assert "ERROR at Row:1:Column:37" in e.message


def test_datetime_literals_converted_to_utc(org: Org):
    q = "SELECT Name FROM Account WHERE CreatedDate {} ORDER BY Name"
    assert org.names(q.format("> 2026-03-18T09:00:00Z")) == []
    assert org.names(q.format(">= 2026-03-18T09:00:00Z")) == ["Acme"]
    assert org.names(q.format("= 2026-03-18T09:00:00.000Z")) == ["Acme"]
    assert org.names(q.format("= 2026-03-18T10:00:00+01:00")) == ["Acme"]
    assert org.names(q.format("= 2026-03-18T04:00:00-0500")) == ["Acme"]
    assert org.names(q.format("< 2026-01-01T00:00:00+01:00")) == []
    assert org.names(q.format("< 2026-01-01T01:00:00+01:00")) == ["O'Brien & Sons"]
    assert org.names(q.format(">= 2026-03-17T23:59:59Z")) == ["Acme", "beta corp"]


def test_date_literals_on_date_field(org: Org):
    q = "SELECT Name FROM Opportunity WHERE CloseDate {} ORDER BY Name"
    assert org.names(q.format("= TODAY")) == ["Alpha deal"]
    assert org.names(q.format("= yesterday")) == ["Bravo deal"]
    assert org.names(q.format("= Tomorrow")) == ["charlie deal"]
    assert org.names(q.format("> TODAY")) == ["charlie deal", "Foxtrot_100%"]
    assert org.names(q.format(">= TODAY")) == ["Alpha deal", "charlie deal", "Foxtrot_100%"]
    assert org.names(q.format("< TODAY")) == ["Bravo deal", "Delta deal", "Echo deal"]
    assert org.names(q.format("<= TODAY")) == ["Alpha deal", "Bravo deal", "Delta deal", "Echo deal"]
    assert org.names(q.format("!= TODAY")) == ["Bravo deal", "charlie deal", "Delta deal", "Echo deal", "Foxtrot_100%"]
    assert org.names(q.format("= LAST_N_DAYS:7")) == ["Alpha deal", "Bravo deal"]
    assert org.names(q.format("= LAST_N_DAYS:8")) == ["Alpha deal", "Bravo deal", "Delta deal"]
    assert org.names(q.format("> LAST_N_DAYS:8")) == ["charlie deal", "Foxtrot_100%"]
    assert org.names(q.format("< LAST_N_DAYS:8")) == ["Echo deal"]
    assert org.names(q.format("= NEXT_N_DAYS:1")) == ["charlie deal"]
    assert org.names(q.format("= THIS_MONTH")) == ["Alpha deal", "Bravo deal", "charlie deal", "Delta deal"]
    assert org.names(q.format("= LAST_MONTH")) == ["Echo deal"]
    assert org.names(q.format("= THIS_YEAR")) == ["Alpha deal", "Bravo deal", "charlie deal", "Delta deal", "Echo deal"]
    assert org.names(q.format("> THIS_YEAR")) == ["Foxtrot_100%"]
    assert org.names(q.format("IN (TODAY, YESTERDAY)")) == ["Alpha deal", "Bravo deal"]
    assert org.names(q.format(f"= {day(-8)}")) == ["Delta deal"]
    assert org.names(q.format(f"> {day(1)}")) == ["Foxtrot_100%"]


def test_date_literals_on_datetime_field(org: Org):
    # CreatedDate: Acme 2026-03-18 09:00, beta 2026-03-17 23:59:59, Gamma 2026-02-10, O'Brien 2025-12-31 23:00
    q = "SELECT Name FROM Account WHERE CreatedDate {} ORDER BY Name"
    assert org.names(q.format("= TODAY")) == ["Acme"]
    assert org.names(q.format("= YESTERDAY")) == ["beta corp"]
    assert org.names(q.format("< TODAY")) == ["beta corp", "Gamma", "O'Brien & Sons"]
    assert org.names(q.format("<= YESTERDAY")) == ["beta corp", "Gamma", "O'Brien & Sons"]
    assert org.names(q.format("> YESTERDAY")) == ["Acme"]
    assert org.names(q.format(">= YESTERDAY")) == ["Acme", "beta corp"]
    assert org.names(q.format("= LAST_N_DAYS:1")) == ["Acme", "beta corp"]
    assert org.names(q.format("= THIS_MONTH")) == ["Acme", "beta corp"]
    assert org.names(q.format("= LAST_MONTH")) == ["Gamma"]
    assert org.names(q.format("= THIS_YEAR")) == ["Acme", "beta corp", "Gamma"]
    assert org.names(q.format("< THIS_YEAR")) == ["O'Brien & Sons"]
    assert org.names(q.format("= TOMORROW")) == []


def test_date_literal_ranges_follow_the_clock():
    wed = datetime(2026, 3, 18).date()
    assert date_literal_range("TODAY", wed) == (wed, wed + timedelta(days=1))
    assert date_literal_range("last_n_days:3", wed) == (wed - timedelta(days=3), wed + timedelta(days=1))
    assert date_literal_range("NEXT_N_DAYS:3", wed) == (wed + timedelta(days=1), wed + timedelta(days=4))
    assert date_literal_range("THIS_WEEK", wed) == (datetime(2026, 3, 15).date(), datetime(2026, 3, 22).date())
    assert date_literal_range("LAST_MONTH", datetime(2026, 1, 5).date()) == (
        datetime(2025, 12, 1).date(),
        datetime(2026, 1, 1).date(),
    )
    assert date_literal_range("THIS_QUARTER", wed) == (datetime(2026, 1, 1).date(), datetime(2026, 4, 1).date())
    assert date_literal_range("LAST_N_MONTHS:2", wed) == (datetime(2026, 1, 1).date(), datetime(2026, 3, 1).date())


def test_date_literals_use_the_org_clock(org: Org):
    org.clock.set(NOW + timedelta(days=1), freeze=True)
    assert org.names("SELECT Name FROM Opportunity WHERE CloseDate = TODAY") == ["charlie deal"]
    cq = compile_soql(
        "SELECT Id FROM Opportunity WHERE CloseDate = TODAY",
        org.schema,
        now=datetime(2030, 1, 2, tzinfo=UTC),
        include_deleted=False,
    )
    assert "2030-01-02" in cq.params


# ====================================================================== type checks
@pytest.mark.parametrize(
    "where, field, kind, quotes",
    [
        ("CreatedDate > 2026-01-01", "CreatedDate", "dateTime", "should not"),
        ("CreatedDate = '2026-01-01T00:00:00Z'", "CreatedDate", "dateTime", "should not"),
        ("CloseDate = 2026-01-01T00:00:00Z", "CloseDate", "date", "should not"),
        ("Amount = '5'", "Amount", "double", "should not"),
        ("IsWon = 'true'", "IsWon", "boolean", "should not"),
        ("FiscalYear = 'x'", "FiscalYear", "integer", "should not"),
        ("Name = 5", "Name", "string", "should"),
        ("StageName = TODAY", "StageName", "string", "should"),
        ("AccountId = 5", "AccountId", "id", "should"),
    ],
)
def test_filter_type_errors(org: Org, where: str, field: str, kind: str, quotes: str):
    soql = f"SELECT Id FROM Opportunity WHERE {where}"
    e = org.error(soql)
    assert e.error_code == "INVALID_FIELD" and e.status == 400
    col = soql.index(where) + 1
    assert e.message == (
        f"\n{soql}\n{' ' * (col - 1)}^\nERROR at Row:1:Column:{col}\n"
        f"value of filter criterion for field '{field}' must be of type {kind} and {quotes} be "
        "enclosed in quotes"
    )


def test_filter_and_sort_restrictions(org: Org):
    e = org.error("SELECT Id FROM Account WHERE BillingAddress = 'x'")
    assert e.error_code == "INVALID_FIELD" and e.message.endswith(
        "field 'BillingAddress' can not be filtered in a query call"
    )
    e = org.error("SELECT Id FROM Account WHERE Description = 'x'")
    assert e.message.endswith("field 'Description' can not be filtered in a query call")
    e = org.error("SELECT Id FROM Account ORDER BY Description")
    assert e.error_code == "INVALID_FIELD" and e.message.endswith(
        "field 'Description' can not be sorted in a query call"
    )
    e = org.error("SELECT Id FROM Opportunity WHERE IsWon > true")
    assert e.error_code == "INVALID_QUERY_FILTER_OPERATOR"
    e = org.error("SELECT Id FROM Opportunity WHERE AccountId LIKE '001%'")
    assert e.error_code == "INVALID_QUERY_FILTER_OPERATOR"


# ====================================================================== ORDER BY / LIMIT / OFFSET
def test_order_by_nulls_defaults_and_overrides(org: Org):
    assert org.names("SELECT Name FROM Opportunity ORDER BY Amount") == [
        "charlie deal",
        "Foxtrot_100%",
        "Delta deal",
        "Alpha deal",
        "Echo deal",
        "Bravo deal",
    ]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Amount DESC") == [
        "Bravo deal",
        "Echo deal",
        "Alpha deal",
        "Delta deal",
        "Foxtrot_100%",
        "charlie deal",
    ]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Amount ASC NULLS LAST")[-1] == "charlie deal"
    assert org.names("SELECT Name FROM Opportunity ORDER BY Amount DESC NULLS FIRST")[0] == "charlie deal"


def test_order_by_multiple_fields_text_case_insensitive(org: Org):
    assert org.names("SELECT Name FROM Account ORDER BY Industry DESC, Name") == [
        "Gamma",
        "O'Brien & Sons",
        "Acme",
        "beta corp",
    ]
    assert org.names("SELECT Name FROM Account ORDER BY Name") == ["Acme", "beta corp", "Gamma", "O'Brien & Sons"]
    assert org.names("select name from account order by name desc") == ["O'Brien & Sons", "Gamma", "beta corp", "Acme"]


def test_order_by_picklist_uses_picklist_order(org: Org):
    # Prospecting < Qualification < Negotiation/Review < Closed Won < Closed Lost (definition order)
    assert org.names("SELECT Name FROM Opportunity ORDER BY StageName, Name") == [
        "Alpha deal",
        "Foxtrot_100%",
        "charlie deal",
        "Echo deal",
        "Bravo deal",
        "Delta deal",
    ]


def test_limit_and_offset(org: Org):
    all_names = org.names("SELECT Name FROM Opportunity ORDER BY Name")
    assert org.names("SELECT Name FROM Opportunity ORDER BY Name LIMIT 2") == all_names[:2]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Name OFFSET 4") == all_names[4:]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Name LIMIT 2 OFFSET 3") == all_names[3:5]
    assert org.names("SELECT Name FROM Opportunity ORDER BY Name LIMIT 0") == []
    assert org.run("SELECT Name FROM Opportunity LIMIT 3")["totalSize"] == 3
    e = org.error("SELECT Name FROM Opportunity OFFSET 2001")
    assert (e.error_code, e.message, e.status) == (
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Maximum SOQL offset allowed is 2000",
        400,
    )
    assert org.names("SELECT Name FROM Opportunity OFFSET 2000") == []
    e = org.error("SELECT Name FROM Opportunity OFFSET 1 LIMIT 2")
    assert e.error_code == "MALFORMED_QUERY" and e.message.endswith("unexpected token: LIMIT")


# ====================================================================== query vs queryAll
def test_query_hides_deleted_query_all_shows_them(org: Org):
    org.store.delete(org.schema.get("Opportunity"), org.opps["Echo deal"], org.user)
    org.store.delete(org.schema.get("Case"), org.case, org.user)  # an Account with Cases cannot be deleted
    org.store.delete(org.schema.get("Account"), org.acme, org.user)  # cascades to Alpha, Bravo, Contact
    assert org.names("SELECT Name FROM Opportunity ORDER BY Name") == ["charlie deal", "Delta deal", "Foxtrot_100%"]
    recs = org.records("SELECT Name, IsDeleted, Account.Name FROM Opportunity ORDER BY Name", all_rows=True)
    assert [(r["Name"], r["IsDeleted"]) for r in recs] == [
        ("Alpha deal", True),
        ("Bravo deal", True),
        ("charlie deal", False),
        ("Delta deal", False),
        ("Echo deal", True),
        ("Foxtrot_100%", False),
    ]
    assert recs[0]["Account"]["Name"] == "Acme"  # parents are joined whether deleted or not
    assert org.run("SELECT COUNT() FROM Account")["totalSize"] == 3
    assert org.run("SELECT COUNT() FROM Account", all_rows=True)["totalSize"] == 4
    assert org.names("SELECT Name FROM Account WHERE IsDeleted = true", all_rows=True) == ["Acme"]
    assert org.names("SELECT Name FROM Account WHERE IsDeleted = true") == []
    org.store.undelete(org.acme, org.user)
    assert org.names("SELECT Name FROM Opportunity WHERE AccountId = null OR Account.Name = 'Acme' ORDER BY Name") == [
        "Alpha deal",
        "Bravo deal",
        "Delta deal",
    ]


def test_cleared_lookup_reads_null_parent(org: Org):
    org.store.delete(org.schema.get("Case"), org.case, org.user)  # an Account with Cases cannot be deleted
    org.store.delete(org.schema.get("Account"), org.acme, org.user)
    rec = org.records("SELECT Name, Account__r.Name, Account__c FROM Invoice__c WHERE Name = 'INV-1'")[0]
    assert rec["Account__r"] is None and rec["Account__c"] is None


# ====================================================================== pagination
@pytest.fixture
def big_org() -> Org:
    o = Org()
    acc = o.insert("Account", dict(Name="Parent"))
    tbl = o.schema.get("Opportunity")
    for i in range(2500):
        o.store.insert(
            tbl,
            dict(
                Name=f"Opp {i:05d}",
                StageName="Prospecting",
                CloseDate="2026-01-01",
                Amount=i,
                AccountId=acc if i % 2 else None,
            ),
            user_id=o.user,
        )
    return o


def _locator(page: dict) -> str:
    m = LOCATOR_URL.match(page["nextRecordsUrl"])
    assert m, page["nextRecordsUrl"]
    return f"{m['loc']}-{m['off']}"


def test_pagination_default_batch(big_org: Org):
    page = big_org.run("SELECT Id, Name, Account.Name FROM Opportunity ORDER BY Name")
    assert page["totalSize"] == 2500 and page["done"] is False and len(page["records"]) == 2000
    assert list(page) == ["totalSize", "done", "nextRecordsUrl", "records"]
    loc = _locator(page)
    assert loc.endswith("-2000")
    page2 = big_org.engine.more(loc, "59.0")
    assert page2["totalSize"] == 2500 and page2["done"] is True and "nextRecordsUrl" not in page2
    names = [r["Name"] for r in page["records"] + page2["records"]]
    assert names == [f"Opp {i:05d}" for i in range(2500)]
    assert page2["records"][1]["Account"]["Name"] == "Parent" and page2["records"][0]["Account"] is None


def test_pagination_batch_size_clamped_and_rereadable(big_org: Org):
    page = big_org.run("SELECT Name FROM Opportunity ORDER BY Amount DESC", batch_size=100)  # clamped to 200
    assert len(page["records"]) == 200
    seen = [r["Name"] for r in page["records"]]
    urls = []
    while not page["done"]:
        urls.append(page["nextRecordsUrl"])
        page = big_org.engine.more(_locator(page), "59.0")
        assert page["totalSize"] == 2500
        assert len(page["records"]) == 200 or page["done"]
        seen += [r["Name"] for r in page["records"]]
    assert seen == [f"Opp {i:05d}" for i in reversed(range(2500))]
    assert len(urls) == 12 and urls[0].endswith("-200") and urls[-1].endswith("-2400")
    # re-reading a locator gives the same page again (locators are not consumed)
    again = big_org.engine.more(LOCATOR_URL.match(urls[3])["loc"] + "-800", "59.0")
    assert [r["Name"] for r in again["records"]] == seen[800:1000]
    assert again["nextRecordsUrl"].endswith("-1000")
    # the whole nextRecordsUrl path (or its last segment) is accepted too
    assert big_org.engine.more(urls[3], "59.0")["records"] == again["records"]
    big = big_org.run("SELECT Name FROM Opportunity", batch_size=50000)
    assert len(big["records"]) == 2000


def test_pagination_snapshot_is_stable(big_org: Org):
    page = big_org.run("SELECT Name, Amount FROM Opportunity WHERE Amount >= 100 ORDER BY Amount")
    assert page["totalSize"] == 2400
    tbl = big_org.schema.get("Opportunity")
    big_org.store.insert(
        tbl, dict(Name="Late", StageName="Prospecting", CloseDate="2026-01-01", Amount=5000), user_id=big_org.user
    )
    page2 = big_org.engine.more(_locator(page), "59.0")
    assert page2["totalSize"] == 2400 and len(page2["records"]) == 400
    assert "Late" not in [r["Name"] for r in page2["records"]]


def test_query_all_pagination_keeps_deleted_rows(big_org: Org):
    tbl = big_org.schema.get("Opportunity")
    first = big_org.records("SELECT Id FROM Opportunity ORDER BY Name LIMIT 10")
    for r in first:
        big_org.store.delete(tbl, r["Id"], big_org.user)
    page = big_org.run("SELECT Id, IsDeleted FROM Opportunity ORDER BY Name", all_rows=True)
    assert page["totalSize"] == 2500 and page["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert [r["IsDeleted"] for r in page["records"][:11]] == [True] * 10 + [False]
    assert big_org.engine.more(_locator(page), "59.0")["totalSize"] == 2500
    assert big_org.run("SELECT Id FROM Opportunity")["totalSize"] == 2490


def test_invalid_query_locators(big_org: Org):
    for bad in ("01gXXXXXXXXXXXXXXX-2000", "nonsense", "01g-", "-2000", ""):
        with pytest.raises(SalesforceError) as info:
            big_org.engine.more(bad, "59.0")
        assert (info.value.error_code, info.value.message, info.value.status) == (
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
            400,
        )
    page = big_org.run("SELECT Id FROM Opportunity")
    loc = _locator(page).rsplit("-", 1)[0]
    with pytest.raises(SalesforceError) as info:
        big_org.engine.more(f"{loc}-2500", "59.0")
    assert info.value.error_code == "INVALID_QUERY_LOCATOR"


def test_cursors_are_evicted_lru(big_org: Org):
    engine = QueryEngine(big_org.store, big_org.schema, max_cursors=3)
    locs = [_locator(engine.run("SELECT Id FROM Opportunity", include_deleted=False)) for _ in range(3)]
    engine.more(locs[0], "59.0")  # touch the oldest: it becomes the most recently used
    engine.run("SELECT Id FROM Opportunity", include_deleted=False)  # evicts locs[1]
    engine.more(locs[0], "59.0")
    engine.more(locs[2], "59.0")
    with pytest.raises(SalesforceError) as info:
        engine.more(locs[1], "59.0")
    assert info.value.error_code == "INVALID_QUERY_LOCATOR"
    assert len(set(loc.split("-")[0] for loc in locs)) == 3


def test_more_uses_requested_api_version(big_org: Org):
    page = big_org.run("SELECT Id FROM Opportunity", api_version="58.0", batch_size=1000)
    assert page["nextRecordsUrl"].startswith("/services/data/v58.0/query/")
    page2 = big_org.engine.more(_locator(page), "61.0")
    assert page2["nextRecordsUrl"].startswith("/services/data/v61.0/query/")
    assert page2["records"][0]["attributes"]["url"].startswith("/services/data/v61.0/sobjects/Opportunity/")


# ====================================================================== errors
def _shape(soql: str, column: int, message: str, row: int = 1) -> str:
    line = soql.split("\n")[row - 1]
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{message}"


def test_malformed_query_messages(org: Org):
    cases = [
        ("SELECT Id FROM Account WHERE", 29, "unexpected token: <EOF>"),
        ("SELECT FROM Account", 8, "unexpected token: FROM"),
        ("SELECT Id Name FROM Account", 11, "unexpected token: Name"),
        ('SELECT Id FROM Account WHERE Name = "x"', 37, 'unexpected token: "'),
        ("SELECT Id FROM Account WHERE Name == 'x'", 36, "unexpected token: ="),
        ("SELECT Id FROM Account LIMIT 5;", 31, "unexpected token: ;"),
        ("SELECT Id FROM Account LIMIT 1.5", 30, "unexpected token: 1.5"),
        ("SELECT Id, FROM Account", 12, "unexpected token: FROM"),
        ("", 1, "unexpected token: <EOF>"),
        ("group", 1, "unexpected token: group"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:00:00", 44, "unexpected token: 2026-01-01T00:00:00"),
        (
            "SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T25:00:00Z",
            44,
            "unexpected token: 2026-01-01T25:00:00Z",
        ),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 2026-02-30", 46, "unexpected token: 2026-02-30"),
    ]
    for soql, col, msg in cases:
        e = org.error(soql)
        assert (e.error_code, e.status) == ("MALFORMED_QUERY", 400), soql
        assert e.message == _shape(soql, col, msg), soql
        assert e.to_json() == [{"message": e.message, "errorCode": "MALFORMED_QUERY"}]


@pytest.mark.parametrize(
    "soql, token",
    [
        ("SELECT Name FROM Account GROUP BY Name", "GROUP"),
        ("SELECT Industry, COUNT(Id) FROM Account GROUP BY Industry HAVING COUNT(Id) > 1", "GROUP"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "("),
        ("SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", "SELECT"),
        ("SELECT TYPEOF Owner WHEN User THEN Name END FROM Case", "TYPEOF"),
        ("SELECT FIELDS(ALL) FROM Account LIMIT 200", "("),
        ("SELECT Id FROM Account FOR UPDATE", "FOR"),
        ("SELECT Id FROM Account USING SCOPE mine", "USING"),
        ("SELECT Id FROM Account WITH SECURITY_ENFORCED", "WITH"),
        ("SELECT SUM(Amount) FROM Opportunity", "("),
        ("SELECT AVG(Amount) FROM Opportunity", "("),
        ("SELECT Id FROM Account WHERE Industry INCLUDES ('x')", "INCLUDES"),
        ("SELECT Id FROM Account WHERE CALENDAR_YEAR(CreatedDate) = 2026", "("),
        ("SELECT Id FROM Account WHERE CreatedDate = LAST_N_FORTNIGHTS:2", "LAST_N_FORTNIGHTS"),
    ],
)
def test_unsupported_soql_is_rejected(org: Org, soql: str, token: str):
    e = org.error(soql)
    assert e.error_code == "MALFORMED_QUERY" and e.status == 400
    assert e.message.endswith(f"\nunexpected token: {token}")
    col = int(re.search(r"Column:(\d+)", e.message).group(1))
    assert soql[col - 1 : col - 1 + len(token)].upper() == token.upper()


def test_group_and_order_are_objects_after_from_and_keywords_elsewhere(org: Org):
    # Valid SOQL in a real org (Object Reference, "Group" and "Order":
    # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_group.htm);
    # a backup of every object reads both.
    from sf_pipeline.devorg.org import Org as FullOrg
    from sf_pipeline.devorg.soql import compile_soql

    full = FullOrg()  # every standard object of a real org, Group and Order among them
    for soql in (
        "SELECT COUNT() FROM Group WHERE SystemModstamp >= 1970-01-01T00:00:00Z",
        "SELECT Id FROM Order o WHERE o.Id != null ORDER BY Id",
    ):
        assert compile_soql(soql, full.schema, now=full.clock.now(), include_deleted=True) is not None
    assert org.error("SELECT Name FROM Account GROUP BY Name").message.endswith("\nunexpected token: GROUP")


def test_invalid_type(org: Org):
    soql = "SELECT Id FROM Accountx"
    e = org.error(soql)
    assert (e.error_code, e.status) == ("INVALID_TYPE", 400)
    assert e.message == _shape(
        soql,
        16,
        (
            "sObject type 'Accountx' is not supported. If you are attempting to use a custom object, be sure to "
            "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
            "appropriate names."
        ),
    )
    assert org.error("SELECT Id FROM Invoice").error_code == "INVALID_TYPE"


def test_invalid_field(org: Org):
    soql = "SELECT Id, Foo FROM Account"
    e = org.error(soql)
    assert (e.error_code, e.status) == ("INVALID_FIELD", 400)
    assert e.message == _shape(
        soql,
        12,
        (
            "No such column 'Foo' on entity 'Account'. If you are attempting to use a custom field, be sure to "
            "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
            "appropriate names."
        ),
    )
    e = org.error("SELECT Id FROM Opportunity WHERE Account.Nmae = 'x'")
    assert e.message.endswith(
        "No such column 'Nmae' on entity 'Account'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference "
        "your WSDL or the describe call for the appropriate names."
    )
    assert "ERROR at Row:1:Column:34" in e.message
    e = org.error("SELECT Id FROM Opportunity ORDER BY Foo__c")
    assert e.error_code == "INVALID_FIELD" and "No such column 'Foo__c' on entity 'Opportunity'" in e.message
    e = org.error("SELECT Amount__c FROM Account")
    assert e.error_code == "INVALID_FIELD"


def test_invalid_relationship(org: Org):
    soql = "SELECT Id, Acount.Name FROM Opportunity"
    e = org.error(soql)
    assert e.error_code == "INVALID_FIELD"
    assert e.message == _shape(
        soql,
        12,
        (
            "Didn't understand relationship 'Acount' in field path. If you are attempting to use a custom "
            "relationship, be sure to append the '__r' after the custom relationship name. Please reference your "
            "WSDL or the describe call for the appropriate names."
        ),
    )
    # a lookup field is not a relationship name; a custom lookup needs __r
    assert "Didn't understand relationship 'AccountId'" in org.error("SELECT AccountId.Name FROM Opportunity").message
    assert "Didn't understand relationship 'Account__c'" in org.error("SELECT Account__c.Name FROM Invoice__c").message
    assert "Didn't understand relationship 'Name'" in org.error("SELECT Account.Name.Foo FROM Contact").message


def test_multiline_query_error_position(org: Org):
    soql = "SELECT Id,\n       Nmae\nFROM Account"
    e = org.error(soql)
    assert e.message == _shape(
        soql,
        8,
        (
            "No such column 'Nmae' on entity 'Account'. If you are attempting to use a custom field, be sure to "
            "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
            "appropriate names."
        ),
        row=2,
    )
    assert org.names("SELECT\n  Name\nFROM\tAccount\nWHERE Name = 'Acme'") == ["Acme"]


def test_duplicate_field(org: Org):
    e = org.error("SELECT Id, Name, name FROM Account")
    assert (e.error_code, e.message) == ("INVALID_FIELD", "duplicate field selected: Name")
    e = org.error("SELECT Account.Name, account.NAME FROM Contact")
    assert e.message == "duplicate field selected: Account.Name"


def test_keywords_and_names_case_insensitive(org: Org):
    assert org.names("sElEcT nAmE fRoM aCcOuNt wHeRe InDuStRy = 'Banking' OrDeR bY nAmE lImIt 5") == ["Acme"]
    recs = org.records("select account.NAME, ACCOUNT.owner.name from CONTACT")
    assert recs[0]["Account"]["Name"] == "Acme" and recs[0]["Account"]["Owner"]["Name"] == "Grace Hopper"
    assert org.records("select account__R.name from invoice__C where name = 'INV-1'")[0]["Account__r"]["Name"] == "Acme"


# ====================================================================== Bulk API 2.0 CSV
def test_csv_rows_values_and_header(org: Org):
    header, rows = org.engine.iter_csv_rows(
        "SELECT id, name, amount, isWon, createdDate, closeDate, fiscalYear, account.name, account.owner.name, "
        "Description FROM Opportunity ORDER BY Name",
        include_deleted=False,
    )
    assert header == [
        "Id",
        "Name",
        "Amount",
        "IsWon",
        "CreatedDate",
        "CloseDate",
        "FiscalYear",
        "Account.Name",
        "Account.Owner.Name",
        "Description",
    ]
    rows = list(rows)
    assert all(isinstance(v, str) for r in rows for v in r)
    by_name = {r[1]: r for r in rows}
    assert by_name["Bravo deal"] == [
        org.opps["Bravo deal"],
        "Bravo deal",
        "250000.5",
        "true",
        "2026-03-18T15:30:00.000Z",
        day(-1),
        "2026",
        "Acme",
        "Grace Hopper",
        "",
    ]
    assert by_name["Alpha deal"][2:4] == ["1000", "false"]
    assert by_name["charlie deal"][2] == ""
    assert by_name["Delta deal"][7:9] == ["", ""]
    assert [r[1] for r in rows] == [
        "Alpha deal",
        "Bravo deal",
        "charlie deal",
        "Delta deal",
        "Echo deal",
        "Foxtrot_100%",
    ]


def test_csv_rows_custom_object_and_percent(org: Org):
    header, rows = org.engine.iter_csv_rows(
        "SELECT Name, Amount__c, Paid__c, Due_Date__c, Account__r.Name FROM Invoice__c ORDER BY Name",
        include_deleted=False,
    )
    assert header == ["Name", "Amount__c", "Paid__c", "Due_Date__c", "Account__r.Name"]
    assert list(rows) == [["INV-1", "99.99", "true", day(30), "Acme"], ["INV-2", "5", "false", "", ""]]
    _, rows = org.engine.iter_csv_rows(
        "SELECT Probability, ExpectedRevenue, TotalOpportunityQuantity FROM Opportunity WHERE Name = 'Bravo deal'",
        include_deleted=False,
    )
    assert list(rows) == [["100", "250000.5", ""]]
    _, rows = org.engine.iter_csv_rows(
        "SELECT Name, AnnualRevenue, NumberOfEmployees FROM Account WHERE Name IN ('Gamma', 'Acme') ORDER BY Name",
        include_deleted=False,
    )
    assert list(rows) == [["Acme", "", "250"], ["Gamma", "1234", ""]]


def test_csv_rows_query_all_where_limit(org: Org):
    org.store.delete(org.schema.get("Opportunity"), org.opps["Echo deal"], org.user)
    _, rows = org.engine.iter_csv_rows(
        "SELECT Name, IsDeleted FROM Opportunity WHERE Amount > 100 ORDER BY Name", include_deleted=True
    )
    assert list(rows) == [["Alpha deal", "false"], ["Bravo deal", "false"], ["Echo deal", "true"]]
    _, rows = org.engine.iter_csv_rows(
        "SELECT Name FROM Opportunity WHERE Amount > 100 ORDER BY Name", include_deleted=False
    )
    assert list(rows) == [["Alpha deal"], ["Bravo deal"]]
    _, rows = org.engine.iter_csv_rows("SELECT Name FROM Opportunity ORDER BY Name DESC LIMIT 2", include_deleted=False)
    assert list(rows) == [["Foxtrot_100%"], ["Delta deal"]]


def test_csv_rows_are_streamed_in_chunks(big_org: Org, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(query, "CSV_CHUNK", 300)
    result = big_org.engine.csv_rows("SELECT Name, Amount FROM Opportunity ORDER BY Amount DESC", include_deleted=False)
    assert result.total == 2500 and result.header == ["Name", "Amount"]
    it = iter(result)
    first = next(it)
    assert first == ["Opp 02499", "2499"]
    # the store stays usable between chunks (the lock is only held while a chunk is read)
    big_org.insert("Account", dict(Name="Concurrent"))
    rest = list(it)
    assert len(rest) == 2499 and rest[-1] == ["Opp 00000", "0"]


@pytest.mark.parametrize(
    "soql, message",
    [
        ("SELECT COUNT() FROM Account", "Aggregate queries are not supported in Bulk Query"),
        ("SELECT COUNT(Id) FROM Account", "Aggregate queries are not supported in Bulk Query"),
        ("SELECT Id FROM Account OFFSET 5", "OFFSET is not supported in Bulk Query"),
        ("SELECT Id, BillingAddress FROM Account", "Selecting compound data not supported in Bulk Query"),
        ("SELECT Id, Account.ShippingAddress FROM Contact", "Selecting compound data not supported in Bulk Query"),
    ],
)
def test_bulk_rejects(org: Org, soql: str, message: str):
    with pytest.raises(SalesforceError) as info:
        org.engine.iter_csv_rows(soql, include_deleted=False)
    assert (info.value.error_code, info.value.message, info.value.status) == ("API_ERROR", message, 400)


def test_bulk_reports_soql_errors_like_rest(org: Org):
    with pytest.raises(SalesforceError) as info:
        org.engine.iter_csv_rows("SELECT Id, (SELECT Id FROM Contacts) FROM Account", include_deleted=False)
    assert info.value.error_code == "MALFORMED_QUERY"
    with pytest.raises(SalesforceError) as info:
        org.engine.iter_csv_rows("SELECT Nope FROM Account", include_deleted=False)
    assert info.value.error_code == "INVALID_FIELD"


# ====================================================================== compiler details
def test_compiled_query_is_parameterized(org: Org):
    cq = compile_soql(
        "SELECT Id FROM Account WHERE Name = 'Robert\\'); DROP TABLE Account;--'",
        org.schema,
        now=NOW,
        include_deleted=False,
    )
    sql, params = cq.rowid_sql()
    assert "DROP" not in sql and params == ["Robert'); DROP TABLE Account;--"]
    assert org.names("SELECT Name FROM Account WHERE Name = 'Robert\\'); DROP TABLE Account;--'") == []
    assert org.run("SELECT COUNT() FROM Account")["totalSize"] == 4


def test_compiled_query_joins_only_what_filters_need(org: Org):
    cq = compile_soql(
        "SELECT Id, Account.Name FROM Opportunity WHERE Amount > 5", org.schema, now=NOW, include_deleted=False
    )
    assert "JOIN" not in cq.rowid_sql()[0]
    assert "JOIN" in cq.rows_by_rowid_sql(["1"])
    cq = compile_soql(
        "SELECT Id FROM Opportunity WHERE Account.Owner.Name = 'x'", org.schema, now=NOW, include_deleted=True
    )
    sql = cq.rowid_sql()[0]
    assert sql.count("LEFT JOIN") == 2 and "IsDeleted" not in sql


def test_concurrent_queries_and_writes(big_org: Org):
    """The engine is shared by server threads: paging, CSV streaming and writes interleave safely."""
    import threading

    errors: list[BaseException] = []
    tbl = big_org.schema.get("Opportunity")

    def pager() -> None:
        try:
            for _ in range(3):
                page = big_org.engine.run(
                    "SELECT Id, Name, Account.Name FROM Opportunity WHERE Amount >= 0 ORDER BY Name",
                    include_deleted=False,
                    batch_size=500,
                )
                total, n = page["totalSize"], len(page["records"])
                while not page["done"]:
                    page = big_org.engine.more(_locator(page), "59.0")
                    n += len(page["records"])
                assert n == total >= 2500
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def streamer() -> None:
        try:
            for _ in range(3):
                result = big_org.engine.csv_rows("SELECT Id, Name FROM Opportunity", include_deleted=False)
                assert sum(1 for _ in result) == result.total >= 2500
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(50):
                big_org.store.insert(
                    tbl,
                    dict(Name=f"New {i}", StageName="Prospecting", CloseDate="2026-01-01", Amount=1),
                    user_id=big_org.user,
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=t) for t in (pager, pager, streamer, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert big_org.run("SELECT COUNT() FROM Opportunity")["totalSize"] == 2550


def test_bare_and_not_over_rest_is_malformed_query(sf):
    """The same refusal through the REST query resource, as a client sees it."""
    from simple_salesforce.exceptions import SalesforceMalformedRequest

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query("SELECT Id FROM Account WHERE Name != null AND NOT (Name = 'x')")
    assert refused.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    assert refused.value.content[0]["message"].endswith("unexpected token: NOT")
    assert sf.query("SELECT Id FROM Account WHERE Name != null AND (NOT Name = 'x')")["totalSize"] == 0
