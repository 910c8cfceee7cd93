"""Alert text: short, escaped for Slack, without record values or ids; the alert settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sf_pipeline.anomalies import Finding, IncidentReport, SampleChange
from sf_pipeline.anomalies.alerts import alert_text, check_url, incident_summary, slack_escape, webhook_host
from sf_pipeline.settings import SettingsError, load_settings
from sf_pipeline_tests.anomalies.builders import INTEGRATION, WINDOW_END, WINDOW_START, record_id

EVIL = "<!channel> <http://evil.example|click> & mallory@evil.example"


def overwrite_report(count: int = 2500, user_name: str = "Integration User") -> IncidentReport:
    """A mass overwrite of Contact.Email to a hostile value, by a user whose name is hostile too."""
    ids = tuple(record_id("Contact", i) for i in range(count))
    finding = Finding(
        detector="mass_overwrite",
        severity="error",
        object="Contact",
        fields=("email",),
        affected_count=count,
        share=0.9,
        live_records=int(count / 0.9),
        first_change=WINDOW_START + timedelta(minutes=1),
        last_change=WINDOW_START + timedelta(minutes=4),
        user_id=INTEGRATION,
        user_name=user_name,
        sample=(SampleChange(ids[0], {"email": "alice@customer.example"}, {"email": EVIL}),),
        record_ids=ids,
        restore_fields=("email",),
        details={
            "per_field": [{"field": "email", "records": count, "value": EVIL}],
            "sample_names": {ids[0]: "Alice <alice@customer.example>"},
        },
        window_start=WINDOW_START,
        window_end=WINDOW_END,
    )
    return IncidentReport.from_finding(finding, field_names={"email": "Email"})


def test_slack_escape_turns_mentions_and_links_into_text():
    # https://api.slack.com/reference/surfaces/formatting#escaping: & < > are the control characters
    assert (
        slack_escape("<!channel> <http://evil.example|click> a&b")
        == "&lt;!channel&gt; &lt;http://evil.example|click&gt; a&amp;b"
    )


def test_alert_names_counts_object_field_user_and_window_but_no_record_value_or_id():
    report = overwrite_report()
    text = alert_text(report, "https://dagster.example.com/assets/history/Contact?view=checks")
    assert "Mass overwrite on Contact.Email: 2,500 records (90.0% of 2,777 live)" in text
    assert f"by Integration User ({INTEGRATION})" in text
    assert "in org production, window 2026-11-24T02:00:00Z to 2026-11-24T03:00:00Z" in text
    assert "<https://dagster.example.com/assets/history/Contact?view=checks|Open the check in Dagster>" in text
    for leaked in ("evil.example", "mallory", "alice", "<!channel>", record_id("Contact", 0), record_id("Contact", 7)):
        assert leaked not in text, leaked
    # the one link in the message is ours
    assert text.count("<") == 1 and text.count(">") == 1
    assert len(text) < 600


def test_a_hostile_user_name_is_escaped_in_the_alert_and_kept_as_text_in_the_summary():
    report = overwrite_report(user_name="<!here> Mallory <http://evil.example|reset your password>")
    text = alert_text(report)
    assert "<!here>" not in text and "<http://evil.example" not in text
    assert "&lt;!here&gt; Mallory &lt;http://evil.example|reset your password&gt;" in text
    assert "<" not in text.replace("<!", "")  # no link at all without a base URL
    assert "Mallory" in incident_summary(report)


def test_many_fields_are_counted_not_listed():
    report = overwrite_report()
    wide = IncidentReport.from_dict({**report.to_dict(), "fields": [f"Field{i}__c" for i in range(30)]})
    summary = incident_summary(wide)
    assert "Field7__c (and 22 more)" in summary and "Field8__c" not in summary


def test_only_the_webhook_host_may_be_logged():
    assert webhook_host("https://hooks.slack.com/services/T000/B000/XXXXSECRET") == "hooks.slack.com"
    assert webhook_host("http://127.0.0.1:8123/hook/token") == "127.0.0.1:8123"
    assert webhook_host("not a url") == "(no host)"


def test_check_link_is_built_from_the_configured_base_url():
    assert check_url(None, "Contact", "no_mass_damage") is None
    assert (
        check_url("https://dagster.example.com/", "Invoice__c", "no_mass_damage")
        == "https://dagster.example.com/assets/history/Invoice__c?view=checks&checkDetail=no_mass_damage"
    )


def _settings(tmp_path, alerts) -> str:
    path = tmp_path / "sf_pipeline.yaml"
    path.write_text(f"orgs: {{production: {{}}}}\nbackup: {{org: production, objects: [Account]}}\nalerts: {alerts}\n")
    return str(path)


def test_settings_take_the_dagster_base_url_for_alert_links(tmp_path):
    settings = load_settings(_settings(tmp_path, "{dagster_base_url: 'https://dagster.example.com/'}"))
    assert settings.dagster_base_url == "https://dagster.example.com"
    assert load_settings(_settings(tmp_path, "{}")).dagster_base_url is None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("dagster.example.com", "http(s) address"),
        ("javascript:alert(1)", "http(s) address"),
        ("https://admin:secret@dagster.example.com", "must not carry credentials"),
    ],
)
def test_a_bad_dagster_base_url_is_refused_with_the_reason(tmp_path, url, reason):
    with pytest.raises(SettingsError, match="alerts.dagster_base_url") as error:
        load_settings(_settings(tmp_path, f"{{dagster_base_url: '{url}'}}"))
    assert reason in str(error.value)
