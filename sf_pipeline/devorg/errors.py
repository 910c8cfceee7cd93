"""Errors devorg answers with, shaped like the real org's (a JSON array of {message, errorCode, fields})."""

from __future__ import annotations


class SalesforceError(Exception):
    """An API error: HTTP status plus Salesforce's errorCode, message and optional fields."""

    def __init__(self, error_code: str, message: str, status: int = 400, fields: list[str] | None = None):
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.message = message
        self.status = status
        self.fields = fields

    def to_json(self) -> list[dict]:
        body: dict = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            body["fields"] = self.fields
        return [body]

    def to_save_error(self) -> dict:
        """The per-record shape used inside sObject Collections and DML results."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields or []}


def invalid_type(name: str) -> SalesforceError:
    return (
        SalesforceError(
            "NOT_FOUND",
            "The requested resource does not exist",
            status=404,
        )
        if not name
        else SalesforceError(
            "INVALID_TYPE",
            f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure "
            "to append the '__c' after the entity name. Please reference your WSDL or the describe call for "
            "the appropriate names.",
            status=400,
        )
    )


def not_found() -> SalesforceError:
    return SalesforceError("NOT_FOUND", "The requested resource does not exist", status=404)


def entity_is_deleted() -> SalesforceError:
    return SalesforceError("ENTITY_IS_DELETED", "entity is deleted", status=404, fields=[])


def malformed_id(object_label: str, value: str) -> SalesforceError:
    return SalesforceError(
        "MALFORMED_ID", f"{object_label} ID: id value of incorrect type: {value}", status=400, fields=["Id"]
    )
