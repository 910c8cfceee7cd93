"""Automation an org runs on every update, as a restore meets it: rules that rewrite fields of updated records.

A restore is ordinary DML, so the org's triggers, flows and workflow rules fire on its writes and may change
the values it just wrote (Apex Developer Guide, "Triggers and Order of Execution": the record's new values
are loaded, then before-save record-triggered flows and `before` triggers run and may change them, the record
is saved, then after-save flows, workflow field updates and asynchronous paths such as a flow's scheduled
path run and may update it again). devorg emulates the two shapes a restore sees:

- a rule without `as_user` is a before-save change: it rewrites fields of the record inside the writer's own
  transaction, before the save, so `LastModifiedById` is the writer and `SystemModstamp` the write's
  (a before-save flow or a `before update` trigger);
- a rule with `as_user` is a later change by another user: once the write is saved, that user updates the
  record again (a scheduled path or queueable running as an integration user, another system's sync), with
  its own `LastModifiedById` and stamp.

Each rule: `{"object": "Opportunity", "when_fields": ["StageName"], "set": {"StageName": "Prospecting"},
"as_user": null}`. It fires on an update that writes any of `when_fields` (empty: every update) and sets
`set`. It never fires on inserts, nor on the update another rule made (Salesforce re-runs before/after
triggers once after a workflow field update; devorg does not). Rules live with the org's data (meta
`automation`); `POST /_devorg/automation` sets them, `DELETE` clears them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SalesforceError

if TYPE_CHECKING:
    from .org import Org
    from .schema import ObjectDef
    from .store import OrgStore

META = "automation"


def set_rules(org: Org, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the org's automation rules (checked against the schema); returns them as stored."""
    clean = []
    for rule in rules:
        obj = org.schema.get(str(rule["object"]))
        for name in [*(rule.get("when_fields") or []), *(rule.get("set") or {})]:
            if not obj.has_field(name):
                raise SalesforceError("INVALID_FIELD", f"No such column '{name}' on entity '{obj.name}'")
        user = rule.get("as_user")
        clean.append(
            {
                "object": obj.name,
                "when_fields": list(rule.get("when_fields") or []),
                "set": dict(rule.get("set") or {}),
                "as_user": org.user(user).user_id if user else None,
            }
        )
    org.store.set_meta(META, clean)
    install(org)
    return clean


def install(org: Org) -> None:
    """Hook the stored rules into the store's updates (none: no hook, no cost)."""
    rules = org.store.get_meta(META) or []
    org.store.automation = _Rules(rules) if rules else None


class _Rules:
    def __init__(self, rules: list[dict[str, Any]]):
        self.rules = rules
        self.running = False  # the update a rule makes fires no rule

    def before_save(
        self, store: OrgStore, obj: ObjectDef, changes: dict[str, Any], merged: dict[str, Any]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Apply the before-save rules to `merged` (in the writer's transaction); return the later updates
        (user id, values) the after-save rules make."""
        if self.running:
            return []
        from .store import coerce

        later = []
        for rule in self.rules:
            if rule["object"] != obj.name:
                continue
            if rule["when_fields"] and not set(rule["when_fields"]) & set(changes):
                continue
            if rule["as_user"]:
                later.append((rule["as_user"], rule["set"]))
            else:
                for name, value in rule["set"].items():
                    f = obj.field(name)
                    merged[f.name] = coerce(obj, f, value)
        return later

    def after_save(self, store: OrgStore, obj: ObjectDef, rid: str, later: list[tuple[str, dict[str, Any]]]) -> None:
        self.running = True
        try:
            for user_id, values in later:
                store.update(obj, rid, values, user_id)
        finally:
            self.running = False
