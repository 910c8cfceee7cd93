"""sObject Collections retrieve with a request body (`POST /composite/sobjects/<Object>`).

REST API Developer Guide, "Get Records With a Request Body Using sObject Collections": the body is
`{"ids": [...], "fields": [...]}`, both required; "The request retrieves up to 2,000 records of the same
object type"; an invalid field is a 400; an id that is invalid or not accessible is `null` in the answer.
This is the form to use past ~800 ids, where the GET form's URL runs into the 414 URI Too Long limit
("Get Records Using sObject Collections" says so), see limits.py.
"""

from __future__ import annotations

from typing import Any

from .errors import SalesforceError

MAX_IDS = 2000


def retrieve_body(body: Any) -> tuple[list[str], list[str]]:
    """The ids and fields of a retrieve request body, validated like the GET form's parameters."""
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "The request body must be a JSON object with ids and fields")
    ids, fields = body.get("ids"), body.get("fields")
    if not isinstance(ids, list) or not isinstance(fields, list) or not ids or not fields:
        raise SalesforceError("MALFORMED_QUERY", "ids and fields are required")
    if not all(isinstance(v, str) for v in [*ids, *fields]):
        raise SalesforceError("JSON_PARSER_ERROR", "ids and fields must be arrays of strings")
    if len(ids) > MAX_IDS:
        raise SalesforceError("EXCEEDED_ID_LIMIT", "You can retrieve up to 2000 records at a time")
    return ids, fields
