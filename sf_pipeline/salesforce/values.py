"""One canonical form per Salesforce field type, so values from history, REST and Bulk CSV compare equal.

History rows come from PostgreSQL typed (`Decimal`, `datetime`, `date`, `bool`), sObject Collections
answer JSON, Bulk API 2.0 answers CSV text. `canonical` maps all three to the JSON form the REST API
writes back (datetimes as `2026-11-24T01:59:59.000+0000`, 18-character ids), so a restore compares like
with like and can send the value unchanged. Salesforce stores no empty strings: "" is null.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import partial
from typing import Any

from sf_pipeline.instants import parse_instant

_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NUMBERS = frozenset({"double", "currency", "percent"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def id18(value: str) -> str:
    """The 18-character form of a 15- or 18-character record id (checksum per salesforce-api-fidelity 2.5).

    Raises ValueError for anything else, so a mistyped id in a config is reported, not ignored.
    """
    text = value.strip() if isinstance(value, str) else ""
    if len(text) not in (15, 18) or not set(text) <= _ID_CHARS:
        raise ValueError(f"{value!r} is not a Salesforce record id (15 or 18 letters and digits)")
    head = text[:15]
    suffix = "".join(
        _CHECKSUM[sum(1 << j for j, ch in enumerate(head[c * 5 : c * 5 + 5]) if "A" <= ch <= "Z")] for c in range(3)
    )
    if len(text) == 18 and text[15:].upper() != suffix:
        # An 18-character id is case-insensitive: recover the case of the first 15 from the checksum.
        bits = [_CHECKSUM.index(ch) for ch in text[15:].upper()]
        head = "".join(ch.upper() if bits[i // 5] >> (i % 5) & 1 else ch.lower() for i, ch in enumerate(text[:15]))
        return id18(head)
    return head + suffix


def format_datetime(moment: datetime) -> str:
    """Salesforce's REST datetime form: UTC, milliseconds, `+0000`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """A Salesforce datetime (`Z`, `+0000` or `+00:00`, with or without milliseconds) as an aware datetime."""
    return parse_instant(text, "datetime")


def canonical(sf_type: str, value: Any) -> Any:
    """`value` (from PostgreSQL, REST JSON or Bulk CSV) in the JSON form of a field of describe type `sf_type`."""
    if value is None or value == "":
        return None
    if sf_type == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean")
    if sf_type == "int":
        return int(value) if not isinstance(value, str) else int(float(value))
    if sf_type in _NUMBERS:
        return float(value) if not isinstance(value, Decimal) else float(value)
    if sf_type == "date":
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        return str(value)[:10]
    if sf_type == "datetime":
        return format_datetime(value if isinstance(value, datetime) else parse_datetime(str(value)))
    if sf_type == "time":
        if isinstance(value, time):
            return value.strftime("%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        text = str(value).rstrip("Z")
        return (text if "." in text else text + ".000") + "Z"
    if sf_type in ("id", "reference"):
        text = str(value)
        # The API and the backup only ever hold 18-character ids; only 15-character ones need the checksum.
        return text if len(text) == 18 else id18(text)
    return str(value)


TEXT_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url", "combobox", "encryptedstring"}
)


def _text(value: Any) -> Any:
    return None if value is None or value == "" else str(value)


def _reference(value: Any) -> Any:
    if value is None or value == "":
        return None
    return value if len(value) == 18 and isinstance(value, str) else id18(str(value))


def converter(sf_type: str) -> Callable[[Any], Any]:
    """`canonical` for one field type, as one function: for loops over a million values."""
    if sf_type in ("id", "reference"):
        return _reference
    if sf_type in TEXT_TYPES:
        return _text
    return partial(canonical, sf_type)


def csv_text(value: Any) -> str:
    """A canonical value as a Bulk API 2.0 ingest cell: `#N/A` sets null (an empty cell changes nothing)."""
    if value is None:
        return "#N/A"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def display(value: Any) -> str:
    """A value as shown in plan tables: `null` for null, the text otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
