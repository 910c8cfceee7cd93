"""The files under deploy/ hold together: dagster.yaml starts a real instance on PostgreSQL, and the
Dockerfile, compose file, workspace and Helm values agree with it and with the code location.

Images cannot be built or pulled here (no registry access), and neither docker compose nor helm is
installed, so those files are parsed and checked for what the other files rely on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.load import location_origins_from_yaml_paths

from sf_pipeline_tests.deploy.conftest import DEPLOY, REPO, dagster_pg_env

POOL = "salesforce_production"


def _yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_deploy_dagster_yaml_starts_an_instance_on_postgres(deployed_instance: dg.DagsterInstance, pg_url: str):
    instance = deployed_instance
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    # psycopg2, named explicitly: SQLAlchemy 2.1 would pick psycopg 3 for postgresql://
    assert instance.event_log_storage.postgres_url.startswith("postgresql+psycopg2://")
    assert instance.event_log_storage.postgres_url.split("?")[0].endswith("/" + pg_url.rsplit("/", 1)[1])

    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 10
    assert concurrency.run_queue_config.tag_concurrency_limits == [
        {"key": "sf_pipeline/org", "value": {"applyLimitPerUniqueValue": True}, "limit": 3}
    ]
    assert concurrency.pool_config.default_pool_limit == 4
    assert concurrency.pool_config.pool_granularity.value == "op"
    assert instance.run_monitoring_enabled and instance.run_monitoring_settings["free_slots_after_run_end_seconds"]
    assert not instance.telemetry_enabled

    # The org's pool takes the default limit the first time a step claims it, in the instance's database.
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(POOL)
    assert storage.get_concurrency_info(POOL).slot_count == 4

    # A run really goes through this instance: events are written and read back (LISTEN/NOTIFY included).
    @dg.op
    def hello() -> int:
        return 1

    @dg.job
    def probe():
        hello()

    result = probe.execute_in_process(instance=instance)
    assert result.success
    stored = instance.get_run_by_id(result.run_id)
    assert stored is not None and stored.is_success
    steps = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    assert [e.step_key for e in steps] == ["hello"]

    # ... over one connection held by the storage (not one opened per event: sf_pipeline/instance_storage.py),
    # committing without waiting for the WAL flush; the run storage alike
    from sf_pipeline.instance_storage import PooledPostgresEventLogStorage, PooledPostgresRunStorage

    assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
    assert isinstance(instance.run_storage, PooledPostgresRunStorage)
    for connect in (instance.event_log_storage.index_connection, instance.run_storage.connect):
        seen = []
        for _ in range(2):
            with connect() as conn:
                seen.append(
                    tuple(conn.exec_driver_sql("SELECT pg_backend_pid(), current_setting('synchronous_commit')").one())
                )
        assert seen[0] == seen[1] and seen[0][1] == "off", seen


def test_a_pooled_connection_killed_while_idle_is_replaced_not_used(
    deployed_instance: dg.DagsterInstance, pg_url: str, monkeypatch: pytest.MonkeyPatch
):
    # A process waiting between runs (the daemon, a code server) keeps its pooled connection; a database restart
    # or an idle-session timeout kills it. The next checkout after PING_AFTER_IDLE_SECONDS pings it and connects
    # again: the event is written, never lost to "server closed the connection unexpectedly".
    import psycopg

    from sf_pipeline import instance_storage

    monkeypatch.setattr(instance_storage, "PING_AFTER_IDLE_SECONDS", 0.0)
    instance = deployed_instance
    for connect in (instance.event_log_storage.index_connection, instance.run_storage.connect):
        with connect() as conn:
            old = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (old,)).fetchone()[0]
        with connect() as conn:
            new = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert new != old
    # and a run writes its events through the replaced connections
    assert dg.materialize([_probe], instance=instance).success


@dg.asset
def _probe() -> None:
    return None


_DAYS = dg.DailyPartitionsDefinition(start_date="2026-12-01")


def _planned_probe(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=_DAYS)
    def _asset() -> None:
        return None

    return _asset


def test_a_runs_planned_materializations_are_written_as_one_batch(
    deployed_instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
):
    # Creating a run writes one planned materialization per asset (864 in issue 14's org): our storage writes
    # them in one INSERT and one asset index upsert, and they read back as dagster-postgres' one-by-one writes do.
    import os

    from sf_pipeline import instance_storage

    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == instance_storage.EVENT_BATCH_SIZE  # set by the import
    batches: list[list[str]] = []
    original = instance_storage.PooledPostgresEventLogStorage.store_event_batch

    def spy(self, events):
        batches.append([e.dagster_event.event_type_value for e in events])
        return original(self, events)

    monkeypatch.setattr(instance_storage.PooledPostgresEventLogStorage, "store_event_batch", spy)
    assets = [_planned_probe(f"planned_{i}") for i in range(30)]
    instance = deployed_instance
    result = dg.materialize(assets, instance=instance, partition_key="2026-12-03")
    assert result.success

    assert ["ASSET_MATERIALIZATION_PLANNED"] * 30 in batches
    planned = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    assert sorted(r.event_log_entry.dagster_event.asset_key.path[-1] for r in planned) == sorted(
        f"planned_{i}" for i in range(30)
    )
    assert {r.event_log_entry.dagster_event.partition for r in planned} == {"2026-12-03"}
    for asset in assets:  # each asset's index row: the run that planned it, then its materialization
        assert instance.get_latest_materialization_event(asset.key).run_id == result.run_id
        info = instance.get_latest_planned_materialization_info(asset.key)
        assert info is not None and info.run_id == result.run_id
    # a second run's plan updates the index rows it already has
    again = dg.materialize(assets, instance=instance, partition_key="2026-12-04")
    info = instance.get_latest_planned_materialization_info(assets[0].key)
    assert info is not None and info.run_id == again.run_id
    # anything but a batch of planned materializations is stored as dagster-postgres stores it
    assert instance_storage._planned_asset_keys([planned[0].event_log_entry]) is None
    assert instance_storage._planned_asset_keys([planned[0].event_log_entry] * 2) is None  # same asset twice


def test_workspace_yaml_points_at_the_code_server_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SF_PIPELINE_CODE_HOST", "code")
    monkeypatch.setenv("SF_PIPELINE_CODE_PORT", "4000")
    [origin] = location_origins_from_yaml_paths([str(DEPLOY / "workspace.yaml")])
    assert (origin.host, origin.port, origin.location_name) == ("code", 4000, "sf_pipeline")


def _dockerfile() -> tuple[str, list[list[str]]]:
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)  # join continued lines
    instructions = [line.split(None, 1) for line in logical.splitlines() if line.strip() and not line.startswith("#")]
    return text, instructions


def test_dockerfile_installs_the_pinned_package_and_serves_the_definitions():
    _, instructions = _dockerfile()
    keyword = [i[0] for i in instructions]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    runs = [i[1] for i in instructions if i[0] == "RUN"]
    assert any("pip install -c constraints.txt ." in r for r in runs)
    # the dbt project is in the image and its manifest is written at build time
    assert any("import sf_pipeline.definitions" in r and "manifest.json" in r for r in runs)
    env = " ".join(i[1] for i in instructions if i[0] == "ENV")
    for variable in ("DAGSTER_HOME=", "SF_PIPELINE_SETTINGS=", "SF_PIPELINE_DBT_PROJECT_DIR="):
        assert variable in env
    # every COPY source exists and is let through by the Dockerfile's own .dockerignore
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for copy in (i[1] for i in instructions if i[0] == "COPY"):
        *sources, _target = copy.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert f"!{source.rstrip('/')}" in ignore, f"{source} is excluded from the build context"
    cmd = json.loads(instructions[keyword.index("CMD")][1])
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "sf_pipeline.definitions"
    assert cmd[cmd.index("--port") + 1] == "4000" and cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_compose_runs_postgres_code_webserver_and_daemon_on_the_shared_instance():
    compose = _yaml("docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "webserver-readonly", "daemon", "proxy"}
    assert services["code"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    image = services["code"]["image"]
    for name in ("webserver", "webserver-readonly", "daemon"):
        assert services[name]["image"] == image

    instance_vars = set(dagster_pg_env("postgresql://u@h:5432/d"))
    for name in ("code", "webserver", "webserver-readonly", "daemon"):
        env = services[name]["environment"]
        assert instance_vars <= set(env), f"{name} misses variables deploy/dagster.yaml reads"
        assert env["DAGSTER_PG_HOST"] == "postgres"
        # deploy/workspace.yaml reaches the code service on the port its command serves
        assert (env["SF_PIPELINE_CODE_HOST"], env["SF_PIPELINE_CODE_PORT"]) == ("code", "4000")
        assert "dagster-storage:/opt/dagster/dagster_home/storage" in services[name]["volumes"]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert "--read-only" not in services["webserver"]["command"]
    assert services["webserver-readonly"]["command"][:2] == ["dagster-webserver", "--read-only"]
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "webserver-readonly", "daemon"):
        command = services[name]["command"]
        assert command[command.index("--workspace") + 1] == "/opt/dagster/dagster_home/workspace.yaml"
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy"
    # org credentials reach only the code location, from an env file that is not in the repository
    assert services["code"]["env_file"] == ["sf-pipeline.env"]
    assert "SF_PIPELINE_DATABASE_URL" in services["code"]["environment"]
    assert not any(k.startswith("SALESFORCE_") for s in services.values() for k in (s.get("environment") or {}))
    example = (DEPLOY / "sf-pipeline.env.example").read_text()
    assert "SALESFORCE_PRODUCTION_USERNAME=" in example
    assert "CREATE DATABASE sf_backup OWNER sf_pipeline" in (DEPLOY / "postgres-init.sql").read_text()
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "dagster"


PUBLISHED = re.compile(r"^(?P<ip>\d+\.\d+\.\d+\.\d+):(?P<host>\d+):(?P<container>\d+)$")


def test_compose_publishes_only_the_proxy_and_only_on_127_0_0_1():
    services = _yaml("docker-compose.yaml")["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert set(published) == {"proxy"}, "only the authenticating proxy may be reachable from outside compose"
    for port in published["proxy"]:
        match = PUBLISHED.match(str(port))
        assert match and match["ip"] == "127.0.0.1", f"{port!r} is not bound to 127.0.0.1"
    assert sorted(str(p) for p in published["proxy"]) == ["127.0.0.1:3000:3000", "127.0.0.1:3001:3001"]
    # the webservers listen inside compose's network only
    for name in ("webserver", "webserver-readonly"):
        assert "ports" not in services[name] and services[name]["expose"] == ["3000"]


def test_compose_puts_the_proxy_with_password_files_in_front_of_both_webservers():
    compose = _yaml("docker-compose.yaml")
    proxy = compose["services"]["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert "./nginx/default.conf.template:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]
    env = proxy["environment"]
    assert env["SF_PIPELINE_ADMIN_WEBSERVER"] == "webserver:3000"
    assert env["SF_PIPELINE_READONLY_WEBSERVER"] == "webserver-readonly:3000"
    # the password files are Docker secrets from files outside the repository's tracked files
    assert set(proxy["secrets"]) == {"admins_htpasswd", "viewers_htpasswd"}
    assert env["SF_PIPELINE_ADMINS_HTPASSWD"] == "/run/secrets/admins_htpasswd"
    assert env["SF_PIPELINE_VIEWERS_HTPASSWD"] == "/run/secrets/viewers_htpasswd"
    assert {s["file"] for s in compose["secrets"].values()} == {
        "./secrets/admins.htpasswd",
        "./secrets/viewers.htpasswd",
    }
    ignored = (REPO / ".gitignore").read_text()
    for pattern in ("deploy/secrets/", "deploy/*.env"):
        assert pattern in ignored
    # every variable the template reads is set by compose, and the template authenticates both servers
    template = (DEPLOY / "nginx" / "default.conf.template").read_text()
    assert set(re.findall(r"\$\{(SF_PIPELINE_[A-Z_]+)\}", template)) == {k for k in env if k.startswith("SF_PIPELINE_")}
    assert re.search(env["NGINX_ENVSUBST_FILTER"], "SF_PIPELINE_ADMINS_HTPASSWD")
    assert template.count("auth_basic_user_file") == 2 and "auth_basic off" not in template


def _literal_secrets(text: str) -> list[str]:
    """Lines of a compose file that set a secret-looking variable to something other than `${VAR...}`."""
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|KEY|WEBHOOK)[A-Z_]*\s*[:=]\s*(?P<value>\S.*)$")
    found = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = secretish.search(line)
        if match and not match["value"].strip("\"'").startswith("${") and "/run/secrets/" not in match["value"]:
            found.append(line.strip())
    return found


def test_compose_holds_no_secret_and_no_password_in_a_url():
    text = (DEPLOY / "docker-compose.yaml").read_text()
    assert _literal_secrets(text) == []
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URL with a password in the compose file"
    services = yaml.safe_load(text)["services"]
    code = services["code"]["environment"]
    assert code["SF_PIPELINE_DATABASE_URL"] == "postgresql://sf_pipeline@postgres:5432/sf_backup"
    assert code["PGPASSWORD"].startswith("${SF_PIPELINE_DB_PASSWORD:?")
    # Dagster and the pipeline log in as their own roles, not as the superuser
    assert services["webserver"]["environment"]["DAGSTER_PG_USER"] == "dagster"
    assert "POSTGRES_USER" not in services["postgres"]["environment"]
    # each database password goes only to the services that need it
    holders = {
        name: {k for k, v in (s.get("environment") or {}).items() if "PASSWORD" in str(v)}
        for name, s in services.items()
    }
    assert holders["proxy"] == set()
    assert not any(
        "POSTGRES_PASSWORD" in str(v)
        for n, s in services.items()
        if n != "postgres"
        for v in (s.get("environment") or {}).values()
    )
    assert not any(
        "SF_PIPELINE_DB_PASSWORD" in str(v)
        for n, s in services.items()
        if n not in ("postgres", "code")
        for v in (s.get("environment") or {}).values()
    )
    # the example env files name every password compose asks for, with no value filled in
    example = (DEPLOY / "database.env.example").read_text()
    for variable in ("POSTGRES_PASSWORD", "DAGSTER_PG_PASSWORD", "SF_PIPELINE_DB_PASSWORD"):
        assert re.search(rf"^{variable}=$", example, re.M), variable
        assert "${" + variable + ":?" in text


def test_the_secret_check_finds_a_literal_password():
    assert _literal_secrets("    DAGSTER_PG_PASSWORD: hunter2\n") == ["DAGSTER_PG_PASSWORD: hunter2"]
    assert _literal_secrets("    PGPASSWORD: ${SF_PIPELINE_DB_PASSWORD:?set it}\n") == []


def _chart_instance_yaml(values: dict) -> dict:
    """The parts of dagster.yaml the Dagster chart writes from these values (templates/helpers/instance/*.tpl).

    Only what our values set: postgres storage, the run coordinator, `concurrency`, run monitoring,
    retention and telemetry. The run coordinator gets a `config:` block (with max_concurrent_runs: -1 when
    unset) as soon as any queuedRunCoordinator value is non-empty, as the chart does.
    """
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams", {}),
        "scheme": pg["postgresqlScheme"],
    }
    instance: dict = {
        name: {"module": f"dagster_postgres.{module}", "class": cls, "config": {"postgres_db": postgres_db}}
        for name, module, cls in [
            ("run_storage", "run_storage", "PostgresRunStorage"),
            ("event_log_storage", "event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "schedule_storage", "PostgresScheduleStorage"),
        ]
    }
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
    if any(v not in (None, [], {}, "") for v in queued.values()):
        instance["run_coordinator"]["config"] = {"max_concurrent_runs": queued.get("maxConcurrentRuns") or -1}
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    pools, runs = concurrency["pools"], concurrency["runs"]
    instance["concurrency"] = {
        "pools": {"default_limit": pools["defaultLimit"], "granularity": pools["granularity"]},
        "runs": {
            "max_concurrent_runs": runs["maxConcurrentRuns"],
            "tag_concurrency_limits": runs["tagConcurrencyLimits"],
        },
    }
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    instance["run_monitoring"] = {
        "enabled": monitoring["enabled"],
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
    }
    retention = values["retention"]
    instance["retention"] = {
        kind: {"purge_after_days": retention[kind]["purgeAfterDays"]} for kind in ("schedule", "sensor")
    }
    instance["telemetry"] = {"enabled": values["telemetry"]["enabled"]}
    return instance


def test_helm_values_put_both_webservers_behind_a_login_and_give_viewers_a_read_only_one():
    values = _yaml("helm/values.yaml")
    webserver = values["dagsterWebserver"]
    assert webserver["enableReadOnly"] is True
    assert webserver["service"]["type"] == "ClusterIP"  # reachable only through the ingress
    ingress = values["ingress"]
    assert ingress["enabled"]
    annotations = ingress["annotations"]
    # ingress-nginx asks oauth2-proxy on each host before any request reaches a webserver
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == "https://$host/oauth2/auth"
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"].startswith("https://$host/oauth2/start")
    admin, viewer = ingress["dagsterWebserver"], ingress["readOnlyDagsterWebserver"]
    assert admin["host"] != viewer["host"]  # oauth2-proxy's allowed group differs per host
    for host in (admin, viewer):
        assert host["tls"]["enabled"] and host["tls"]["secretName"]
        assert set(host) <= {"host", "path", "pathType", "tls", "precedingPaths", "succeedingPaths"}
    assert not any(re.search(r"password|secret", str(v), re.I) for v in annotations.values())


def test_helm_values_run_each_run_in_its_own_pod_with_the_same_limits(tmp_path: Path):
    values = _yaml("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    [deployment] = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    assert args[args.index("--module-name") + 1] == "sf_pipeline.definitions"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # run pods get the secrets too
    assert [s["name"] for s in deployment["envSecrets"]] == ["sf-pipeline-salesforce", "sf-pipeline-database"]
    assert "DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT" in deployment["env"]
    assert not values["postgresql"]["enabled"] and not values["generatePostgresqlPasswordSecret"]
    assert values["global"]["postgresqlSecretName"]

    # What the chart writes from these values is a valid instance config for this Dagster version
    # (including its refusal of run limits in both the run coordinator and `concurrency`) ...
    rendered = _chart_instance_yaml(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    config, _ = dagster_instance_config(str(tmp_path))
    assert "config" not in config["run_coordinator"]
    # ... with the limits and the storage driver of deploy/dagster.yaml.
    compose_instance = _yaml("dagster.yaml")
    assert config["concurrency"] == compose_instance["concurrency"]
    compose_db = compose_instance["storage"]["custom"]["config"]["postgres_db"]
    for name in ("run_storage", "event_log_storage", "schedule_storage"):
        chart_db = config[name]["config"]["postgres_db"]
        assert chart_db["scheme"] == compose_db["scheme"] == "postgresql+psycopg2"
        assert chart_db["params"] == compose_db["params"] == {"options": "-c synchronous_commit=off"}
    assert config["retention"] == compose_instance["retention"]
    assert config["telemetry"] == {"enabled": False}


def test_materializations_are_written_without_opening_a_connection_each(deployed_instance: dg.DagsterInstance):
    # dagster-postgres asks whether the asset event tags table exists for each materialization, from inside the
    # transaction writing it: with one pooled connection, that opened a new PostgreSQL connection each time.
    import sqlalchemy

    instance = deployed_instance
    assets = [_planned_probe(f"tagged_{i}") for i in range(30)]
    assert dg.materialize(assets, instance=instance, partition_key="2026-12-03").success  # tables seen once
    opened: list[object] = []

    def count(*_: object) -> None:
        opened.append(1)

    engine = instance.event_log_storage._engine
    sqlalchemy.event.listen(engine, "connect", count)
    try:
        result = dg.materialize(assets, instance=instance, partition_key="2026-12-04")
    finally:
        sqlalchemy.event.remove(engine, "connect", count)
    assert result.success
    assert len(result.get_asset_materialization_events()) == 30
    assert len(opened) <= 2, len(opened)  # not one per materialization
