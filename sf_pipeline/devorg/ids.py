"""Salesforce record ids: key prefixes, 15/18-character forms and the case checksum.

The 18-character id appends three characters that encode which of the first 15 are upper case,
so an 18-character id can be compared case-insensitively and its original case recovered.
Reference: salesforce-api-fidelity.md section 2.5.
"""

from __future__ import annotations

import string

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ID_CHARS = set(_BASE62)
# Characters 4-5 are the pod, 6 reserved: we use a fixed pod "5J0" like a real instance would.
POD = "5J0"


def checksum(id15: str) -> str:
    out = []
    for chunk in range(3):
        bits = 0
        for j, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << j
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


def make_id(key_prefix: str, counter: int) -> str:
    """The 18-character id of the counter-th record with this key prefix."""
    digits = []
    n = counter
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    if n:
        raise OverflowError("id counter out of range")
    id15 = key_prefix + POD + "".join(reversed(digits))
    return id15 + checksum(id15)


def normalize(value: str) -> str | None:
    """Canonical 18-character id for a 15- or 18-character id (any case for 18), else None."""
    if not isinstance(value, str):
        return None
    if len(value) == 15:
        if not set(value) <= _ID_CHARS:
            return None
        return value + checksum(value)
    if len(value) == 18:
        if not set(value) <= _ID_CHARS:
            return None
        suffix = value[15:].upper()
        chars = []
        for chunk in range(3):
            try:
                bits = _CHECKSUM_ALPHABET.index(suffix[chunk])
            except ValueError:
                return None
            for j, ch in enumerate(value[chunk * 5 : chunk * 5 + 5]):
                if ch.isalpha():
                    ch = ch.upper() if bits & (1 << j) else ch.lower()
                elif bits & (1 << j):
                    return None
                chars.append(ch)
        id15 = "".join(chars)
        return id15 + suffix if checksum(id15) == suffix else None
    return None


def key_prefix(value: str) -> str:
    return value[:3]
