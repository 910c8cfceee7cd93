"""deploy/postgres-init.sql on a real, private PostgreSQL cluster with password authentication, run the way the
postgres image runs it on first start (psql as the superuser, connected to POSTGRES_DB): Dagster and the pipeline
get roles of their own, without superuser rights, whose passwords come from the environment.

The cluster is private (initdb in the test's folder, its own port) because the script creates roles, which are
global to a cluster: the shared test server must not get them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sf_pipeline.devorg.runner import free_port
from sf_pipeline.warehouse.dbt_project import dbt_env_from_url
from sf_pipeline_tests.deploy.conftest import DEPLOY

pytestmark = pytest.mark.e2e  # a PostgreSQL cluster of its own: handed out early with the other slow modules

PASSWORDS = {"DAGSTER_PG_PASSWORD": "dagster-Secret-1", "SF_PIPELINE_DB_PASSWORD": "pipeline-Secret-2"}


def _pg_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: the PostgreSQL server binaries are needed (scripts/ensure-postgres.sh)")
    return found


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            self.as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")

    def run(self, *args: str) -> None:
        done = subprocess.run([*self.as_owner, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"

    def start(self) -> None:
        # password authentication over TCP (scram-sha-256), as in the postgres image
        self.run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"
        )
        self.run(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.root / "server.log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.as_owner, _pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )

    def psql(self, dbname: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """psql as the superuser over the cluster's socket, like the image's docker-entrypoint.sh."""
        return subprocess.run(
            [
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "--username",
                "postgres",
                "--no-password",
                "--no-psqlrc",
                "--host",
                str(self.root),
                "--port",
                str(self.port),
                "--dbname",
                dbname,
                *args,
            ],
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def url(self, user: str, dbname: str, password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    # not under pytest's tmp_path: its parents are private to root, and the server runs as `postgres`
    root = Path(tempfile.mkdtemp(prefix="sf-pipeline-pg-"))
    cluster = Cluster(root)
    try:
        cluster.start()
        # what the image does before the init scripts: POSTGRES_DB
        assert cluster.psql("postgres", "-c", "CREATE DATABASE dagster").returncode == 0
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_init_script_gives_dagster_and_the_pipeline_their_own_roles_without_superuser_rights(cluster, monkeypatch):
    done = cluster.psql("dagster", "-f", str(DEPLOY / "postgres-init.sql"), env=PASSWORDS)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(cluster.url("postgres", "postgres"), host=str(cluster.root)) as conn:
        roles = {
            name: rights
            for name, *rights in conn.execute(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                "WHERE rolname IN ('dagster', 'sf_pipeline')"
            ).fetchall()
        }
        owners = dict(
            conn.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname IN ('dagster', 'sf_backup')"
            ).fetchall()
        )
    assert roles == {"dagster": [False, False, False, False], "sf_pipeline": [False, False, False, False]}
    assert owners == {"dagster": "dagster", "sf_backup": "sf_pipeline"}

    # The pipeline logs in with a URL that carries no password: libpq takes PGPASSWORD (compose sets it) ...
    monkeypatch.setenv("PGPASSWORD", PASSWORDS["SF_PIPELINE_DB_PASSWORD"])
    url = cluster.url("sf_pipeline", "sf_backup")
    with psycopg.connect(url, autocommit=True) as conn:
        # ... and builds its schemas in its own database
        conn.execute("CREATE SCHEMA salesforce")
        conn.execute("CREATE TABLE salesforce.account (id text PRIMARY KEY)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE intruder SUPERUSER")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE elsewhere")
    # dbt gets the same password for the same URL (profiles.yml reads SF_PIPELINE_PG_PASSWORD)
    assert dbt_env_from_url(url)["SF_PIPELINE_PG_PASSWORD"] == PASSWORDS["SF_PIPELINE_DB_PASSWORD"]
    import psycopg2  # dbt-postgres' driver, with the profile's parts as dbt passes them

    env = dbt_env_from_url(url)
    psycopg2.connect(
        host=env["SF_PIPELINE_PG_HOST"],
        port=env["SF_PIPELINE_PG_PORT"],
        user=env["SF_PIPELINE_PG_USER"],
        password=env["SF_PIPELINE_PG_PASSWORD"],
        dbname=env["SF_PIPELINE_PG_DBNAME"],
    ).close()

    # Each role reaches its own database only, and only with its own password
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(cluster.url("sf_pipeline", "dagster"))
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(cluster.url("sf_pipeline", "sf_backup", "wrong"))
    dagster = cluster.url("dagster", "dagster", PASSWORDS["DAGSTER_PG_PASSWORD"])
    with psycopg.connect(dagster, autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (run_id text PRIMARY KEY)")  # Dagster creates its tables in public
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(cluster.url("dagster", "sf_backup", PASSWORDS["DAGSTER_PG_PASSWORD"]))


@pytest.mark.parametrize("missing", sorted(PASSWORDS))
def test_init_script_stops_with_a_clear_error_when_a_password_is_not_set(cluster, missing):
    env = {**PASSWORDS, missing: ""}
    done = cluster.psql("dagster", "-f", str(DEPLOY / "postgres-init.sql"), env=env)
    assert done.returncode != 0
    assert f"{missing} is empty or not set: put it in deploy/database.env" in done.stderr
    roles = cluster.psql("dagster", "-tAc", "SELECT count(*) FROM pg_roles WHERE rolname IN ('dagster', 'sf_pipeline')")
    assert roles.stdout.strip() == "0"  # nothing was created with an empty password
