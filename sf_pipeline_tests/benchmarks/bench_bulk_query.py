"""Benchmark devorg's Bulk API 2.0 and REST query paging with unmodified simple-salesforce.

devorg runs in a separate process (org_fixtures.start_devorg: a small inline script builds
`DevOrgServer(data_dir, generate=N)`, prints its connection details as one JSON line and serves until killed);
this process is the client:

1. Bulk API 2.0 query of every Opportunity field, `sf.bulk2.Opportunity.query(..., max_records=50000)`,
   timed from job creation to the last page (target >= 50,000 records/s for 1,000,000 records);
   then the same through `download()` (one file per page), for comparison;
2. REST `query_all_iter` over the same query (target >= 10,000 records/s);
3. a Bulk API 2.0 update job of 100,000 Opportunities (one field), timed create -> JobComplete.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_bulk_query.py --records 1000000
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_bulk_query.py --data-dir /tmp/devorg-1m  # reuse

With --data-dir an existing org is reused (generation is skipped when it already has Opportunities).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from simple_salesforce import Salesforce

from sf_pipeline_tests.benchmarks.org_fixtures import start_devorg


def client(info: dict) -> Salesforce:
    session = requests.Session()
    session.verify = info["ca_bundle"]
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides session.verify
    return Salesforce(instance_url=info["instance_url"], session_id=info["session_id"], session=session)


def all_fields_query(sf: Salesforce) -> str:
    fields = [f["name"] for f in sf.Opportunity.describe()["fields"] if f["type"] not in ("address", "location")]
    return f"SELECT {', '.join(fields)} FROM Opportunity"


def bench_bulk_query(sf: Salesforce, soql: str, expected: int, page: int, wait: float) -> float:
    t0 = time.perf_counter()
    pages = rows = nbytes = 0
    for csv_text in sf.bulk2.Opportunity.query(soql, max_records=page, wait=wait):
        pages += 1
        nbytes += len(csv_text)
        rows += csv_text.count("\n") - 1  # rows minus this page's header (generated values are single-line)
    elapsed = time.perf_counter() - t0
    print(
        f"bulk2 query():    {rows:>9,} records in {pages} pages, {nbytes / 1e6:,.0f} MB, {elapsed:6.1f} s "
        f"-> {rows / elapsed:>9,.0f} records/s"
    )
    if rows != expected:
        print(f"  !! expected {expected:,} records, counted {rows:,}")
    return rows / elapsed


def bench_bulk_download(sf: Salesforce, soql: str, expected: int, page: int, wait: float) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as out:
        t0 = time.perf_counter()
        results = sf.bulk2.Opportunity.download(soql, path=out, max_records=page, wait=wait)
        elapsed = time.perf_counter() - t0
        rows = sum(r["number_of_records"] for r in results)
        size = sum(os.path.getsize(r["file"]) for r in results)
    print(
        f"bulk2 download(): {rows:>9,} records in {len(results)} files, {size / 1e6:,.0f} MB, {elapsed:6.1f} s "
        f"-> {rows / elapsed:>9,.0f} records/s"
    )
    if rows != expected:
        print(f"  !! expected {expected:,} records, got {rows:,}")
    return rows / elapsed


def bench_rest(sf: Salesforce, soql: str, limit: int | None) -> float:
    if limit:
        soql += f" LIMIT {limit}"
    t0 = time.perf_counter()
    rows = sum(1 for _ in sf.query_all_iter(soql))
    elapsed = time.perf_counter() - t0
    print(f"REST query_all_iter: {rows:>9,} records, {elapsed:6.1f} s -> {rows / elapsed:>9,.0f} records/s")
    return rows / elapsed


def bench_ingest_update(sf: Salesforce, count: int, wait: float) -> float:
    ids = []
    for page in sf.bulk2.Opportunity.query(f"SELECT Id FROM Opportunity LIMIT {count}", max_records=count, wait=wait):
        ids.extend(line.strip('"') for line in page.splitlines()[1:])
    records = [{"Id": rid, "NextStep": f"Call back #{i}"} for i, rid in enumerate(ids)]
    t0 = time.perf_counter()
    result = sf.bulk2.Opportunity.update(records=records, wait=wait)
    elapsed = time.perf_counter() - t0
    processed = sum(r["numberRecordsProcessed"] for r in result)
    failed = sum(r["numberRecordsFailed"] for r in result)
    print(
        f"bulk2 update:     {processed:>9,} records ({failed} failed), {elapsed:6.1f} s "
        f"-> {processed / elapsed:>9,.0f} records/s"
    )
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="Opportunities to generate (default 1M)")
    ap.add_argument("--data-dir", type=Path, help="reuse/keep the org here (default: a temp dir)")
    ap.add_argument("--page", type=int, default=50_000, help="maxRecords per results page")
    ap.add_argument("--wait", type=float, default=0.2, help="simple-salesforce's poll interval (s)")
    ap.add_argument("--rest-limit", type=int, default=0, help="LIMIT for the REST pass (0 = all records)")
    ap.add_argument("--ingest", type=int, default=100_000, help="records in the update job (0 = skip)")
    ap.add_argument("--skip", action="append", default=[], choices=["query", "download", "rest", "ingest"])
    args = ap.parse_args()

    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-devorg-")
        data_dir = Path(tmp.name)
    t0 = time.perf_counter()
    proc, info = start_devorg(data_dir, args.records)
    try:
        print(f"devorg ready in {time.perf_counter() - t0:.1f} s (pid {proc.pid}, {info['instance_url']})")
        sf = client(info)
        expected = sf.query("SELECT COUNT() FROM Opportunity")["totalSize"]
        soql = all_fields_query(sf)
        print(f"{expected:,} Opportunities, {soql.count(',') + 1} fields; cores: {os.cpu_count()}")
        if "query" not in args.skip:
            bench_bulk_query(sf, soql, expected, args.page, args.wait)
        if "download" not in args.skip:
            bench_bulk_download(sf, soql, expected, args.page, args.wait)
        if "rest" not in args.skip:
            bench_rest(sf, soql, args.rest_limit or None)
        if "ingest" not in args.skip and args.ingest:
            bench_ingest_update(sf, args.ingest, args.wait)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
