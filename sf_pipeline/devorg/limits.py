"""Salesforce's API limits in devorg, so clients meet them in tests and not in production.

- Request size. "In each REST call, the maximum length for the combined URI and headers is 16,384 bytes.
  A request exceeding this limit returns a 431 Request Header Fields Too Large error. If the URI itself
  exceeds this limit, the request returns a 414 URI Too Long error." (API Request Limits and Allocations,
  developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html;
  Knowledge article 000386264). The body is the front server's HTML page, as captured in
  simple-salesforce#271 and jsforce#1134: `<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>`.
- Daily API usage is a rolling 24 hours ("Total API Request Allocations ... over a 24-hour period",
  same page), counted here in one-minute buckets on the org clock (`RollingUsage`).
- Concurrent long-running requests: "inbound requests (calls) with a duration of 20 seconds or longer":
  25 for production orgs and sandboxes, 5 for Developer Edition and trials. "If the number of long
  running requests exceeds the limit, the API returns a REQUEST_LIMIT_EXCEEDED exception code"; shorter
  requests are not limited (same page). The message is the real one, "ConcurrentRequests (Concurrent API
  Requests) Limit exceeded." (SOAP fault capture, gist ndabAP/2ae90f3b871403d822ec2de0bcffb5b0); over
  REST it is a 403, as REST API "Status Codes and Error Responses" documents for REQUEST_LIMIT_EXCEEDED.
- Response compression: REST API "Compression Headers" (gzip when the request says `Accept-Encoding:
  gzip`; the API "isn't required to compress the response ... but it normally does") and Bulk API 2.0
  "Use Compression for Bulk API 2.0 Query Responses" / "... Ingest Responses" (gzip only, other values
  ignored). devorg answers gzip; `deflate` alone is answered uncompressed, which the REST guide allows.

`RequestLimits` is the ASGI middleware in front of the whole app that enforces the size and concurrency
limits; it takes the org's settings from `OrgLimits` (`Org.limits_settings`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

URI_LIMIT = 16_384  # bytes of request URI, and of URI plus headers
LONG_RUNNING_SECONDS = 20.0
CONCURRENT_LONG_RUNNING = {"production": 25, "sandbox": 25, "developer": 5, "trial": 5}
GZIP_LEVEL = 1  # fast: devorg serves 1M-row Bulk results; the wire format is what clients see, not the ratio
GZIP_MIN_SIZE = 500  # small JSON answers go uncompressed (Starlette's default threshold)
API_PREFIXES = ("/services/data", "/services/soap", "/services/async")

_BAD_MESSAGE = "<h1>Bad Message {status}</h1><pre>reason: {reason}</pre>"
CONCURRENT_MESSAGE = "ConcurrentRequests (Concurrent API Requests) Limit exceeded."


@dataclass
class OrgLimits:
    """An org's limit settings that tests may change (see the `/_devorg/limits` control action)."""

    concurrent_long_running: int = CONCURRENT_LONG_RUNNING["production"]
    long_running_seconds: float = LONG_RUNNING_SECONDS
    in_flight: dict[int, float] = field(default_factory=dict)  # request number -> monotonic start
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next: int = 0

    def start(self) -> int | None:
        """Register a request; None when the org already runs its limit of long-running requests."""
        now = time.monotonic()
        with self._lock:
            long_running = sum(1 for t in self.in_flight.values() if now - t >= self.long_running_seconds)
            if long_running >= self.concurrent_long_running:
                return None
            self._next += 1
            self.in_flight[self._next] = now
            return self._next

    def finish(self, number: int) -> None:
        with self._lock:
            self.in_flight.pop(number, None)

    def long_running(self) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self.in_flight.values() if now - t >= self.long_running_seconds)


class RollingUsage:
    """API requests counted per minute of the org clock; usage is the sum over the last 24 hours."""

    WINDOW = timedelta(hours=24)

    def __init__(self, buckets: dict[str, int] | None = None):
        self.buckets: dict[int, int] = {int(k): int(v) for k, v in (buckets or {}).items()}

    @staticmethod
    def _minute(at: datetime) -> int:
        return int(at.timestamp()) // 60

    def used(self, now: datetime) -> int:
        newest = self._minute(now)
        oldest = self._minute(now - self.WINDOW)
        return sum(n for m, n in self.buckets.items() if oldest < m <= newest)

    def add(self, now: datetime) -> None:
        minute = self._minute(now)
        self.buckets[minute] = self.buckets.get(minute, 0) + 1
        if len(self.buckets) > 1500:  # forget minutes that left the window (the clock only moves forward here)
            oldest = self._minute(now - self.WINDOW)
            self.buckets = {m: n for m, n in self.buckets.items() if m > oldest or m > minute}

    def to_json(self) -> dict[str, int]:
        return {str(m): n for m, n in self.buckets.items()}


def _bad_message(status: int, reason: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = _BAD_MESSAGE.format(status=status, reason=reason).encode("latin-1")
    headers = [
        (b"content-type", b"text/html;charset=iso-8859-1"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return status, headers, body


def oversized(scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
    """The 414 / 431 answer for a request over Salesforce's 16,384-byte URI (+ headers) limit, else None."""
    uri = len(scope.get("raw_path") or scope["path"].encode()) + (
        len(scope["query_string"]) + 1 if scope.get("query_string") else 0
    )
    if uri > URI_LIMIT:
        return _bad_message(414, "URI Too Long")
    headers = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", ()))  # "name: value\r\n"
    if uri + headers > URI_LIMIT:
        return _bad_message(431, "Request Header Fields Too Large")
    return None


def _concurrency_refusal(path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    if path.lower().startswith("/services/soap"):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:sf="urn:fault.partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
            f"<faultcode>sf:REQUEST_LIMIT_EXCEEDED</faultcode><faultstring>REQUEST_LIMIT_EXCEEDED: "
            f"{CONCURRENT_MESSAGE}</faultstring><detail><sf:UnexpectedErrorFault "
            'xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>REQUEST_LIMIT_EXCEEDED</sf:exceptionCode>'
            f"<sf:exceptionMessage>{CONCURRENT_MESSAGE}</sf:exceptionMessage></sf:UnexpectedErrorFault>"
            "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
        ).encode()
        return 500, [(b"content-type", b"text/xml;charset=UTF-8")], body
    body = orjson.dumps([{"message": CONCURRENT_MESSAGE, "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    return 403, [(b"content-type", b"application/json;charset=UTF-8")], body


async def _answer(send: Send, answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, body = answer
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """ASGI middleware: Salesforce's request-size limit for every request, the concurrent long-running
    request limit for API calls, and gzip responses for clients that ask for them."""

    def __init__(self, app: ASGIApp, settings: Callable[[], OrgLimits]):
        self.settings = settings
        self.app = GZipMiddleware(app, minimum_size=GZIP_MIN_SIZE, compresslevel=GZIP_LEVEL)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = oversized(scope)
        if refusal is not None:
            await _answer(send, refusal)
            return
        path = scope["path"]
        if not path.lower().startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        limits = self.settings()
        number = limits.start()
        if number is None:
            await _answer(send, _concurrency_refusal(path))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            limits.finish(number)


def settings_json(limits: OrgLimits) -> dict[str, Any]:
    return {
        "concurrent_long_running": limits.concurrent_long_running,
        "long_running_seconds": limits.long_running_seconds,
        "long_running_now": limits.long_running(),
    }
