"""The catalog state: every backed-up org's describe, as the definitions are built from it.

Fetched from the orgs on deploy and on demand (`sf-pipeline objects --refresh`, or `dg utils
refresh-defs-state` for the component in `component.py`), stored as one JSON document, and read back when
the code location loads: loading never calls Salesforce when a state exists (DESIGN.md "Completeness").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sf_pipeline.salesforce.catalog import Catalog, discover
from sf_pipeline.salesforce.errors import CatalogError
from sf_pipeline.settings import Settings

STATE_DIR_ENV = "SF_PIPELINE_STATE_DIR"
STATE_FILE = "catalog.json"


def state_path(settings: Settings) -> Path:
    """Where `workspace.yaml`'s code location keeps the state: SF_PIPELINE_STATE_DIR, else
    `.sf_pipeline_state/` beside the settings file."""
    folder = os.environ.get(STATE_DIR_ENV)
    return Path(folder) / STATE_FILE if folder else settings.path.parent / ".sf_pipeline_state" / STATE_FILE


def needs_catalog(settings: Settings) -> bool:
    """An org with `objects: all` has no object list until its catalog is known."""
    return any(org.all_objects for org in settings.backups)


def fetch_state(settings: Settings) -> str:
    """Ask every backed-up org for its describe global and its objects' describes; the state as JSON."""
    from sf_pipeline.resources import SalesforceOrgResource

    catalogs = {}
    for org in settings.backups:
        client = SalesforceOrgResource.from_settings(settings, org.alias).client()
        explicit = None if org.all_objects else [o.name for o in org.objects]
        catalogs[org.alias] = discover(client, org.alias, explicit=explicit, include=org.include, exclude=org.exclude)
    return dump_state(catalogs)


def dump_state(catalogs: dict[str, Catalog]) -> str:
    return json.dumps({"orgs": {alias: json.loads(c.to_json()) for alias, c in catalogs.items()}}, indent=1)


def read_state(text: str, source: str = "catalog state") -> dict[str, Catalog]:
    try:
        orgs = json.loads(text)["orgs"]
    except (ValueError, KeyError, TypeError):
        raise CatalogError(f"{source} is not an sf-pipeline catalog state; refresh it") from None
    return {alias: Catalog.from_json(json.dumps(data), f"{source} ({alias})") for alias, data in orgs.items()}


def check_state_fits(settings: Settings, catalogs: dict[str, Catalog], source: str) -> None:
    """Every org with `objects: all` needs its catalog in the state."""
    missing = [org.alias for org in settings.backups if org.all_objects and org.alias not in catalogs]
    if missing:
        raise CatalogError(
            f"{source} has no catalog for org(s) {missing} (backed up with `objects: all`); "
            "refresh it: sf-pipeline objects --refresh (or dg utils refresh-defs-state)"
        )


def refresh_state_file(settings: Settings) -> Path:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(fetch_state(settings))
    tmp.replace(path)
    return path


def load_state(settings: Settings) -> dict[str, Catalog]:
    """The stored catalogs, fetching and storing them first only when an org needs one and none is stored."""
    path = state_path(settings)
    if path.exists():
        catalogs = read_state(path.read_text(), str(path))
        check_state_fits(settings, catalogs, str(path))
        return catalogs
    if not needs_catalog(settings):
        return {}
    refresh_state_file(settings)
    return read_state(path.read_text(), str(path))
