"""What a restore run shows: the library results give plain values and `Markdown`, and the UI gets text, numbers,
JSON and rendered Markdown (the end-to-end restore tests read the same keys from real runs)."""

from __future__ import annotations

import dagster as dg

from sf_pipeline.metadata import Markdown
from sf_pipeline.resources import dagster_metadata
from sf_pipeline.restore.results import ApplyResult, VerifyResult, apply_config_markdown, plan_metadata

SUMMARY = {
    "object": "Opportunity",
    "records": 3,
    "records_to_write": 2,
    "counts": {"restore": 2, "noop": 1},
    "preview": "| record | status |\n|---|---|",
    "notes": ["2 records changed since"],
}


def _shown(metadata: dict) -> dict[str, dg.MetadataValue]:
    """The metadata as Dagster stores it with an output."""
    return dict(dg.Output(None, metadata=dagster_metadata(metadata)).metadata)


def test_the_plan_table_and_the_config_to_apply_render_as_markdown_and_counts_as_json():
    shown = _shown({**plan_metadata(SUMMARY), "apply_config": apply_config_markdown({"dry_run": True}, "run-1")})
    assert isinstance(shown["plan"], dg.MarkdownMetadataValue) and shown["plan"].value == SUMMARY["preview"]
    assert isinstance(shown["apply_config"], dg.MarkdownMetadataValue)
    assert "config:\n      dry_run: false\n      plan: run-1\n```" in shown["apply_config"].value
    assert isinstance(shown["counts"], dg.JsonMetadataValue) and shown["counts"].value == SUMMARY["counts"]
    assert shown["records_planned"].value == 3 and shown["records_to_write"].value == 2
    assert shown["notes"] == dg.MetadataValue.text("2 records changed since")
    assert "tree" not in shown


def test_a_whole_hierarchy_plan_shows_its_objects_their_order_and_what_it_cannot_bring_back():
    tree = {**SUMMARY, "tree": {"Account": {"re-create": 4}}, "order": ["Account", "Contact"], "cannot": {}}
    assert plan_metadata(tree)["tree"] == {
        "objects": {"Account": {"re-create": 4}},
        "order": ["Account", "Contact"],
        "cannot": {},
    }


def test_an_apply_shows_its_outcomes_and_at_most_50_records_changed_since_the_dry_run():
    changed = {f"006{i:015d}": "Amount moved" for i in range(60)}
    applied = ApplyResult("run-2", outcomes={"written": 2}, values_written=2, changed=changed, reconciled={"sent": 1})
    shown = _shown(applied.as_metadata())
    assert shown["outcomes"].value == {"written": 2} and shown["values_written"].value == 2
    assert shown["reconciled"].value == {"sent": 1}
    assert len(shown["changed_since_plan"].value) == 50


def test_an_apply_that_fell_short_shows_its_whole_summary_instead():
    short = ApplyResult("run-3", outcomes={"written": 1, "failed": 1}, failed={"006A": "UNABLE_TO_LOCK_ROW"})
    assert short.as_metadata() == {"apply": short.summary()}


def test_a_verification_shows_the_records_checked_or_its_differences_with_automation_apart():
    assert VerifyResult("run-4", checked=7).as_metadata() == {"verified_records": 7}
    found = VerifyResult(
        "run-5", checked=7, mismatched={"006A": [("StageName", "Won", "Lost")]}, automation={"006A": "a flow"}
    )
    assert found.as_metadata() == {"verify": found.summary(), "changed_by_automation": 1}


def test_only_markdown_is_wrapped_the_rest_stays_a_plain_value():
    values = {"plan": Markdown("| a |"), "note": "| a |", "n": 1, "ids": ["x"]}
    wrapped = dagster_metadata(values)
    assert wrapped["plan"] == dg.MetadataValue.md("| a |")
    assert {k: v for k, v in wrapped.items() if k != "plan"} == {"note": "| a |", "n": 1, "ids": ["x"]}
