"""Tables the pipeline keeps for itself in schema `sf_pipeline`: created on first use, safely from parallel runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg


def ensure_ddl(conn: psycopg.Connection[Any], lock_key: int, statements: Sequence[str]) -> None:
    """Run idempotent DDL (`CREATE ... IF NOT EXISTS`) under a transaction-level advisory lock, then commit.

    Two runs creating the same table at once would otherwise race: `IF NOT EXISTS` is not atomic in
    PostgreSQL (the second fails on the catalog's unique index); the lock makes the second wait and find it.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        for statement in statements:
            conn.execute(statement)
    commit(conn)


def commit(conn: psycopg.Connection[Any]) -> None:
    """Commit now unless the connection commits each statement itself: what was written must survive a later
    failure of the run."""
    if not conn.autocommit:
        conn.commit()
