"""Benchmark what the org identity check adds to every backup step, restore and seeding.

One `verify_org` is one REST query of the Organization record plus one small PostgreSQL transaction on
`sf_pipeline.org_identity`. Prints its wall time per call (median and 95th percentile) against a devorg
org over HTTPS and the local PostgreSQL, so it can be set beside a backup step's duration.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_org_identity.py --calls 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from sf_pipeline.devorg.runner import DevOrgServer  # noqa: E402
from sf_pipeline.salesforce import OrgCredentials, SalesforceClient, connect  # noqa: E402
from sf_pipeline.warehouse.org_identity import verify_org  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    db_url = create_database("sfp_bench")
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            DevOrgServer(Path(tmp) / "org") as org,
            psycopg.connect(db_url) as conn,
        ):
            client = SalesforceClient(connect(OrgCredentials.from_env("production", org.env("production"))))
            verify_org(conn, client)  # the first contact records the org
            seconds = []
            for _ in range(args.calls):
                started = time.perf_counter()
                verify_org(conn, client)
                seconds.append(time.perf_counter() - started)
        seconds.sort()
        median, p95 = statistics.median(seconds), seconds[int(len(seconds) * 0.95) - 1]
        print(
            f"verify_org: {args.calls} calls, median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, 1 API call each"
        )
    finally:
        drop_database(db_url)


if __name__ == "__main__":
    main()
