"""devorg: custom objects declared in an extra YAML, filled by `generate_custom_records` (in-process and served)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from sf_pipeline.devorg import ids
from sf_pipeline.devorg.clock import format_datetime
from sf_pipeline.devorg.generator import generate_custom_records, generate_org
from sf_pipeline.devorg.org import Org
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.devorg.store import q
from sf_pipeline_tests.devorg_fixtures import connect

NOW = datetime(2025, 3, 14, 15, 30, 12, 345000, tzinfo=UTC)
NOW_TEXT = format_datetime(NOW)
WINDOW_START = format_datetime(NOW - timedelta(days=365))
EXTRA = {
    "Territory__c": {
        "label": "Territory",
        "keyPrefix": "a2A",
        "fields": [
            {"name": "Territory_Code__c", "type": "string", "length": 20, "externalId": True},
            {"name": "Manager__c", "type": "reference", "referenceTo": "User", "relationshipName": "Manager__r"},
            {"name": "Region__c", "type": "picklist", "values": ["AMER", "EMEA", "APAC"], "restricted": True},
            {"name": "Quota__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Is_Active__c", "type": "boolean"},
        ],
    },
    "Subscription__c": {
        "label": "Subscription",
        "keyPrefix": "a2B",
        "fields": [
            {
                "name": "Account__c",
                "type": "reference",
                "referenceTo": "Account",
                "relationshipName": "Account__r",
                "required": True,
            },
            {
                "name": "Opportunity__c",
                "type": "reference",
                "referenceTo": "Opportunity",
                "relationshipName": "Opportunity__r",
            },
            {"name": "Contract_Number__c", "type": "string", "length": 30, "externalId": True},
            {"name": "Plan__c", "type": "picklist", "values": ["Starter", "Professional", "Enterprise"]},
            {"name": "Channels__c", "type": "multipicklist", "values": ["Web", "Phone", "Partner"]},
            {"name": "Seats__c", "type": "int"},
            {"name": "MRR__c", "type": "currency", "precision": 12, "scale": 2},
            {"name": "Discount__c", "type": "percent", "precision": 5, "scale": 2},
            {"name": "Weight__c", "type": "double", "precision": 8, "scale": 3},
            {"name": "Start_Date__c", "type": "date"},
            {"name": "End_Date__c", "type": "date"},
            {"name": "Activated_At__c", "type": "datetime"},
            {"name": "Auto_Renew__c", "type": "boolean"},
            {"name": "Billing_Email__c", "type": "email"},
            {"name": "Phone__c", "type": "phone"},
            {"name": "Portal__c", "type": "url"},
            {"name": "Tracking_Number__c", "type": "string", "length": 12},
            {"name": "Notes__c", "type": "textarea", "length": 300},
        ],
    },
    "Usage_Event__c": {
        "label": "Usage Event",
        "keyPrefix": "a2C",
        "fields": [
            {
                "name": "Subscription__c",
                "type": "reference",
                "referenceTo": "Subscription__c",
                "relationshipName": "Subscription__r",
                "required": True,
            },
            {"name": "Account__c", "type": "reference", "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Contact__c", "type": "reference", "referenceTo": "Contact", "relationshipName": "Contact__r"},
            {"name": "Quantity__c", "type": "double", "precision": 14, "scale": 2},
        ],
    },
    "Payment__c": {
        "label": "Payment",
        "keyPrefix": "a2D",
        "fields": [
            {
                "name": "Invoice__c",
                "type": "reference",
                "referenceTo": "Invoice__c",
                "relationshipName": "Invoice__r",
                "required": True,
            },
            {"name": "Account__c", "type": "reference", "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Amount__c", "type": "currency", "precision": 16, "scale": 2},
        ],
    },
}
COUNTS = {"Territory__c": 40, "Subscription__c": 600, "Usage_Event__c": 1500, "Payment__c": 300}


@pytest.fixture(scope="module")
def extra_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("extra") / "extra_objects.yaml"
    path.write_text(yaml.safe_dump({"objects": EXTRA}, sort_keys=False))
    return path


def make_org(extra_yaml: Path, seed: int = 42, data_dir: Path | None = None) -> Org:
    org = Org(data_dir, custom_objects=extra_yaml)
    org.set_clock(NOW, freeze=True)
    generate_org(org, 1000, seed)
    assert generate_custom_records(org, COUNTS, seed) == COUNTS
    return org


def rows(org: Org, obj: str) -> list[dict]:
    cur = org.store.conn.execute(f"SELECT * FROM {q(obj)} ORDER BY Id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur]


@pytest.fixture(scope="module")
def org(extra_yaml: Path) -> Org:
    """A generated org with the extra objects, used read-only."""
    return make_org(extra_yaml)


def test_extra_objects_get_their_records_with_ids_in_creation_order(org):
    for name, n in COUNTS.items():
        obj = org.schema.get(name)
        recs = org.store.conn.execute(f"SELECT Id, CreatedDate FROM {q(name)} ORDER BY rowid").fetchall()
        assert [r[0] for r in recs] == [ids.make_id(obj.key_prefix, k) for k in range(1, n + 1)], name
        created = [r[1] for r in recs]
        assert created == sorted(created), f"{name}: ids must ascend with CreatedDate"
    assert org.store.get_meta("generator_custom")["counts"] == COUNTS


def test_lookups_point_at_older_records_and_follow_the_parent(org):
    created = {}
    for obj in org.schema.objects.values():
        if not obj.has_field("CreatedDate"):
            continue  # objects without timestamps (e.g. DashboardComponent) hold no generated records
        for rid, cd in org.store.conn.execute(f"SELECT Id, CreatedDate FROM {q(obj.name)}"):
            created[rid] = (obj.name, cd)
    filled = Counter()
    for name in COUNTS:
        obj = org.schema.get(name)
        for row in rows(org, name):
            for f in obj.fields:
                if f.type != "reference" or row[f.name] is None:
                    continue
                target, cd = created[row[f.name]]
                assert target in f.reference_to, (name, f.name, target)
                if target != "User":
                    assert cd <= row["CreatedDate"], f"{name}.{f.name}: parent younger than child"
                filled[f"{name}.{f.name}"] += 1
    for required in ("Subscription__c.Account__c", "Usage_Event__c.Subscription__c", "Payment__c.Invoice__c"):
        assert filled[required] == COUNTS[required.split(".")[0]], required
    for optional in ("Territory__c.Manager__c", "Subscription__c.Opportunity__c", "Usage_Event__c.Contact__c"):
        assert 0.3 * COUNTS[optional.split(".")[0]] < filled[optional] < COUNTS[optional.split(".")[0]], optional
    # a second lookup to the parent's own lookup target takes the parent's value
    sub_account = {r["Id"]: r["Account__c"] for r in rows(org, "Subscription__c")}
    for r in rows(org, "Usage_Event__c"):
        assert r["Account__c"] == sub_account[r["Subscription__c"]]
    inv_account = {r["Id"]: r["Account__c"] for r in rows(org, "Invoice__c")}
    for r in rows(org, "Payment__c"):
        assert r["Account__c"] == inv_account[r["Invoice__c"]]
    # children spread over many parents
    assert len({r["Subscription__c"] for r in rows(org, "Usage_Event__c")}) > 200


def test_values_fit_their_fields(org):
    for name in COUNTS:
        obj = org.schema.get(name)
        recs = rows(org, name)
        for f in obj.fields:
            if not f.custom:
                continue
            values = [r[f.name] for r in recs]
            present = [v for v in values if v is not None]
            assert present, f"{name}.{f.name} is never filled"
            if f.nillable and f.type not in ("boolean",) and not f.external_id and f.type != "reference":
                assert len(present) < len(values), f"{name}.{f.name} is never null"
            if f.type in ("string", "textarea", "picklist", "multipicklist", "email", "phone", "url"):
                assert all(isinstance(v, str) and 0 < len(v) <= f.length for v in present), f.name
            if f.type == "picklist":
                assert set(present) <= set(f.picklist) and len(set(present)) > 1, f.name
            if f.type == "multipicklist":
                assert all(set(v.split(";")) <= set(f.picklist) for v in present), f.name
            if f.type == "email":
                assert all(re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v) for v in present)
            if f.type == "url":
                assert all(v.startswith("https://www.") for v in present)
            if f.type in ("currency", "double", "percent"):
                assert all(isinstance(v, float) and 0 <= v < 10 ** (f.precision - f.scale) for v in present), f.name
                assert all(round(v, f.scale) == v for v in present), f.name
                assert len(set(present)) > len(present) // 2, f.name
            if f.type == "percent":
                assert all(v <= 100 for v in present)
            if f.type == "int":
                assert all(isinstance(v, int) for v in present)
            if f.type == "boolean":
                assert set(values) == {0, 1}, f.name
            if f.type == "date":
                assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) for v in present)
            if f.type == "datetime":
                assert all(WINDOW_START <= v < NOW_TEXT for v in present)
            if f.external_id:
                assert len(set(values)) == len(values), f"{name}.{f.name} must be unique"
    subs = rows(org, "Subscription__c")
    assert all(r["Name"] == r["Contract_Number__c"] for r in subs)  # an external id names the record
    assert all(r["End_Date__c"] is None or r["End_Date__c"] > r["CreatedDate"][:10] for r in subs)  # lies ahead
    assert all(re.fullmatch(r"[A-Z]{2}-\d{6}", r["Tracking_Number__c"]) for r in subs if r["Tracking_Number__c"])
    events = rows(org, "Usage_Event__c")
    assert [r["Name"] for r in events[:2]] == ["UE-0000001", "UE-0000002"]


def test_system_fields_and_dates(org):
    users = {c.user_id for c in org.credentials.values()}
    for name in COUNTS:
        recs = rows(org, name)
        for r in recs:
            assert r["IsDeleted"] == 0 and r["_deleted_root"] is None
            assert WINDOW_START <= r["CreatedDate"] <= r["LastModifiedDate"] < NOW_TEXT, (name, r["Id"])
            assert r["SystemModstamp"] == r["LastModifiedDate"]
            assert {r["OwnerId"], r["CreatedById"], r["LastModifiedById"]} <= users
            if r["LastModifiedDate"] == r["CreatedDate"]:
                assert r["LastModifiedById"] == r["CreatedById"]
        modified = sum(r["LastModifiedDate"] != r["CreatedDate"] for r in recs)
        assert 0.3 * len(recs) < modified < 0.9 * len(recs), name
        assert len({r["CreatedDate"][:10] for r in recs}) > min(len(recs) // 4, 100), f"{name}: dates not spread"


def test_same_seed_gives_the_same_records_and_another_seed_others(extra_yaml, org):
    again, other = make_org(extra_yaml, seed=42), make_org(extra_yaml, seed=43)
    for name in COUNTS:
        assert rows(again, name) == rows(org, name), name
        mine, theirs = rows(org, name), rows(other, name)
        assert [r["Id"] for r in mine] == [r["Id"] for r in theirs]
        assert mine != theirs, name


class _Rollback(Exception):
    pass


def test_generated_rows_equal_what_the_validated_write_path_produces(org):
    """Replay a sample through store.insert (at CreatedDate, as CreatedById) and store.update (at
    LastModifiedDate, as LastModifiedById): validation passes and the stored row is the generated one."""
    store = org.store
    frozen = org.clock.frozen_at
    replayed = Counter()
    try:
        for name in COUNTS:
            obj = org.schema.get(name)
            recs = rows(org, name)
            for row in recs[:: max(1, len(recs) // 25)]:
                values = {
                    f.name: row[f.name]
                    for f in obj.fields
                    if f.stored and f.createable and row[f.name] is not None and f.type != "boolean"
                }
                values.update(
                    {f.name: True for f in obj.fields if f.type == "boolean" and f.createable and row[f.name]}
                )
                for f in obj.fields:
                    if f.external_id and f.name in values:
                        values[f.name] += "-replay"  # unique: the generated record keeps its value
                try:
                    with store.transaction():
                        org.set_clock(
                            datetime.fromisoformat(row["CreatedDate"].replace("+0000", "+00:00")), freeze=True
                        )
                        rid = store.insert(obj, values, row["CreatedById"])
                        org.set_clock(
                            datetime.fromisoformat(row["LastModifiedDate"].replace("+0000", "+00:00")), freeze=True
                        )
                        store.update(obj, rid, {}, row["LastModifiedById"])
                        again = store._row(obj, rid)
                        raise _Rollback
                except _Rollback:
                    pass
                for f in obj.fields:
                    if f.external_id and again[f.name]:
                        again[f.name] = again[f.name].removesuffix("-replay")
                        if again["Name"].endswith("-replay"):
                            again["Name"] = again["Name"].removesuffix("-replay")
                expected = {k: (type(v), v) for k, v in row.items() if k != "Id"}
                got = {k: (type(v), v) for k, v in again.items() if k != "Id"}
                assert got == expected, f"{name} {row['Id']}: " + str(
                    {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
                )
                replayed[name] += 1
    finally:
        org.set_clock(frozen, freeze=True)
    assert all(replayed[n] >= 20 for n in COUNTS), replayed


def test_children_need_their_parents_and_standard_objects_are_refused(extra_yaml):
    org = Org(custom_objects=extra_yaml)
    org.set_clock(NOW, freeze=True)
    with pytest.raises(ValueError, match="no Account records"):
        generate_custom_records(org, {"Subscription__c": 10})
    with pytest.raises(ValueError, match="not a custom object"):
        generate_custom_records(org, {"Opportunity": 10})
    assert generate_custom_records(org, {"Territory__c": 5}) == {"Territory__c": 5}  # no parent needed


def test_a_served_org_with_the_same_yaml_answers_queries_on_the_extra_objects(tmp_path, extra_yaml):
    org = make_org(extra_yaml, data_dir=tmp_path / "org")
    org.close()
    with DevOrgServer(tmp_path / "org", custom_objects=extra_yaml) as server:
        sf = connect(server)
        describe = sf.Usage_Event__c.describe()
        assert describe["keyPrefix"] == "a2C"
        assert {f["name"] for f in describe["fields"]} >= {"Subscription__c", "Account__c", "Quantity__c"}
        assert sf.query("SELECT COUNT() FROM Usage_Event__c")["totalSize"] == COUNTS["Usage_Event__c"]
        res = sf.query("SELECT Id, Amount__c, Invoice__r.Invoice_Number__c FROM Payment__c ORDER BY Id LIMIT 3")
        assert [r["Invoice__r"]["Invoice_Number__c"].startswith("INV-") for r in res["records"]] == [True] * 3
        created = sf.Territory__c.create({"Name": "After", "Region__c": "EMEA"})
        assert created["id"] == ids.make_id("a2A", COUNTS["Territory__c"] + 1)  # the counters went on
