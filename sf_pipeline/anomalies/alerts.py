"""Incident alerts: a short Slack-compatible message per error-level finding, and its one-line log summary.

An alert leaves the system (a chat channel, a phone), so it carries no record value and no list of ids:
counts, org, object, fields, the acting user, the window, and a link to the check in the Dagster UI where
the full incident is (check metadata, `sf_pipeline.incidents`). Text from the org (the user's name) is
escaped for Slack, so a name like `<!channel>` or `<http://evil|click>` shows as text instead of pinging a
channel or rendering a link. The webhook's URL is its secret: a failure is logged with the host only.
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .incidents import IncidentReport, format_instant
from .registry import title_of

WEBHOOK_ENV = "SF_PIPELINE_ALERT_WEBHOOK"
MAX_FIELDS_SHOWN = 8
log = logging.getLogger(__name__)


def slack_escape(text: Any) -> str:
    """Text with Slack's three control characters escaped, as Slack documents for message text:
    `&` -> `&amp;`, `<` -> `&lt;`, `>` -> `&gt;` (https://api.slack.com/reference/surfaces/formatting#escaping).
    Without `<` and `>` nothing can become a mention (`<!channel>`, `<@U123>`) or a link (`<url|label>`)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def check_url(dagster_base_url: str | None, sobject: str, check_name: str) -> str | None:
    """The check's page in the Dagster UI (`/assets/history/<Object>?view=checks&checkDetail=<check>`), or None
    without a configured base URL (settings file: `alerts: dagster_base_url:`)."""
    if not dagster_base_url:
        return None
    return (
        f"{dagster_base_url.rstrip('/')}/assets/history/{quote(sobject, safe='')}"
        f"?view=checks&checkDetail={quote(check_name, safe='')}"
    )


def _fields(report: IncidentReport) -> str:
    shown = ", ".join(report.fields[:MAX_FIELDS_SHOWN])
    more = len(report.fields) - MAX_FIELDS_SHOWN
    return f"{shown} (and {more} more)" if more > 0 else shown


def incident_summary(report: IncidentReport) -> str:
    """One line without record values or ids: what, where, how many, by whom, when. Used in the alert and in
    the check's error log line (not escaped: the caller escapes for its medium)."""
    what = title_of(report.detector)
    where = f"{report.object}.{_fields(report)}" if report.fields else report.object
    share = (
        f" ({report.share:.1%} of {report.live_records:,} live)"
        if report.share is not None and report.live_records is not None
        else ""
    )
    who = f" by {report.user_label}" if report.user_id else ""
    span = (
        f"; changes {format_instant(report.first_change)} to {format_instant(report.last_change)}"
        if report.first_change and report.last_change
        else ""
    )
    return (
        f"{what} on {where}: {report.affected_count:,} records{share}{who} in org {report.org}, "
        f"window {format_instant(report.window_start)} to {format_instant(report.window_end)}{span}"
    )


def alert_text(report: IncidentReport, link: str | None = None) -> str:
    """The Slack message of an incident: its summary (escaped), where to read the full incident and what to do."""
    where = (
        f"<{link}|Open the check in Dagster>" if link else "See the check `no_mass_damage` of this window in Dagster"
    )
    action = (
        " It holds the full incident and a restore config (dry run) to paste into the restore launchpad."
        if report.restore_config is not None
        else " It holds the full incident."
    )
    return (
        f":rotating_light: *{report.severity.upper()}*: {slack_escape(incident_summary(report))}\n"
        f"{where}.{action} Also listed by `sf-pipeline incidents`."
    )


def webhook_host(url: str) -> str:
    """What may be logged of a webhook URL: its host (and port). The path and query are its secret."""
    try:
        parts = urlsplit(url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "(no host)"
    except ValueError:
        return "(malformed URL)"


def _failure(exc: requests.RequestException) -> str:
    """Why a post failed, without the URL that requests puts in its messages."""
    response = getattr(exc, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(exc).__name__


def send_alert(report: IncidentReport, link: str | None = None, logger: Any = None) -> bool:
    """Post the incident's alert to SF_PIPELINE_ALERT_WEBHOOK when it is set. A failure is logged (host only,
    on `logger`, e.g. the run's `context.log`) and does not fail the check: the incident is stored anyway."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return False
    try:
        resp = requests.post(url, json={"text": alert_text(report, link)}, timeout=10)
        resp.raise_for_status()
        return True
    except requests.RequestException as exc:  # an unreachable webhook must not hide the incident
        (logger or log).warning(
            f"could not post the alert to the webhook at {webhook_host(url)} ({WEBHOOK_ENV}): {_failure(exc)}"
        )
        return False
