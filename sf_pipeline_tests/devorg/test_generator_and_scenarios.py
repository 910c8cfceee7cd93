"""devorg's bulk generator and named scenarios, in-process (no HTTP)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from sf_pipeline.devorg import ids
from sf_pipeline.devorg.clock import format_datetime
from sf_pipeline.devorg.generator import generate_org, id_range, planned_counts
from sf_pipeline.devorg.org import Org
from sf_pipeline.devorg.scenarios import BATCH, SCENARIOS, ScenarioResult, business_day_plan, run_scenario
from sf_pipeline.devorg.store import STAGES, q

NOW = datetime(2025, 3, 14, 15, 30, 12, 345000, tzinfo=UTC)
NOW_TEXT = format_datetime(NOW)
WINDOW_START = format_datetime(NOW - timedelta(days=365))
MONDAY_9AM = datetime(2025, 3, 17, 9, 0, tzinfo=UTC)
GENERATED = ("Account", "Contact", "Opportunity", "Lead", "Case", "OpportunityContactRole", "Invoice__c")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SYSTEM = ("LastModifiedDate", "LastModifiedById", "SystemModstamp")


def make_org(size: int, seed: int = 42, now: datetime = NOW) -> Org:
    org = Org()
    org.set_clock(now, freeze=True)
    counts = generate_org(org, size, seed)
    assert counts == planned_counts(size)
    return org


def rows(org: Org, obj: str, where: str = "1") -> list[dict]:
    cur = org.store.conn.execute(f"SELECT * FROM {q(obj)} WHERE {where} ORDER BY Id")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur]


def snapshot(org: Org) -> dict[str, dict[str, dict]]:
    # Field history rows are the platform's record of the changes, not changes of their own (test_wide_org.py).
    return {
        o.name: {r["Id"]: r for r in rows(org, o.name)}
        for o in org.schema.objects.values()
        if o.flags.get("associateEntityType") != "History"
    }


def diff(before: dict, after: dict) -> dict[str, set[str]]:
    """object -> ids whose row is new or differs."""
    out: dict[str, set[str]] = {}
    for obj, recs in after.items():
        changed = {rid for rid, row in recs.items() if before[obj].get(rid) != row}
        if changed:
            out[obj] = changed
    return out


def user_ids(org: Org) -> dict[str, str]:
    return {c.key: c.user_id for c in org.credentials.values()}


@pytest.fixture(scope="module")
def org2000() -> Org:
    """A generated org used read-only by the generator tests."""
    return make_org(2000)


# ----------------------------------------------------------------- generator
@pytest.mark.parametrize("size", [0, 7, 1234, 2000])
def test_counts_follow_the_ratios(size):
    org = make_org(size)
    accounts = max(1, size // 10)
    expected = {
        "Account": accounts,
        "Contact": 2 * accounts,
        "Opportunity": size,
        "Lead": size // 20,
        "Case": size // 5,
        "OpportunityContactRole": size // 10,
        "Invoice__c": size // 5,
    }
    assert planned_counts(size) == expected
    for obj, n in expected.items():
        assert org.store.count(org.schema.get(obj), include_deleted=True) == n, obj
    assert (org.store.get_meta("case_number") or 0) == expected["Case"]


def test_id_range_matches_make_id_across_block_boundaries():
    for first in (1, 3800, 62**5 - 3, 62**5 * 7 + 3844 * 61 - 2, 62**6 + 17):
        assert list(id_range("006", first, 400)) == [ids.make_id("006", n) for n in range(first, first + 400)]
    assert list(id_range("a0B", 1, 5)) == [ids.make_id("a0B", n) for n in range(1, 6)]


def test_same_seed_gives_the_same_org_and_another_seed_another():
    a, b, c = make_org(600, seed=5), make_org(600, seed=5), make_org(600, seed=6)
    sa, sb, sc = snapshot(a), snapshot(b), snapshot(c)
    for obj in GENERATED:
        assert sa[obj] == sb[obj], obj
        assert len(sa[obj]) and sa[obj].keys() == sc[obj].keys(), obj  # ids come from the counters
        assert sa[obj] != sc[obj], obj
    names_a = sorted(r["Name"] for r in sa["Opportunity"].values())
    names_c = sorted(r["Name"] for r in sc["Opportunity"].values())
    assert names_a != names_c
    amounts = [(sa["Opportunity"][i]["Amount"], sc["Opportunity"][i]["Amount"]) for i in sa["Opportunity"]]
    assert sum(x != y for x, y in amounts) > 500


def test_ids_are_the_reserved_counters_in_creation_order(org2000):
    for obj in GENERATED:
        prefix = org2000.schema.get(obj).key_prefix
        recs = org2000.store.conn.execute(f"SELECT Id, CreatedDate FROM {q(obj)} ORDER BY rowid").fetchall()
        assert [r[0] for r in recs] == [ids.make_id(prefix, n) for n in range(1, len(recs) + 1)], obj
        created = [r[1] for r in recs]
        assert created == sorted(created), f"{obj}: ids must ascend with CreatedDate"
    # the store's counters moved on: the next insert gets the next id
    acc = org2000.schema.get("Account")
    assert org2000.store._counters[acc.key_prefix] == 200


def test_every_reference_points_at_an_existing_older_record(org2000):
    store, schema = org2000.store, org2000.schema
    every_id = {}
    for obj in schema.objects.values():
        if not obj.has_field("CreatedDate"):
            continue  # objects without timestamps (e.g. DashboardComponent) hold no generated records
        for r in store.conn.execute(f"SELECT Id, CreatedDate FROM {q(obj.name)}"):
            every_id[r[0]] = (obj.name, r[1])
    checked = Counter()
    for obj_name in GENERATED:
        obj = schema.get(obj_name)
        refs = [f for f in obj.fields if f.type == "reference"]
        for row in rows(org2000, obj_name):
            for f in refs:
                value = row[f.name]
                if value is None:
                    continue
                assert value in every_id, f"{obj_name}.{f.name} -> {value} does not exist"
                target, created = every_id[value]
                assert target in f.reference_to, f"{obj_name}.{f.name} -> {target}"
                if target != "User":
                    assert created <= row["CreatedDate"], f"{obj_name}.{f.name}: parent younger than child"
                checked[f"{obj_name}.{f.name}"] += 1
    for ref in (
        "Contact.AccountId",
        "Contact.ReportsToId",
        "Opportunity.AccountId",
        "Case.AccountId",
        "Case.ContactId",
        "Case.ParentId",
        "Account.ParentId",
        "OpportunityContactRole.OpportunityId",
        "OpportunityContactRole.ContactId",
        "Invoice__c.Account__c",
        "Invoice__c.Opportunity__c",
    ):
        assert checked[ref] > 0, f"no {ref} generated"
    # contacts of a case / contact role / invoice's opportunity belong to the same account
    acc_of = {r["Id"]: r["AccountId"] for r in rows(org2000, "Contact")}
    acc_of.update({r["Id"]: r["AccountId"] for r in rows(org2000, "Opportunity")})
    for r in rows(org2000, "Case", "ContactId IS NOT NULL"):
        assert acc_of[r["ContactId"]] == r["AccountId"]
    for r in rows(org2000, "OpportunityContactRole"):
        assert acc_of[r["ContactId"]] == acc_of[r["OpportunityId"]]
    for r in rows(org2000, "Invoice__c", "Opportunity__c IS NOT NULL"):
        assert acc_of[r["Opportunity__c"]] == r["Account__c"]
    # the account hierarchy: a few percent, no cycles
    parents = {r["Id"]: r["ParentId"] for r in rows(org2000, "Account")}
    with_parent = sum(p is not None for p in parents.values())
    assert 1 <= with_parent <= 0.1 * len(parents)
    for start in parents:
        seen, node = set(), start
        while node is not None:
            assert node not in seen
            seen.add(node)
            node = parents[node]


def test_system_fields_and_dates(org2000):
    users = user_ids(org2000)
    uids = set(users.values())
    for obj in GENERATED:
        recs = rows(org2000, obj)
        for r in recs:
            assert r["IsDeleted"] == 0 and r["_deleted_root"] is None
            assert WINDOW_START <= r["CreatedDate"] <= r["LastModifiedDate"] < NOW_TEXT, (obj, r["Id"])
            assert r["SystemModstamp"] == r["LastModifiedDate"]
            assert r["CreatedById"] in uids and r["LastModifiedById"] in uids
            if r["LastModifiedDate"] == r["CreatedDate"]:
                assert r["LastModifiedById"] == r["CreatedById"]
        created = [r["CreatedDate"] for r in recs]
        modified = sum(r["LastModifiedDate"] != r["CreatedDate"] for r in recs)
        assert 0.05 * len(recs) < modified < len(recs), obj
        assert len({c[:10] for c in created}) > min(len(recs) // 4, 150), f"{obj}: dates not spread out"
        assert min(created) < format_datetime(NOW - timedelta(days=200)), obj
    # creations concentrate on working hours, mostly weekdays
    opp = rows(org2000, "Opportunity")
    hours = Counter(int(r["CreatedDate"][11:13]) for r in opp)
    assert sum(hours[h] for h in range(8, 18)) > 0.75 * len(opp)
    # owners are spread over the sales users
    sales = {users["sales1"], users["sales2"], users["sales3"]}
    owners = Counter(r["OwnerId"] for r in opp)
    assert set(owners) == sales and min(owners.values()) > 0.1 * len(opp)
    assert {r["OwnerId"] for r in rows(org2000, "Case")} >= {users["support"]}
    assert len({r["LastModifiedById"] for r in opp}) >= 4


def test_derived_fields_are_consistent(org2000):
    opp = rows(org2000, "Opportunity")
    stages = Counter(r["StageName"] for r in opp)
    assert len(stages) == len(STAGES)
    assert 0.25 < (stages["Closed Won"] + stages["Closed Lost"]) / len(opp) < 0.8
    for r in opp:
        prob, forecast, closed, won = STAGES[r["StageName"]]
        assert (r["Probability"], r["ForecastCategory"], r["ForecastCategoryName"]) == (prob, forecast, forecast)
        assert (r["IsClosed"], r["IsWon"]) == (int(closed), int(won))
        expected = None if r["Amount"] is None else round(r["Amount"] * prob / 100, 2)
        assert r["ExpectedRevenue"] == expected
        y, m = int(r["CloseDate"][:4]), int(r["CloseDate"][5:7])
        assert (r["FiscalYear"], r["FiscalQuarter"], r["Fiscal"]) == (y, (m - 1) // 3 + 1, f"{y} {(m - 1) // 3 + 1}")
        assert r["Name"].startswith(" - ".join(r["Name"].split(" - ")[:-1])) and " - " in r["Name"]
        if closed:
            assert r["CloseDate"] <= r["LastModifiedDate"][:10]
        assert r["CloseDate"] >= r["CreatedDate"][:10]
    for obj in ("Contact", "Lead"):
        for r in rows(org2000, obj):
            assert r["Name"] == f"{r['FirstName']} {r['LastName']}"
            assert r["Email"] is None or EMAIL.match(r["Email"])
    for r in rows(org2000, "Account"):
        assert r["Name"] and r["OwnerId"] and r["Phone"]
    cases = rows(org2000, "Case")
    assert [r["CaseNumber"] for r in sorted(cases, key=lambda r: r["Id"])] == [f"{n:08d}" for n in range(1, 401)]
    for r in cases:
        assert r["IsClosed"] == int(r["Status"] == "Closed")
        assert r["ClosedDate"] == (r["LastModifiedDate"] if r["Status"] == "Closed" else None)
        assert r["IsEscalated"] in (0, 1)
    invoices = rows(org2000, "Invoice__c")
    statuses = Counter(r["Status__c"] for r in invoices)
    assert 0.7 * len(invoices) < len(invoices) - statuses[None] < len(invoices)
    assert len(statuses) >= 5
    for r in invoices:
        assert r["Paid__c"] == int(r["Status__c"] == "Paid") and r["Name"] == r["Invoice_Number__c"]


def test_case_numbers_continue_after_generation():
    org = make_org(300)
    case = org.schema.get("Case")
    rid = org.store.insert(case, {"Subject": "after generation"}, org.user("support").user_id)
    assert org.store.get(case, rid)["CaseNumber"] == "00000061"


def test_file_backed_org_persists_counters_and_lookup_indexes(tmp_path):
    org = Org(tmp_path)
    org.set_clock(NOW, freeze=True)
    assert generate_org(org, 500, seed=3)["Case"] == 100
    plan = org.store.conn.execute(
        'EXPLAIN QUERY PLAN SELECT Id FROM "Case" WHERE IsDeleted = 0 AND ParentId = ?', ("x",)
    ).fetchall()
    assert "case_parentid" in str(plan)
    org.close()
    again = Org(tmp_path)
    account, case = again.schema.get("Account"), again.schema.get("Case")
    assert again.store.count(account) == 50 and again.store.count(case) == 100
    admin = again.user("admin").user_id
    assert again.store.insert(account, {"Name": "After"}, admin) == ids.make_id(account.key_prefix, 51)
    rid = again.store.insert(case, {"Subject": "After"}, admin)
    assert again.store.get(case, rid)["CaseNumber"] == "00000101"
    again.close()


class _Rollback(Exception):
    pass


def _api_values(obj, row: dict, skip: set[str]) -> dict:
    """The createable values of a stored row, in the API form a client would send."""
    out = {}
    for f in obj.fields:
        if not f.stored or not f.createable or f.name in skip or row[f.name] is None:
            continue
        value = row[f.name]
        if f.type == "boolean":
            if not value:
                continue  # left to the platform's default
            value = True
        out[f.name] = value
    return out


def test_generated_rows_equal_what_the_validated_write_path_produces():
    """Replay a sample of each object through store.insert (at CreatedDate, as CreatedById) and
    store.update (at LastModifiedDate, as LastModifiedById): the result must equal the generated row."""
    org = make_org(1500, seed=11)
    store, schema = org.store, org.schema
    derived_but_createable = {"Opportunity": {"Probability", "ForecastCategoryName"}}
    replayed = Counter()
    for obj_name in GENERATED:
        obj = schema.get(obj_name)
        recs = rows(org, obj_name)
        sample = recs[:: max(1, len(recs) // 60)] + recs[-3:]
        for row in sample:
            values = _api_values(obj, row, derived_but_createable.get(obj_name, set()))
            update: dict = {}
            if obj_name == "Case" and row["Status"] == "Closed":
                values["Status"], update = "New", {"Status": "Closed"}  # closed later, at LastModifiedDate
            try:
                with store.transaction():
                    org.set_clock(datetime.fromisoformat(row["CreatedDate"].replace("+0000", "+00:00")), freeze=True)
                    rid = store.insert(obj, values, row["CreatedById"])
                    org.set_clock(
                        datetime.fromisoformat(row["LastModifiedDate"].replace("+0000", "+00:00")), freeze=True
                    )
                    store.update(obj, rid, update, row["LastModifiedById"])
                    again = store._row(obj, rid)
                    raise _Rollback
            except _Rollback:
                pass
            expected = {k: (type(v), v) for k, v in row.items() if k not in ("Id", "CaseNumber")}
            got = {k: (type(v), v) for k, v in again.items() if k not in ("Id", "CaseNumber")}
            assert got == expected, f"{obj_name} {row['Id']}: " + str(
                {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
            )
            replayed[obj_name] += 1
    assert all(replayed[o] >= 20 for o in GENERATED), replayed


# ----------------------------------------------------------------- damage scenarios
def _check_damage(org, before, result, obj_name, user_key, fields_changed, deleted=False, side_effects=()):
    """Exactly result.changed was modified, by the user, in batches one second apart; nothing else."""
    users = user_ids(org)
    after = snapshot(org)
    assert diff(before, after) == {obj_name: set(result.changed[obj_name])}
    assert result.user_id == users[user_key]
    n = len(result.changed[obj_name]) - len(side_effects)
    batches = math.ceil(n / BATCH)
    stamps = Counter()
    side_stamps = set()
    for rid in result.changed[obj_name]:
        old, new = before[obj_name][rid], after[obj_name][rid]
        assert new["LastModifiedById"] == users[user_key]
        assert new["LastModifiedDate"] == new["SystemModstamp"]
        if rid in side_effects:
            side_stamps.add(new["SystemModstamp"])
        else:
            stamps[new["SystemModstamp"]] += 1
        changed_cols = {k for k in new if new[k] != old[k]}
        expect = set(fields_changed) | set(SYSTEM) | ({"IsDeleted", "_deleted_root"} if deleted else set())
        assert changed_cols <= expect and changed_cols >= {"LastModifiedDate", "SystemModstamp"}, changed_cols
    started = format_datetime(result.started_at)
    assert sorted(stamps) == [format_datetime(result.started_at + timedelta(seconds=s)) for s in range(batches)]
    assert min(stamps) == started and result.finished_at == result.started_at + timedelta(seconds=batches)
    assert max(stamps.values()) == min(n, BATCH) and side_stamps <= set(stamps)
    assert org.clock.frozen_at == result.finished_at  # frozen clock stays frozen, after the damage


def test_orphan_opportunities():
    org = make_org(1000)
    conn = org.store.conn
    opp = org.schema.get("Opportunity")
    org.store.update(opp, rows(org, "Opportunity")[5]["Id"], {"AccountId": None}, org.user("sales1").user_id)
    doomed = {r[0] for r in conn.execute('SELECT Id FROM "Opportunity" WHERE AccountId IS NOT NULL')}
    assert len(doomed) == 999
    before = snapshot(org)
    result = run_scenario(org, "orphan-opportunities", at=MONDAY_9AM)
    assert set(result.changed["Opportunity"]) == doomed and len(result.changed["Opportunity"]) == 999
    assert result.started_at == MONDAY_9AM
    _check_damage(org, before, result, "Opportunity", "integration", {"AccountId"})
    assert conn.execute('SELECT count(*) FROM "Opportunity" WHERE AccountId IS NOT NULL').fetchone()[0] == 0
    assert result.details["batches"] == 5
    json.dumps(result.to_json())


def test_mass_delete_is_deterministic_and_clears_child_lookups():
    org = make_org(2000)
    before = snapshot(org)
    live = [rid for rid, r in before["Case"].items() if not r["IsDeleted"]]
    result = run_scenario(org, "mass-delete", at=MONDAY_9AM)
    after = snapshot(org)["Case"]
    deleted = {rid for rid, r in after.items() if r["IsDeleted"]}
    assert len(deleted) == round(0.9 * len(live)) == 360
    parents = {rid: r["ParentId"] for rid, r in before["Case"].items()}
    orphaned = {rid for rid, p in parents.items() if p in deleted and rid not in deleted}
    assert set(result.changed["Case"]) == deleted | orphaned
    assert set(result.details["lookups_cleared"]["Case.ParentId"]) == orphaned
    assert orphaned, "the generator makes a few child cases: some must lose their parent"
    for rid in deleted:
        assert after[rid]["_deleted_root"] == rid
    for rid in orphaned:
        assert after[rid]["ParentId"] is None and not after[rid]["IsDeleted"]
    _check_damage(org, before, result, "Case", "sales3", {"ParentId"}, deleted=True, side_effects=orphaned)
    # deleted cases stay in the recycle bin: queryAll sees them, and they can be undeleted
    case = org.schema.get("Case")
    assert org.store.count(case) == 40 and org.store.count(case, include_deleted=True) == 400
    # the choice depends on the seed only
    other = make_org(2000)
    assert run_scenario(other, "mass-delete", at=MONDAY_9AM).changed == result.changed
    third = make_org(2000)
    assert set(run_scenario(third, "mass-delete", at=MONDAY_9AM, seed=8).changed["Case"]) != set(result.changed["Case"])


def test_account_cleanup_deletes_accounts_with_their_cascade_and_clears_the_invoices_lookups():
    org = make_org(2000)
    before = snapshot(org)
    result = run_scenario(org, "account-cleanup", at=MONDAY_9AM)
    after = snapshot(org)
    sales3 = user_ids(org)["sales3"]
    gone = set(result.changed["Account"])
    assert gone and result.details["deleted"]["Account"] == len(gone) == round(0.3 * result.details["eligible"])
    cases = before["Case"].values()
    for rid in gone:
        assert after["Account"][rid]["IsDeleted"] and after["Account"][rid]["_deleted_root"] == rid
        assert not any(c["AccountId"] == rid for c in cases)  # an Account with Cases cannot be deleted
    for obj, field in (("Contact", "AccountId"), ("Opportunity", "AccountId")):
        went = {i for i, r in before[obj].items() if r[field] in gone and not r["IsDeleted"]}
        assert went and set(result.changed[obj]) == went
        assert all(after[obj][i]["IsDeleted"] and after[obj][i]["_deleted_root"] in gone for i in went)
    cleared = set(result.details["lookups_cleared"]["Invoice__c.Account__c"])
    assert cleared == {i for i, r in before["Invoice__c"].items() if r["Account__c"] in gone}
    stamp = after["Account"][min(gone)]["SystemModstamp"]
    for rid in cleared:  # cleared, live, and stamped like the deletion of its account (store._delete_one)
        row = after["Invoice__c"][rid]
        assert row["Account__c"] is None and not row["IsDeleted"] and row["LastModifiedById"] == sales3
        deleted_with = after["Account"][before["Invoice__c"][rid]["Account__c"]]
        assert row["SystemModstamp"] == deleted_with["SystemModstamp"]
    assert stamp.startswith("2025-03-17T09:00")
    json.dumps(result.to_json())


def test_owner_takeover_with_another_user_and_fraction():
    org = make_org(2000)
    users = user_ids(org)
    before = snapshot(org)
    not_mine = [rid for rid, r in before["Account"].items() if r["OwnerId"] != users["sales2"]]
    result = run_scenario(org, "owner-takeover", user="sales2", fraction=0.5, at=MONDAY_9AM)
    assert len(result.changed["Account"]) == round(0.5 * len(not_mine))
    assert set(result.changed["Account"]) <= set(not_mine)
    _check_damage(org, before, result, "Account", "sales2", {"OwnerId"})
    after = snapshot(org)["Account"]
    assert all(after[rid]["OwnerId"] == users["sales2"] for rid in result.changed["Account"])


def test_owner_takeover_defaults_to_sales1_and_80_percent():
    org = make_org(2000)
    users = user_ids(org)
    before = snapshot(org)
    not_mine = [rid for rid, r in before["Account"].items() if r["OwnerId"] != users["sales1"]]
    result = run_scenario(org, "owner-takeover", at=MONDAY_9AM)
    assert len(result.changed["Account"]) == round(0.8 * len(not_mine))
    _check_damage(org, before, result, "Account", "sales1", {"OwnerId"})


def test_picklist_wipe():
    org = make_org(2000)
    before = snapshot(org)
    valued = [rid for rid, r in before["Invoice__c"].items() if r["Status__c"] is not None]
    result = run_scenario(org, "picklist-wipe", at=MONDAY_9AM)
    assert len(result.changed["Invoice__c"]) == round(0.85 * len(valued))
    _check_damage(org, before, result, "Invoice__c", "integration", {"Status__c"})
    after = snapshot(org)["Invoice__c"]
    assert all(after[rid]["Status__c"] is None for rid in result.changed["Invoice__c"])
    assert sum(after[rid]["Status__c"] is not None for rid in valued) == len(valued) - len(result.changed["Invoice__c"])


def test_damage_with_a_running_clock_keeps_it_running():
    org = make_org(1000)
    org.set_clock(MONDAY_9AM, freeze=False)
    before = snapshot(org)
    result = run_scenario(org, "picklist-wipe")
    assert org.clock.frozen_at is None
    assert abs(org.clock.now() - result.finished_at) < timedelta(seconds=5)
    after = snapshot(org)
    assert diff(before, after) == {"Invoice__c": set(result.changed["Invoice__c"])}
    lo, hi = format_datetime(result.started_at), format_datetime(result.finished_at)
    for rid in result.changed["Invoice__c"]:
        assert lo <= after["Invoice__c"][rid]["SystemModstamp"] <= hi


def test_at_keeps_the_running_mode_and_bad_arguments_fail():
    org = make_org(200)
    org.set_clock(NOW, freeze=False)
    result = run_scenario(org, "owner-takeover", at=MONDAY_9AM, fraction=0.0)
    assert result.changed == {"Account": []}
    assert org.clock.frozen_at is None and abs(org.clock.now() - MONDAY_9AM) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="unknown scenario"):
        run_scenario(org, "drop-everything")
    with pytest.raises(ValueError, match="fraction"):
        run_scenario(org, "mass-delete", fraction=1.5)
    with pytest.raises(ValueError):
        run_scenario(org, "business-day", user="sales1")
    with pytest.raises(KeyError):
        run_scenario(org, "mass-delete", user="nobody")
    assert set(SCENARIOS) == {
        "orphan-opportunities",
        "mass-delete",
        "owner-takeover",
        "picklist-wipe",
        "business-day",
        "mass-hard-delete",
        "recycle-bin-purge",
        "mass-merge",
        "account-cleanup",
    }
    assert all(isinstance(d, str) and "\n" not in d for d in SCENARIOS.values())


def test_scenario_result_to_json():
    result = ScenarioResult(
        "x", "005", MONDAY_9AM, MONDAY_9AM + timedelta(seconds=2), {"Case": ["500a", "500b"]}, {"batches": 1}
    )
    out = json.loads(json.dumps(result.to_json()))
    assert out == {
        "name": "x",
        "user_id": "005",
        "started_at": "2025-03-17T09:00:00.000+0000",
        "finished_at": "2025-03-17T09:00:02.000+0000",
        "changed": {"Case": ["500a", "500b"]},
        "counts": {"Case": 2},
        "details": {"batches": 1},
    }


# ----------------------------------------------------------------- business-day
def _day_changes(org, before, result):
    after = snapshot(org)
    changes = diff(before, after)
    assert changes == {obj: set(ids_) for obj, ids_ in result.changed.items()}
    return after, changes


@pytest.mark.parametrize("frozen", [True, False])
def test_business_day_is_small_spread_out_normal_activity(frozen):
    org = make_org(2000)
    org.set_clock(NOW, freeze=frozen)
    users = user_ids(org)
    key_of = {v: k for k, v in users.items()}
    before = snapshot(org)
    live = {obj: sum(not r["IsDeleted"] for r in before[obj].values()) for obj in GENERATED}
    result = run_scenario(org, "business-day", at=MONDAY_9AM)
    end = MONDAY_9AM + timedelta(hours=8)
    assert (result.started_at, result.finished_at, result.user_id) == (MONDAY_9AM, end, None)
    if frozen:
        assert org.clock.frozen_at == end
    else:
        assert org.clock.frozen_at is None and abs(org.clock.now() - end) < timedelta(seconds=5)
    after, changes = _day_changes(org, before, result)
    total = sum(len(v) for v in changes.values())
    assert 30 <= total <= 400, total
    assert {"Opportunity", "Case", "Contact"} <= set(changes)
    per_hour: dict[tuple[str, int], int] = Counter()
    per_user: dict[tuple[str, str], int] = Counter()
    kinds = Counter()
    for obj, changed in changes.items():
        for rid in changed:
            row, old = after[obj][rid], before[obj].get(rid)
            stamp = row["SystemModstamp"]
            assert format_datetime(MONDAY_9AM) <= stamp < format_datetime(end)
            who = key_of[row["LastModifiedById"]]
            assert who in ("sales1", "sales2", "sales3", "support", "admin")
            per_hour[obj, int(stamp[11:13])] += 1
            per_user[obj, who] += 1
            if old is None:
                kinds["create"] += 1
                assert row["CreatedById"] == row["LastModifiedById"] and row["CreatedDate"] == stamp
            elif row["IsDeleted"]:
                kinds["delete"] += 1
            else:
                kinds["update"] += 1
                if row.get("OwnerId") != old.get("OwnerId"):
                    kinds["owner"] += 1
    for (obj, hour), n in per_hour.items():
        assert n < 0.03 * live[obj], f"{obj}: {n} changes in hour {hour} of {live[obj]} records"
    for (obj, who), n in per_user.items():
        assert n <= max(2, 0.03 * live[obj]), f"{who} changed {n} of {live[obj]} {obj} in a day"
    assert len({who for _, who in per_user}) == 5
    assert kinds["create"] >= 5 and kinds["update"] >= 20 and 1 <= kinds["delete"] <= 5
    assert 1 <= kinds["owner"] <= 3
    # changes are spread over the day, not one burst
    hours = {int(after[o][r]["SystemModstamp"][11:13]) for o, c in changes.items() for r in c}
    assert hours == set(range(9, 17))
    # new records follow the validated path: derived fields, valid references
    for rid in changes["Opportunity"]:
        row = after["Opportunity"][rid]
        assert row["Probability"] == STAGES[row["StageName"]][0] and row["IsClosed"] == int(STAGES[row["StageName"]][2])


def test_business_day_is_deterministic_and_scales_with_the_org():
    a, b = make_org(2000), make_org(2000)
    ra = run_scenario(a, "business-day", at=MONDAY_9AM)
    rb = run_scenario(b, "business-day", at=MONDAY_9AM)
    sa, sb = snapshot(a), snapshot(b)
    assert ra.changed == rb.changed and all(sa[o] == sb[o] for o in GENERATED)
    small = sum(
        business_day_plan(
            {"Opportunity": 2000, "Account": 200, "Contact": 400, "Case": 400, "Lead": 100, "Invoice__c": 400}
        ).values()
    )
    big_live = planned_counts(1_000_000)
    big = business_day_plan(big_live)
    assert 30 <= small < sum(big.values()) <= 600
    per_object = defaultdict(int)
    for kind, n in big.items():
        obj = {
            "opportunity": "Opportunity",
            "owner": "Opportunity",
            "account": "Account",
            "contact": "Contact",
            "case": "Case",
            "lead": "Lead",
            "invoice": "Invoice__c",
        }[kind.split("-")[0]]
        per_object[obj] += n
    for obj, n in per_object.items():
        assert n / 8 < 0.001 * big_live[obj], obj  # far below 3% an hour on a big org
