"""`incident: <id>` in a restore config: the selection comes from the stored incident, keys beside it narrow or
override it, and an unknown incident is a clear error (no database: the lookup is a plain function here; the
restore job passes `incident_restore_selection` over the backup database)."""

from __future__ import annotations

import pytest

from sf_pipeline.restore import RestoreConfig, RestoreConfigError

IDS = [f"006000000000{i:03d}AAA" for i in range(12)]
INCIDENTS = {
    7: {
        "object": "Opportunity",
        "fields": ["AccountId"],
        "as_of": "2026-11-24T01:59:59Z",
        "record_ids": IDS,
        "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:00:04Z"],
        "changed_by": "005000000000001AAA",
        "restore_deleted": False,
    },
    8: {},  # a volume drop: nothing to restore
}


def parse(**values) -> RestoreConfig:
    return RestoreConfig.from_dict(
        {"target_org": "production", **values}, orgs=("production", "sandbox"), incidents=INCIDENTS.get
    )


def test_incident_gives_object_fields_records_window_and_user() -> None:
    config = parse(incident=7)
    assert (config.object, config.fields, config.record_ids) == ("Opportunity", ("AccountId",), tuple(IDS))
    assert config.changed_by == "005000000000001AAA" and config.changed_between is not None
    assert config.incident == 7 and config.dry_run
    assert any("incident 7: 12 Opportunity records" in n for n in config.notes)
    # the stored plan's config names the incident, not its ids
    assert config.to_dict()["incident"] == 7 and config.to_dict()["record_ids"] == []
    assert parse(incident=7, dry_run=False, plan="run-1").planned_as() == config.planned_as()


def test_keys_beside_the_incident_narrow_or_override_it() -> None:
    config = parse(incident=7, record_ids=IDS[:2], as_of="2026-11-24T01:00:00Z", on_conflict="overwrite")
    assert config.record_ids == tuple(IDS[:2]) and config.to_dict()["record_ids"] == IDS[:2]
    assert config.as_of.hour == 1 and config.on_conflict == "overwrite" and config.fields == ("AccountId",)
    assert "overridden here: as_of, record_ids" in config.notes[0]
    assert parse(incident=7, target_org="sandbox").target_org == "sandbox"


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"incident": 99}, "there is no incident 99"),
        ({"incident": 8}, "incident 8 has nothing a restore could bring back"),
        ({"incident": "seven"}, "incident must be the id of an incident"),
        ({"incident": 7, "object": "Case"}, "incident 7 is about Opportunity, not Case"),
        ({"incident": 7, "record_ids": ["006000000000999AAA"]}, "1 of them are not among its 12 records"),
        ({"incident": 7, "fields": ["StageName"]}, "it did not damage StageName"),
        ({"incident": 7, "undo_of": "run-1"}, "incident and undo_of cannot go together"),
    ],
)
def test_a_bad_incident_config_is_refused_clearly(values, words) -> None:
    with pytest.raises(RestoreConfigError, match=words):
        parse(**values)


def test_incident_without_a_database_is_refused() -> None:
    with pytest.raises(RestoreConfigError, match="needs the backup database"):
        RestoreConfig.from_dict({"incident": 7, "target_org": "production"})
