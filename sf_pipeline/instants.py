"""The one reader of instants people write (launchpad configs, the settings file, the command line) and that the
pipeline stores (incident selections): ISO 8601, `Z` or an offset, always returned in UTC.

One rule for time zones: an instant without one is refused (a restore of the wrong hour is worse than an error),
unless the caller names the zone such an instant is in (`naive_in`: the command line's UTC, the partitions'
time zone of the settings file). Salesforce's own timestamps (`2026-11-20T10:00:00.000+0000`) are ISO instants
too: `salesforce.values.parse_datetime` and `salesforce.deletions.parse_sf_time` read them with this function.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

EXAMPLE = "'2026-11-24T01:59:59Z'"


class InstantError(ValueError):
    """A value is not an ISO instant, or has no time zone where one is needed; the message names it."""


def parse_instant(value: Any, name: str = "instant", *, naive_in: tzinfo | None = None) -> datetime:
    """`value` (an ISO 8601 string or a datetime) as an aware UTC datetime; `name` is what errors call it.

    A value without a time zone is an error, unless `naive_in` says which zone it is in.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())  # Python 3.11 reads `Z`, `+0000` and `+00:00`
        except ValueError:
            raise InstantError(f"{name} {value!r} is not an ISO instant, e.g. {EXAMPLE}") from None
    else:
        raise InstantError(f"{name} must be an ISO instant such as {EXAMPLE}, not {value!r}")
    if moment.tzinfo is None:
        if naive_in is None:
            raise InstantError(f"{name} {value!r} needs a time zone, e.g. {EXAMPLE}")
        moment = moment.replace(tzinfo=naive_in)
    return moment.astimezone(UTC)
