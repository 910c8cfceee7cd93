"""Benchmark file bodies: backup, incremental, dedup, peak memory with a large file, restore of deleted files.

devorg runs in its own process with --files N generated ContentVersions of mixed sizes (blobs on its disk). The
backup path is the one the mirror asset runs (`extract_window` -> `load_window` -> `backup_file_bodies`, then the
dbt snapshot), into a local blob store; the plain peer path is what a user writes by hand with simple-salesforce:
`sf.ContentVersion.get(id)` then `requests` GET of its VersionData URL, written to disk, one file after another.

Parts:
  first        first backup of every file: MB/s and API calls, ours and the peer path side by side;
  incremental  a window with 50 new versions: fetches those 50 only;
  dedup        the same 1 MB file attached 100 times: blob store growth vs bytes backed up;
  memory       one --big-mb file (default 200) downloaded by the backup path in a child process: its peak RSS
               against the same child downloading a 4 KB file;
  restore      --restore (default 100) documents deleted and purged (the recycle bin emptied by 15 days passing),
               then re-uploaded from the blob store by the file restore (plan + apply), verified by hash.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_files.py --files 400               # smoke
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_files.py --files 10000 --big-mb 1024 --restore 1000 \
        --restore-mb 500                      # the issue's size: about 2.2 GB of files, needs about 9 GB in /tmp
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_files.py --files 20 --big-mb 1024 --memory-only
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(ROOT))

from simple_salesforce import Salesforce  # noqa: E402

from sf_pipeline.backup.files import backup_file_bodies  # noqa: E402
from sf_pipeline.blobs import LocalBlobStore  # noqa: E402
from sf_pipeline.restore import RestoreConfig  # noqa: E402
from sf_pipeline.restore.files import apply_file_plan, load_file_plan, plan_file_restore  # noqa: E402
from sf_pipeline.salesforce.blobs import insert_with_blob  # noqa: E402
from sf_pipeline.warehouse import (  # noqa: E402
    run_snapshot,
)
from sf_pipeline.warehouse.files import base64_fields, ensure_body_columns  # noqa: E402
from sf_pipeline.warehouse.schema import get_mirror_table  # noqa: E402
from sf_pipeline_tests.benchmarks import org_fixtures  # noqa: E402
from sf_pipeline_tests.benchmarks.org_fixtures import EPOCH  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

# the mix, 1 KB to 200 MB: about 214 KB a file on average, so 10,000 files make about 2 GB (four 200 MB
# files expected among 10,000; the draw is seeded, the totals are printed)
MIX = {1024: 0.5, 16384: 0.3, 262144: 0.16, 2097152: 0.0396, 209715200: 0.0004}
SMALL_MIX = {4096: 0.6, 262144: 0.3, 4194304: 0.09, 33554432: 0.01}  # the first, scaled-down runs' mix
SERVER = r"""
import json, sys, threading
from sf_pipeline.devorg.runner import DevOrgServer
data_dir, files, mix = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
srv = DevOrgServer(data_dir=data_dir, generate=50, files=files, file_sizes={int(k): v for k, v in mix.items()},
                   daily_limit=50_000_000)
srv.start()
print(json.dumps({"instance_url": srv.instance_url, "session_id": srv.login("admin"), "ca_bundle": srv.ca_bundle,
                  "env": srv.env("production"), "control_token": srv.control_token}), flush=True)
threading.Event().wait()
"""
MEMORY_CHILD = r"""
import json, os, resource, sys
from sf_pipeline.blobs import LocalBlobStore
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect
from sf_pipeline.salesforce.blobs import open_blob
env, record_id, root = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
client = SalesforceClient(connect(OrgCredentials.from_env("production", env)))
store = LocalBlobStore(root)
with open_blob(client, "ContentVersion", record_id, "VersionData") as (chunks, length):
    stored = store.put(chunks, expected_size=length)
# VmHWM, the peak RSS of this process image: ru_maxrss is kept across execve (getrusage(2)), so it would report the
# benchmark parent's size at the fork instead of this child's
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"size": stored.size, "peak_rss_mb": hwm / 1024,
                  "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


class Org(org_fixtures.Org):
    """devorg with `files` generated ContentVersions of the size mix `MIX` (blobs on its disk)."""

    def __init__(self, data_dir: Path, files: int):
        super().__init__(*org_fixtures.start_server(SERVER, str(data_dir), str(files), json.dumps(MIX)))

    def simple(self) -> Salesforce:
        session = requests.Session()
        session.verify = self.ca_bundle
        session.trust_env = False
        return Salesforce(instance_url=self.info["instance_url"], session_id=self.info["session_id"], session=session)


def backup(
    org: Org, db_url: str, dbt_dir: Path, store: LocalBlobStore, start: datetime, end: datetime, concurrency: int = 4
) -> dict[str, Any]:
    """ContentVersion's window [start, end) as the mirror asset backs it up, then its snapshot."""
    client = org.client()
    started = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        org_fixtures.load_object_window(conn, client, "ContentVersion", start, end)
        conn.commit()
        fields = base64_fields(client.describe("ContentVersion")["fields"])
        ensure_body_columns(conn, get_mirror_table(conn, "ContentVersion"), fields)
        files = backup_file_bodies(
            client, conn, store, get_mirror_table(conn, "ContentVersion"), fields, start, end, concurrency=concurrency
        )
    seconds = time.perf_counter() - started
    run_snapshot(dbt_dir, db_url, ["ContentVersion"], start, end)
    return {"seconds": seconds, "api_calls": client.api_calls, **files.as_metadata()}


def peer_backup(org: Org, target: Path) -> dict[str, Any]:
    """What a user writes with simple-salesforce: get each record, then its VersionData, written to disk."""
    sf = org.simple()
    calls = 0
    started = time.perf_counter()
    result = sf.query("SELECT Id FROM ContentVersion")
    calls += 1
    ids = [r["Id"] for r in result["records"]]
    while not result["done"]:
        result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
        calls += 1
        ids += [r["Id"] for r in result["records"]]
    total = 0
    for rid in ids:
        rec = sf.ContentVersion.get(rid)
        resp = sf.session.get(f"{org.info['instance_url']}{rec['VersionData']}", headers=sf.headers)
        calls += 2
        (target / f"{rid}.bin").write_bytes(resp.content)
        total += len(resp.content)
    return {"seconds": time.perf_counter() - started, "api_calls": calls, "files": len(ids), "bytes": total}


def store_bytes(store: LocalBlobStore) -> int:
    return sum(p.stat().st_size for p in (store.root / "sha256").rglob("*") if p.is_file())


def peak_memory(org: Org, root: Path, big_mb: int) -> None:
    """One `big_mb` file downloaded into a blob store by a child process (the backup's path): its peak RSS against
    the same child downloading a 4 KB file."""
    sf = org.simple()
    client = org.client()
    chunk = os.urandom(1024 * 1024)
    big = insert_with_blob(
        client,
        "ContentVersion",
        {"Title": "big", "PathOnClient": "big.bin"},
        "VersionData",
        size=big_mb * 1024 * 1024,
        source=lambda: (chunk for _ in range(big_mb)),
        filename="big.bin",
    )
    small = sf.query("SELECT Id FROM ContentVersion WHERE ContentSize < 5000 LIMIT 1")["records"][0]["Id"]
    peaks = {}
    for label, rid in (("4 KB", small), (f"{big_mb} MB", big)):
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, json.dumps(org.env), rid, str(root / "memblobs")],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[label] = json.loads(out.stdout)["peak_rss_mb"]
    print(
        f"peak memory   download into the store: {peaks['4 KB']:.0f} MB RSS for a 4 KB file, "
        f"{peaks[f'{big_mb} MB']:.0f} MB RSS for a {big_mb} MB file"
    )
    shutil.rmtree(root / "memblobs", ignore_errors=True)


def pick_restore(rows: list[tuple[str, int]], count: int, target_bytes: int, seed: int = 7) -> list[str]:
    """`count` documents whose bodies add up to about `target_bytes` (the issue: 1,000 files, 500 MB): a seeded
    random sample, then its smallest swapped for the largest left out (never over 100 MB) until the target is met."""
    rnd = random.Random(seed)
    pool = [r for r in rows if r[1] <= 100 * 1024 * 1024]
    rnd.shuffle(pool)
    chosen, rest = pool[:count], pool[count:]
    if target_bytes:
        chosen.sort(key=lambda r: r[1])
        rest.sort(key=lambda r: r[1], reverse=True)
        total = sum(r[1] for r in chosen)
        while total < target_bytes and rest and chosen and rest[0][1] > chosen[0][1]:
            small, big = chosen.pop(0), rest.pop(0)
            chosen.append(big)
            total += big[1] - small[1]
    return [r[0] for r in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--restore", type=int, default=100)
    parser.add_argument(
        "--restore-mb",
        type=int,
        default=0,
        help="pick the restored documents so their bodies add up to about this many MB (issue: 500)",
    )
    parser.add_argument("--small-mix", action="store_true", help="the first runs' mix (4 KB to 32 MB)")
    parser.add_argument("--skip-peer", action="store_true", help="leave out the peer path (not side by side!)")
    parser.add_argument("--memory-only", action="store_true", help="only the peak memory part")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    global MIX
    if args.small_mix:
        MIX = SMALL_MIX
    print(
        f"bench_files: {args.files} files, size mix {MIX}; machine load {os.getloadavg()} at "
        f"{datetime.now(UTC):%H:%M:%S} UTC",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-files-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        org = Org(root / "devorg", args.files)
        print(f"  devorg with {args.files} generated files ready in {time.perf_counter() - started:.1f} s", flush=True)
        db_url = create_database("sfp_bench_files")
        dbt_dir = org_fixtures.dbt_project(root / "dbt_snapshots", ["ContentVersion"])
        store = LocalBlobStore(root / "blobs")
        try:
            t0 = org.now().replace(microsecond=0) + timedelta(seconds=1)
            org.set_clock(t0)
            if args.memory_only:
                peak_memory(org, root, args.big_mb)
                return
            # ---- first backup, ours and the peer path
            ours = backup(org, db_url, dbt_dir, store, EPOCH, t0, args.concurrency)
            mb = ours["bytes_fetched"] / 1e6
            print(
                f"first backup  ours: {ours['bodies_fetched']} files, {mb:.1f} MB in {ours['seconds']:.1f} s; load "
                f"{os.getloadavg()}",
                flush=True,
            )
            peer_dir = root / "peer"
            peer_dir.mkdir()
            if args.skip_peer:
                peer = {"seconds": float("nan"), "api_calls": 1, "files": 0, "bytes": 0}
            else:
                peer = peer_backup(org, peer_dir)
            print(
                f"first backup  ours: {ours['bodies_fetched']} files, {mb:.1f} MB in {ours['seconds']:.1f} s = "
                f"{mb / ours['seconds']:.1f} MB/s, {ours['api_calls']} API calls "
                f"(concurrency {args.concurrency}; includes the record extraction)"
            )
            print(
                f"              peer: {peer['files']} files, {peer['bytes'] / 1e6:.1f} MB in {peer['seconds']:.1f} s"
                f" = {peer['bytes'] / 1e6 / peer['seconds']:.1f} MB/s, {peer['api_calls']} API calls; "
                f"ours is {peer['seconds'] / ours['seconds']:.2f}x as fast with "
                f"{ours['api_calls'] / peer['api_calls']:.2f}x the calls; load {os.getloadavg()}",
                flush=True,
            )
            shutil.rmtree(peer_dir)
            # ---- incremental: 50 new versions
            sf = org.simple()
            t1 = t0 + timedelta(hours=1)
            org.set_clock(t1)
            docs = [
                r["ContentDocumentId"]
                for r in sf.query("SELECT ContentDocumentId FROM ContentVersion WHERE IsLatest = true LIMIT 50")[
                    "records"
                ]
            ]
            for doc in docs:
                sf.ContentVersion.create(
                    {
                        "ContentDocumentId": doc,
                        "PathOnClient": "v2.txt",
                        "VersionData": base64.b64encode(os.urandom(20_000)).decode(),
                    }
                )
            t2 = t1 + timedelta(minutes=15)
            org.set_clock(t2)
            inc = backup(org, db_url, dbt_dir, store, t0, t2, args.concurrency)
            print(
                f"incremental   {len(docs)} new versions: {inc['bodies_fetched']} bodies fetched, "
                f"{inc['api_calls']} API calls, {inc['seconds']:.1f} s"
            )
            # ---- dedup: the same 1 MB file attached 100 times
            before = store_bytes(store)
            same = os.urandom(1024 * 1024)
            accounts = [r["Id"] for r in sf.query("SELECT Id FROM Account LIMIT 100")["records"]]
            t3 = t2 + timedelta(hours=1)
            org.set_clock(t3)
            for i in range(100):
                sf.ContentVersion.create(
                    {
                        "Title": f"terms-{i}",
                        "PathOnClient": "terms.pdf",
                        "FirstPublishLocationId": accounts[i % len(accounts)],
                        "VersionData": base64.b64encode(same).decode(),
                    }
                )
            t4 = t3 + timedelta(minutes=15)
            org.set_clock(t4)
            dd = backup(org, db_url, dbt_dir, store, t2, t4, args.concurrency)
            grown = store_bytes(store) - before
            print(
                f"dedup         100 copies of 1 MB: {dd['bytes_fetched'] / 1e6:.1f} MB backed up, store grew "
                f"{grown / 1e6:.2f} MB: ratio {dd['bytes_fetched'] / max(grown, 1):.0f}:1 "
                f"({dd['new_blobs']} new blob)"
            )
            # ---- peak memory with a large file
            peak_memory(org, root, args.big_mb)
            # ---- restore of deleted, purged documents
            with psycopg.connect(db_url) as conn:
                rows = conn.execute(
                    "SELECT contentdocumentid, sum(contentsize)::bigint FROM salesforce.contentversion "
                    "WHERE systemmodstamp < %s GROUP BY 1 ORDER BY 1",
                    (t0,),
                ).fetchall()
            chosen = pick_restore(
                [(r[0], int(r[1] or 0)) for r in rows], min(args.restore, len(rows)), args.restore_mb * 1024 * 1024
            )
            chosen_bytes = sum(int(r[1] or 0) for r in rows if r[0] in set(chosen))
            print(
                f"restore       {len(chosen)} documents chosen, {chosen_bytes / 1e6:.1f} MB; load {os.getloadavg()}",
                flush=True,
            )
            t5 = t4 + timedelta(hours=1)
            org.set_clock(t5)
            for doc in chosen:
                sf.ContentDocument.delete(doc)
            org.control("scenario", {"name": "recycle-bin-purge"})  # 15 days pass: the bin is emptied
            config = RestoreConfig.from_dict(
                {
                    "object": "ContentDocument",
                    "record_ids": chosen,
                    "target_org": "production",
                    "as_of": (t5 - timedelta(minutes=1)).isoformat(),
                },
                orgs=["production"],
            )
            client = org.client()
            started = time.perf_counter()
            with psycopg.connect(db_url) as conn:
                plan = plan_file_restore(conn, client, config, "bench-dry", store, source_org="production")
                apply_config = RestoreConfig.from_dict(
                    {
                        **{
                            "object": "ContentDocument",
                            "record_ids": chosen,
                            "target_org": "production",
                            "as_of": (t5 - timedelta(minutes=1)).isoformat(),
                        },
                        "dry_run": False,
                        "plan": "bench-dry",
                    },
                    orgs=["production"],
                )
                plan = load_file_plan(conn, apply_config, "bench-apply")
                result = apply_file_plan(conn, client, plan, store, apply_config)
            seconds = time.perf_counter() - started
            print(
                f"restore       {len(chosen)} purged documents: plan {dict(plan.counts())}, outcomes "
                f"{result.outcomes}, {result.verified} verified by hash, {result.bytes_uploaded / 1e6:.1f} MB "
                f"uploaded, {result.links_created} links, {seconds:.1f} s, {client.api_calls} API calls"
            )
        finally:
            org.stop()
            drop_database(db_url)


if __name__ == "__main__":
    main()
