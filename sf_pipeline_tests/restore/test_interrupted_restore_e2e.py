"""A restore killed at any point (SIGKILL of a real process) and applied again: nothing twice, a complete audit.

The killed run is a real subprocess applying a reviewed plan against devorg and PostgreSQL; it kills itself with
SIGKILL at an exact phase of the write-ahead journal (restore/journal.py): right after a call's pending rows are
committed (before the call), right after a Bulk job's id is logged, or right after the org answered a call
(before its rows are completed), on the n-th call, so "mid-batch" means calls before it completed and
calls after it never made. The rerun (the same plan, applied again) must settle what was left pending, write
what is missing, and leave one done audit row per value written, no pending row, and no record twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from sf_pipeline.devorg.scenarios import run_scenario
from sf_pipeline.restore import apply_plan, load_plan, plan_restore, verify_plan
from sf_pipeline.warehouse.id_map import save_id_map
from sf_pipeline_tests.pipeline_fixtures import Pipeline, SavedState
from sf_pipeline_tests.restore.story import at, client, config, create

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LOST = 450  # Accounts deleted and purged: 3 create calls of 200, 200, 50
OPPORTUNITIES = 450  # orphaned: 3 update calls

UPDATE = {"object": "Opportunity", "fields": ["AccountId"]}
# the one-object path (`with_children: false`); a whole-hierarchy restore is killed in test_restore_tree_e2e.py
CREATE = {"object": "Account", "fields": [], "restore_deleted": True, "with_children": False}

# What the killed process runs: the reviewed plan applied, with a SIGKILL at one phase of one call.
RUNNER = textwrap.dedent("""
    import json, os, signal, sys
    import psycopg
    from sf_pipeline.restore import RestoreConfig, apply_plan, hierarchy, load_plan, journal
    from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect

    spec = json.loads(sys.argv[1])
    hierarchy.BULK_AT = spec.get("bulk_at", hierarchy.BULK_AT)  # a tree's creates and updates as Bulk jobs
    seen = {"n": 0}
    original = getattr(journal.CallLog, spec["phase"])

    def phase(self, *args):
        if self.operation == spec["operation"]:
            seen["n"] += 1
            if seen["n"] == spec["nth"]:
                if spec["phase"] == "after":  # the org answered; its rows are never completed
                    os.kill(os.getpid(), signal.SIGKILL)
                answer = original(self, *args)  # pending rows (or the job id) committed, then the call never made
                os.kill(os.getpid(), signal.SIGKILL)
                return answer
        return original(self, *args)

    setattr(journal.CallLog, spec["phase"], phase)
    c = SalesforceClient(connect(OrgCredentials.from_env("production")), alias="production", backoff=0.01)
    cfg = RestoreConfig.from_dict(spec["config"], orgs=("production", "sandbox"))
    with psycopg.connect(os.environ["SF_PIPELINE_DATABASE_URL"], autocommit=True) as conn:
        plan = load_plan(conn, cfg, spec["run_id"])
        apply_plan(conn, c, plan, bulk_threshold=spec["bulk_threshold"])
    print("finished without being killed")
""")


def lost_accounts_and_orphans(p: Pipeline) -> dict[str, list[str]]:
    """450 Opportunities orphaned at 02:00 (the integration user), and 450 Accounts deleted at 02:00, then
    purged from the recycle bin after the 02:00 window was backed up."""
    at(p, 0, 10)
    parents = create(p, "Account", [{"Name": f"Customer {i}"} for i in range(5)])
    opportunities = create(
        p,
        "Opportunity",
        [
            {
                "Name": f"Deal {i}",
                "StageName": "Prospecting",
                "CloseDate": "2026-12-31",
                "Amount": 1000 + i,
                "AccountId": parents[i % 5],
            }
            for i in range(OPPORTUNITIES)
        ],
    )
    lost = create(
        p, "Account", [{"Name": f"Lost {i}", "Industry": "Banking", "NumberOfEmployees": i} for i in range(LOST)]
    )
    at(p, 1, 10)
    assert p.backup("2026-11-24-00:00").success
    run_scenario(p.devorg.org, "orphan-opportunities", at=at(p, 2, 0))
    sf = p.sf("sales3")
    for i in range(0, LOST, 200):
        answer = sf.restful(
            "composite/sobjects", method="DELETE", params={"ids": ",".join(lost[i : i + 200]), "allOrNone": "true"}
        )
        assert all(r["success"] for r in answer)
    at(p, 3, 10)
    assert p.backup("2026-11-24-02:00").success
    return {"opportunities": opportunities, "lost": lost, "parents": parents}


@pytest.fixture(scope="module")
def damaged(save_pipeline_state) -> SavedState:
    return save_pipeline_state(lost_accounts_and_orphans)


def purge(p: Pipeline, ids: list[str]) -> None:
    """Empty the recycle bin of these records for good (as after 15 days), so they must be re-created."""
    with p.devorg.org.store.lock:
        p.devorg.org.store.conn.executemany('DELETE FROM "Account" WHERE Id = ?', [(i,) for i in ids])


def kill_at(
    p: Pipeline,
    values: dict,
    run_id: str,
    operation: str,
    phase: str,
    nth: int,
    bulk_threshold: int = 10_000,
    **extra: int,
) -> None:
    spec = {
        "config": {**_config_dict(values), "dry_run": False, "plan": f"{run_id}-dry"},
        "run_id": run_id,
        "operation": operation,
        "phase": phase,
        "nth": nth,
        "bulk_threshold": bulk_threshold,
        **extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(spec)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -9, f"the run was not killed ({done.returncode}): {done.stdout}\n{done.stderr[-3000:]}"


def _config_dict(values: dict) -> dict:
    base = {
        "object": "Opportunity",
        "fields": ["AccountId"],
        "as_of": "2026-11-24T01:59:59Z",
        "changed_between": ["2026-11-24T02:00:00Z", "2026-11-24T02:10:00Z"],
        "target_org": "production",
    }
    base.update(values)
    return {k: v for k, v in base.items() if v is not None}


def journal_states(conn: psycopg.Connection, operation: str) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT state, count(*) FROM sf_pipeline.restore_audit WHERE operation = %s GROUP BY 1", (operation,)
        ).fetchall()
    )


def live_accounts(p: Pipeline) -> dict[str, int]:
    rows = p.devorg.org.queries.run(
        "SELECT Name FROM Account WHERE Name LIKE 'Lost %'", include_deleted=True, batch_size=2000
    )["records"]
    names: dict[str, int] = {}
    for r in rows:
        names[r["Name"]] = names.get(r["Name"], 0) + 1
    return names


PHASES = [
    pytest.param("before", 1, id="journal-written-call-never-made"),
    pytest.param("after", 1, id="call-applied-never-completed"),
    pytest.param("after", 2, id="mid-batch"),
]


@pytest.mark.parametrize(("phase", "nth"), PHASES)
def test_recreation_killed_at_any_phase_reruns_without_a_duplicate(pipeline_factory, damaged, phase, nth):
    p = pipeline_factory(state=damaged)
    lost = damaged.story["lost"]
    purge(p, lost)
    at(p, 9, 0)
    with p.conn() as conn:
        plan = plan_restore(conn, client(p), config(**CREATE), "r1-dry")
        assert plan.actions == {"create": LOST}
        kill_at(p, CREATE, "r1", "create", phase, nth)
        assert journal_states(conn, "create").get("pending", 0) > 0  # the killed run left its journal open
        rerun = load_plan(conn, config(**CREATE, dry_run=False, plan="r1-dry"), "r2")
        result = apply_plan(conn, client(p), rerun)
        assert result.success and result.outcomes["created"] == LOST
        assert verify_plan(client(p), rerun, conn=conn).checked == LOST
        states = journal_states(conn, "create")
        assert "pending" not in states and "unchecked" not in states
        ids = dict(conn.execute("SELECT source_id, target_id FROM sf_pipeline.id_map WHERE object = 'Account'"))
        assert sorted(ids) == sorted(lost)
        # one done create per record, across both runs, carrying its new id
        created = conn.execute(
            "SELECT before, record_id FROM sf_pipeline.restore_audit WHERE operation = 'create' "
            "AND field = 'Id' AND state = 'done'"
        ).fetchall()
        assert sorted(created) == sorted((old, new) for old, new in ids.items())
        if phase == "after":
            assert result.reconciled.get("done", 0) >= 1  # the killed call's records were found, not made again
    assert live_accounts(p) == {f"Lost {i}": 1 for i in range(LOST)}


@pytest.mark.parametrize(("phase", "nth"), PHASES)
def test_update_killed_at_any_phase_reruns_to_a_complete_audit(pipeline_factory, damaged, phase, nth):
    p = pipeline_factory(state=damaged)
    at(p, 9, 0)
    with p.conn() as conn:
        plan = plan_restore(conn, client(p), config(**UPDATE), "u1-dry")
        assert plan.actions == {"update": OPPORTUNITIES}
        kill_at(p, UPDATE, "u1", "update", phase, nth)
        result = apply_plan(conn, client(p), load_plan(conn, config(**UPDATE, dry_run=False, plan="u1-dry"), "u2"))
        assert result.success
        states = journal_states(conn, "update")
        assert "pending" not in states
        done = conn.execute(
            "SELECT record_id, count(*) FROM sf_pipeline.restore_audit WHERE operation = 'update' "
            "AND state = 'done' GROUP BY 1"
        ).fetchall()
        # every record's AccountId written exactly once (an applied call found done, never written again)
        assert len(done) == OPPORTUNITIES and {n for _, n in done} == {1}
        assert result.values_written == OPPORTUNITIES - 200 * (nth if phase == "after" else nth - 1)
    held = {
        r["Id"]: r["AccountId"]
        for r in p.devorg.org.queries.run(
            "SELECT Id, AccountId FROM Opportunity", include_deleted=False, batch_size=2000
        )["records"]
    }
    assert all(held[o] is not None for o in damaged.story["opportunities"])


@pytest.mark.parametrize("phase", ["job", "after"])
def test_bulk_update_killed_after_its_job_was_submitted_is_read_back_from_the_job(pipeline_factory, damaged, phase):
    p = pipeline_factory(state=damaged)
    at(p, 9, 0)
    with p.conn() as conn:
        plan_restore(conn, client(p), config(**UPDATE), "b1-dry")
        kill_at(p, UPDATE, "b1", "update", phase, 1, bulk_threshold=100)
        job = conn.execute(
            "SELECT DISTINCT a.call_id, j.job_id FROM sf_pipeline.restore_audit a "
            "LEFT JOIN sf_pipeline.restore_call_jobs j USING (call_id) WHERE a.state = 'pending'"
        ).fetchall()
        assert len(job) == 1 and job[0][1]  # the journal kept the job's id
        ((call_id, job_id),) = job
        c = client(p)
        result = apply_plan(
            conn, c, load_plan(conn, config(**UPDATE, dry_run=False, plan="b1-dry"), "b2"), bulk_threshold=100
        )
        assert result.success
        assert "pending" not in journal_states(conn, "update")
        if phase == "after":  # the job ran: its results say what it wrote, nothing is written again
            assert result.reconciled == {"done": OPPORTUNITIES} and result.values_written == 0
        else:  # killed before the upload: the open job is aborted, its rows were never written
            assert result.reconciled == {"not_applied": OPPORTUNITIES} and result.values_written == OPPORTUNITIES
        done = conn.execute(
            "SELECT count(DISTINCT record_id), count(*) FROM sf_pipeline.restore_audit "
            "WHERE operation = 'update' AND state = 'done'"
        ).fetchone()
        assert done == (OPPORTUNITIES, OPPORTUNITIES)
        # the settled rows of the killed call carry its job's id, as rows completed by a run that lived do
        settled = conn.execute(
            "SELECT DISTINCT state, job_id FROM sf_pipeline.restore_audit WHERE call_id = %s", (call_id,)
        ).fetchall()
        assert settled == [("done" if phase == "after" else "not_applied", job_id)]


def test_a_create_answered_5xx_after_the_org_made_it_is_found_not_made_twice(pipeline_factory, damaged):
    p = pipeline_factory(state=damaged)
    purge(p, damaged.story["lost"])
    at(p, 9, 0)
    with p.conn() as conn:
        c = client(p)
        plan_restore(conn, c, config(**CREATE), "f1-dry")
        # the second create call is carried out by the org, then answered 503
        p.devorg.app.faults.add("slow", next=1, delay=0.01, method="POST", path="composite/sobjects")
        rule = p.devorg.app.faults.add("5xx", next=1, after=True, method="POST", path="composite/sobjects")
        result = apply_plan(conn, c, load_plan(conn, config(**CREATE, dry_run=False, plan="f1-dry"), "f1"))
        assert rule.fired == 1 and c.retries == 0
        assert result.success and result.outcomes["created"] == LOST
        assert result.reconciled == {"done": 200}
        assert "pending" not in journal_states(conn, "create")
    assert live_accounts(p) == {f"Lost {i}": 1 for i in range(LOST)}


def test_a_record_an_earlier_restore_recreated_is_never_taken_for_a_killed_create(pipeline_factory, damaged):
    """Reconciling a create killed before its call looks for what the call made among the records the restore user
    created since; a record the id map already holds as the re-creation of another one is not a candidate, even
    with the very values sent (the map is asked about those records only, among thousands of other pairs)."""
    p = pipeline_factory(state=damaged)
    lost = damaged.story["lost"]
    purge(p, lost)
    at(p, 9, 0)
    with p.conn() as conn:
        plan_restore(conn, client(p), config(**CREATE), "t1-dry")
        kill_at(p, CREATE, "t1", "create", "before", 1)  # 200 creates journaled, Lost 0's among them, never sent
        sent = dict(
            conn.execute(
                "SELECT field, after FROM sf_pipeline.restore_audit WHERE operation = 'create' AND state = 'pending' "
                "AND record_id = %s AND field <> 'Id'",
                (lost[0],),
            ).fetchall()
        )
        assert sent["Name"] == "Lost 0"
        # meanwhile a restore re-created Lost 0's twin (another record of the backup, with the very same values)
        [twin] = create(p, "Account", [{f: v for f, v in sent.items() if v is not None}])
        twin_source = "001Zz9999999999AAA"
        others = {f"001Zz{i:010d}AAA": f"001Zy{i:010d}AAA" for i in range(3_000)}
        save_id_map(conn, "production", "production", "Account", {**others, twin_source: twin})
        result = apply_plan(conn, client(p), load_plan(conn, config(**CREATE, dry_run=False, plan="t1-dry"), "t2"))
        assert result.reconciled == {"not_applied": 200}  # the twin was not taken for Lost 0's create
        assert result.success and result.outcomes["created"] == LOST
        ids = dict(conn.execute("SELECT source_id, target_id FROM sf_pipeline.id_map WHERE object = 'Account'"))
        assert ids[twin_source] == twin and ids[lost[0]] not in (None, twin)
    assert live_accounts(p) == {f"Lost {i}": 2 if i == 0 else 1 for i in range(LOST)}  # the twin and Lost 0


def test_a_record_the_restore_user_cannot_see_is_reported_never_recreated(pipeline_factory, damaged):
    """devorg has no sharing model: a record hidden from the API user is one the API does not return, which is
    what taking it out of devorg's store shows the restore (Salesforce answers queries and retrieves with the
    records the user may see only). The backup last saw these live: they may still exist, so never re-created."""
    p = pipeline_factory(state=damaged)
    hidden = damaged.story["opportunities"][:2]
    with p.devorg.org.store.lock:
        p.devorg.org.store.conn.executemany('DELETE FROM "Opportunity" WHERE Id = ?', [(i,) for i in hidden])
    at(p, 9, 0)
    values = {**UPDATE, "restore_deleted": True, "with_children": False}
    with p.conn() as conn:
        c = client(p)
        plan = plan_restore(conn, c, config(**values), "h1-dry")
        assert plan.actions == {"update": OPPORTUNITIES - 2}  # no create
        reasons = {r.record_id: r.reason for r in plan.records if r.status == "not_restorable"}
        assert sorted(reasons) == sorted(hidden)
        assert all(reasons[h].startswith("could not be checked") for h in hidden)
        assert any("2 record(s) could not be checked" in note and hidden[0] in note for note in plan.notes)
        result = apply_plan(conn, c, load_plan(conn, config(**values, dry_run=False, plan="h1-dry"), "h1"))
        assert result.outcomes.get("created", 0) == 0 and result.outcomes["written"] == OPPORTUNITIES - 2
    count = p.devorg.org.queries.run("SELECT Id FROM Opportunity", include_deleted=True, batch_size=2000)
    assert len(count["records"]) == OPPORTUNITIES - 2  # nothing was created in their place
