"""Which windows the backup schedule asks for: every closed window not yet backed up, oldest first.

Plain decisions over plain data (no Dagster here): the schedule in `schedules.py` reads what the
instance knows (which windows are materialized, which runs tried which window) and calls
`windows_to_request`. A window is done only when it is backed up (DESIGN.md "Completeness"), so a
daemon outage or a failed window heals itself on the next ticks instead of leaving a silent hole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class WindowAttempts:
    """What earlier runs of the schedule did for one window.

    `failures` counts finished runs that left the window not backed up (failed, canceled, or succeeded
    without materializing every object); `last_finished` is when the latest of them ended;
    `in_flight` says a run for the window is queued or running.
    """

    failures: int = 0
    last_finished: datetime | None = None
    in_flight: bool = False


@dataclass(frozen=True)
class WindowRequest:
    """One run the schedule asks for: back up `window`, re-reading `reread` (the window before it) too."""

    window: str
    attempt: int
    reread: str | None = None
    reason: str = "new"


def retry_delay(failures: int, max_minutes: int) -> timedelta:
    """Backoff before retrying a window that failed `failures` times: 2^failures minutes, capped."""
    return timedelta(minutes=min(2 ** min(failures, 30), max_minutes))


def windows_to_request(
    missing: Sequence[str],
    attempts: Mapping[str, WindowAttempts],
    now: datetime,
    max_windows: int,
    retry_max_minutes: int,
    newest: str | None = None,
    reread: str | None = None,
) -> tuple[list[WindowRequest], list[str]]:
    """The runs to request now, oldest window first, and the windows left waiting (with why).

    `missing` lists the closed windows (closed at least the schedule's lag ago) not backed up, oldest
    first. Each is requested unless a run for it is in flight, or it failed and its backoff has not run
    out. `newest` is the newest closed window; when it is requested, its run also re-reads `reread`, the
    window before it, given only when that one is backed up and is not the first window (the full load):
    late commits, a transaction stamped before a window closed may commit after the lag (DESIGN.md
    "Lessons"); a window not backed up yet is read in full by its own run anyway. At most `max_windows`
    requests per call: the rest follow on the next ticks.
    """
    if max_windows < 1:
        raise ValueError(f"max_windows_per_tick must be at least 1, got {max_windows}")
    requests: list[WindowRequest] = []
    waiting: list[str] = []
    for window in missing:
        tried = attempts.get(window, WindowAttempts())
        if tried.in_flight:
            waiting.append(f"{window}: being backed up")
            continue
        if tried.failures and tried.last_finished is not None:
            due = tried.last_finished + retry_delay(tried.failures, retry_max_minutes)
            if now < due:
                waiting.append(f"{window}: failed {tried.failures} time(s), retried after {due:%Y-%m-%d %H:%M} UTC")
                continue
        if len(requests) >= max_windows:
            waiting.append(f"{window}: more than {max_windows} windows to back up, next tick")
            continue
        is_newest = window == newest
        reason = f"retry {tried.failures}" if tried.failures else ("new" if is_newest else "missed")
        requests.append(WindowRequest(window, tried.failures + 1, reread if is_newest else None, reason))
    return requests, waiting
