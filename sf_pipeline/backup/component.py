"""The backup as a Dagster state-backed component: `dg` users add it to their own project with a `defs.yaml`.

The state is the describe of every backed-up org (`catalog_state.py`): fetched by `dg utils refresh-defs-state`
(on deploy, while building the image, or on demand), never when the code location loads. A new custom object
or field appears after a refresh, with no code or YAML change. This is the model of dagster-fivetran's
`FivetranAccountComponent` and dagster-dbt's `DbtProjectComponent` (Dagster 1.13 `StateBackedComponent`):

    # defs/salesforce_backup/defs.yaml
    type: sf_pipeline.backup.component.SalesforceBackupComponent
    attributes:
      settings_path: "{{ project_root }}/sf_pipeline.yaml"

With no state yet, the component builds nothing (and says so in the log); refresh it first.
"""

# No `from __future__ import annotations` here: Dagster reads this class's field annotations as types to build
# the defs.yaml schema.
import logging
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster.components import DefsStateConfig, DefsStateConfigArgs, ResolvedDefsStateConfig

log = logging.getLogger(__name__)


@dataclass
class SalesforceBackupComponent(dg.StateBackedComponent, dg.Resolvable):
    """Back up Salesforce orgs (every object their describe allows, or a list) into PostgreSQL, with history.

    `settings_path`: the sf-pipeline settings file (orgs, objects, windows); credentials and the database
    come from the environment (SALESFORCE_<ALIAS>_*, SF_PIPELINE_DATABASE_URL), as everywhere in sf-pipeline.
    """

    settings_path: str
    defs_state: ResolvedDefsStateConfig = field(default_factory=DefsStateConfigArgs.local_filesystem)

    def _settings(self):
        from sf_pipeline.settings import load_settings

        return load_settings(self.settings_path)

    @property
    def defs_state_config(self) -> DefsStateConfig:
        orgs = ",".join(org.alias for org in self._settings().backups)
        return DefsStateConfig.from_args(self.defs_state, default_key=f"SalesforceBackupComponent[{orgs}]")

    def write_state_to_path(self, state_path: Path) -> None:
        from .catalog_state import fetch_state

        state_path.write_text(fetch_state(self._settings()))

    def build_defs_from_state(self, context: dg.ComponentLoadContext, state_path: Path | None) -> dg.Definitions:
        if state_path is None or not state_path.exists():
            log.warning(
                "SalesforceBackupComponent has no state yet: run `dg utils refresh-defs-state` to read the "
                "orgs' describe; no backup assets until then"
            )
            return dg.Definitions()
        from sf_pipeline.definitions import build_definitions

        return build_definitions(self.settings_path, state=state_path.read_text())
