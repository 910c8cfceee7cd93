"""Named scenarios: realistic damage, and a normal working day, made through the validated write path.

Every change goes through `OrgStore.insert/update/delete` as the acting user, so the system fields are
exactly what Salesforce would record (LastModifiedById = the acting user, SystemModstamp from the org
clock). Damage scenarios work like a sync job hammering the API: they apply their changes in batches of
`BATCH` records, one transaction per batch; with a frozen clock the clock advances one second per batch
(so the first and last SystemModstamp of the damage differ), with a running clock time just passes.

    result = run_scenario(org, "orphan-opportunities")            # as the integration user
    result = run_scenario(org, "mass-delete", fraction=0.5, at=datetime(2025, 3, 3, 9, tzinfo=UTC))

`business-day` is the baseline the anomaly detectors must not flag: a few dozen to a few hundred small
changes by several users over ~8 hours, each object well under 3% changed per hour.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .clock import format_datetime
from .errors import SalesforceError
from .generator import (
    CASE_DESCRIPTIONS,
    CASE_ORIGINS,
    CASE_PRIORITIES,
    CASE_REASONS,
    CASE_SUBJECTS,
    CASE_TYPES,
    FIRST_NAMES,
    LAST_NAMES,
    NEXT_STEPS,
    PRODUCTS,
    ROLES,
    SOURCES,
    TITLES,
    ensure_lookup_indexes,
)
from .store import q

BATCH = 200
DAY_LENGTH = timedelta(hours=8)

SCENARIOS: dict[str, str] = {
    "orphan-opportunities": "integration user nulls AccountId on every live Opportunity that has one",
    "mass-delete": "sales3 deletes a fraction (default 0.9) of the live Cases",
    "owner-takeover": "sales1 makes itself owner of a fraction (default 0.8) of the live Accounts it does not own",
    "picklist-wipe": "integration user blanks Invoice__c.Status__c on a fraction (default 0.85) of the invoices that have one",
    "business-day": "normal activity of sales1..3, support and admin over ~8 hours: the no-anomaly baseline",
    "mass-hard-delete": "integration user hard-deletes a fraction (default 0.25) of the live Opportunities and "
    "Contacts with Bulk API 2.0 hardDelete jobs (no recycle bin)",
    "recycle-bin-purge": "the clock passes the recycle bin's 15 days (everything in it is purged), or with "
    "empty_bin the admin empties a fraction (default all) of it with emptyRecycleBin",
    "mass-merge": "a deduplication tool (integration user) merges a fraction (default 0.3) of the live Accounts "
    "into others, three records per merge",
    "account-cleanup": "sales3 deletes a fraction (default 0.3) of the live Accounts that have invoices and no Case "
    "(an Account with Cases cannot be deleted): their Contacts and Opportunities go with them, their Invoices' "
    "lookups and child Accounts' ParentId are cleared",
}
DEFAULT_USERS = {
    "orphan-opportunities": "integration",
    "mass-delete": "sales3",
    "owner-takeover": "sales1",
    "picklist-wipe": "integration",
    "mass-hard-delete": "integration",
    "recycle-bin-purge": "admin",
    "mass-merge": "integration",
    "account-cleanup": "sales3",
}
DEFAULT_FRACTIONS = {
    "orphan-opportunities": 1.0,
    "mass-delete": 0.9,
    "owner-takeover": 0.8,
    "picklist-wipe": 0.85,
    "mass-hard-delete": 0.25,
    "mass-merge": 0.3,
    "account-cleanup": 0.3,
}


@dataclass
class ScenarioResult:
    """What a scenario did. started_at <= SystemModstamp of every change <= finished_at."""

    name: str
    user_id: str | None  # the acting user; None for business-day (several users, see details["by_user"])
    started_at: datetime
    finished_at: datetime
    changed: dict[str, list[str]] = field(default_factory=dict)  # object -> ids inserted/updated/deleted
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "user_id": self.user_id,
            "started_at": format_datetime(self.started_at),
            "finished_at": format_datetime(self.finished_at),
            "changed": {obj: list(ids) for obj, ids in self.changed.items()},
            "counts": {obj: len(ids) for obj, ids in self.changed.items()},
            "details": self.details,
        }


def run_scenario(
    org: Any,
    name: str,
    *,
    user: str | None = None,
    at: datetime | None = None,
    fraction: float | None = None,
    seed: int = 7,
    empty_bin: bool = False,
) -> ScenarioResult:
    """Run scenario `name` on `org` (see SCENARIOS). `at` moves the clock there first, keeping its mode.
    `empty_bin` only applies to recycle-bin-purge (emptyRecycleBin instead of the 15 days passing)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    if name == "business-day" and user is not None:
        raise ValueError("business-day acts as sales1, sales2, sales3, support and admin: do not pass a user")
    if name == "business-day" and fraction is not None:
        raise ValueError("business-day has no fraction: its volume follows the org's size")
    if empty_bin and name != "recycle-bin-purge":
        raise ValueError("empty_bin only applies to recycle-bin-purge")
    if at is not None:
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        org.set_clock(at, freeze=org.clock.frozen_at is not None)
    if name == "business-day":
        return _business_day(org, seed, at)
    acting = org.user(user or DEFAULT_USERS[name])
    if name in _VANISHING:
        return _vanishing(org, name, acting.user_id, fraction, random.Random(seed), empty_bin)
    share = DEFAULT_FRACTIONS[name] if fraction is None else fraction
    return _DAMAGE[name](org, acting.user_id, share, random.Random(seed))


_VANISHING = ("mass-hard-delete", "recycle-bin-purge", "mass-merge")


def _vanishing(
    org: Any, name: str, user_id: str, fraction: float | None, rng: random.Random, empty_bin: bool
) -> ScenarioResult:
    """The scenarios of vanishing.py: hard delete, recycle-bin purge, mass merge."""
    from . import vanishing

    started = org.clock.now()
    if name == "recycle-bin-purge":
        changed, details = vanishing.recycle_bin_purge(org, user_id, fraction, rng, empty_bin=empty_bin)
    else:
        share = DEFAULT_FRACTIONS[name] if fraction is None else fraction
        run = vanishing.mass_hard_delete if name == "mass-hard-delete" else vanishing.mass_merge
        changed, details = run(org, user_id, share, rng)
    return ScenarioResult(name, user_id, started, org.clock.now(), changed, details)


# ----------------------------------------------------------------- damage scenarios
def _sample(ids: list[str], share: float, rng: random.Random) -> list[str]:
    """A deterministic share of ids (sorted), chosen by rng."""
    k = min(len(ids), int(share * len(ids) + 0.5))
    if k == len(ids):
        return list(ids)
    return sorted(rng.sample(ids, k))


def _ids(org: Any, sql: str, params: tuple = ()) -> list[str]:
    with org.store.lock:
        return [r[0] for r in org.store.conn.execute(sql, params)]


def _in_batches(org: Any, record_ids: list[str], apply: Callable[[str], None]) -> tuple[datetime, datetime, int]:
    """Apply `apply` to each id, BATCH per transaction; a frozen clock advances 1 s per batch."""
    store = org.store
    started = org.clock.now()
    batches = 0
    for i in range(0, len(record_ids), BATCH):
        with store.transaction():
            for rid in record_ids[i : i + BATCH]:
                apply(rid)
        batches += 1
        if org.clock.frozen_at is not None:
            org.advance_clock(timedelta(seconds=1))
    return started, org.clock.now(), batches


def _orphan_opportunities(org: Any, user_id: str, share: float, rng: random.Random) -> ScenarioResult:
    obj = org.schema.get("Opportunity")
    eligible = _ids(org, 'SELECT Id FROM "Opportunity" WHERE IsDeleted = 0 AND AccountId IS NOT NULL ORDER BY Id')
    chosen = _sample(eligible, share, rng)
    started, finished, batches = _in_batches(
        org, chosen, lambda rid: org.store.update(obj, rid, {"AccountId": None}, user_id)
    )
    return ScenarioResult(
        "orphan-opportunities",
        user_id,
        started,
        finished,
        {"Opportunity": chosen},
        {"field": "Opportunity.AccountId", "eligible": len(eligible), "fraction": share, "batches": batches},
    )


def _mass_delete(org: Any, user_id: str, share: float, rng: random.Random) -> ScenarioResult:
    obj = org.schema.get("Case")
    ensure_lookup_indexes(org.store, ["Case"])  # each delete looks up the case's children
    eligible = _ids(org, 'SELECT Id FROM "Case" WHERE IsDeleted = 0 ORDER BY Id')
    chosen = _sample(eligible, share, rng)
    gone = set(chosen)
    # Deleting a case clears the ParentId of its live child cases (a lookup, not master-detail).
    children = [
        cid
        for cid, parent in org.store.conn.execute(
            'SELECT Id, ParentId FROM "Case" WHERE IsDeleted = 0 AND ParentId IS NOT NULL ORDER BY Id'
        )
        if parent in gone and cid not in gone
    ]
    started, finished, batches = _in_batches(org, chosen, lambda rid: org.store.delete(obj, rid, user_id))
    return ScenarioResult(
        "mass-delete",
        user_id,
        started,
        finished,
        {"Case": chosen + children},
        {
            "deleted": {"Case": len(chosen)},
            "lookups_cleared": {"Case.ParentId": children},
            "eligible": len(eligible),
            "fraction": share,
            "batches": batches,
        },
    )


def _owner_takeover(org: Any, user_id: str, share: float, rng: random.Random) -> ScenarioResult:
    obj = org.schema.get("Account")
    eligible = _ids(org, 'SELECT Id FROM "Account" WHERE IsDeleted = 0 AND OwnerId != ? ORDER BY Id', (user_id,))
    chosen = _sample(eligible, share, rng)
    started, finished, batches = _in_batches(
        org, chosen, lambda rid: org.store.update(obj, rid, {"OwnerId": user_id}, user_id)
    )
    return ScenarioResult(
        "owner-takeover",
        user_id,
        started,
        finished,
        {"Account": chosen},
        {"field": "Account.OwnerId", "eligible": len(eligible), "fraction": share, "batches": batches},
    )


def _picklist_wipe(org: Any, user_id: str, share: float, rng: random.Random) -> ScenarioResult:
    obj = org.schema.get("Invoice__c")
    eligible = _ids(org, 'SELECT Id FROM "Invoice__c" WHERE IsDeleted = 0 AND Status__c IS NOT NULL ORDER BY Id')
    chosen = _sample(eligible, share, rng)
    started, finished, batches = _in_batches(
        org, chosen, lambda rid: org.store.update(obj, rid, {"Status__c": None}, user_id)
    )
    return ScenarioResult(
        "picklist-wipe",
        user_id,
        started,
        finished,
        {"Invoice__c": chosen},
        {"field": "Invoice__c.Status__c", "eligible": len(eligible), "fraction": share, "batches": batches},
    )


def _account_cleanup(org: Any, user_id: str, share: float, rng: random.Random) -> ScenarioResult:
    """Accounts deleted with what Salesforce does to the records around them: Contacts, Opportunities and their
    contact roles are deleted with them (cascade), optional lookups to them or to their cascade are cleared and the
    cleared records stamped like the deletion (store._delete_one): the Invoices' Account__c and Opportunity__c, the
    ParentId of their child Accounts. Only Accounts with no Case (on them or on their Contacts) are eligible:
    Salesforce refuses to delete an Account or Contact with Cases (DELETE_FAILED), and a cleanup job skips them."""
    obj = org.schema.get("Account")
    ensure_lookup_indexes(org.store, ["Account", "Contact", "Opportunity", "Invoice__c"])
    eligible = _ids(
        org,
        'SELECT Id FROM "Account" AS a WHERE IsDeleted = 0 '
        'AND EXISTS (SELECT 1 FROM "Invoice__c" AS i WHERE i.Account__c = a.Id AND i.IsDeleted = 0) '
        'AND NOT EXISTS (SELECT 1 FROM "Case" AS c WHERE c.AccountId = a.Id AND c.IsDeleted = 0) '
        'AND NOT EXISTS (SELECT 1 FROM "Case" AS c JOIN "Contact" AS k ON k.Id = c.ContactId '
        "WHERE k.AccountId = a.Id AND c.IsDeleted = 0) ORDER BY Id",
    )
    chosen = _sample(eligible, share, rng)
    before = {
        name: dict(org.store.conn.execute(f'SELECT Id, IsDeleted FROM "{name}"').fetchall())
        for name in ("Contact", "Opportunity")
    }
    lookups = {
        "Invoice__c.Account__c": 'SELECT Id, Account__c FROM "Invoice__c" WHERE IsDeleted = 0',
        "Invoice__c.Opportunity__c": 'SELECT Id, Opportunity__c FROM "Invoice__c" WHERE IsDeleted = 0',
        "Account.ParentId": 'SELECT Id, ParentId FROM "Account" WHERE IsDeleted = 0',
    }
    pointing = {key: dict(org.store.conn.execute(sql).fetchall()) for key, sql in lookups.items()}
    started, finished, batches = _in_batches(org, chosen, lambda rid: org.store.delete(obj, rid, user_id))
    deleted = {
        name: sorted(
            rid
            for rid, flag in org.store.conn.execute(f'SELECT Id, IsDeleted FROM "{name}"')
            if flag and not before[name].get(rid, 1)
        )
        for name in ("Contact", "Opportunity")
    }
    cleared = {}
    for key, sql in lookups.items():
        now = dict(org.store.conn.execute(sql).fetchall())
        cleared[key] = sorted(rid for rid, value in now.items() if value is None and pointing[key].get(rid))
    return ScenarioResult(
        "account-cleanup",
        user_id,
        started,
        finished,
        {
            "Account": chosen,
            **deleted,
            "Invoice__c": sorted({r for k, v in cleared.items() if k.startswith("Invoice") for r in v}),
        },
        {
            "deleted": {"Account": len(chosen), **{k: len(v) for k, v in deleted.items()}},
            "lookups_cleared": cleared,
            "eligible": len(eligible),
            "fraction": share,
            "batches": batches,
        },
    )


_DAMAGE: dict[str, Callable[[Any, str, float, random.Random], ScenarioResult]] = {
    "orphan-opportunities": _orphan_opportunities,
    "mass-delete": _mass_delete,
    "owner-takeover": _owner_takeover,
    "picklist-wipe": _picklist_wipe,
    "account-cleanup": _account_cleanup,
}


# ----------------------------------------------------------------- business-day
OPEN_STAGE_ORDER = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
)
SALES = ("sales1", "sales2", "sales3")


def business_day_plan(live: dict[str, int]) -> dict[str, int]:
    """Events of each kind in one business day, from the live record counts per object.

    Each kind is a small share of its object per day (so well under 3% per hour), capped so that even a
    huge org sees a few hundred changes; tiny objects see none rather than a large share.
    """

    def share(obj: str, per_day: float, cap: int, floor_from: int = 200) -> int:
        n = live.get(obj, 0)
        count = min(cap, int(n * per_day))
        return max(count, 1) if n >= floor_from else count

    opps = live.get("Opportunity", 0)
    return {
        "opportunity-update": share("Opportunity", 0.01, 150),
        "opportunity-create": share("Opportunity", 0.002, 40, 500),
        "opportunity-delete": (2 if opps >= 100_000 else 1) if opps >= 1000 else 0,
        "owner-change": (3 if opps >= 100_000 else 2 if opps >= 10_000 else 1) if opps >= 500 else 0,
        "account-update": share("Account", 0.005, 30),
        "contact-create": share("Contact", 0.005, 30),
        "contact-update": share("Contact", 0.005, 30),
        "case-create": share("Case", 0.01, 50),
        "case-update": share("Case", 0.015, 70),
        "case-delete": (1 if live.get("Case", 0) >= 300 else 0),
        "lead-create": share("Lead", 0.01, 20, 100),
        "lead-update": share("Lead", 0.01, 20, 100),
        "invoice-update": share("Invoice__c", 0.01, 30),
    }


class _Day:
    """State of one business-day run: picks records, applies one event as one user, records changes."""

    def __init__(self, org: Any, seed: int):
        self.org = org
        self.store = org.store
        self.schema = org.schema
        self.rng = random.Random(seed)
        self.users = {k: org.user(k).user_id for k in (*SALES, "support", "admin")}
        self.key_of = {v: k for k, v in self.users.items()}
        self.changed: dict[str, dict[str, None]] = {}
        self.by_user: dict[str, int] = {}
        self.by_kind: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.touched: set[str] = set()
        self.pending: list[tuple[str, str, str]] = []

    # ----------------------------------------------------------------- helpers
    def live(self, obj_name: str) -> int:
        return self.store.count(self.schema.get(obj_name))

    def pick(self, obj_name: str, where: str = "1", params: tuple = ()) -> dict[str, Any] | None:
        """A random live record matching `where` not touched yet today (rowid sampling, then a scan)."""
        obj = self.schema.get(obj_name)
        conn = self.store.conn
        table = q(obj.name)
        max_rowid = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        if not max_rowid:
            return None
        cond = f"IsDeleted = 0 AND ({where})"
        for _ in range(60):
            rid = self.rng.randint(1, max_rowid)
            row = self._one(f"SELECT * FROM {table} WHERE rowid = ? AND {cond}", (rid, *params))
            if row and row["Id"] not in self.touched:
                return row
        n = conn.execute(f"SELECT count(*) FROM {table} WHERE {cond}", params).fetchone()[0]
        for _ in range(min(n, 20)):
            row = self._one(
                f"SELECT * FROM {table} WHERE {cond} ORDER BY rowid LIMIT 1 OFFSET ?", (*params, self.rng.randrange(n))
            )
            if row and row["Id"] not in self.touched:
                return row
        return None

    def _one(self, sql: str, params: tuple) -> dict[str, Any] | None:
        cur = self.store.conn.execute(sql, params)
        row = cur.fetchone()
        return None if row is None else {d[0]: v for d, v in zip(cur.description, row, strict=True)}

    def has_children(self, obj_name: str, rid: str) -> bool:
        obj = self.schema.get(obj_name)
        for child, f in self.schema.references_to(obj):
            live = " AND IsDeleted = 0" if child.has_field("IsDeleted") else ""
            if self.store.conn.execute(
                f"SELECT 1 FROM {q(child.name)} WHERE {q(f.name)} = ?{live} LIMIT 1", (rid,)
            ).fetchone():
                return True
        return False

    def sales_actor(self, owner_id: str | None = None) -> str:
        """The record's owner when it is a sales user (people edit their own records), else any of them."""
        key = self.key_of.get(owner_id or "")
        if key in SALES and self.rng.random() < 0.85:
            return key
        return self.rng.choice(SALES)

    def note(self, user_key: str, obj_name: str, rid: str) -> None:
        self.pending.append((user_key, obj_name, rid))

    def commit(self) -> None:
        """Record the changes of an event whose transaction committed."""
        for user_key, obj_name, rid in self.pending:
            self.changed.setdefault(obj_name, {})[rid] = None
            self.by_user[user_key] = self.by_user.get(user_key, 0) + 1
            self.touched.add(rid)
        self.pending.clear()

    def insert(self, user_key: str, obj_name: str, values: dict[str, Any]) -> str:
        rid = self.store.insert(self.schema.get(obj_name), values, self.users[user_key])
        self.note(user_key, obj_name, rid)
        return rid

    def update(self, user_key: str, obj_name: str, rid: str, values: dict[str, Any]) -> None:
        self.store.update(self.schema.get(obj_name), rid, values, self.users[user_key])
        self.note(user_key, obj_name, rid)

    def delete(self, user_key: str, obj_name: str, rid: str) -> None:
        self.store.delete(self.schema.get(obj_name), rid, self.users[user_key])
        self.note(user_key, obj_name, rid)

    def today(self, days: int = 0) -> str:
        return (self.org.clock.now().astimezone(UTC).date() + timedelta(days=days)).isoformat()

    def contact_of(self, account_id: str | None) -> dict[str, Any] | None:
        if not account_id:
            return None
        rows = self.store.conn.execute(
            'SELECT Id FROM "Contact" WHERE AccountId = ? AND IsDeleted = 0 ORDER BY Id', (account_id,)
        ).fetchall()
        return {"Id": self.rng.choice(rows)[0]} if rows else None

    # ----------------------------------------------------------------- events
    def opportunity_update(self) -> bool:
        row = self.pick("Opportunity", "IsClosed = 0")
        if row is None:
            return False
        actor = self.sales_actor(row["OwnerId"])
        r = self.rng.random()
        if r < 0.45:
            stage = row["StageName"]
            i = OPEN_STAGE_ORDER.index(stage) if stage in OPEN_STAGE_ORDER else 0
            if i + 1 < len(OPEN_STAGE_ORDER):
                values: dict[str, Any] = {"StageName": OPEN_STAGE_ORDER[i + 1]}
            else:
                values = {
                    "StageName": "Closed Won" if self.rng.random() < 0.6 else "Closed Lost",
                    "CloseDate": self.today(),
                }
        elif r < 0.7:
            amount = row["Amount"] or 10_000.0
            values = {"Amount": float(max(1, round(amount * self.rng.uniform(0.8, 1.25) / 100)) * 100)}
        elif r < 0.9:
            close = date.fromisoformat(row["CloseDate"]) + timedelta(days=self.rng.randint(7, 45))
            values = {"CloseDate": close.isoformat()}
        else:
            values = {"NextStep": self.rng.choice(NEXT_STEPS)}
        self.update(actor, "Opportunity", row["Id"], values)
        return True

    def opportunity_create(self) -> bool:
        account = self.pick("Account")
        if account is None:
            return False
        actor = self.sales_actor(account["OwnerId"])
        oid = self.insert(
            actor,
            "Opportunity",
            {
                "AccountId": account["Id"],
                "Name": f"{account['Name']} - {self.rng.choice(PRODUCTS)}"[:120],
                "StageName": self.rng.choice(("Prospecting", "Prospecting", "Qualification")),
                "CloseDate": self.today(self.rng.randint(30, 120)),
                "Amount": float(self.rng.randint(20, 800) * 100),
                "Type": self.rng.choice(("New Customer", "Existing Customer - Upgrade")),
                "LeadSource": self.rng.choice([s for s in SOURCES if s]),
            },
        )
        contact = self.contact_of(account["Id"]) if self.rng.random() < 0.5 else None
        if contact:
            self.insert(
                actor,
                "OpportunityContactRole",
                {"OpportunityId": oid, "ContactId": contact["Id"], "Role": self.rng.choice(ROLES), "IsPrimary": True},
            )
        return True

    def opportunity_delete(self) -> bool:
        for _ in range(20):
            row = self.pick("Opportunity", "IsClosed = 0")
            if row is not None and not self.has_children("Opportunity", row["Id"]):
                self.delete("sales3", "Opportunity", row["Id"])  # the manager cleans up a duplicate
                return True
        return False

    def owner_change(self) -> bool:
        obj_name = self.rng.choice(("Account", "Opportunity"))
        row = self.pick(obj_name, "IsClosed = 0" if obj_name == "Opportunity" else "1")
        if row is None:
            return False
        new_owner = self.rng.choice([k for k in SALES if self.users[k] != row["OwnerId"]])
        actor = self.rng.choice(("admin", "sales3"))
        self.update(actor, obj_name, row["Id"], {"OwnerId": self.users[new_owner]})
        return True

    def account_update(self) -> bool:
        row = self.pick("Account")
        if row is None:
            return False
        actor = self.sales_actor(row["OwnerId"]) if self.rng.random() < 0.9 else "admin"
        r = self.rng.random()
        if r < 0.3:
            values: dict[str, Any] = {"Rating": self.rng.choice(("Hot", "Warm", "Cold"))}
        elif r < 0.55:
            values = {"Phone": f"(555) 555-{self.rng.randint(0, 9999):04d}"}
        elif r < 0.8:
            values = {"NumberOfEmployees": max(1, int((row["NumberOfEmployees"] or 50) * self.rng.uniform(0.9, 1.2)))}
        else:
            values = {
                "Description": self.rng.choice(
                    (
                        "Renewal discussion started.",
                        "New CIO since last quarter.",
                        "Expanding to a second site.",
                        "Asked for a QBR.",
                    )
                )
            }
        self.update(actor, "Account", row["Id"], values)
        return True

    def contact_create(self) -> bool:
        account = self.pick("Account")
        if account is None:
            return False
        actor = self.sales_actor(account["OwnerId"])
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        website = account.get("Website") or "www.example.com"
        domain = website.removeprefix("www.")
        self.insert(
            actor,
            "Contact",
            {
                "AccountId": account["Id"],
                "FirstName": first,
                "LastName": last,
                "Email": f"{first.lower()}.{last.lower()}@{domain}",
                "Title": self.rng.choice(TITLES),
                "Phone": f"(555) 555-{self.rng.randint(0, 9999):04d}",
                "LeadSource": "Phone Inquiry",
            },
        )
        return True

    def contact_update(self) -> bool:
        row = self.pick("Contact")
        if row is None:
            return False
        actor = self.sales_actor(row["OwnerId"])
        r = self.rng.random()
        if r < 0.4:
            values: dict[str, Any] = {"Title": self.rng.choice(TITLES)}
        elif r < 0.7:
            values = {"MobilePhone": f"(555) 555-{self.rng.randint(0, 9999):04d}"}
        else:
            values = {"Department": self.rng.choice(("Sales", "Finance", "IT", "Operations", "Procurement"))}
        self.update(actor, "Contact", row["Id"], values)
        return True

    def case_create(self) -> bool:
        account = self.pick("Account")
        if account is None:
            return False
        contact = self.contact_of(account["Id"])
        actor = "support" if self.rng.random() < 0.85 else "admin"
        self.insert(
            actor,
            "Case",
            {
                "AccountId": account["Id"],
                "ContactId": contact["Id"] if contact else None,
                "Subject": self.rng.choice(CASE_SUBJECTS),
                "Origin": self.rng.choice(CASE_ORIGINS),
                "Priority": self.rng.choice(CASE_PRIORITIES),
                "Type": self.rng.choice(CASE_TYPES),
                "Reason": self.rng.choice(CASE_REASONS),
                "Status": "New",
                "Description": self.rng.choice(CASE_DESCRIPTIONS),
            },
        )
        return True

    def case_update(self) -> bool:
        row = self.pick("Case", "IsClosed = 0") or self.pick("Case")
        if row is None:
            return False
        status = row["Status"]
        r = self.rng.random()
        if status == "New":
            values: dict[str, Any] = {"Status": "Working"}
        elif status == "Working":
            values = {"Status": "Closed"} if r < 0.7 else {"Status": "Escalated", "IsEscalated": True}
        elif status == "Escalated":
            values = {"Status": "Closed"} if r < 0.6 else {"Status": "Working"}
        else:
            values = {"Priority": self.rng.choice(("High", "Medium", "Low"))}
        actor = "support" if self.rng.random() < 0.9 else self.rng.choice(("admin", *SALES))
        self.update(actor, "Case", row["Id"], values)
        return True

    def case_delete(self) -> bool:
        for _ in range(20):
            row = self.pick("Case", "IsClosed = 1")
            if row is not None and not self.has_children("Case", row["Id"]):
                self.delete(self.rng.choice(("support", "admin")), "Case", row["Id"])  # a duplicate case
                return True
        return False

    def lead_create(self) -> bool:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        company = f"{self.rng.choice(LAST_NAMES)} {self.rng.choice(('Consulting', 'Labs', 'Retail', 'Logistics'))}"
        self.insert(
            self.rng.choice(SALES),
            "Lead",
            {
                "FirstName": first,
                "LastName": last,
                "Company": company,
                "Email": f"{first.lower()}.{last.lower()}@{company.split()[0].lower()}.com",
                "Status": "Open - Not Contacted",
                "LeadSource": self.rng.choice(("Web", "Phone Inquiry", "Other")),
                "Phone": f"(555) 555-{self.rng.randint(0, 9999):04d}",
            },
        )
        return True

    def lead_update(self) -> bool:
        row = self.pick("Lead", "Status != 'Closed - Not Converted' AND Status != 'Closed - Converted'") or self.pick(
            "Lead"
        )
        if row is None:
            return False
        status = row["Status"]
        if status == "Open - Not Contacted":
            values: dict[str, Any] = {"Status": "Working - Contacted"}
        elif status == "Working - Contacted":
            values = (
                {"Status": "Closed - Not Converted"}
                if self.rng.random() < 0.4
                else {"Rating": self.rng.choice(("Hot", "Warm", "Cold"))}
            )
        else:
            values = {"Rating": self.rng.choice(("Hot", "Warm", "Cold"))}
        key = self.key_of.get(row["OwnerId"])
        self.update(key if key in SALES else self.rng.choice(SALES), "Lead", row["Id"], values)
        return True

    def invoice_update(self) -> bool:
        row = self.pick("Invoice__c", "Status__c IN ('Draft', 'Sent', 'Overdue')")
        if row is None:
            return False
        status = row["Status__c"]
        values: dict[str, Any] = {"Status__c": "Sent"} if status == "Draft" else {"Status__c": "Paid", "Paid__c": True}
        actor = "admin" if self.rng.random() < 0.3 else self.sales_actor(row["OwnerId"])
        self.update(actor, "Invoice__c", row["Id"], values)
        return True


def _business_day(org: Any, seed: int, at: datetime | None) -> ScenarioResult:
    ensure_lookup_indexes(org.store, ["Opportunity", "Case", "Account"])  # deletes and child look-ups
    day = _Day(org, seed)
    was_frozen = org.clock.frozen_at is not None
    start = (at or org.clock.now()).astimezone(UTC)
    end = start + DAY_LENGTH
    live = {
        name: day.live(name)
        for name in ("Account", "Contact", "Opportunity", "Case", "Lead", "Invoice__c", "OpportunityContactRole")
    }
    plan = business_day_plan(live)
    seconds = DAY_LENGTH.total_seconds()
    events = []
    for kind, count in plan.items():
        for i in range(count):  # spread evenly over the day: at most ~count/8 + 1 per hour
            events.append(((i + day.rng.random()) / count * seconds, kind))
    events.sort()
    handlers = {kind: getattr(day, kind.replace("-", "_")) for kind in plan}
    try:
        for offset, kind in events:
            org.set_clock(start + timedelta(seconds=offset), freeze=True)
            try:
                with org.store.transaction():
                    done = handlers[kind]()
            except SalesforceError:
                done = False
            if done:
                day.commit()
                day.by_kind[kind] = day.by_kind.get(kind, 0) + 1
            else:
                day.pending.clear()
                day.skipped[kind] = day.skipped.get(kind, 0) + 1
    finally:
        org.set_clock(end, freeze=was_frozen)
    changed = {obj: list(ids) for obj, ids in day.changed.items()}
    return ScenarioResult(
        "business-day",
        None,
        start,
        end,
        changed,
        {
            "users": {k: day.users[k] for k in day.by_user},
            "by_user": day.by_user,
            "by_kind": day.by_kind,
            "skipped": day.skipped,
            "planned": plan,
            "live_before": live,
        },
    )
