"""Errors raised by the warehouse layer, each with a message a user can act on."""

from __future__ import annotations


class WarehouseError(Exception):
    """Base class for every error of the PostgreSQL storage layer."""


class WarehouseSchemaError(WarehouseError):
    """A describe or a mirror table cannot be used as it is (e.g. no `Id` or `SystemModstamp`)."""


class WarehouseLoadError(WarehouseError):
    """A window could not be loaded; the mirror was left exactly as it was before the load.

    `object_name`, `column` and `value` name the offending input when it is known, so a caller
    can put them into run metadata.
    """

    def __init__(
        self,
        message: str,
        *,
        object_name: str,
        column: str | None = None,
        value: str | None = None,
        record_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.object_name = object_name
        self.column = column
        self.value = value
        self.record_id = record_id


class HistoryNotFoundError(WarehouseError):
    """The history table of an object does not exist yet (no snapshot was run for it)."""


class SnapshotError(WarehouseError):
    """`dbt snapshot` failed; the message carries dbt's own error lines."""


class DbtProjectError(WarehouseError):
    """The dbt project could not be prepared (`dbt parse` failed or left out a snapshot)."""
