"""devorg's HTTPS server: the Salesforce REST, SOAP, OAuth and Bulk API 2.0 surface over an `Org`.

Routing follows the real URL shapes (any `vNN.0`, trailing slashes optional, case-insensitive
object names, login endpoints under any path prefix). Errors are JSON arrays shaped like the real
org's, and every API response carries `Sforce-Limit-Info`. Reference: salesforce-api-fidelity.md.
"""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import composite, files, identity, ids
from .clock import parse_datetime
from .context import (
    JSON_TYPE,
    ApiContext,
    error_response,
    json_response,
    read_json,
    run_in_thread,
    soap_fault,
    soap_ok,
    xml_text,
)
from .errors import SalesforceError, not_found
from .faults import KINDS, FaultInjector
from .org import Org

API_VERSIONS = [f"{v}.0" for v in range(31, 64)]
_VERSION = re.compile(r"^v(\d{2,3}\.\d)$")


class DevOrgApp:
    """The ASGI application; `faults` is shared with the control endpoints."""

    def __init__(self, org: Org):
        self.org = org
        self.faults = FaultInjector()
        org.faults = self.faults  # Bulk ingest rows consult the same rules (UNABLE_TO_LOCK_ROW per record)
        routes = [
            Route("/services/data", self.versions, methods=["GET"]),
            Route("/services/data/", self.versions, methods=["GET"]),
            Route("/services/data/{version}", self.api, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
            Route("/services/data/{version}/{rest:path}", self.api, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
            Route("/services/oauth2/userinfo", self.userinfo, methods=["GET"]),
            Route("/id/{org_id}/{user_id}", self.identity, methods=["GET"]),
            Route("/services/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/{prefix:path}/services/oauth2/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/services/oauth2/revoke", self.revoke, methods=["GET", "POST"]),
            Route("/{prefix:path}/services/oauth2/revoke", self.revoke, methods=["GET", "POST"]),
            Route("/services/async/{version}/{rest:path}", self.bulk1, methods=["GET", "POST"]),
            Route("/_devorg/{action:path}", self.control, methods=["GET", "POST", "DELETE"]),
            Route("/{prefix:path}/services/oauth2/token", self.oauth_token, methods=["POST"]),
            Route("/services/oauth2/token", self.oauth_token, methods=["POST"]),
            Route("/{prefix:path}/services/Soap/u/{version}", self.soap, methods=["POST"]),
            Route("/services/Soap/u/{version}", self.soap, methods=["POST"]),
            Route("/services/Soap/u/{version}/{org_id}", self.soap, methods=["POST"]),
            Route("/{prefix:path}/services/Soap/u/{version}/{org_id}", self.soap, methods=["POST"]),
        ]
        from .limits import RequestLimits

        self.app = RequestLimits(Starlette(routes=routes), lambda: org.limits_settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            # The sf CLI stores instance URLs with a trailing slash and jsforce appends "/services/...":
            # real orgs answer `//services/data/...` like `/services/data/...`.
            scope = dict(scope, path=re.sub("/{2,}", "/", scope["path"]))
        await self.app(scope, receive, send)

    # ----------------------------------------------------------------- helpers
    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.org.api_usage()}/{self.org.daily_limit}"}

    def _host_url(self, request: Request) -> str:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return f"https://{host}"

    async def _inject(self, request: Request, path: str) -> Response | None:
        # Lock contention hits record writes; Bulk job control calls and reads never take a row lock
        # (Bulk ingest rows fail one by one instead, see bulk.py).
        kinds = ("5xx", "drop", "slow") if request.method == "GET" or "/jobs/" in path else KINDS
        rule = self.faults.take(path, kinds, request.method)
        if rule is None:
            return None
        if rule.after:  # answered by _fault_after once the request was carried out
            request.state.fault_after = rule
            return None
        if rule.kind == "slow":
            await asyncio.sleep(rule.delay)
            return None
        if rule.kind == "5xx":
            return self._error_5xx(rule)
        if rule.kind == "lock":
            if request.method == "GET":
                return None
            return json_response(
                [
                    {
                        "message": "unable to obtain exclusive access to this record",
                        "errorCode": "UNABLE_TO_LOCK_ROW",
                        "fields": [],
                    }
                ],
                400,
                self._limit_header(),
            )
        if rule.kind == "drop":

            async def partial():
                yield b'{"totalSize":'
                raise ConnectionResetError("devorg fault injection: connection dropped mid-response")

            return StreamingResponse(partial(), media_type=JSON_TYPE, headers={"Content-Length": "4096"})
        return None

    def _error_5xx(self, rule) -> Response:
        body = (
            [
                {
                    "message": "An unexpected error occurred. Please include this ErrorId if you contact "
                    "support: 1234567890-12345 (-1234567890)",
                    "errorCode": "UNKNOWN_EXCEPTION",
                }
            ]
            if rule.status == 500
            else [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
        )
        return json_response(body, rule.status, self._limit_header())

    def _fault_after(self, request: Request, response: Response) -> Response:
        """The 5xx of an `after` fault in place of the answer of a request that was carried out (faults.py)."""
        rule = getattr(request.state, "fault_after", None)
        return response if rule is None else self._error_5xx(rule)

    async def _purge_due(self) -> None:
        """Recycle-bin retention runs on the org clock: every API call first purges what is due (recycle_bin.py)."""
        if self.org.store.bin.is_due(self.org.clock.now()):
            await run_in_thread(self.org.purge_recycle_bin)

    # ----------------------------------------------------------------- /services/data
    async def versions(self, request: Request) -> Response:
        return json_response([{"label": f"v{v}", "url": f"/services/data/v{v}", "version": v} for v in API_VERSIONS])

    async def api(self, request: Request) -> Response:
        version_part = request.path_params["version"]
        m = _VERSION.match(version_part)
        if not m:
            return error_response(not_found())
        version = m.group(1)
        rest = request.path_params.get("rest", "")
        parts = [p for p in rest.split("/") if p]
        try:
            injected = await self._inject(request, request.url.path)
            if injected is not None:
                return injected
            token = request.headers.get("authorization", "")
            token = token[7:] if token.lower().startswith("bearer ") else request.headers.get("x-sfdc-session", "")
            session = self.org.session(token.strip())
            self.org.count_request()
            await self._purge_due()
            ctx = ApiContext(self.org, request, version, session.user_id)
            if parts and parts[0] == "jobs":
                from .bulk import handle_jobs

                response = await handle_jobs(ctx, parts[1:])
            else:
                response = await self.dispatch(ctx, parts)
        except SalesforceError as err:
            return self._fault_after(request, error_response(err, self._limit_header()))
        response.headers.update(self._limit_header())
        return self._fault_after(request, response)

    async def dispatch(self, ctx: ApiContext, parts: list[str]) -> Response:
        method = ctx.request.method
        org = ctx.org
        if not parts:
            base = f"/services/data/v{ctx.version}"
            resources = {
                k: f"{base}/{k}"
                for k in ("sobjects", "query", "queryAll", "limits", "composite", "jobs", "search", "tooling")
            }
            # the version's resource list carries the caller's identity URL (REST API "Resources by
            # Version"); jsforce's identity() reads it from there
            resources["identity"] = identity.identity_url(self._host_url(ctx.request), self.org.org_id, ctx.user_id)
            return json_response(resources)
        head = parts[0].lower()
        if head == "sobjects":
            return await self.sobjects(ctx, parts[1:])
        if head in ("query", "queryall"):
            include_deleted = head == "queryall"
            if method != "GET":
                raise SalesforceError(
                    "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are GET", status=405
                )
            if len(parts) > 1:
                return json_response(await run_in_thread(org.queries.more, parts[1], ctx.version))
            text = ctx.request.query_params.get("q")
            if not text:
                raise SalesforceError("MALFORMED_QUERY", "A query string has to be specified")
            batch = _batch_size(ctx.request.headers.get("sforce-query-options", ""))
            return json_response(
                await run_in_thread(
                    org.queries.run,
                    text,
                    include_deleted=include_deleted,
                    batch_size=batch,
                    api_version=ctx.version,
                    user_id=ctx.user_id,
                )
            )
        if head == "limits":
            if len(parts) > 1 and parts[1].lower() == "recordcount":
                names = [n for n in ctx.request.query_params.get("sObjects", "").split(",") if n]
                objs = [org.schema.get(n) for n in names] if names else list(org.schema.objects.values())
                return json_response({"sObjects": [{"count": org.store.count(o), "name": o.name} for o in objs]})
            return json_response(org.limits())
        if head == "composite" and len(parts) == 2 and parts[1].lower() == "batch":
            return await composite.batch(self.dispatch, ctx)
        if head == "composite" and len(parts) > 1 and parts[1].lower() == "sobjects":
            return await self.collections(ctx, parts[2:])
        raise not_found()

    # ----------------------------------------------------------------- sobjects
    async def sobjects(self, ctx: ApiContext, parts: list[str]) -> Response:
        org, method, v = ctx.org, ctx.request.method, ctx.version
        if not parts:
            unchanged, headers = composite.conditional(org, ctx.request, None)
            return unchanged or json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [o.global_entry(v) for o in org.schema.objects.values()],
                },
                headers=headers,
            )
        obj = org.schema.get(parts[0])
        rest = parts[1:]
        if not rest:
            if method == "GET":
                return json_response({"objectDescribe": obj.global_entry(v), "recentItems": []})
            if method == "POST" and obj.name in files.BLOB_FIELDS:
                values, data = await files.read_insert_body(ctx.request, obj)
                rid = await run_in_thread(files.insert_with_blob, org, obj, values, data, ctx.user_id)
                return json_response({"id": rid, "success": True, "errors": []}, 201)
            if method == "POST":
                body = await read_json(ctx.request)
                if not isinstance(body, dict):
                    raise SalesforceError("JSON_PARSER_ERROR", "The request body must be a JSON object")
                insert = files.insert_link if obj.name == "ContentDocumentLink" else None
                rid = await (
                    run_in_thread(insert, org, body, ctx.user_id)
                    if insert
                    else run_in_thread(org.store.insert, obj, body, ctx.user_id)
                )
                return json_response({"id": rid, "success": True, "errors": []}, 201)
            raise _method_not_allowed(method, "GET, HEAD, POST")
        sub = rest[0].lower()
        if sub == "describe" and len(rest) == 1:
            unchanged, headers = composite.conditional(org, ctx.request, obj.name)
            return unchanged or json_response(obj.describe(v, org.schema), headers=headers)
        if sub in ("updated", "deleted") and len(rest) == 1:
            start, end = _window_params(ctx.request)
            if not obj.has_field("SystemModstamp"):  # history, share... objects (wide.py)
                from .wide import append_only_changes

                return json_response(await run_in_thread(append_only_changes, org, obj, sub, start, end))
            return json_response(await run_in_thread(_updated_or_deleted, ctx, obj, sub, start, end))
        if len(rest) == 1:
            rid = rest[0]
            if method == "GET":
                rec = await run_in_thread(org.store.get, obj, rid, user_id=ctx.user_id)
                fields = ctx.request.query_params.get("fields")
                return json_response(_record(ctx, obj, rec, fields.split(",") if fields else None))
            if method == "PATCH" and obj.name in files.BLOB_FIELDS:
                values, data = await files.read_insert_body(ctx.request, obj)
                await run_in_thread(files.update_with_blob, org, obj, rid, values, data, ctx.user_id)
                return Response(status_code=204)
            if method == "PATCH":
                body = await read_json(ctx.request)
                if not isinstance(body, dict):
                    raise SalesforceError("JSON_PARSER_ERROR", "The request body must be a JSON object")
                await run_in_thread(org.store.update, obj, rid, body, ctx.user_id)
                return Response(status_code=204)
            if method == "DELETE":
                await run_in_thread(org.store.delete, obj, rid, ctx.user_id)
                return Response(status_code=204)
            raise _method_not_allowed(method, "GET, HEAD, PATCH, DELETE")
        if len(rest) == 2 and method == "GET" and obj.has_field(rest[1]) and obj.field(rest[1]).type == "base64":
            return await run_in_thread(files.blob_response, org, obj, rest[0], obj.field(rest[1]))
        if len(rest) == 2:
            # /sobjects/X/{ExternalIdField}/{value}: get or upsert by external id (or Id)
            field = obj.field(rest[0])
            value = unquote(rest[1])
            if method == "GET":
                matches = await run_in_thread(_external_matches, org, obj, field, value)
                if not matches:
                    raise not_found()
                if len(matches) > 1:
                    return json_response([ctx.record_url(obj.name, m) for m in matches], 300)
                rec = await run_in_thread(org.store.get, obj, matches[0])
                return json_response(_record(ctx, obj, rec, None))
            if method in ("PATCH", "POST"):
                body = await read_json(ctx.request) or {}
                result = await run_in_thread(_upsert, org, obj, field, value, body, ctx.user_id)
                status = 201 if result["created"] else 200
                return json_response(result, status)
            raise _method_not_allowed(method, "GET, PATCH")
        raise not_found()

    # ----------------------------------------------------------------- sObject Collections
    async def collections(self, ctx: ApiContext, parts: list[str]) -> Response:
        org, method = ctx.org, ctx.request.method
        params = ctx.request.query_params
        if method == "POST" and len(parts) == 1:
            # Get Records With a Request Body Using sObject Collections: {"ids": [...], "fields": [...]}
            from .collections import retrieve_body

            obj = org.schema.get(parts[0])
            id_list, fields = retrieve_body(await read_json(ctx.request))
            return json_response(await run_in_thread(_collection_get, ctx, obj, id_list, fields))
        if method == "GET" and len(parts) == 1:
            obj = org.schema.get(parts[0])
            id_list = [i for i in params.get("ids", "").split(",") if i]
            fields = [f for f in params.get("fields", "").split(",") if f]
            if not id_list or not fields:
                raise SalesforceError("MALFORMED_QUERY", "ids and fields are required")
            if len(id_list) > 2000:
                raise SalesforceError("EXCEEDED_ID_LIMIT", "You can retrieve up to 2000 records at a time")
            return json_response(await run_in_thread(_collection_get, ctx, obj, id_list, fields))
        if method == "DELETE":
            id_list = [i for i in params.get("ids", "").split(",") if i]
            all_or_none = params.get("allOrNone", "false").lower() == "true"
            _check_collection_size(len(id_list))
            return json_response(
                await run_in_thread(_collection_apply, ctx, [("delete", None, i, None) for i in id_list], all_or_none)
            )
        body = await read_json(ctx.request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SalesforceError("JSON_PARSER_ERROR", "The request body must be an object with a records array")
        records = body["records"]
        _check_collection_size(len(records))
        all_or_none = bool(body.get("allOrNone", False))
        ops = []
        for rec in records:
            if not isinstance(rec, dict):
                raise SalesforceError("JSON_PARSER_ERROR", "Each record must be a JSON object")
            attrs = rec.get("attributes") or {}
            type_name = attrs.get("type") if isinstance(attrs, dict) else None
            if not type_name:
                raise SalesforceError("INVALID_FIELD", "No SObject Type defined in attributes")
            values = {k: v for k, v in rec.items() if k != "attributes"}
            if method == "POST" and not parts:
                ops.append(("insert", type_name, None, values))
            elif method == "PATCH" and not parts:
                rid = next((v for k, v in values.items() if k.lower() == "id"), None)
                ops.append(("update", type_name, rid, {k: v for k, v in values.items() if k.lower() != "id"}))
            elif method == "PATCH" and len(parts) == 2:
                ops.append(("upsert", parts[0], parts[1], values))
            else:
                raise _method_not_allowed(method, "GET, POST, PATCH, DELETE")
        return json_response(await run_in_thread(_collection_apply, ctx, ops, all_or_none))

    # ----------------------------------------------------------------- auth
    async def oauth_token(self, request: Request) -> Response:
        form = await request.form()
        grant = form.get("grant_type", "")
        org = self.org
        cred = None
        with_refresh = False
        if grant == "password":
            if form.get("client_id") != org.client_id or form.get("client_secret") != org.client_secret:
                return json_response(
                    {"error": "invalid_client_id", "error_description": "client identifier invalid"}, 400
                )
            cred = org.check_password(str(form.get("username", "")), str(form.get("password", "")))
        elif grant == "client_credentials":
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    client_id = None
            if client_id != org.client_id or client_secret != org.client_secret:
                return json_response(
                    {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
                )
            cred = org.user("integration")  # the connected app's run-as user
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            cred = self._jwt_user(str(form.get("assertion", "")))
        elif grant in ("authorization_code", "refresh_token"):
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    client_id = None
            cred, with_refresh, failure = identity.grant_user(org, grant, form, client_id, client_secret)
            if failure is not None:
                return failure
        else:
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        if cred is None:
            return json_response({"error": "invalid_grant", "error_description": "authentication failure"}, 400)
        return json_response(
            await run_in_thread(
                identity.token_body,
                org,
                org.org_id,
                self._host_url(request),
                cred.user_id,
                refresh=grant == "authorization_code" and with_refresh,
            )
        )

    def _jwt_user(self, assertion: str):
        from .tls import jwt_public_key

        try:
            claims = jwt.decode(
                assertion,
                jwt_public_key(self.org),
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["iss", "sub", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("iss") != self.org.client_id:
            return None
        try:
            return self.org.user(str(claims["sub"]))
        except KeyError:
            return None

    async def identity(self, request: Request) -> Response:
        return await run_in_thread(
            identity.identity_response, self.org, self.org.org_id, request, self._host_url(request)
        )

    async def authorize(self, request: Request) -> Response:
        return await identity.authorize(self.org, self.org.org_id, request)

    async def revoke(self, request: Request) -> Response:
        return await identity.revoke_endpoint(self.org, request)

    async def bulk1(self, request: Request) -> Response:
        from .bulk1 import handle_bulk1

        return await handle_bulk1(self, request)

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "")[7:]
        try:
            s = self.org.session(token)
        except SalesforceError as err:
            return error_response(err)
        cred = self.org.user(s.user_id)
        return json_response(
            await run_in_thread(identity.userinfo_body, self.org, self.org.org_id, cred, self._host_url(request))
        )

    async def soap(self, request: Request) -> Response:
        raw = await request.body()
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError:
            return soap_fault("INVALID_XML", "The request body is not valid XML")
        body = next((el for el in root.iter() if el.tag.endswith("}Body") or el.tag == "Body"), None)
        call = next(iter(body), None) if body is not None else None
        if call is None:
            return soap_fault("INVALID_XML", "No SOAP body")
        op = call.tag.rsplit("}", 1)[-1]
        texts = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in call.iter()}
        version = request.path_params["version"]
        if op == "login":
            cred = self.org.check_password(texts.get("username", ""), texts.get("password", ""))
            if cred is None:
                return soap_fault(
                    "INVALID_LOGIN", "Invalid username, password, security token; or user locked out.", login=True
                )
            session = self.org.new_session(cred.user_id)
            base = self._host_url(request)
            return soap_ok(
                "<loginResponse><result>"
                f"<metadataServerUrl>{base}/services/Soap/m/{version}/{self.org.org_id}</metadataServerUrl>"
                "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
                f"<serverUrl>{base}/services/Soap/u/{version}/{self.org.org_id}</serverUrl>"
                f"<sessionId>{session.token}</sessionId><userId>{cred.user_id}</userId>"
                f"<userInfo><organizationId>{self.org.org_id}</organizationId><userEmail>{cred.username}</userEmail>"
                f"<userFullName>{cred.key}</userFullName><userId>{cred.user_id}</userId>"
                f"<userName>{cred.username}</userName></userInfo>"
                "</result></loginResponse>"
            )
        session_id = next((el.text for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "sessionId"), None)
        try:
            session = self.org.session(session_id)
        except SalesforceError:
            return soap_fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session")
        await self._purge_due()
        if op in ("emptyRecycleBin", "merge"):
            from .soap_dml import handle_soap_dml

            return await handle_soap_dml(self, op, call, session.user_id)
        if op == "undelete":
            try:
                self.org.count_request()
            except SalesforceError as err:
                return soap_fault(err.error_code, err.message)
            results = []
            for el in call:
                if el.tag.rsplit("}", 1)[-1] != "ids":
                    continue
                rid = (el.text or "").strip()
                try:
                    done = await run_in_thread(self.org.store.undelete, rid, session.user_id)
                    results.append(f"<result><id>{done}</id><success>true</success></result>")
                except SalesforceError as err:
                    results.append(
                        f"<result><errors><message>{xml_text(err.message)}</message><statusCode>{err.error_code}"
                        '</statusCode></errors><id xsi:nil="true"/><success>false</success></result>'
                    )
            return soap_ok("<undeleteResponse>" + "".join(results) + "</undeleteResponse>", self._limit_header())
        return soap_fault("INVALID_OPERATION", f"devorg does not implement the SOAP call {op}")

    # ----------------------------------------------------------------- control (test hooks)
    async def control(self, request: Request) -> Response:
        from .control import authorized, handle_control

        if not authorized(self.org, request):
            return json_response(
                {
                    "error": "devorg control endpoints need the control token: send "
                    "'Authorization: Bearer <DEVORG_<ALIAS>_CONTROL_TOKEN>' as printed by "
                    "`sf-pipeline devorg serve`"
                },
                401,
            )
        try:
            return await handle_control(self, request, request.path_params["action"])
        except (ValueError, KeyError) as exc:
            return json_response({"error": str(exc)}, 400)
        except SalesforceError as err:
            return error_response(err)


# ===================================================================== plain helpers (run in threads)
def _method_not_allowed(method: str, allowed: str) -> SalesforceError:
    return SalesforceError(
        "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}", status=405
    )


def _batch_size(header: str) -> int:
    m = re.search(r"batchSize\s*=\s*(\d+)", header, re.I)
    return int(m.group(1)) if m else 2000


def _check_collection_size(n: int) -> None:
    if n > 200:
        raise SalesforceError(
            "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into this call"
        )


def _record(ctx: ApiContext, obj, rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": obj.name, "url": ctx.record_url(obj.name, rec["Id"])}}
    if fields:
        for name in fields:
            f = obj.field(name.strip())
            out[f.name] = rec.get(f.name)
    else:
        out.update(rec)
    for f in obj.fields:
        if f.type == "base64" and out.get(f.name) is not None:  # the blob's URL (files.py serves it)
            out[f.name] = ctx.record_url(obj.name, rec["Id"]) + "/" + f.name
    return out


def _parse_window_value(raw: str | None, name: str) -> datetime:
    if not raw:
        raise SalesforceError("MISSING_ARGUMENT", f"{name} parameter is required")
    text = unquote(raw).strip().rstrip(":").replace(" ", "+")
    try:
        return parse_datetime(text)
    except ValueError:
        raise SalesforceError("INVALID_REPLICATION_DATE", f"invalid {name} date: {raw}") from None


def _window_params(request: Request) -> tuple[datetime, datetime]:
    start = _parse_window_value(request.query_params.get("start"), "start")
    end = _parse_window_value(request.query_params.get("end"), "end")
    return start, end


def _updated_or_deleted(ctx: ApiContext, obj, kind: str, start: datetime, end: datetime) -> dict[str, Any]:
    """getUpdated / getDeleted over the delete log and the recycle bin's purge marks (recycle_bin.py)."""
    store = ctx.org.store
    with store.lock:
        now = ctx.org.clock.now()
        if kind == "updated":
            return store.bin.get_updated(obj, start, end, now)
        return store.bin.get_deleted(obj, start, end, now)


def _external_matches(org: Org, obj, field, value: str) -> list[str]:
    if field.name == "Id":
        rid = ids.normalize(value)
        return [rid] if rid else []
    if not field.external_id:
        raise SalesforceError(
            "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field.name}", status=404
        )
    return org.store.find_by_external_id(obj, field, value)


def _upsert(org: Org, obj, field, value: str, body: dict[str, Any], user_id: str) -> dict[str, Any]:
    with org.store.transaction():
        matches = _external_matches(org, obj, field, value)
        if len(matches) > 1:
            raise SalesforceError(
                "MULTIPLE_RECORDS_FOUND",
                "A user-specified external ID matches more than one record during an upsert.",
                status=300,
            )
        body = {k: v for k, v in body.items() if k.lower() != field.lower and k != "attributes"}
        if matches:
            rid = org.store.update(obj, matches[0], body, user_id)
            return {"id": rid, "success": True, "errors": [], "created": False}
        if field.name != "Id":
            body[field.name] = value
        rid = org.store.insert(obj, body, user_id)
        return {"id": rid, "success": True, "errors": [], "created": True}


def _collection_get(ctx: ApiContext, obj, id_list: list[str], fields: list[str]) -> list[Any]:
    out: list[Any] = []
    for rid in id_list:
        try:
            rec = ctx.org.store.get(obj, rid, user_id=ctx.user_id)  # null for a record the user cannot see
        except SalesforceError:
            out.append(None)
            continue
        out.append(_record(ctx, obj, rec, fields))
    return out


def _collection_apply(
    ctx: ApiContext, ops: list[tuple[str, str | None, str | None, Any]], all_or_none: bool
) -> list[dict[str, Any]]:
    """Apply up to 200 operations; per-record results in input order, all rolled back on allOrNone failure."""
    org, store = ctx.org, ctx.org.store
    results: list[dict[str, Any]] = []

    def one(op: str, type_name: str | None, rid: str | None, values: Any) -> dict[str, Any]:
        try:
            with store.transaction():
                if op == "delete":
                    target = org.schema.object_for_id(ids.normalize(rid or "") or "")
                    if target is None:
                        raise SalesforceError("MALFORMED_ID", f"malformed id {rid}")
                    done = store.delete(target, rid, ctx.user_id)
                    return {"id": done, "success": True, "errors": []}
                obj = org.schema.get(type_name or "")
                if op == "insert":
                    return {"id": store.insert(obj, values, ctx.user_id), "success": True, "errors": []}
                if op == "update":
                    if not rid:
                        raise SalesforceError("MISSING_ARGUMENT", "Id not specified in an update call", fields=["Id"])
                    return {"id": store.update(obj, rid, values, ctx.user_id), "success": True, "errors": []}
                field = obj.field(rid or "")
                value = next((v for k, v in values.items() if k.lower() == field.lower), None)
                if value is None:
                    raise SalesforceError("MISSING_ARGUMENT", f"{field.name} not specified", fields=[field.name])
                return _upsert(org, obj, field, str(value), values, ctx.user_id)
        except SalesforceError as err:
            return {"id": rid if op != "insert" else None, "success": False, "errors": [err.to_save_error()]}

    with store.lock:
        if not all_or_none:
            return [one(*op) for op in ops]
        try:
            with store.transaction():
                results = [one(*op) for op in ops]
                if not all(r["success"] for r in results):
                    raise _RollBack()
        except _RollBack:
            rolled = {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was "
                "using AllOrNone header",
                "fields": [],
            }
            results = [r if not r["success"] else {"id": None, "success": False, "errors": [rolled]} for r in results]
        return results


class _RollBack(Exception):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)
