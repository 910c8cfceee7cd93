"""One condition of the `backup_complete` check, as plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One condition of `backup_complete`: whether it holds, what was found, and what will repair it."""

    name: str
    passed: bool
    detail: str
    repair: str = ""
