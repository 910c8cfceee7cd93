"""The asset graph of a code location with a year of 15-minute windows renders in the Dagster UI (issue 14).

Not timed (the timing lives in sf_pipeline_tests/benchmarks/bench_ui.py): no backup is run, the webserver
serves the code location of two objects whose partitions start a year ago (35,040 windows and more), and
headless Chromium must draw each object's mirror and history node with its partition count.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect

from sf_pipeline.backup.partitions import PARTITION_FORMAT
from sf_pipeline_tests.ui.conftest import DagsterWebserver

UI_TIMEOUT = 60_000  # ms, as test_browser.py: 2 busy cores
CRON = "*/15 * * * *"


def _window_count(start: datetime) -> int:
    partitions = dg.TimeWindowPartitionsDefinition(cron_schedule=CRON, start=start.replace(tzinfo=None),
                                                   timezone="UTC", fmt=PARTITION_FORMAT)
    return len(partitions.get_partition_keys())


@pytest.mark.e2e
def test_asset_graph_renders_a_year_of_15_minute_windows(browser_page: Page, pipeline_factory, tmp_path: Path,
                                                          screenshots_dir: Path):
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=365)
    pipeline_factory(["Account", "Opportunity"],
                     partitions={"cron": CRON, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")})
    before = _window_count(start)
    assert before >= 365 * 96
    server = DagsterWebserver(tmp_path / "dagster-webserver.log").start()
    try:
        server.wait_until_ready()
        page = browser_page
        page.goto(f"{server.url}/asset-groups")
        for key in ("salesforce/Account", "history/Account", "salesforce/Opportunity", "history/Opportunity"):
            expect(page.locator(f'a[href="/assets/{key}?view=partitions"]').first).to_be_visible(
                timeout=UI_TIMEOUT)
        # every partitioned node states its window count (a window may close while the page loads)
        counts = page.get_by_text(re.compile(r"^[\d,]+ partitions$"))
        expect(counts).to_have_count(4, timeout=UI_TIMEOUT)
        after = _window_count(start)
        shown = {int(text.replace(",", "").split()[0]) for text in counts.all_inner_texts()}
        assert shown <= set(range(before, after + 1)), (shown, before, after)
        page.screenshot(path=screenshots_dir / "year-of-windows-asset-graph.png")
    finally:
        server.stop()
        print(f"--- dagster-webserver log ({server.log_path}) ---\n{server.log()[-20_000:]}")
