"""The org's clock: real time plus an offset, or frozen; tests and scenarios move it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def format_datetime(dt: datetime) -> str:
    """Salesforce's REST datetime format: UTC, milliseconds, `+0000`."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime:
    """Parse the datetime forms Salesforce accepts on input (`Z`, `+0000`, `+00:00`, with or without ms)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    elif len(value) >= 5 and value[-5] in "+-" and value[-4:].isdigit():
        value = value[:-2] + ":" + value[-2:]
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class Clock:
    """Now = real time + offset, unless frozen at a fixed instant."""

    def __init__(self, offset: timedelta = timedelta(0), frozen_at: datetime | None = None):
        self._lock = threading.Lock()
        self.offset = offset
        self.frozen_at = frozen_at

    def now(self) -> datetime:
        with self._lock:
            if self.frozen_at is not None:
                return self.frozen_at
            return datetime.now(UTC) + self.offset

    def set(self, instant: datetime, freeze: bool = False) -> None:
        with self._lock:
            instant = instant.astimezone(UTC)
            if freeze:
                self.frozen_at = instant
            else:
                self.frozen_at = None
                self.offset = instant - datetime.now(UTC)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            if self.frozen_at is not None:
                self.frozen_at += delta
            else:
                self.offset += delta

    def state(self) -> dict:
        with self._lock:
            return {
                "offset_seconds": self.offset.total_seconds(),
                "frozen_at": self.frozen_at.isoformat() if self.frozen_at else None,
            }

    def restore(self, state: dict) -> None:
        with self._lock:
            self.offset = timedelta(seconds=state.get("offset_seconds", 0))
            frozen = state.get("frozen_at")
            self.frozen_at = datetime.fromisoformat(frozen) if frozen else None
