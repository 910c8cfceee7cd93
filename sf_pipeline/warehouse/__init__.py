"""PostgreSQL storage of the backup: mirror tables, window loads, and point-in-time history.

No Dagster here: the assets in `sf_pipeline.backup` call these functions with a psycopg connection.
"""

from sf_pipeline.warehouse.dbt_project import (
    DBT_PROJECT_DIR,
    dbt_env_from_url,
    run_snapshot,
    snapshot_args,
    snapshot_env,
    write_snapshot_definitions,
)
from sf_pipeline.warehouse.errors import (
    HistoryNotFoundError,
    SnapshotError,
    WarehouseError,
    WarehouseLoadError,
    WarehouseSchemaError,
)
from sf_pipeline.warehouse.history import as_of, as_of_sql, history_columns, history_versions
from sf_pipeline.warehouse.load import LoadResult, load_window
from sf_pipeline.warehouse.names import HISTORY_SCHEMA, MIRROR_SCHEMA, column_name, table_name
from sf_pipeline.warehouse.schema import (
    MirrorColumn,
    MirrorTable,
    backup_fields,
    ensure_mirror_table,
    get_mirror_table,
    pg_type_for,
)

__all__ = [
    "DBT_PROJECT_DIR",
    "HISTORY_SCHEMA",
    "MIRROR_SCHEMA",
    "HistoryNotFoundError",
    "LoadResult",
    "MirrorColumn",
    "MirrorTable",
    "SnapshotError",
    "WarehouseError",
    "WarehouseLoadError",
    "WarehouseSchemaError",
    "as_of",
    "as_of_sql",
    "backup_fields",
    "column_name",
    "dbt_env_from_url",
    "ensure_mirror_table",
    "get_mirror_table",
    "history_columns",
    "history_versions",
    "load_window",
    "pg_type_for",
    "run_snapshot",
    "snapshot_args",
    "snapshot_env",
    "table_name",
    "write_snapshot_definitions",
]
