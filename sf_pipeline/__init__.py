"""sf-pipeline: Salesforce backup, anomaly detection and restore on Dagster, PostgreSQL and dbt."""

__version__ = "0.1.0"
