"""The `sf-pipeline` command line.

It speaks to its user only: Dagster's lifecycle warnings (an API in beta or preview, a superseded one) are
for the developers of this package, who see them in the tests, not for someone restoring an org.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import click

from sf_pipeline.settings import REPO_ROOT

# Dagster's warnings that an API is in beta, in preview or superseded (dagster_shared.utils.warnings; older
# releases also had ExperimentalWarning)
LIFECYCLE_WARNINGS = frozenset({"BetaWarning", "PreviewWarning", "ExperimentalWarning", "SupersessionWarning"})
# What `pip install 'sf-pipeline[devorg]'` adds (pyproject.toml): devorg and the demo need them, the pipeline not
DEVORG_EXTRA = frozenset({"starlette", "uvicorn", "trustme", "lark", "multipart", "python_multipart", "pgserver"})


def is_lifecycle_warning(category: type[Warning]) -> bool:
    """Whether a warning class is one of Dagster's lifecycle warnings (matched by name and package, `dagster` or
    `dagster_shared`, so that the command line need not import dagster to filter them)."""
    return any(c.__name__ in LIFECYCLE_WARNINGS and c.__module__.startswith("dagster") for c in category.__mro__)


def quiet_lifecycle_warnings() -> None:
    """Stop showing Dagster's lifecycle warnings in this process; every other warning is shown as before."""
    shown = warnings.showwarning
    if getattr(shown, "_sf_pipeline_quiet", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not is_lifecycle_warning(category):
            shown(message, category, filename, lineno, file, line)

    showwarning._sf_pipeline_quiet = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def require_devorg(command: str) -> None:
    """Import devorg, or stop with what to install: its dependencies are the optional extra `devorg`."""
    try:
        import sf_pipeline.devorg.runner  # noqa: F401
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in DEVORG_EXTRA:
            raise
        raise click.ClickException(
            f"`sf-pipeline {command}` needs devorg's dependencies, which are not installed ({exc.name} is "
            "missing): pip install 'sf-pipeline[devorg]' (in a checkout, scripts/setup.sh installs them)"
        ) from None


@click.group()
@click.version_option(package_name="sf-pipeline")
def main() -> None:
    """sf-pipeline: back up Salesforce to PostgreSQL, detect damage, rehearse and restore."""
    quiet_lifecycle_warnings()


# ====================================================================== devorg
@main.group()
def devorg() -> None:
    """devorg, the local Salesforce org emulator (HTTPS, real Salesforce APIs)."""


@devorg.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, help="Port to listen on (default: a free port).")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the org's SQLite data, certificates and keys; persists across restarts "
    "(default: a temporary directory).",
)
@click.option(
    "--generate",
    "size",
    type=int,
    default=None,
    help="Generate an org with this many Opportunities (plus accounts, contacts, cases...) if empty.",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Seed of the data generator.")
@click.option(
    "--custom-objects",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML file declaring extra custom objects.",
)
@click.option("--alias", default="production", show_default=True, help="Org alias used in the printed variables.")
@click.option("--name", default="devorg", show_default=True, help="Org name (appears in usernames).")
@click.option("--daily-limit", type=int, default=None, help="Daily API request limit.")
@click.option(
    "--extra-objects",
    type=click.IntRange(min=0),
    default=None,
    help="Add this many generated custom objects of varied shapes (lookups, master-detail, picklists, "
    "long text, currency, dates), with their history/share/feed objects; kept across restarts.",
)
@click.option(
    "--files",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --generate: attach this many files (ContentVersion, bytes on disk in the data directory).",
)
@click.option(
    "--file-sizes",
    default=None,
    metavar="BYTES:SHARE,...",
    help="Size mix of the generated files, e.g. 4096:0.7,65536:0.25,1048576:0.05 (the default).",
)
@click.option(
    "--sandbox",
    is_flag=True,
    default=False,
    help="Make a new org a sandbox (Organization.IsSandbox is true); an existing org keeps its kind.",
)
def serve(
    host,
    port,
    data_dir,
    size,
    seed,
    custom_objects,
    alias,
    name,
    daily_limit,
    extra_objects,
    files,
    file_sizes,
    sandbox,
) -> None:
    """Start an org over HTTPS and print, as export lines, what a client needs to connect."""
    require_devorg("devorg serve")
    from .devorg.runner import DevOrgServer

    server = DevOrgServer(
        data_dir,
        host=host,
        port=port,
        generate=size,
        seed=seed,
        custom_objects=custom_objects,
        name=name,
        daily_limit=daily_limit,
        log_level="warning",
        extra_objects=extra_objects,
        files=files,
        file_sizes=_size_mix(file_sizes),
        sandbox=sandbox or None,
    )
    click.echo(server.export_lines(alias))
    click.echo("# serving until stopped (Ctrl-C); control hooks: sf-pipeline devorg --help", err=True)
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.org.close()


def _size_mix(text: str | None) -> dict[int, float] | None:
    """`4096:0.7,65536:0.3` -> {4096: 0.7, 65536: 0.3}."""
    if not text:
        return None
    try:
        mix = {int(size): float(share) for size, share in (part.split(":") for part in text.split(","))}
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected BYTES:SHARE pairs separated by commas, e.g. 4096:0.7,65536:0.3",
            param_hint="--file-sizes",
        ) from None
    if any(size <= 0 or share < 0 for size, share in mix.items()) or not sum(mix.values()):
        raise click.BadParameter(
            f"{text!r}: sizes must be positive and shares non-negative, not all zero", param_hint="--file-sizes"
        )
    return mix


def _control(
    path: str, body: dict | None = None, method: str = "POST", url: str | None = None, alias: str = "production"
) -> dict:
    import requests

    prefix = f"SALESFORCE_{alias.upper()}_"
    base = url or os.environ.get(prefix + "INSTANCE_URL")
    if not base:
        raise click.UsageError(f"no devorg URL: pass --url or set {prefix}INSTANCE_URL (printed by `devorg serve`)")
    verify = os.environ.get(prefix + "CA_BUNDLE") or True
    token_var = f"DEVORG_{alias.upper()}_CONTROL_TOKEN"
    token = os.environ.get(token_var)
    if not token:
        raise click.UsageError(f"no devorg control token: set {token_var} (printed by `devorg serve`)")
    resp = requests.request(
        method,
        f"{base.rstrip('/')}/_devorg/{path}",
        json=body,
        verify=verify,
        timeout=600,
        headers={"Authorization": f"Bearer {token}"},
    )
    if resp.status_code >= 400:
        raise click.ClickException(f"devorg answered {resp.status_code}: {resp.text}")
    return resp.json()


_url = click.option("--url", default=None, help="devorg instance URL (default: $SALESFORCE_<ALIAS>_INSTANCE_URL).")
_alias = click.option("--alias", default="production", show_default=True)


@devorg.command()
@click.option("--set", "set_", default=None, help="Set the clock to this instant (ISO 8601, UTC if no offset).")
@click.option("--advance", default=None, help="Move the clock forward: 90s, 15m, 2h, 1d.")
@click.option("--freeze/--unfreeze", default=None, help="Stop the clock (it only moves when told) or let it run.")
@_url
@_alias
def clock(set_, advance, freeze, url, alias) -> None:
    """Show, set or advance the org clock (it stamps CreatedDate, SystemModstamp...)."""
    body: dict = {}
    if set_:
        body["set"] = set_
        body["freeze"] = bool(freeze)
    elif freeze:
        body["freeze"] = True
    if freeze is False:
        body["unfreeze"] = True
    if advance:
        body["advance"] = advance
    click.echo(json.dumps(_control("clock", body, url=url, alias=alias)))


@devorg.command()
@click.argument("kind", type=click.Choice(["5xx", "lock", "drop", "slow"]), required=False)
@click.option("--rate", type=float, default=0.0, help="Probability per request.")
@click.option("--next", "next_", type=int, default=0, help="Fail the next N matching requests.")
@click.option("--status", type=int, default=503, show_default=True, help="HTTP status for 5xx faults.")
@click.option("--delay", type=float, default=2.0, show_default=True, help="Seconds, for slow responses.")
@click.option("--path", default="", help="Only requests whose path contains this text.")
@click.option("--method", default="", help="Only requests of this HTTP method (e.g. POST).")
@click.option("--after", is_flag=True, help="5xx only: carry the request out (records written), then answer 5xx.")
@click.option("--clear", is_flag=True, help="Remove all fault rules.")
@_url
@_alias
def fault(kind, rate, next_, status, delay, path, method, after, clear, url, alias) -> None:
    """Inject faults: HTTP 5xx, UNABLE_TO_LOCK_ROW, dropped connections, slow responses."""
    if clear:
        click.echo(json.dumps(_control("faults", method="DELETE", url=url, alias=alias)))
        return
    if not kind:
        raise click.UsageError("name a fault kind (5xx, lock, drop, slow) or pass --clear")
    body = {
        "kind": kind,
        "rate": rate,
        "next": next_,
        "status": status,
        "delay": delay,
        "path": path,
        "method": method,
        "after": after,
    }
    click.echo(json.dumps(_control("faults", body, url=url, alias=alias)))


@devorg.command()
@click.argument("name")
@click.option("--user", default=None, help="Acting user key (admin, integration, sales1...).")
@click.option("--at", default=None, help="Set the org clock to this instant first (ISO 8601).")
@click.option("--fraction", type=float, default=None, help="Share of records affected, where it applies.")
@click.option(
    "--empty-bin",
    is_flag=True,
    help="recycle-bin-purge: empty the bin (emptyRecycleBin) instead of letting the clock pass its 15 days.",
)
@_url
@_alias
def scenario(name, user, at, fraction, empty_bin, url, alias) -> None:
    """Run a named scenario (orphan-opportunities, mass-delete, owner-takeover, picklist-wipe, business-day,
    mass-hard-delete, recycle-bin-purge, mass-merge, account-cleanup)."""
    body = {"name": name, "user": user, "at": at, "fraction": fraction, "empty_bin": empty_bin}
    result = _control("scenario", body, url=url, alias=alias)
    click.echo(
        json.dumps(
            {k: (v if k != "changed" else {o: len(i) for o, i in v.items()}) for k, v in result.items()}, indent=2
        )
    )


@devorg.command()
@_url
@_alias
def state(url, alias) -> None:
    """Show the org's clock, API usage, faults, record counts and users."""
    click.echo(json.dumps(_control("state", method="GET", url=url, alias=alias), indent=2))


@devorg.command()
@click.option("--daily-limit", type=int, default=None, help="Set the API request limit of a rolling 24 hours.")
@click.option("--reset-usage", is_flag=True, help="Forget the API usage of the last 24 hours.")
@click.option(
    "--concurrent-long-running",
    type=int,
    default=None,
    help="Concurrent long-running requests allowed (Salesforce: 25 in production, 5 in Developer Edition).",
)
@click.option(
    "--long-running-seconds",
    type=float,
    default=None,
    help="How long a request runs before it counts as long-running (Salesforce: 20).",
)
@_url
@_alias
def limits(daily_limit, reset_usage, concurrent_long_running, long_running_seconds, url, alias) -> None:
    """Show or change the org's API limits (rolling 24-hour allocation, concurrent long-running requests)."""
    body: dict = {"reset_usage": reset_usage}
    if daily_limit is not None:
        body["daily_limit"] = daily_limit
    if concurrent_long_running is not None:
        body["concurrent_long_running"] = concurrent_long_running
    if long_running_seconds is not None:
        body["long_running_seconds"] = long_running_seconds
    click.echo(json.dumps(_control("limits", body, url=url, alias=alias)))


@devorg.command("session-timeout")
@click.argument("timeout", type=click.Choice(["15m", "30m", "1h", "2h", "4h", "8h", "12h", "24h"]), required=False)
@_url
@_alias
def session_timeout(timeout, url, alias) -> None:
    """Show or set the org's session timeout (Setup > Session Settings; access tokens expire with it)."""
    if timeout:
        out = _control("sessions/timeout", {"timeout": timeout}, url=url, alias=alias)
    else:
        out = _control("sessions/timeout", method="GET", url=url, alias=alias)
    click.echo(json.dumps(out))


@devorg.command("change-field-type")
@click.argument("object_name")
@click.argument("field")
@click.argument("new_type")
@click.option("--length", type=int, default=None, help="Length of a text type.")
@click.option("--precision", type=int, default=None, help="Digits of a number type.")
@click.option("--scale", type=int, default=None, help="Decimal places of a number type.")
@_url
@_alias
def change_field_type(object_name, field, new_type, length, precision, scale, url, alias) -> None:
    """Change a custom field's type as an admin does in Setup (e.g. Account Score__c string); values convert."""
    body = {
        "object": object_name,
        "field": field,
        "type": new_type,
        "length": length,
        "precision": precision,
        "scale": scale,
    }
    click.echo(json.dumps(_control("fields/type", body, url=url, alias=alias), indent=2))


@devorg.command("expire-sessions")
@_url
@_alias
def expire_sessions(url, alias) -> None:
    """Invalidate every session (clients must log in again)."""
    click.echo(json.dumps(_control("sessions/expire", {}, url=url, alias=alias)))


# ====================================================================== demo
@main.command()
@click.option("--size", type=int, default=10_000, show_default=True, help="Opportunities in the generated org.")
@click.option(
    "--data-dir", default=".demo", show_default=True, help="Where the demo keeps its org, dbt copy and Dagster home."
)
@click.option("--ui", is_flag=True, help="Afterwards, keep devorg running and start `dagster dev` on the same state.")
@click.option(
    "--database",
    default="sf_pipeline_demo",
    show_default=True,
    help="The demo's own database, (re-)created on the PostgreSQL server; one holding anything but a "
    "previous demo's data is refused.",
)
def demo(size, data_dir, ui, database) -> None:
    """The 2 am story end to end: back up, damage, detect, rehearse in a sandbox, restore production, report."""
    require_devorg("demo")
    from .demo import DemoDatabaseError, run_demo

    try:
        result, orgs = run_demo(size=size, data_dir=data_dir, keep_devorg=ui, database=database)
    except DemoDatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    if ui and orgs is not None:
        import subprocess

        click.echo(
            "Starting dagster dev on http://127.0.0.1:3000 with the demo's state: open Assets for the graph "
            "and history/Opportunity's checks for the incident, Runs for the seeding and restores (Ctrl-C "
            "to stop)..."
        )
        try:
            subprocess.run(
                [sys.executable, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-p", "3000"],
                check=False,
            )
        finally:
            for org in orgs:
                org.stop()


# ====================================================================== backup database
from .history_cli import as_of_command, history, incidents  # noqa: E402

main.add_command(history)
main.add_command(as_of_command)
main.add_command(incidents)

from .files_cli import file_command  # noqa: E402

main.add_command(file_command)

from .orgs_cli import orgs  # noqa: E402

main.add_command(orgs)

from .objects_cli import objects  # noqa: E402

main.add_command(objects)


if __name__ == "__main__":
    main()
