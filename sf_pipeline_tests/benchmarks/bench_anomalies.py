"""Benchmark `run_detectors` on one window of a large history, in a throwaway database.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_anomalies.py --records 1000000 --changed 100000

Builds, in SQL only (`generate_series`), an Opportunity history of `--records` records (~30 columns, their
versions spread over the 30 days before the window) and an Account history of `--records / 10` records,
then a window (02:00-03:00) in which an integration user nulls AccountId on `--changed` Opportunities
within ten minutes. Times `run_detectors` for that window (target: < 5 s for 1,000,000 + 100,000) and the
24-hour `change_volume` chart query, and checks that the damage was found exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

try:
    import sf_pipeline.anomalies  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.anomalies import change_volume, report_incident, run_detectors  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

WINDOW_START = datetime(2026, 11, 24, 2, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(hours=1)
INTEGRATION_USER = "005000000000000INT"

OPPORTUNITY_COLUMNS = """
    id varchar(18), isdeleted boolean, accountid varchar(18), isprivate boolean, name text, description text,
    stagename text, amount numeric, probability double precision, expectedrevenue numeric,
    totalopportunityquantity double precision, closedate date, type text, nextstep text, leadsource text,
    isclosed boolean, iswon boolean, forecastcategory text, campaignid varchar(18), pricebook2id varchar(18),
    ownerid varchar(18), createddate timestamptz, createdbyid varchar(18), lastmodifieddate timestamptz,
    lastmodifiedbyid varchar(18), systemmodstamp timestamptz, lastactivitydate date, fiscalquarter bigint,
    fiscalyear bigint, fiscal text,
    dbt_scd_id text, dbt_updated_at timestamptz, dbt_valid_from timestamptz, dbt_valid_to timestamptz
"""

# Record i: first version stamped somewhere in the 30 days before the window (so every hour of every
# previous day has a baseline of ~records/720 changes), then, for i <= changed, a version in the window
# with AccountId nulled by the integration user.
OPPORTUNITY_VERSIONS = """
INSERT INTO salesforce_history.opportunity
SELECT id, false, '001' || lpad((i %% %(accounts)s + 1)::text, 15, '0'), i %% 7 = 0, 'Deal ' || i,
       CASE WHEN i %% 3 = 0 THEN 'Renewal of contract ' || i END,
       (ARRAY['Prospecting','Qualification','Needs Analysis','Closed Won','Closed Lost'])[i %% 5 + 1],
       (i %% 1000) * 100.5, (i %% 10) * 10.0, (i %% 1000) * 10.05, i %% 20, DATE '2026-12-31' - (i %% 300),
       'New Business', CASE WHEN i %% 2 = 0 THEN 'Call back' END, 'Web', i %% 5 >= 3, i %% 5 = 3, 'Pipeline',
       NULL, '01s000000000001AAA', '005' || lpad((i %% 40 + 1)::text, 15, '0'), stamp - interval '30 days',
       '005000000000000ADM', stamp, '005' || lpad((i %% 40 + 1)::text, 15, '0'), stamp, NULL, 4, 2026,
       'Q4 2026', md5(id || stamp::text), stamp, stamp,
       CASE WHEN i <= %(changed)s THEN %(window_start)s + (i %% 600) * interval '1 second' END
FROM (
    SELECT i, '006' || lpad(i::text, 15, '0') AS id,
           %(window_start)s - interval '30 days' + ((i::bigint * 7919) %% (30 * 86400)) * interval '1 second' AS stamp
    FROM generate_series(1, %(records)s) AS i
) AS base
"""

DAMAGE_VERSIONS = """
INSERT INTO salesforce_history.opportunity
SELECT h.id, h.isdeleted, NULL, h.isprivate, h.name, h.description, h.stagename, h.amount, h.probability,
       h.expectedrevenue, h.totalopportunityquantity, h.closedate, h.type, h.nextstep, h.leadsource,
       h.isclosed, h.iswon, h.forecastcategory, h.campaignid, h.pricebook2id, h.ownerid, h.createddate,
       h.createdbyid, h.dbt_valid_to, %(user)s, h.dbt_valid_to, h.lastactivitydate, h.fiscalquarter,
       h.fiscalyear, h.fiscal, md5(h.id || h.dbt_valid_to::text), h.dbt_valid_to, h.dbt_valid_to, NULL
FROM salesforce_history.opportunity AS h
WHERE h.dbt_valid_to IS NOT NULL
"""

ACCOUNT_VERSIONS = """
CREATE TABLE salesforce_history.account (
    id varchar(18), isdeleted boolean, name text, ownerid varchar(18), lastmodifiedbyid varchar(18),
    systemmodstamp timestamptz, dbt_scd_id text, dbt_updated_at timestamptz, dbt_valid_from timestamptz,
    dbt_valid_to timestamptz);
INSERT INTO salesforce_history.account
SELECT '001' || lpad(i::text, 15, '0'), false, 'Account ' || i, '005000000000000ADM', '005000000000000ADM',
       stamp, md5(i::text), stamp, stamp, NULL
FROM (SELECT i, TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * interval '1 second' AS stamp
      FROM generate_series(1, %(accounts)s) AS i) AS base;
CREATE INDEX ON salesforce_history.account (id, dbt_valid_from);
"""


def build(conn: psycopg.Connection, records: int, changed: int) -> float:
    """Create both history tables in the shape dbt leaves them (with its (id, dbt_valid_from) index)."""
    started = time.perf_counter()
    params = {
        "records": records,
        "changed": changed,
        "accounts": max(records // 10, 1),
        "window_start": WINDOW_START,
        "user": INTEGRATION_USER,
    }
    conn.execute("CREATE SCHEMA salesforce_history")
    conn.execute(f"CREATE TABLE salesforce_history.opportunity ({OPPORTUNITY_COLUMNS})")
    conn.execute(OPPORTUNITY_VERSIONS, params)
    conn.execute(DAMAGE_VERSIONS, params)
    conn.execute("CREATE INDEX ON salesforce_history.opportunity (id, dbt_valid_from)")
    for statement in ACCOUNT_VERSIONS.split(";"):
        if statement.strip():
            conn.execute(statement, params)
    conn.execute("VACUUM ANALYZE salesforce_history.opportunity")
    conn.execute("VACUUM ANALYZE salesforce_history.account")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of run_detectors (best is reported)")
    args = parser.parse_args()

    url = create_database("sfp_bench")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            built = build(conn, args.records, args.changed)
            print(
                f"built {args.records:,} Opportunities + {args.changed:,} damaged versions "
                f"+ {max(args.records // 10, 1):,} Accounts in {built:.1f} s"
            )
            timings = []
            findings = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                findings = run_detectors(
                    conn,
                    "Opportunity",
                    WINDOW_START,
                    WINDOW_END,
                    user_names={INTEGRATION_USER: "Integration User"},
                )
                timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            volume = change_volume(conn, "Opportunity", WINDOW_END)
            chart_seconds = time.perf_counter() - started

            for finding in findings:
                print(
                    f"  {finding.severity:7} {finding.detector:15} {','.join(finding.fields) or '-':20} "
                    f"{finding.affected_count:>9,} records  share {finding.share or 0:.1%}  by {finding.user_id}"
                )
            nulling = [f for f in findings if f.detector == "mass_nulling" and f.fields == ("accountid",)]
            assert nulling and nulling[0].affected_count == args.changed, "the nulled AccountIds were not found"
            started = time.perf_counter()
            report = report_incident(conn, nulling[0], field_names={"accountid": "AccountId"})
            report.chart_png()
            report.to_markdown()
            report_seconds = time.perf_counter() - started
            print(
                f"run_detectors: best {min(timings):.2f} s of {len(timings)} "
                f"({', '.join(f'{t:.2f}' for t in timings)}) for {args.records:,} records, "
                f"{args.changed:,} changed in the window (target < 5 s)"
            )
            print(
                f"change_volume (24 h, {len(volume)} buckets): {chart_seconds:.2f} s; "
                f"incident report with chart: {report_seconds:.2f} s"
            )
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
