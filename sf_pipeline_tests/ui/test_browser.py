"""The 2 am story as a user sees it in the Dagster UI, in a real headless Chromium.

Screenshots of every page land in `test-artifacts/screenshots/` at the repository root (or
`$SF_PIPELINE_TEST_ARTIFACTS/screenshots/`), with `failure.png` added when the test fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from sf_pipeline_tests.ui.conftest import LOCATION, Incident

UI_TIMEOUT = 60_000  # ms: the Dagster UI is a heavy React app and these machines have 2 busy cores


def _shot(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=screenshots / f"{name}.png")


@pytest.mark.e2e
def test_dagster_ui_shows_the_backup_the_incident_and_the_restore_launchpad(
    browser_page: Page, incident_in_dagster_ui: tuple[Incident, str], screenshots_dir: Path
):
    """Asset graph, the history asset's partitions, the failed check with its incident, the restore launchpad.

    Saves 01-asset-graph.png, 02-history-opportunity-partitions.png, 03-no-mass-damage-check.png,
    04-incident-report.png and 05-restore-launchpad.png under test-artifacts/screenshots/ (or
    $SF_PIPELINE_TEST_ARTIFACTS/screenshots/).
    """
    # (browser_page comes first: a missing Chromium fails the test before the backups are run)
    incident, url = incident_in_dagster_ui
    page = browser_page

    # 1. Global asset lineage: the mirror and the history of each object, the failed check on history.
    page.goto(f"{url}/asset-groups")
    for key in ("salesforce/Account", "history/Account", "salesforce/Opportunity", "history/Opportunity"):
        # each node links to its partitions; the link is part of the node card as drawn
        expect(page.locator(f'a[href="/assets/{key}?view=partitions"]').first).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.locator('a[href="/assets/history/Opportunity?view=checks"]')).to_have_text(
        "0 / 1 Passed", timeout=UI_TIMEOUT
    )
    expect(page.locator('a[href="/assets/history/Account?view=checks"]')).to_have_text("1 / 1 Passed")
    _shot(page, screenshots_dir, "01-asset-graph")

    # 2. history/Opportunity's partitions: the full load and the damaged window are backed up, the rest not.
    window = incident.damaged_window
    page.goto(f"{url}/assets/history/Opportunity?view=partitions&partition={quote(window)}")
    expect(page.get_by_text("Materialized (2)")).to_be_visible(timeout=UI_TIMEOUT)
    # the selected window: in the list and as the detail panel's title, materialized by the backup job
    expect(page.get_by_text(window, exact=True).filter(visible=True)).to_have_count(2, timeout=UI_TIMEOUT)
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="backup", exact=True)).to_be_visible()
    _shot(page, screenshots_dir, "02-history-opportunity-partitions")

    # 3. The no_mass_damage check failed on that window, and its metadata says what, who and how many.
    page.goto(f"{url}/assets/history/Opportunity?view=checks")
    expect(page.get_by_text("Latest execution")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.get_by_text("no_mass_damage").first).to_be_visible()
    expect(page.get_by_text("Failed").first).to_be_visible()
    metadata = page.locator("tr")
    expect(metadata.filter(has_text="acting_user")).to_contain_text(incident.acting_user)
    expect(metadata.filter(has_text="affected_records")).to_contain_text(str(incident.affected_records))
    expect(metadata.filter(has_text="first_change")).to_contain_text(f"{window[:10]}T02:01:00")
    _shot(page, screenshots_dir, "03-no-mass-damage-check")

    metadata.filter(has_text="incident").get_by_text("[Show Markdown]").click()
    report = page.get_by_role("dialog")
    title = f"Mass nulling on Opportunity.AccountId: {incident.affected_records} records by {incident.acting_user}"
    expect(report.get_by_text(title).first).to_be_visible(timeout=UI_TIMEOUT)
    expect(report.get_by_text("AccountId went from a value to empty")).to_be_visible()
    report.get_by_text(title).first.scroll_into_view_if_needed()
    _shot(page, screenshots_dir, "04-incident-report")
    page.keyboard.press("Escape")
    expect(report).to_be_hidden()

    # the suggested restore config, as the incident offers it for the launchpad
    metadata.filter(has_text="restore_config").get_by_text("[Show Markdown]").click()
    restore_config = page.get_by_role("dialog").locator("pre code").inner_text()
    assert restore_config.startswith("ops:\n  restore:\n    config:\n"), restore_config[:200]
    page.keyboard.press("Escape")

    # 4. The restore job's launchpad: its config editor, and the incident's config pasted in is valid.
    page.goto(f"{url}/locations/{LOCATION}/jobs/restore/playground")
    editor = page.locator(".CodeMirror")
    expect(editor).to_be_visible(timeout=UI_TIMEOUT)
    # the editor knows the restore job's schema: `target_org` has no default (`object` may come from `incident:`)
    expect(page.get_by_text('Missing required config entry "target_org"')).to_be_visible(timeout=UI_TIMEOUT)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(restore_config)
    expect(page.get_by_text("No errors")).to_be_visible(timeout=UI_TIMEOUT)
    expect(page.get_by_role("button", name="Launch Run")).to_be_enabled()
    page.keyboard.press("Control+Home")  # show the top of the pasted config
    # the incident's config names the incident, not its records (issue 16: `incident: <id>`)
    expect(editor).to_contain_text(re.compile(r"incident: \d+"))
    expect(editor).to_contain_text(f"selects {incident.affected_records} Opportunity records (AccountId)")
    _shot(page, screenshots_dir, "05-restore-launchpad")
