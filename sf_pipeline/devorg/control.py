"""Test hooks over HTTP (`/_devorg/...`): clock, faults, scenarios, generation, limits, sessions.

The CLI (`sf-pipeline devorg clock|fault|scenario|...`) and out-of-process tests use these; in-process
tests can call the same operations on the `Org` directly.
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import timedelta
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .clock import format_datetime, parse_datetime

if TYPE_CHECKING:
    from .server import DevOrgApp


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d`, or plain seconds."""
    text = str(text).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    return timedelta(seconds=float(text))


def authorized(org, request: Request) -> bool:
    """Whether the request carries the org's control token (`Authorization: Bearer <token>`).

    The control endpoints move the clock, inject faults and rewrite data: on a shared machine only the
    one who started devorg (and was shown the token) may use them.
    """
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return bool(given) and hmac.compare_digest(given.encode(), org.control_token.encode())


def _json(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def org_state(app: DevOrgApp) -> dict:
    org = app.org
    return {
        "name": org.name,
        "clock": format_datetime(org.clock.now()),
        "clock_frozen": org.clock.frozen_at is not None,
        "api_usage": org.api_usage(),
        "daily_limit": org.daily_limit,
        "faults": [r.to_json() for r in app.faults.rules],
        "counts": {o.name: org.store.count(o) for o in org.schema.objects.values()},
        "users": {c.key: {"id": c.user_id, "username": c.username} for c in org.credentials.values()},
    }


async def handle_control(app: DevOrgApp, request: Request, action: str) -> Response:
    org = app.org
    body = {}
    if request.method == "POST":
        raw = await request.body()
        body = orjson.loads(raw) if raw else {}
    action = action.strip("/")
    if org.store.bin.is_due(org.clock.now()):  # the recycle bin's retention, as every API sees it
        await asyncio.to_thread(org.purge_recycle_bin)
    if action == "state":
        return _json(await asyncio.to_thread(org_state, app))
    if action == "clock":
        if request.method == "POST":
            if body.get("set"):
                org.set_clock(parse_datetime(body["set"]), freeze=bool(body.get("freeze")))
            elif body.get("freeze"):
                org.set_clock(org.clock.now(), freeze=True)
            if body.get("advance"):
                org.advance_clock(parse_duration(body["advance"]))
            if body.get("unfreeze"):
                org.set_clock(org.clock.now(), freeze=False)
        return _json({"now": format_datetime(org.clock.now()), "frozen": org.clock.frozen_at is not None})
    if action == "faults":
        if request.method == "DELETE":
            app.faults.clear()
        elif request.method == "POST":
            app.faults.add(
                body["kind"],
                rate=float(body.get("rate", 0)),
                next=int(body.get("next", 0)),
                status=int(body.get("status", 503)),
                delay=float(body.get("delay", 2.0)),
                path=body.get("path", ""),
                after=bool(body.get("after", False)),
                method=str(body.get("method", "")),
            )
        return _json([r.to_json() for r in app.faults.rules])
    if action == "scenario":
        from .scenarios import run_scenario

        at = parse_datetime(body["at"]) if body.get("at") else None
        result = await asyncio.to_thread(
            run_scenario,
            org,
            body["name"],
            user=body.get("user"),
            at=at,
            fraction=body.get("fraction"),
            seed=int(body.get("seed", 7)),
            empty_bin=bool(body.get("empty_bin")),
        )
        return _json(result.to_json())
    if action == "generate":
        from .generator import generate_org

        counts = await asyncio.to_thread(generate_org, org, int(body["size"]), int(body.get("seed", 42)))
        return _json(counts)
    if action == "limits":
        from .limits import settings_json

        if "daily_limit" in body:
            org.set_daily_limit(int(body["daily_limit"]))
        if body.get("reset_usage"):
            org.reset_api_usage()
        if "concurrent_long_running" in body:
            org.limits_settings.concurrent_long_running = int(body["concurrent_long_running"])
        if "long_running_seconds" in body:
            org.limits_settings.long_running_seconds = float(body["long_running_seconds"])
        return _json(
            {"api_usage": org.api_usage(), "daily_limit": org.daily_limit, **settings_json(org.limits_settings)}
        )
    if action == "fields":
        org.add_custom_field(body["object"], body["field"])
        return _json({"added": f"{body['object']}.{body['field']['name']}"})
    if action == "features":
        from .bulk1 import bulk_api_enabled, set_bulk_api_enabled

        if "bulk_api" in body:  # an org without the Bulk API feature answers FeatureNotEnabled (bulk1.py)
            set_bulk_api_enabled(org, bool(body["bulk_api"]))
        return _json({"bulk_api": bulk_api_enabled(org)})
    if action == "fields/type":
        from .field_types import change_field_type

        result = await asyncio.to_thread(
            change_field_type,
            org,
            body["object"],
            body["field"],
            body["type"],
            length=body.get("length"),
            precision=body.get("precision"),
            scale=body.get("scale"),
            values=body.get("values"),
        )
        return _json(result)
    if action == "automation":  # the org's triggers and flows on updates (automation.py)
        from .automation import set_rules

        if request.method == "DELETE":
            body = {"rules": []}
        if request.method in ("POST", "DELETE"):
            await asyncio.to_thread(set_rules, org, list(body.get("rules") or []))
        return _json({"rules": org.store.get_meta("automation") or []})
    if action == "sharing":  # organization-wide defaults: Private objects (sharing.py)
        from .sharing import set_defaults

        if request.method == "POST":
            await asyncio.to_thread(set_defaults, org, dict(body.get("objects") or {}))
        return _json({"private": sorted(org.store.get_meta("sharing") or {})})
    if action == "sessions/expire":
        org.expire_sessions()
        return _json({"expired": True})
    if action == "sessions/timeout":
        if request.method == "POST":
            org.set_session_timeout(str(body["timeout"]))
        return _json({"timeout_seconds": int(org.session_timeout.total_seconds())})
    return _json({"error": f"unknown control action {action!r}"}, 404)
