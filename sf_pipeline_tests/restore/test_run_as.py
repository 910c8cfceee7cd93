"""The restore user of an org (settings `orgs: <alias>: restore:`, restore/run_as.py): parsed from the settings
file only, its credentials from `SALESFORCE_<ALIAS>_RESTORE_*`, never the org's own password or token."""

from __future__ import annotations

import pytest
import yaml

from sf_pipeline.restore.run_as import restore_credentials
from sf_pipeline.settings import RestoreOrgSettings, SettingsError, load_settings


def _settings(tmp_path, orgs):
    path = tmp_path / "sf_pipeline.yaml"
    path.write_text(yaml.safe_dump({"orgs": orgs, "backup": {"org": "production", "objects": ["Account"]}}))
    return load_settings(path)


def test_restore_settings_per_org_with_defaults(tmp_path):
    s = _settings(
        tmp_path, {"production": {"restore": {"run_as": "restore@acme.example", "serial": True}}, "sandbox": {}}
    )
    assert s.restore_settings("production") == RestoreOrgSettings("restore@acme.example", True)
    assert s.restore_settings("sandbox") == RestoreOrgSettings(None, False)


@pytest.mark.parametrize(
    "restore", [{"run_as": "not-a-username"}, {"serial": "yes"}, {"run_as_user": "a@b.c"}, ["run_as"]]
)
def test_a_wrong_restore_block_is_refused_with_the_key_named(tmp_path, restore):
    with pytest.raises(SettingsError, match="orgs.production.restore"):
        _settings(tmp_path, {"production": {"restore": restore}})


def test_the_restore_user_never_borrows_the_orgs_password_or_token():
    env = {
        "SALESFORCE_PRODUCTION_USERNAME": "admin@acme.example",
        "SALESFORCE_PRODUCTION_PASSWORD": "admin-pw",
        "SALESFORCE_PRODUCTION_SECURITY_TOKEN": "admin-token",
        "SALESFORCE_PRODUCTION_ACCESS_TOKEN": "00D!admin",
        "SALESFORCE_PRODUCTION_LOGIN_URL": "https://acme.my.salesforce.com",
        "SALESFORCE_PRODUCTION_CLIENT_ID": "app",
        "SALESFORCE_PRODUCTION_PRIVATE_KEY_FILE": "/keys/app.pem",
    }
    creds = restore_credentials("production", "restore@acme.example", env)
    assert (creds.username, creds.password, creds.security_token, creds.access_token) == (
        "restore@acme.example",
        None,
        None,
        None,
    )
    assert (creds.login_url, creds.client_id, creds.private_key_file) == (
        "https://acme.my.salesforce.com",
        "app",
        "/keys/app.pem",
    )
    assert creds.flow == "JWT bearer"  # the connected app's key: no other secret needed
    own = restore_credentials(
        "production",
        "restore@acme.example",
        {**env, "SALESFORCE_PRODUCTION_RESTORE_PASSWORD": "restore-pw", "SALESFORCE_PRODUCTION_RESTORE_CLIENT_ID": "x"},
    )
    assert (own.password, own.client_id) == ("restore-pw", "x")
