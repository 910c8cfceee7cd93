"""devorg's control endpoints need the token `serve` prints, and its data, CA key and JWT key are owner-only."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from sf_pipeline.cli import main
from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.devorg.tls import jwt_private_key_path
from sf_pipeline_tests.devorg_fixtures import tls_session


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_control_endpoints_refuse_requests_without_the_token(devorg: DevOrgServer):
    session = tls_session(devorg)
    url = f"{devorg.instance_url}/_devorg/clock"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": devorg.control_token},
        {"Authorization": f"Bearer {devorg.login('admin')}"},
    ):  # an API session is not the token
        refused = session.post(url, json={"advance": "1d"}, headers=headers)
        assert refused.status_code == 401 and "control token" in refused.json()["error"]
    for action in ("state", "faults", "scenario", "generate", "limits", "sessions/expire", "fields/type"):
        assert session.post(f"{devorg.instance_url}/_devorg/{action}", json={}).status_code == 401, action
    before = devorg.org.clock.now()
    allowed = session.get(url, headers={"Authorization": f"Bearer {devorg.control_token}"})
    assert allowed.status_code == 200
    assert devorg.org.clock.now() - before < timedelta(hours=1)  # refused calls did nothing


def test_cli_reads_the_token_from_the_environment_and_says_which_variable_is_missing(devorg: DevOrgServer):
    without = CliRunner().invoke(main, ["devorg", "state"], env=devorg.env("production"))
    assert without.exit_code != 0 and "DEVORG_PRODUCTION_CONTROL_TOKEN" in without.output
    env = {**devorg.env("production"), **devorg.control_env("production")}
    ok = CliRunner().invoke(main, ["devorg", "state"], env=env)
    assert ok.exit_code == 0 and '"users"' in ok.output


def test_data_directory_ca_key_and_jwt_key_are_readable_only_by_their_owner(tmp_path):
    data = tmp_path / "org"
    with DevOrgServer(data) as devorg:
        key = jwt_private_key_path(devorg.org)
        assert mode(data) == 0o700
        assert mode(data / "tls") == 0o700
        for secret in (data / "tls" / "ca-key.pem", data / "tls" / "server-key.pem", key):
            assert mode(secret) == 0o600, secret
        token = devorg.control_token
    data.chmod(0o755)  # loosened by hand: devorg tightens it again when it opens the org
    (data / "tls" / "server-key.pem").chmod(0o644)
    with DevOrgServer(data) as devorg:
        assert mode(data) == 0o700 and mode(data / "tls" / "server-key.pem") == 0o600
        assert devorg.control_token == token  # the token is kept with the org
        assert f"export DEVORG_PRODUCTION_CONTROL_TOKEN={token}" in devorg.export_lines("production").splitlines()
