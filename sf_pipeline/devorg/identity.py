"""OAuth pieces beyond the token grants of server.py: the identity URL service, the web server
(authorization code) flow that issues refresh tokens, and the refresh-token grant.

References (Salesforce Help / developer docs):
- "Identity URLs" (help: remoteaccess_using_openid.htm; Mobile SDK guide "Using Identity URLs"): the
  token response's `id` is `https://<login host>/id/<orgId>/<userId>`; a GET on it with the access token
  (Authorization header or `oauth_token` parameter) answers the user and org details, with `{version}`
  left literally in the `urls` unless a `version` parameter is given. Errors are a status with a bare
  code as the body: 403 `Missing_OAuth_Token` / `Bad_OAuth_Token` / `Wrong_Org`, 404 `Bad_Id` /
  `No_Access`, 406 `Invalid_Version`.
- "OAuth 2.0 Web Server Flow for Web App Integration" (remoteaccess_oauth_web_server_flow.htm): GET
  `/services/oauth2/authorize?response_type=code&client_id&redirect_uri[&state]`, the user logs in, the
  browser is redirected to `redirect_uri?code=...&state=...`; POST `grant_type=authorization_code` with
  `code`, `client_id`, `client_secret`, `redirect_uri` answers an access token AND a refresh token.
- "OAuth 2.0 User-Agent Flow for Desktop or Mobile App Integration": `response_type=token` redirects with
  access_token, refresh_token, instance_url, id, issued_at, signature, scope and token_type in the URL
  fragment (whether real orgs add the refresh token only for some redirect URIs is UNVERIFIED; devorg's
  connected app always has the refresh_token scope).
- "How Does the OAuth Refresh Token Fit Into the Authentication Flow?" (api_rest
  intro_understanding_refresh_token_oauth.htm): only the web server and user-agent flows issue refresh
  tokens (the username-password, JWT bearer and client credentials flows do not); POST
  `grant_type=refresh_token&refresh_token&client_id&client_secret` (or HTTP Basic client auth) answers
  a new access token with `id`, `instance_url`, `issued_at`, `signature`, `scope` and no new refresh token.
  A bad or revoked refresh token is `invalid_grant` / `expired access/refresh token`.

devorg's login page is a plain HTML form (no MFA, no consent screen: the connected app is pre-approved).
Authorization codes live 15 minutes and are single-use, as the web server flow doc says; refresh tokens
never expire (the connected app's default policy, "Refresh token is valid until revoked") and are kept in
the org's metadata, so they survive a restart like the sessions do. `POST /services/oauth2/revoke`
(doc "Revoke OAuth Tokens") revokes a refresh token or an access token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from . import ids
from .clock import format_datetime
from .errors import SalesforceError

if TYPE_CHECKING:
    from .org import Credentials, Org

CODE_LIFETIME = timedelta(minutes=15)
_META_REFRESH = "refresh_tokens"


# ====================================================================== identity URL
def identity_url(base: str, org_id: str, user_id: str) -> str:
    return f"{base}/id/{org_id}/{user_id}"


def _token_from(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith(("bearer ", "oauth ")):
        return auth.split(" ", 1)[1].strip()
    return (request.query_params.get("oauth_token") or request.query_params.get("access_token") or "").strip()


def identity_response(org: Org, org_id: str, request: Request, base: str) -> Response:
    """GET /id/<orgId>/<userId> (see module docstring for the reference)."""
    token = _token_from(request)
    if not token:
        return PlainTextResponse("Missing_OAuth_Token", status_code=403)
    try:
        session = org.session(token)
    except SalesforceError:
        return PlainTextResponse("Bad_OAuth_Token", status_code=403)
    wanted_org = request.path_params["org_id"]
    if len(wanted_org) not in (15, 18) or wanted_org[:15] != org_id[:15]:
        return PlainTextResponse("Wrong_Org", status_code=403)
    wanted_user = ids.normalize(request.path_params["user_id"])
    if wanted_user is None:
        return PlainTextResponse("Bad_Id", status_code=404)
    try:
        cred = org.user(wanted_user)
    except KeyError:
        return PlainTextResponse("Bad_Id", status_code=404)
    # Another user's identity needs "View All Data" (doc: "Client access to the identity URL for one user
    # doesn't give access to the identity URL for another user in the same org, unless ..."): in devorg
    # only the admin has it.
    if cred.user_id != session.user_id and org.user(session.user_id).key != "admin":
        return PlainTextResponse("No_Access", status_code=404)
    version = request.query_params.get("version")
    if version is not None:
        if version == "latest":
            version = "63.0"
        else:
            try:
                version = f"{float(version):.1f}"
            except ValueError:
                return PlainTextResponse("Invalid_Version", status_code=406)
    body = identity_body(org, org_id, cred, base)
    if version is not None:
        body["urls"] = {k: v.replace("{version}", version) for k, v in body["urls"].items()}
    return Response(_json_bytes(body), media_type="application/json;charset=UTF-8")


def _json_bytes(body: Any) -> bytes:
    import orjson

    return orjson.dumps(body)


def identity_body(org: Org, org_id: str, cred: Credentials, base: str) -> dict[str, Any]:
    """The identity service's JSON for a user: field list of the "Identity URLs" doc's sample response."""
    user = org.store.get(org.schema.get("User"), cred.user_id)
    org15 = org_id[:15]
    data = f"{base}/services/data/v{{version}}"
    return {
        "id": identity_url(base, org_id, cred.user_id),
        "asserted_user": True,
        "user_id": cred.user_id,
        "organization_id": org_id,
        "username": cred.username,
        "nick_name": cred.username.split("@")[0],
        "display_name": user.get("Name"),
        "email": user.get("Email"),
        "email_verified": True,
        "first_name": user.get("FirstName"),
        "last_name": user.get("LastName"),
        "timezone": user.get("TimeZoneSidKey") or "GMT",
        "photos": {"picture": f"{base}/profilephoto/005/F", "thumbnail": f"{base}/profilephoto/005/T"},
        "addr_street": None,
        "addr_city": None,
        "addr_state": None,
        "addr_country": None,
        "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        "urls": {
            "enterprise": f"{base}/services/Soap/c/{{version}}/{org15}",
            "metadata": f"{base}/services/Soap/m/{{version}}/{org15}",
            "partner": f"{base}/services/Soap/u/{{version}}/{org15}",
            "rest": f"{data}/",
            "sobjects": f"{data}/sobjects/",
            "search": f"{data}/search/",
            "query": f"{data}/query/",
            "recent": f"{data}/recent/",
            "tooling_soap": f"{base}/services/Soap/T/{{version}}/{org15}",
            "tooling_rest": f"{data}/tooling/",
            "profile": f"{base}/{cred.user_id}",
            "feeds": f"{data}/chatter/feeds",
            "groups": f"{data}/chatter/groups",
            "users": f"{data}/chatter/users",
            "feed_items": f"{data}/chatter/feed-items",
            "feed_elements": f"{data}/chatter/feed-elements",
            "custom_domain": base,
        },
        "active": bool(user.get("IsActive", True)),
        "user_type": user.get("UserType") or "STANDARD",
        "language": user.get("LanguageLocaleKey") or "en_US",
        "locale": user.get("LocaleSidKey") or "en_US",
        "utcOffset": 0,
        "last_modified_date": user.get("LastModifiedDate"),
        "is_app_installed": True,
    }


def userinfo_body(org: Org, org_id: str, cred: Credentials, base: str) -> dict[str, Any]:
    """GET /services/oauth2/userinfo: the OpenID Connect claims of the identity service ("UserInfo
    Endpoint" in Salesforce Help: sub is the identity URL, then user_id, organization_id,
    preferred_username, name, given_name, family_name, email, zoneinfo, urls, ...)."""
    ident = identity_body(org, org_id, cred, base)
    return {
        "sub": ident["id"],
        "user_id": ident["user_id"],
        "organization_id": ident["organization_id"],
        "preferred_username": ident["username"],
        "nickname": ident["nick_name"],
        "name": ident["display_name"],
        "email": ident["email"],
        "email_verified": True,
        "given_name": ident["first_name"],
        "family_name": ident["last_name"],
        "zoneinfo": ident["timezone"],
        "photos": ident["photos"],
        "profile": ident["urls"]["profile"],
        "picture": ident["photos"]["picture"],
        "address": {},
        "is_salesforce_integration_user": False,
        "urls": ident["urls"],
        "active": ident["active"],
        "user_type": ident["user_type"],
        "language": ident["language"],
        "locale": ident["locale"],
        "utcOffset": 0,
        "updated_at": ident["last_modified_date"],
        "is_app_installed": True,
    }


# ====================================================================== web server flow
class AuthorizationCodes:
    """Single-use authorization codes of the web server flow (memory only, like a browser round trip)."""

    def __init__(self, org: Org):
        self.org = org
        self.codes: dict[str, dict[str, Any]] = {}

    def issue(self, user_id: str, client_id: str, redirect_uri: str) -> str:
        code = "aPrx" + secrets.token_urlsafe(48)
        self.codes[code] = {
            "user_id": user_id,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "expires": self.org.clock.now() + CODE_LIFETIME,
        }
        return code

    def redeem(self, code: str, client_id: str, redirect_uri: str) -> str | None:
        entry = self.codes.pop(code, None)
        if entry is None or entry["expires"] <= self.org.clock.now():
            return None
        if entry["client_id"] != client_id or entry["redirect_uri"] != redirect_uri:
            return None
        return entry["user_id"]


def codes_of(org: Org) -> AuthorizationCodes:
    codes = getattr(org, "_authorization_codes", None)
    if codes is None:
        codes = AuthorizationCodes(org)
        org._authorization_codes = codes  # type: ignore[attr-defined]
    return codes


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    import orjson

    return Response(
        orjson.dumps({"error": error, "error_description": description}),
        status_code=status,
        media_type="application/json;charset=UTF-8",
    )


_LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Login | devorg</title></head><body>
<h1>devorg</h1>{error}
<form method="post" action="{action}">
{hidden}
<label>Username <input name="username" type="email" autocomplete="username"></label>
<label>Password <input name="pw" type="password" autocomplete="current-password"></label>
<button type="submit" name="Login">Log In</button>
</form></body></html>"""

_AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "prompt",
    "code_challenge",
    "code_challenge_method",
)


def base_url(request: Request) -> str:
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"https://{host}"


def token_body(org: Org, org_id: str, base: str, user_id: str, *, refresh: bool) -> dict[str, Any]:
    """A token response: a new session, the identity URL, issued_at (epoch ms) and signature, the
    Base64 HMAC-SHA256 of id + issued_at keyed with the consumer secret (web server flow doc, "signature"
    response parameter); with a refresh token for the flows that issue one."""
    session = org.new_session(user_id)
    issued = str(int(time.time() * 1000))
    id_url = identity_url(base, org_id, user_id)
    sig = base64.b64encode(
        hmac.new(org.client_secret.encode(), (id_url + issued).encode(), hashlib.sha256).digest()
    ).decode()
    body = {
        "access_token": session.token,
        "instance_url": base,
        "id": id_url,
        "token_type": "Bearer",
        "issued_at": issued,
        "signature": sig,
        "scope": "api",
    }
    if refresh:
        body["refresh_token"] = issue_refresh_token(org, user_id)
        body["scope"] = "refresh_token api"
    return body


async def authorize(org: Org, org_id: str, request: Request) -> Response:
    """GET shows the login form; POST (the form) logs the user in and redirects with a code (web server
    flow) or with the tokens in the fragment (user-agent flow, `response_type=token`)."""
    params = dict(request.query_params)
    form: dict[str, Any] = {}
    if request.method == "POST":
        form = dict(await request.form())
        params.update({k: str(v) for k, v in form.items() if k in _AUTHORIZE_PARAMS})
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    if client_id != org.client_id:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
        return _oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
    if params.get("response_type") not in ("code", "token"):
        return _redirect(
            redirect_uri,
            {
                "error": "unsupported_response_type",
                "error_description": "response type not supported",
                "state": params.get("state"),
            },
        )
    error = ""
    if request.method == "POST":
        cred = org.check_password(str(form.get("username", "")), str(form.get("pw", "")))
        if cred is not None:
            if params.get("response_type") == "token":
                # user-agent flow: the tokens travel in the redirect's fragment ("OAuth 2.0 User-Agent Flow
                # for Desktop or Mobile App Integration"), a refresh token among them
                body = token_body(org, org_id, base_url(request), cred.user_id, refresh=True)
                body.pop("scope")
                fragment = urlencode({**body, "scope": "refresh_token api", "state": params.get("state") or ""})
                return RedirectResponse(f"{redirect_uri}#{fragment}", status_code=302)
            code = codes_of(org).issue(cred.user_id, client_id, redirect_uri)
            return _redirect(redirect_uri, {"code": code, "state": params.get("state")})
        error = '<p id="error">Please check your username and password.</p>'
    hidden = "\n".join(
        f'<input type="hidden" name="{k}" value="{html.escape(params[k], quote=True)}">'
        for k in _AUTHORIZE_PARAMS
        if params.get(k) is not None
    )
    return HTMLResponse(
        _LOGIN_PAGE.format(error=error, action=html.escape(request.url.path, quote=True), hidden=hidden),
        status_code=200,
    )


def _redirect(uri: str, values: dict[str, Any]) -> Response:
    query = urlencode({k: v for k, v in values.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", status_code=302)


# ====================================================================== refresh tokens
def issue_refresh_token(org: Org, user_id: str) -> str:
    token = "5Aep" + secrets.token_urlsafe(64)
    with org.store.lock:
        tokens = org.store.get_meta(_META_REFRESH) or {}
        tokens[token] = {"user_id": user_id, "issued": format_datetime(org.clock.now())}
        org.store.set_meta(_META_REFRESH, tokens)
    return token


def refresh_token_user(org: Org, token: str) -> str | None:
    entry = (org.store.get_meta(_META_REFRESH) or {}).get(token)
    return entry["user_id"] if entry else None


def revoke(org: Org, token: str) -> bool:
    """Revoke a refresh token (and the sessions of its user it issued are left alone, as Salesforce
    revokes only the given token) or an access token."""
    with org.store.lock:
        tokens = org.store.get_meta(_META_REFRESH) or {}
        if tokens.pop(token, None) is not None:
            org.store.set_meta(_META_REFRESH, tokens)
            return True
    if token in org.sessions:
        with org._lock:
            org.sessions.pop(token, None)
            org._save_sessions()
        return True
    return False


async def revoke_endpoint(org: Org, request: Request) -> Response:
    """POST /services/oauth2/revoke (token in the form or the query): 200 empty, or 400
    `unsupported_token_type` for an unknown token (doc "Revoke OAuth Tokens")."""
    form = await request.form() if request.method == "POST" else {}
    token = str(form.get("token") or request.query_params.get("token") or "")
    if not revoke(org, token):
        return _oauth_error("unsupported_token_type", "this token type is not supported")
    return Response(status_code=200)


def grant_user(
    org: Org, grant: str, form: Any, client_id: str | None, client_secret: str | None
) -> tuple[Credentials | None, bool, Response | None]:
    """The user of an `authorization_code` or `refresh_token` grant: (credentials, issue a refresh
    token?, error response)."""
    if client_id != org.client_id:
        return None, False, _oauth_error("invalid_client_id", "client identifier invalid")
    if client_secret != org.client_secret:
        return None, False, _oauth_error("invalid_client", "invalid client credentials")
    if grant == "authorization_code":
        user_id = codes_of(org).redeem(str(form.get("code", "")), client_id, str(form.get("redirect_uri", "")))
        if user_id is None:
            return None, False, _oauth_error("invalid_grant", "invalid authorization code")
        return org.user(user_id), True, None
    user_id = refresh_token_user(org, str(form.get("refresh_token", "")))
    if user_id is None:
        return None, False, _oauth_error("invalid_grant", "expired access/refresh token")
    return org.user(user_id), False, None
