"""The backup stage in Dagster: per object, the extracted mirror table and its SCD-2 history."""
