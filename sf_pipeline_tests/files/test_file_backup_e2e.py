"""File bodies backed up through real Dagster runs against devorg: new versions, changed bodies, deletes and
undeletes; identical content stored once; every version reachable from history; a rerun fetches nothing again;
`backup_complete` fails when a referenced blob goes missing; `sf-pipeline file` writes a file as of an instant."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from sf_pipeline.backup.files import file_bodies_finding
from sf_pipeline.files_cli import file_command
from sf_pipeline_tests.devorg.test_vanishing_records import _undelete
from sf_pipeline_tests.files.helpers import (
    FILE_OBJECTS,
    at,
    attach,
    blob_store,
    metadata,
    rows,
    sha,
    upload,
)
from sf_pipeline_tests.pipeline_fixtures import Pipeline

pytestmark = pytest.mark.e2e


def test_versions_changes_deletes_and_undeletes_of_files_keep_every_body_reachable_from_history(
    pipeline_factory, tmp_path
):
    p: Pipeline = pipeline_factory(FILE_OBJECTS)
    sf = p.sf()
    store = blob_store(p)
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    contract_v1 = os.urandom(300_000)
    logo = os.urandom(10_000)
    v1 = upload(sf, "contract", contract_v1, parent=account)
    document = sf.ContentVersion.get(v1)["ContentDocumentId"]
    logo_a = attach(sf, account, "logo.png", logo)
    logo_b = attach(sf, account, "logo-copy.png", logo)  # identical content: one blob

    at(p, 1, 10)
    first = p.backup("2026-11-24-00:00")
    files = metadata(first, "salesforce/ContentVersion")["file_bodies"]
    assert (files["bodies_fetched"], files["new_blobs"], files["fields"]) == (1, 1, ["VersionData"])
    attachments = metadata(first, "salesforce/Attachment")["file_bodies"]
    assert (attachments["bodies_fetched"], attachments["new_blobs"], attachments["deduplicated"]) == (2, 1, 1)
    assert files["links_seen"] >= 2  # the owner's link and the account's
    [cv_row] = rows(p, "salesforce", "ContentVersion", v1)
    assert (cv_row["_sfp_versiondata_sha256"], cv_row["_sfp_versiondata_size"]) == (sha(contract_v1), 300_000)
    assert store.size(sha(contract_v1)) == 300_000 and store.size(sha(logo)) == 10_000
    assert rows(p, "salesforce", "Attachment", logo_b)[0]["_sfp_body_sha256"] == sha(logo)

    # 01:00 window: a new version of the contract, a changed attachment body, the copy deleted
    at(p, 1, 20)
    contract_v2 = os.urandom(200_000)
    v2 = upload(sf, "contract", contract_v2, document=document)
    logo_new = os.urandom(12_000)
    sf.Attachment.update(logo_a, {"Body": __import__("base64").b64encode(logo_new).decode()})
    sf.Attachment.delete(logo_b)
    at(p, 2, 10)
    second = p.backup("2026-11-24-01:00")
    assert metadata(second, "salesforce/ContentVersion")["file_bodies"]["bodies_fetched"] == 1  # v2 only
    att = metadata(second, "salesforce/Attachment")["file_bodies"]
    assert (att["bodies_fetched"], att["carried_to_deleted_versions"]) == (1, 1)
    history = rows(p, "salesforce_history", "Attachment", logo_a, "dbt_valid_from")
    assert [h["_sfp_body_sha256"] for h in history] == [sha(logo), sha(logo_new)]
    deleted = rows(p, "salesforce_history", "Attachment", logo_b, "dbt_valid_from")
    assert deleted[-1]["isdeleted"] and deleted[-1]["_sfp_body_sha256"] == sha(logo)  # still reachable

    # `sf-pipeline file`: the document as it was before and after its second version
    runner = CliRunner()
    before = tmp_path / "before.pdf"
    out = runner.invoke(file_command, [document, "--as-of", "2026-11-24T01:15:00Z", "-o", str(before)])
    assert out.exit_code == 0, out.output
    assert before.read_bytes() == contract_v1
    after = runner.invoke(file_command, [document, "-o", str(tmp_path)])
    assert after.exit_code == 0, after.output
    assert (tmp_path / "contract.pdf").read_bytes() == contract_v2
    missing = runner.invoke(file_command, [document, "--as-of", "2026-11-23T00:00:00Z"])
    assert missing.exit_code != 0 and "no version of ContentDocument" in missing.output

    # 02:00 window: the document deleted (its versions go with it), the copy undeleted
    at(p, 2, 20)
    sf.ContentDocument.delete(document)
    assert _undelete(p.devorg, [logo_b])[0]["success"]
    at(p, 3, 10)
    third = p.backup("2026-11-24-02:00")
    cv = metadata(third, "salesforce/ContentVersion")["file_bodies"]
    assert cv["bodies_fetched"] == 0 and cv["carried_to_deleted_versions"] == 2
    assert metadata(third, "salesforce/Attachment")["file_bodies"]["bodies_fetched"] == 1  # undeleted: read again
    for version, body in ((v1, contract_v1), (v2, contract_v2)):
        last = rows(p, "salesforce_history", "ContentVersion", version, "dbt_valid_from")[-1]
        assert last["isdeleted"] and last["_sfp_versiondata_sha256"] == sha(body)
    deleted_doc = runner.invoke(file_command, [document, "--as-of", "2026-11-24T02:30:00Z"])
    assert deleted_doc.exit_code == 0 and deleted_doc.stdout_bytes == contract_v2

    # a rerun of a window fetches nothing it already has
    again = p.backup("2026-11-24-01:00")
    assert metadata(again, "salesforce/ContentVersion")["file_bodies"]["bodies_fetched"] == 0
    assert metadata(again, "salesforce/Attachment")["file_bodies"]["bodies_fetched"] == 0

    # backup_complete: every referenced body is in the store; then one goes missing and the check says which
    passed = backup_complete(p)
    assert "all 2 file bodies" in passed["ContentVersion"].metadata["file_bodies"].value
    assert "all 2 file bodies" in passed["Attachment"].metadata["file_bodies"].value
    assert store.delete(sha(logo))
    failed = backup_complete(p)
    assert not failed["Attachment"].passed  # (windows before and after the test's three are holes too)
    assert failed["ContentVersion"].metadata["file_bodies"].value.startswith("all 2 file bodies")
    assert f"missing {sha(logo)}" in failed["Attachment"].metadata["file_bodies"].value


def backup_complete(p: Pipeline) -> dict[str, dg.AssetCheckEvaluation]:
    keys = [dg.AssetCheckKey(dg.AssetKey(["salesforce", o]), "backup_complete") for o in FILE_OBJECTS]
    job = dg.define_asset_job("complete", selection=dg.AssetSelection.checks(*keys))
    defs = dg.Definitions.merge(p.defs(), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("complete").execute_in_process(instance=p.instance, raise_on_error=False)
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}


def test_a_killed_backup_leaves_no_half_written_body_referenced_and_its_rerun_fetches_only_the_rest(pipeline_factory):
    p: Pipeline = pipeline_factory(["Account", "Attachment"])
    sf = p.sf()
    store = blob_store(p)
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    small = {attach(sf, account, f"note{i}.txt", os.urandom(2000 + i)) for i in range(12)}
    big_data = os.urandom(6_000_000)
    big = attach(sf, account, "scan.tiff", big_data)
    at(p, 1, 10)
    # the big body's download hangs (a slow answer), while the small ones complete
    p.devorg.control("faults", {"kind": "slow", "next": 5, "delay": 120, "path": f"Attachment/{big}/Body"})
    script = (
        "import dagster as dg\n"
        "from sf_pipeline.definitions import build_definitions\n"
        "build_definitions().resolve_job_def('backup').execute_in_process(\n"
        "    partition_key='2026-11-24-00:00', instance=dg.DagsterInstance.get())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while ledger_count(p) < len(small):
            assert proc.poll() is None, "the backup ended before it was killed"
            assert time.monotonic() < deadline, "the small bodies were never recorded"
            time.sleep(0.5)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait()
    p.devorg.control("faults", method="DELETE")
    assert not store.exists(sha(big_data))
    with p.conn() as conn:  # everything the backup refers to is complete in the store
        finding = file_bodies_finding(conn, store, "Attachment")
        assert finding is None or finding.passed, finding
        recorded = {r[0] for r in conn.execute("SELECT record_id FROM sf_pipeline.file_bodies").fetchall()}
    assert recorded == small

    rerun = p.backup("2026-11-24-00:00")
    files = metadata(rerun, "salesforce/Attachment")["file_bodies"]
    assert files["bodies_fetched"] == 1  # the big one only
    [row] = rows(p, "salesforce", "Attachment", big)
    assert (row["_sfp_body_sha256"], row["_sfp_body_size"]) == (sha(big_data), len(big_data))
    assert store.verify(sha(big_data))
    assert all(r["_sfp_body_sha256"] for i in small for r in rows(p, "salesforce_history", "Attachment", i))


def ledger_count(p: Pipeline) -> int:
    with p.conn() as conn:
        if not conn.execute("SELECT to_regclass('sf_pipeline.file_bodies') IS NOT NULL").fetchone()[0]:
            return 0
        return conn.execute("SELECT count(*) FROM sf_pipeline.file_bodies").fetchone()[0]


def test_file_bodies_back_up_into_s3_compatible_storage_and_read_back_from_it(
    pipeline_factory, s3_server, s3_env, tmp_path
):
    p: Pipeline = pipeline_factory(["Account", "ContentVersion"])
    bucket = s3_server.new_bucket()
    settings = yaml.safe_load(p.settings_path.read_text())
    settings["blobs"] = {
        "store": "s3",
        "bucket": bucket,
        "prefix": "prod",
        "endpoint_url": s3_server.endpoint,
        "region": "us-east-1",
        "spool_dir": str(tmp_path),
    }
    p.settings_path.write_text(yaml.safe_dump(settings))
    sf = p.sf()
    at(p, 0, 5)
    account = sf.Account.create({"Name": "Acme"})["id"]
    body = os.urandom(12 * 1024 * 1024)  # past the 8 MB multipart threshold
    version = upload(sf, "drawing", body, parent=account)
    at(p, 1, 10)
    result = p.backup("2026-11-24-00:00")
    assert metadata(result, "salesforce/ContentVersion")["file_bodies"]["new_blobs"] == 1
    head = s3_server.client().head_object(Bucket=bucket, Key=f"prod/sha256/{sha(body)[:2]}/{sha(body)}")
    assert head["ContentLength"] == len(body)
    out = CliRunner().invoke(file_command, [version, "-o", str(tmp_path / "drawing.pdf")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "drawing.pdf").read_bytes() == body
    assert list(tmp_path.glob("sf-pipeline-spool-*")) == []  # the spool file went with its upload
