"""Fixtures of the anomaly tests: a history builder on the test's fresh database."""

from __future__ import annotations

import psycopg
import pytest

from sf_pipeline_tests.anomalies.builders import History


@pytest.fixture
def history(pg_conn: psycopg.Connection) -> History:
    """Builds `salesforce_history.<object>` tables in the test's own database."""
    return History(pg_conn)
