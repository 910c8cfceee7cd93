"""The two ways a careful client saves API calls: Composite Batch, and describes answered 304.

Composite Batch (REST API Developer Guide, "Composite Batch" and "Batch Request Body":
https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_batch.htm):
up to 25 subrequests run in order, each committing on its own; "each subrequest counts against rate
limits" (so a batch of n subrequests costs n API calls); with haltOnError, the subrequests after the
first 4xx/5xx answer 412 BATCH_PROCESSING_HALTED; a malformed subrequest (method, url) fails the whole
batch with 400 before anything runs; a subrequest's version must be 34.0 or later and not later than
the batch's; blob retrieval is not available in a batch.

If-Modified-Since (REST API Developer Guide, "Describe Global" and "sObject Describe", header
If-Modified-Since: "If the object metadata has not changed since the included date, a 304 Not Modified
status code is returned with no response body"). devorg's metadata changes when a custom field is
added at run time; the describe answers carry Last-Modified.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime as http_date
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .clock import format_datetime, parse_datetime
from .context import ApiContext, error_response, json_response, read_json
from .errors import SalesforceError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

MAX_SUBREQUESTS = 25
_METHODS = {"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"}


async def batch(dispatch: Callable[[ApiContext, list[str]], Awaitable[Response]], ctx: ApiContext) -> Response:
    """POST /composite/batch; each subrequest goes through `dispatch` (the server's router) as its own request."""
    if ctx.request.method != "POST":
        raise SalesforceError(
            "METHOD_NOT_ALLOWED", f"HTTP Method '{ctx.request.method}' not allowed. Allowed are POST", status=405
        )
    body = await read_json(ctx.request)
    if not isinstance(body, dict) or not isinstance(body.get("batchRequests"), list):
        raise SalesforceError("JSON_PARSER_ERROR", "The request body must be an object with a batchRequests array")
    subrequests = body["batchRequests"]
    if not subrequests:
        raise SalesforceError("INVALID_BATCH_REQUEST", "Batch requests must contain at least one request")
    if len(subrequests) > MAX_SUBREQUESTS:
        # Limit documented ("up to 25 subrequests"); errorCode/message UNVERIFIED against a real capture.
        raise SalesforceError(
            "INVALID_BATCH_REQUEST",
            f"A batch can contain at most {MAX_SUBREQUESTS} subrequests, got {len(subrequests)}",
        )
    planned = [_parse_subrequest(sub, ctx.version) for sub in subrequests]  # all-or-nothing validation
    halt = bool(body.get("haltOnError", False))
    results: list[dict[str, Any]] = []
    halted = False
    for i, (method, version, parts, query, rich) in enumerate(planned):
        if halted:
            results.append(
                {
                    "statusCode": 412,
                    "result": [
                        {"errorCode": "BATCH_PROCESSING_HALTED", "message": "Batch processing halted per request"}
                    ],
                }
            )
            continue
        try:
            if i:  # the batch itself was counted as the first subrequest
                ctx.org.count_request()
            sub_ctx = type(ctx)(
                ctx.org, _sub_request(ctx.request, method, version, parts, query, rich), version, ctx.user_id
            )
            response = await dispatch(sub_ctx, parts)
        except SalesforceError as err:
            response = error_response(err)
        status = response.status_code
        raw = bytes(response.body) if getattr(response, "body", None) else b""
        result = orjson.loads(raw) if raw else None
        results.append({"statusCode": status, "result": result})
        if halt and status >= 400:
            halted = True
    has_errors = any(r["statusCode"] >= 400 for r in results)
    return json_response({"hasErrors": has_errors, "results": results})


def _parse_subrequest(sub: Any, batch_version: str) -> tuple[str, str, list[str], str, Any]:
    if not isinstance(sub, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "Each batch request must be a JSON object")
    method = str(sub.get("method", "")).upper()
    url = sub.get("url")
    if method not in _METHODS or not isinstance(url, str) or not url:
        raise SalesforceError("INVALID_BATCH_REQUEST", f"Invalid subrequest: method {sub.get('method')!r}, url {url!r}")
    split = urlsplit(url)
    path = split.path.strip("/")
    if path.startswith("services/data/"):
        path = path[len("services/data/") :]
    head, _, rest = path.partition("/")
    version = head[1:] if head.startswith("v") else ""
    try:
        number = float(version)
    except ValueError:
        raise SalesforceError(
            "INVALID_BATCH_REQUEST",
            f"Invalid subrequest url {url!r}: it must start with the API version, e.g. v59.0/sobjects/Account",
        ) from None
    if number < 34.0 or number > float(batch_version):
        raise SalesforceError(
            "INVALID_BATCH_REQUEST",
            f"Subrequest version v{version} must be between v34.0 and the batch's version v{batch_version}",
        )
    parts = [p for p in rest.split("/") if p]
    if len(parts) == 3 and parts[0].lower() == "sobjects" and method == "GET" and _is_blob(parts):
        raise SalesforceError("INVALID_BATCH_REQUEST", "sObject Blob Retrieve is not supported in a batch")
    return method, version, parts, split.query, sub.get("richInput")


def _is_blob(parts: list[str]) -> bool:
    return parts[2] in ("Body", "VersionData")


def _sub_request(outer: Request, method: str, version: str, parts: list[str], query: str, rich: Any) -> Request:
    body = orjson.dumps(rich) if rich is not None else b""
    headers = [(k, v) for k, v in outer.scope["headers"] if k.lower() not in (b"content-length", b"content-type")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = dict(
        outer.scope,
        method=method,
        path=f"/services/data/v{version}/" + "/".join(parts),
        query_string=query.encode(),
        headers=headers,
    )
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


# ====================================================================== If-Modified-Since on describes
def metadata_modified(org: Any, object_name: str | None) -> datetime:
    """When the org's metadata (one object's, or any, for the global describe) last changed."""
    changes = org.store.get_meta("describe_modified") or {}
    created = org.store.get_meta("metadata_created")
    if created is None:
        created = format_datetime(org.clock.now())
        org.store.set_meta("metadata_created", created)
    stamps = (
        [created] + ([changes[object_name]] if object_name in changes else [])
        if object_name
        else [created, *changes.values()]
    )
    return max(parse_datetime(s) for s in stamps)


def mark_modified(org: Any, object_name: str) -> None:
    # Last-Modified has one-second resolution; a test clock frozen at the instant of the last describe would
    # stamp this change in that same second and answer 304 to a client holding that describe. A change always
    # follows the metadata it changes, so it is stamped at least a second after the last one.
    latest = metadata_modified(org, None).replace(microsecond=0)
    stamp = max(org.clock.now(), latest + timedelta(seconds=1))
    changes = org.store.get_meta("describe_modified") or {}
    changes[object_name] = format_datetime(stamp)
    org.store.set_meta("describe_modified", changes)


def conditional(org: Any, request: Request, object_name: str | None) -> tuple[Response | None, dict[str, str]]:
    """(304 response or None, headers to add): compare If-Modified-Since with the metadata's last change."""
    modified = metadata_modified(org, object_name).replace(microsecond=0)
    headers = {"Last-Modified": http_date(modified.astimezone(UTC), usegmt=True)}
    since = request.headers.get("if-modified-since")
    if since:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if modified <= when:
                return Response(status_code=304, headers=headers), headers
    return None, headers
