"""`sf-pipeline objects`: the catalog of every backed-up org, each object with its strategy, field count and last
backed-up window, and each skipped object with the reason."""

from __future__ import annotations

import json
import os

import click


def last_windows(keys: dict[str, object]) -> dict[str, str]:
    """Object -> its newest backed-up window (history materialized), from the Dagster instance in DAGSTER_HOME."""
    if not os.environ.get("DAGSTER_HOME") or not keys:
        return {}
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        events = instance.get_latest_materialization_events(list(keys.values()))
    out = {}
    for name, key in keys.items():
        event = events.get(key)
        if event is not None and event.dagster_event is not None:
            out[name] = event.dagster_event.partition or "(unpartitioned)"
    return out


@click.command("objects")
@click.option(
    "--refresh",
    is_flag=True,
    help="Read every backed-up org's describe again and store it (the state the "
    "definitions are built from) before printing.",
)
@click.option("--org", "only_org", default=None, help="Only this org alias.")
@click.option("--skipped/--no-skipped", default=True, show_default=True, help="Also list the skipped objects.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def objects(refresh: bool, only_org: str | None, skipped: bool, as_json: bool) -> None:
    """Every object each backed-up org's backup takes (strategy, fields, last backed-up window) and every
    object it skips, with why. Reads the stored catalog (no Salesforce call) unless --refresh."""
    from sf_pipeline.backup.catalog_state import load_state, refresh_state_file, state_path
    from sf_pipeline.resources import history_key
    from sf_pipeline.salesforce.errors import CatalogError
    from sf_pipeline.settings import SettingsError, load_settings, resolve_objects

    try:
        settings = load_settings()
        if refresh:
            click.echo(f"catalog stored in {refresh_state_file(settings)}", err=True)
        catalogs = load_state(settings)
        resolved = resolve_objects(settings, {alias: c.objects for alias, c in catalogs.items()})
    except (SettingsError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from None
    if not catalogs:
        click.echo(
            f"no catalog stored yet ({state_path(settings)}): the object lists of the settings file are "
            "backed up incrementally; run `sf-pipeline objects --refresh` to see each object's strategy",
            err=True,
        )
    report = []
    for org in resolved.backups:
        if only_org and org.alias != only_org:
            continue
        catalog = catalogs.get(org.alias)
        windows = last_windows({o.name: history_key(o.name, org.key_prefix) for o in org.objects})
        rows = [
            {
                "object": o.name,
                "strategy": o.plan.strategy.value if o.plan else "incremental",
                "read_api": o.plan.read_api.value if o.plan else "bulk_or_rest",
                "fields": o.plan.field_count if o.plan else None,
                "last_backed_up_window": windows.get(o.name),
                "reason": o.plan.reason if o.plan else "",
            }
            for o in org.objects
        ]
        skips = [{"object": s.name, "reason": s.reason} for s in (catalog.skipped if catalog else [])]
        report.append(
            {
                "org": org.alias,
                "fetched_at": catalog.fetched_at if catalog else None,
                "objects": rows,
                "skipped": skips if skipped else [],
            }
        )
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    for org in report:
        click.echo(
            f"org {org['org']}: {len(org['objects'])} objects backed up"
            + (f", {len(org['skipped'])} skipped" if skipped else "")
            + (f" (describe of {org['fetched_at']})" if org["fetched_at"] else "")
        )
        width = max([len(r["object"]) for r in org["objects"] + org["skipped"]] + [6])
        click.echo(f"  {'OBJECT':<{width}}  {'STRATEGY':<12} {'READ':<12} {'FIELDS':>6}  LAST WINDOW")
        for r in org["objects"]:
            fields = "?" if r["fields"] is None else str(r["fields"])
            click.echo(
                f"  {r['object']:<{width}}  {r['strategy']:<12} {r['read_api']:<12} {fields:>6}  "
                f"{r['last_backed_up_window'] or 'never'}"
            )
        if org["skipped"]:
            click.echo("  skipped:")
            for r in org["skipped"]:
                click.echo(f"  {r['object']:<{width}}  {r['reason']}")
