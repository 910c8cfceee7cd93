"""Benchmark devorg's Bulk API 1.0 (CSV jobs, as CumulusCI, jsforce and salesforce-bulk use it).

devorg runs in its own process (bench_bulk_query.start_devorg); this process is the client, over HTTPS:
1. a CSV query job of every Opportunity field: create job, add the SOQL batch, poll, download the result,
   timed from job creation to the last byte (records/s);
2. a CSV insert job of Contacts in batches of 10,000 (the Bulk API 1.0 per-batch maximum), timed from
   job creation to the last batch Completed (records/s).

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_bulk1.py --records 100000
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import requests

from sf_pipeline_tests.benchmarks.bench_bulk_query import all_fields_query, client, start_devorg

NS = "http://www.force.com/2009/06/asyncapi/dataload"


def _job(http: requests.Session, base: str, operation: str, obj: str) -> str:
    doc = (
        f'<?xml version="1.0" encoding="UTF-8"?><jobInfo xmlns="{NS}"><operation>{operation}</operation>'
        f"<object>{obj}</object><contentType>CSV</contentType></jobInfo>"
    )
    r = http.post(base + "job", data=doc, headers={"Content-Type": "application/xml"})
    r.raise_for_status()
    return re.search(r"<id>(\w+)</id>", r.text).group(1)


def _wait(http: requests.Session, base: str, job: str, batch: str) -> None:
    while True:
        state = re.search(r"<state>(\w+)</state>", http.get(base + f"job/{job}/batch/{batch}").text).group(1)
        if state in ("Completed", "Failed", "NotProcessed"):
            assert state == "Completed", state
            return
        time.sleep(0.05)


def bench_query(http: requests.Session, base: str, soql: str) -> None:
    t0 = time.perf_counter()
    job = _job(http, base, "query", "Opportunity")
    batch = re.search(
        r"<id>(\w+)</id>", http.post(base + f"job/{job}/batch", data=soql, headers={"Content-Type": "text/csv"}).text
    ).group(1)
    _wait(http, base, job, batch)
    result = re.search(r"<result>(\w+)</result>", http.get(base + f"job/{job}/batch/{batch}/result").text).group(1)
    rows = nbytes = 0
    with http.get(base + f"job/{job}/batch/{batch}/result/{result}", stream=True) as r:
        for chunk in r.iter_content(1 << 20):
            nbytes += len(chunk)
            rows += chunk.count(b"\n")
    rows -= 1  # header (generated values are single-line)
    elapsed = time.perf_counter() - t0
    print(
        f"bulk1 CSV query:  {rows:>9,} records, {nbytes / 1e6:,.0f} MB, {elapsed:6.1f} s -> "
        f"{rows / elapsed:>9,.0f} records/s"
    )


def bench_insert(http: requests.Session, base: str, count: int) -> None:
    t0 = time.perf_counter()
    job = _job(http, base, "insert", "Contact")
    batches = []
    for start in range(0, count, 10_000):
        n = min(10_000, count - start)
        data = "LastName,FirstName,Email\n" + "".join(
            f"Bench{start + i},Ann,b{start + i}@example.com\n" for i in range(n)
        )
        r = http.post(base + f"job/{job}/batch", data=data, headers={"Content-Type": "text/csv"})
        batches.append(re.search(r"<id>(\w+)</id>", r.text).group(1))
    for b in batches:
        _wait(http, base, job, b)
    elapsed = time.perf_counter() - t0
    print(
        f"bulk1 CSV insert: {count:>9,} records in {len(batches)} batches, {elapsed:6.1f} s -> "
        f"{count / elapsed:>9,.0f} records/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="Opportunities to generate")
    parser.add_argument("--insert", type=int, default=50_000, help="Contacts to insert")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bulk1-") as tmp:
        proc, info = start_devorg(args.data_dir or Path(tmp) / "org", args.records)
        try:
            sf = client(info)
            http = sf.session
            http.headers["X-SFDC-Session"] = info["session_id"]
            base = f"{info['instance_url']}/services/async/59.0/"
            bench_query(http, base, all_fields_query(sf))
            bench_insert(http, base, args.insert)
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
