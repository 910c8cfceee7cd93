"""OAuth beyond the token grants, over HTTPS: the identity URL in token responses and the identity
service behind it, the web server flow (authorization code) that issues refresh tokens, the
refresh-token grant and token revocation. References: Salesforce Help "Identity URLs", "OAuth 2.0 Web
Server Flow for Web App Integration", REST API "How Does the OAuth Refresh Token Fit Into the
Authentication Flow?", "Revoke OAuth Tokens" (cited per behaviour in sf_pipeline/devorg/identity.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline_tests.devorg_fixtures import tls_session

CALLBACK = "https://app.example.com/oauth/callback"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[DevOrgServer]:
    with DevOrgServer(tmp_path / "org") as server:
        yield server


@pytest.fixture
def http(srv: DevOrgServer) -> Iterator[requests.Session]:
    session = tls_session(srv)
    yield session
    session.close()


def password_token(srv: DevOrgServer, http: requests.Session, user: str = "admin") -> dict:
    cred = srv.org.user(user)
    r = http.post(
        f"{srv.instance_url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": srv.org.client_id,
            "client_secret": srv.org.client_secret,
            "username": cred.username,
            "password": cred.password + cred.security_token,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


def authorization_code(srv: DevOrgServer, http: requests.Session, user: str = "admin", state: str = "s1") -> str:
    cred = srv.org.user(user)
    r = http.post(
        f"{srv.instance_url}/services/oauth2/authorize",
        allow_redirects=False,
        data={
            "response_type": "code",
            "client_id": srv.org.client_id,
            "redirect_uri": CALLBACK,
            "state": state,
            "username": cred.username,
            "pw": cred.password,
        },
    )
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def exchange(srv: DevOrgServer, http: requests.Session, code: str, redirect_uri: str = CALLBACK) -> requests.Response:
    return http.post(
        f"{srv.instance_url}/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": srv.org.client_id,
            "client_secret": srv.org.client_secret,
            "redirect_uri": redirect_uri,
        },
    )


def refresh(srv: DevOrgServer, http: requests.Session, token: str, secret: str | None = None) -> requests.Response:
    return http.post(
        f"{srv.instance_url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": srv.org.client_id,
            "client_secret": secret or srv.org.client_secret,
        },
    )


# ============================================================================ token response and identity
def test_token_response_carries_identity_url_issued_at_and_a_verifiable_signature(srv, http) -> None:
    tok = password_token(srv, http)
    admin = srv.org.user("admin")
    assert tok["id"] == f"{srv.instance_url}/id/{srv.org.org_id}/{admin.user_id}"
    assert re.fullmatch(r"\d{13}", tok["issued_at"])  # epoch milliseconds
    expected = base64.b64encode(
        hmac.new(srv.org.client_secret.encode(), (tok["id"] + tok["issued_at"]).encode(), hashlib.sha256).digest()
    ).decode()
    assert tok["signature"] == expected
    assert "refresh_token" not in tok  # the username-password flow issues no refresh token


def test_identity_url_describes_the_user_and_org_with_version_placeholders(srv, http) -> None:
    tok = password_token(srv, http)
    r = http.get(tok["id"], headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 200
    body = r.json()
    admin = srv.org.user("admin")
    assert (body["user_id"], body["organization_id"], body["username"]) == (
        admin.user_id,
        srv.org.org_id,
        admin.username,
    )
    assert body["display_name"] == "Ada Admin" and body["email"] == admin.username and body["active"] is True
    assert body["urls"]["rest"] == f"{srv.instance_url}/services/data/v{{version}}/"
    assert body["urls"]["partner"] == f"{srv.instance_url}/services/Soap/u/{{version}}/{srv.org.org_id[:15]}"
    # version= fills the placeholder; the token may also come as the oauth_token parameter
    r = http.get(tok["id"], params={"oauth_token": tok["access_token"], "version": "59.0"})
    assert r.json()["urls"]["sobjects"] == f"{srv.instance_url}/services/data/v59.0/sobjects/"
    # the REST API's version resource points at the same identity URL
    listed = http.get(
        f"{srv.instance_url}/services/data/v59.0/", headers={"Authorization": f"Bearer {tok['access_token']}"}
    ).json()
    assert listed["identity"] == tok["id"]


def test_identity_url_refuses_missing_bad_and_foreign_tokens(srv, http) -> None:
    tok = password_token(srv, http, "sales1")
    own = tok["id"]
    admin_id = srv.org.user("admin").user_id

    def get(url: str, token: str | None) -> tuple[int, str]:
        r = http.get(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        return r.status_code, r.text

    assert get(own, None) == (403, "Missing_OAuth_Token")
    assert get(own, "00Dbogus!token") == (403, "Bad_OAuth_Token")
    assert get(own.replace(srv.org.org_id, "00D000000000001AAA"), tok["access_token"]) == (403, "Wrong_Org")
    assert get(own.rsplit("/", 1)[0] + "/005000000000009AAA", tok["access_token"]) == (404, "Bad_Id")
    # a user without "View All Data" cannot read another user's identity; the admin can
    assert get(own.rsplit("/", 1)[0] + f"/{admin_id}", tok["access_token"]) == (404, "No_Access")
    admin_tok = password_token(srv, http)
    assert get(own, admin_tok["access_token"])[0] == 200


# ============================================================================ web server flow, refresh tokens
def test_authorize_page_asks_for_login_and_keeps_the_request_parameters(srv, http) -> None:
    params = {"response_type": "code", "client_id": srv.org.client_id, "redirect_uri": CALLBACK, "state": "a&b"}
    page = http.get(f"{srv.instance_url}/services/oauth2/authorize", params=params)
    assert page.status_code == 200 and 'name="pw"' in page.text and 'value="a&amp;b"' in page.text
    wrong = http.post(
        f"{srv.instance_url}/services/oauth2/authorize",
        allow_redirects=False,
        data={**params, "username": srv.org.user("admin").username, "pw": "nope"},
    )
    assert wrong.status_code == 200 and "check your username and password" in wrong.text
    bad_client = http.get(f"{srv.instance_url}/services/oauth2/authorize", params={**params, "client_id": "x"})
    assert bad_client.status_code == 400 and bad_client.json()["error"] == "invalid_client_id"


def test_web_server_flow_issues_a_refresh_token_that_gets_new_access_tokens(srv, http) -> None:
    tokens = exchange(srv, http, authorization_code(srv, http, "sales2")).json()
    assert tokens["refresh_token"] and "refresh_token" in tokens["scope"]
    assert tokens["id"].endswith(srv.org.user("sales2").user_id)

    r = refresh(srv, http, tokens["refresh_token"])
    assert r.status_code == 200
    fresh = r.json()
    assert fresh["access_token"] != tokens["access_token"] and "refresh_token" not in fresh
    assert set(fresh) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    me = http.get(
        f"{srv.instance_url}/services/data/v59.0/query",
        params={"q": "SELECT Id FROM User LIMIT 1"},
        headers={"Authorization": f"Bearer {fresh['access_token']}"},
    )
    assert me.status_code == 200
    # HTTP Basic client authentication works as well as form parameters
    basic = base64.b64encode(f"{srv.org.client_id}:{srv.org.client_secret}".encode()).decode()
    r = http.post(
        f"{srv.instance_url}/services/oauth2/token",
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert r.status_code == 200


def test_authorization_codes_are_single_use_and_bound_to_their_redirect_uri(srv, http) -> None:
    code = authorization_code(srv, http)
    assert exchange(srv, http, code, "https://evil.example.com/cb").json()["error"] == "invalid_grant"
    code = authorization_code(srv, http)
    assert exchange(srv, http, code).status_code == 200
    again = exchange(srv, http, code)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}


def test_refresh_grant_refuses_wrong_secret_unknown_and_revoked_tokens(srv, http) -> None:
    token = exchange(srv, http, authorization_code(srv, http)).json()["refresh_token"]
    assert refresh(srv, http, token, secret="wrong").json()["error"] == "invalid_client"
    unknown = refresh(srv, http, "5Aepnot-a-token")
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    assert http.post(f"{srv.instance_url}/services/oauth2/revoke", data={"token": token}).status_code == 200
    assert refresh(srv, http, token).json()["error"] == "invalid_grant"
    assert (
        http.post(f"{srv.instance_url}/services/oauth2/revoke", data={"token": token}).json()["error"]
        == "unsupported_token_type"
    )


def test_refresh_tokens_survive_a_devorg_restart(tmp_path: Path) -> None:
    with DevOrgServer(tmp_path / "org") as first:
        http = tls_session(first)
        token = exchange(first, http, authorization_code(first, http)).json()["refresh_token"]
    with DevOrgServer(tmp_path / "org") as second:
        assert refresh(second, tls_session(second), token).status_code == 200


def test_userinfo_answers_the_openid_claims_of_the_token_user(srv, http) -> None:
    tok = password_token(srv, http, "support")
    r = http.get(
        f"{srv.instance_url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"}
    )
    body = r.json()
    support = srv.org.user("support")
    assert (body["sub"], body["user_id"], body["organization_id"], body["preferred_username"]) == (
        tok["id"],
        support.user_id,
        srv.org.org_id,
        support.username,
    )
    assert (body["given_name"], body["family_name"], body["name"]) == ("Cam", "Helper", "Cam Helper")
    assert body["urls"]["rest"].endswith("/services/data/v{version}/")


def test_a_stored_instance_url_with_trailing_slash_still_reaches_the_api(srv, http) -> None:
    """The sf CLI saves `instanceUrl` as `https://host/` and jsforce appends `/services/...`."""
    tok = password_token(srv, http)
    r = http.get(
        f"{tok['instance_url']}//services/data/v59.0/query",
        params={"q": "SELECT Id FROM User LIMIT 1"},
        headers={"Authorization": f"Bearer {tok['access_token']}"},
    )
    assert r.status_code == 200 and r.json()["totalSize"] == 1


def test_user_agent_flow_returns_tokens_and_a_refresh_token_in_the_fragment(srv, http) -> None:
    cred = srv.org.user("sales3")
    r = http.post(
        f"{srv.instance_url}/services/oauth2/authorize",
        allow_redirects=False,
        data={
            "response_type": "token",
            "client_id": srv.org.client_id,
            "redirect_uri": CALLBACK,
            "state": "ua",
            "username": cred.username,
            "pw": cred.password,
        },
    )
    assert r.status_code == 302
    location = urlsplit(r.headers["location"])
    assert not location.query
    values = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert values["state"] == "ua" and values["token_type"] == "Bearer"
    assert values["id"] == f"{srv.instance_url}/id/{srv.org.org_id}/{cred.user_id}"
    assert refresh(srv, http, values["refresh_token"]).status_code == 200
    q = http.get(
        f"{srv.instance_url}/services/data/v59.0/query",
        params={"q": "SELECT Id FROM User LIMIT 1"},
        headers={"Authorization": f"Bearer {values['access_token']}"},
    )
    assert q.status_code == 200
