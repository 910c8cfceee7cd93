"""Owners and other user lookups: a sandbox has its own user ids, so users are matched, never copied.

When Salesforce creates a sandbox it copies the users with the sandbox name appended to each username
(`admin@acme.com` becomes `admin@acme.com.uat`) and `.invalid` appended to each email. A source user
is matched to the target user whose username is its username (optionally with such a suffix), else
whose email is its email (optionally with `.invalid`), else the only active user with the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

USERS_SOQL = "SELECT Id, Username, Email, Name, IsActive FROM User"


def org_users(client: Any) -> list[dict[str, Any]]:
    """Every user of an org (a SalesforceClient), with what `match_users` matches on."""
    return [r for page in client.query_pages(USERS_SOQL, include_deleted=False) for r in page]


def _email(value: Any) -> str | None:
    if not value:
        return None
    text = str(value).lower()
    return text[: -len(".invalid")] if text.endswith(".invalid") else text


def match_users(source: Iterable[Mapping[str, Any]], target: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Source user id -> target user id, for every source user that has a match (see the module doc)."""
    target = list(target)
    by_username = {str(u["Username"]).lower(): u["Id"] for u in target if u.get("Username")}
    by_email: dict[str, list[str]] = {}
    by_name: dict[str, list[str]] = {}
    for u in target:
        if (email := _email(u.get("Email"))) is not None:
            by_email.setdefault(email, []).append(u["Id"])
        if u.get("Name") and u.get("IsActive", True):
            by_name.setdefault(str(u["Name"]).lower(), []).append(u["Id"])
    out: dict[str, str] = {}
    for u in source:
        username = str(u.get("Username") or "").lower()
        found = by_username.get(username)
        if found is None and username:
            suffixed = [
                tid
                for name, tid in by_username.items()
                if name.startswith(username + ".") and "." not in name[len(username) + 1 :]
            ]
            found = suffixed[0] if len(suffixed) == 1 else None
        if found is None and (email := _email(u.get("Email"))) is not None and len(by_email.get(email, ())) == 1:
            found = by_email[email][0]
        if found is None and u.get("Name") and len(by_name.get(str(u["Name"]).lower(), ())) == 1:
            found = by_name[str(u["Name"]).lower()][0]
        if found is not None:
            out[u["Id"]] = found
    return out
