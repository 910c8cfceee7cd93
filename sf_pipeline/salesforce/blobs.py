"""File bodies over the REST API: download a base64 field's bytes as a stream, upload a file with its record.

- Download: `GET /services/data/vXX.X/sobjects/<Object>/<Id>/<Field>` answers the raw bytes (REST API Developer
  Guide, "Get Blob Data": https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_blob_retrieve.htm).
  A query cannot return the bytes (REST queries give the URL; Bulk API refuses base64 fields), so every body is
  one API call, counted and budgeted like any other.
- Upload: a multipart/form-data POST whose first part is the record's JSON (`entity_content`) and whose second
  part, named after the blob field, holds the bytes; up to 2 GB for ContentVersion, 500 MB otherwise (REST API
  Developer Guide, "Insert or Update Blob Data":
  https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_sobject_insert_update_blob.htm).
  The body is streamed from a chunk iterator with its Content-Length computed up front: never a whole file in memory.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import requests
from simple_salesforce.exceptions import SalesforceGeneralError

from . import soql
from .client import SalesforceClient
from .errors import BlobUnavailable, InvalidSession, SalesforceExtractError

CHUNK_SIZE = 1024 * 1024


def _blob_url(client: SalesforceClient, sobject: str, record_id: str, field: str) -> str:
    return (
        f"https://{client.sf.sf_instance}/services/data/v{client.sf.sf_version}/sobjects/"
        f"{soql.api_name(sobject, 'object')}/{soql.record_id(record_id)}/{soql.api_name(field, 'field')}"
    )


def _checked(client: SalesforceClient, resp: requests.Response, what: str) -> requests.Response:
    client._note_usage(resp.headers.get("Sforce-Limit-Info"))  # noqa: SLF001 - the client's own accounting
    if resp.status_code == 401:
        resp.close()
        raise InvalidSession(f"{what}: {resp.text[:300]}")
    if resp.status_code >= 500:
        text = resp.text[:500]
        resp.close()
        raise SalesforceGeneralError(resp.url, resp.status_code, what, text)
    if resp.status_code == 404:
        text = resp.text[:300]
        resp.close()
        raise BlobUnavailable(f"{what}: the org has no bytes for it ({text})")
    if resp.status_code >= 400:
        text = resp.text[:500]
        resp.close()
        raise SalesforceExtractError(f"{what} failed ({resp.status_code}): {text}")
    return resp


@contextlib.contextmanager
def open_blob(
    client: SalesforceClient, sobject: str, record_id: str, field: str
) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """The bytes of one base64 field as a chunk iterator, with the length the org announced (None if not sent).

    The call is retried like any other until the org answers; a connection lost while the bytes flow surfaces
    to the caller (who retries the whole download: a blob is stored only when complete).
    """
    what = f"GET {sobject} {record_id} {field}"

    def do() -> requests.Response:
        headers = {"Authorization": f"Bearer {client.sf.session_id}", "Accept-Encoding": "identity"}
        resp = client.sf.session.get(_blob_url(client, sobject, record_id, field), headers=headers, stream=True)
        return _checked(client, resp, what)

    resp = client.call(do, what)
    length = resp.headers.get("Content-Length")

    def chunks() -> Iterator[bytes]:
        for chunk in resp.iter_content(CHUNK_SIZE):
            client.bytes_received += len(chunk)
            yield chunk

    try:
        yield chunks(), int(length) if length and length.isdigit() else None
    finally:
        resp.close()


class _MultipartBody:
    """A multipart/form-data body streamed from a chunk source, with its length known up front (no chunked
    encoding, no file in memory): the record's JSON part, then the bytes part."""

    def __init__(
        self,
        entity: str,
        values: dict[str, Any],
        field: str,
        filename: str,
        size: int,
        source: Callable[[], Iterable[bytes]],
    ):
        self.boundary = f"sfpipeline{uuid.uuid4().hex}"
        b = self.boundary
        self.head = (
            f'--{b}\r\nContent-Disposition: form-data; name="{entity}"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(values)}\r\n"
            f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{_quote(filename)}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{b}--\r\n".encode()
        self.size = size
        self.source = source

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        sent = 0
        for chunk in self.source():
            sent += len(chunk)
            yield chunk
        if sent != self.size:
            raise SalesforceExtractError(f"the file's bytes ended after {sent} of {self.size} bytes")
        yield self.tail


def _quote(name: str) -> str:
    return name.replace("\\", "_").replace('"', "_").replace("\r", " ").replace("\n", " ")


def insert_with_blob(
    client: SalesforceClient,
    sobject: str,
    values: dict[str, Any],
    field: str,
    *,
    size: int,
    source: Callable[[], Iterable[bytes]],
    filename: str = "file",
) -> str:
    """Create one record with its file body streamed from `source` (called again on a retry); returns the new id.

    A retry after a lost connection could create the record twice, so like every create it is not repeated then
    (CONNECTION_LOST); a 5xx answer (the org refused the call) is retried.
    """
    entity = {"ContentVersion": "entity_content", "Document": "entity_document", "Attachment": "entity_attachment"}.get(
        sobject, "entity_content"
    )
    url = (
        f"https://{client.sf.sf_instance}/services/data/v{client.sf.sf_version}/sobjects/"
        f"{soql.api_name(sobject, 'object')}/"
    )
    what = f"POST {sobject} with {field}"

    def do() -> str:
        body = _MultipartBody(entity, values, field, filename, size, source)
        headers = {"Authorization": f"Bearer {client.sf.session_id}", "Content-Type": body.content_type}
        try:  # requests takes the Content-Length from len(body) and streams its iteration
            resp = client.sf.session.post(url, headers=headers, data=body)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SalesforceExtractError(
                f"{what}: CONNECTION_LOST before the org answered; it may have created the "
                f"record, so it is not sent again ({exc})"
            ) from None
        client._note_usage(resp.headers.get("Sforce-Limit-Info"))  # noqa: SLF001
        if resp.status_code == 401:
            raise InvalidSession(f"{what}: {resp.text[:300]}")
        if resp.status_code >= 500:
            raise SalesforceGeneralError(url, resp.status_code, what, resp.text[:500])
        if resp.status_code >= 400:
            raise SalesforceExtractError(f"{what} refused ({resp.status_code}): {resp.text[:500]}")
        return str(resp.json()["id"])

    return client.call(do, what)
