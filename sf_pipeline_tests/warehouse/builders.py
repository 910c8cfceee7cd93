"""Small Opportunity-shaped describes and Arrow batches for the warehouse tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

# The fields of a describe that the tests need, with the keys Salesforce sends (a subset of them).
OPPORTUNITY_FIELDS: list[dict[str, Any]] = [
    {
        "name": name,
        "type": kind,
        "length": length,
        "precision": precision,
        "scale": scale,
        "nillable": nillable,
    }
    for name, kind, length, precision, scale, nillable in [
        ("Id", "id", 18, 0, 0, False),
        ("IsDeleted", "boolean", 0, 0, 0, False),
        ("AccountId", "reference", 18, 0, 0, True),
        ("Name", "string", 120, 0, 0, False),
        ("Description", "textarea", 32000, 0, 0, True),
        ("StageName", "picklist", 255, 0, 0, False),
        ("Amount", "currency", 0, 18, 2, True),
        ("Probability", "percent", 0, 3, 0, True),
        ("CloseDate", "date", 0, 0, 0, False),
        ("FiscalYear", "int", 0, 0, 0, True),
        ("SystemModstamp", "datetime", 0, 0, 0, False),
    ]
]

COLUMNS = [f["name"] for f in OPPORTUNITY_FIELDS]


def opportunity(
    record_id: str,
    stamp: str,
    *,
    name: str = "Big deal",
    amount: str | None = "1000.50",
    deleted: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """One Opportunity as the Bulk API CSV gives it: every value a string, null as empty."""
    return {
        "Id": record_id,
        "IsDeleted": "true" if deleted else "false",
        "AccountId": "001000000000001AAA",
        "Name": name,
        "Description": description or "",
        "StageName": "Prospecting",
        "Amount": amount or "",
        "Probability": "10",
        "CloseDate": "2026-03-31",
        "FiscalYear": "2026",
        "SystemModstamp": stamp,
    }


def csv_batch(records: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> pa.RecordBatch:
    """Records as a string-typed batch, the way Bulk API 2.0 CSV is parsed."""
    return pa.RecordBatch.from_pydict({c: pa.array([r.get(c) for r in records], pa.string()) for c in columns})


def json_batch(records: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> pa.RecordBatch:
    """The same records typed the way REST JSON is parsed: bools, numbers, `+0000` datetimes."""

    def typed(column: str, value: Any) -> Any:
        if value in (None, ""):
            return None
        if column == "IsDeleted":
            return value == "true"
        if column in ("Amount", "Probability"):
            return float(value)
        if column == "FiscalYear":
            return int(value)
        if column == "SystemModstamp":
            return value.replace("Z", "+0000")
        return value

    return pa.RecordBatch.from_pydict({c: [typed(c, r.get(c)) for r in records] for c in columns})


def stored(row: dict[str, Any]) -> dict[str, Any]:
    """What PostgreSQL hands back for `opportunity(...)`, for readable expectations."""
    return {
        "id": row["Id"],
        "isdeleted": row["IsDeleted"] == "true",
        "name": row["Name"],
        "amount": Decimal(row["Amount"]) if row["Amount"] else None,
        "closedate": date.fromisoformat(row["CloseDate"]),
        "fiscalyear": int(row["FiscalYear"]),
        "systemmodstamp": datetime.fromisoformat(row["SystemModstamp"].replace("Z", "+00:00")),
    }
