"""What a devorg request handler knows (`ApiContext`) and how it answers (JSON bodies, Salesforce-shaped errors).

Shared by the server and the modules it routes to (composite.py, bulk.py), which therefore need not import the
server back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .errors import SalesforceError

if TYPE_CHECKING:
    from .org import Org

JSON_TYPE = "application/json;charset=UTF-8"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_TYPE, headers=headers)


def error_response(err: SalesforceError, headers: dict[str, str] | None = None) -> Response:
    h = dict(headers or {})
    if err.status == 401:
        h["WWW-Authenticate"] = "Token"
    return json_response(err.to_json(), err.status, h)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise SalesforceError("JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from None


class ApiContext:
    """What a request handler knows: the org, the caller's session, the API version and base URL."""

    def __init__(self, org: Org, request: Request, version: str, user_id: str):
        self.org = org
        self.request = request
        self.version = version
        self.user_id = user_id

    def record_url(self, obj_name: str, rid: str) -> str:
        return f"/services/data/v{self.version}/sobjects/{obj_name}/{rid}"


async def run_in_thread(fn, *args, **kwargs):
    """Run the blocking org call `fn` in a worker thread (the org is synchronous; the server is not)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


# ===================================================================== SOAP answers
def xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


SOAP_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
)
SOAP_TAIL = "</soapenv:Body></soapenv:Envelope>"


def soap_ok(inner: str, headers: dict[str, str] | None = None) -> Response:
    return Response(SOAP_HEAD + inner + SOAP_TAIL, media_type="text/xml;charset=UTF-8", headers=headers)


def soap_fault(code: str, message: str, login: bool = False) -> Response:
    kind = "LoginFault" if login else "UnexpectedErrorFault"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>{code}</faultcode><faultstring>{code}: {xml_text(message)}"
        f'</faultstring><detail><sf:{kind} xsi:type="sf:{kind}"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{xml_text(message)}</sf:exceptionMessage></sf:{kind}></detail></soapenv:Fault>"
        "</soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status_code=500, media_type="text/xml;charset=UTF-8")
