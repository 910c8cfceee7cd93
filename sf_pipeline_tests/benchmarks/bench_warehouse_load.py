"""Benchmark `load_window`: N Opportunity-like rows (~30 columns) into an empty mirror, then the
same N rows again as updates (every row newer), into a throwaway database.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_warehouse_load.py --rows 1000000

Prints rows/s per phase (end to end, and without the time spent generating the batches) and the
peak RSS of this process, which must stay flat whatever --rows is (batches are streamed).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

try:
    import sf_pipeline.warehouse  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.warehouse import ensure_mirror_table, load_window  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

# A describe-like field list shaped like Opportunity (types as in Salesforce's describe).
FIELDS = [
    ("Id", "id"),
    ("IsDeleted", "boolean"),
    ("AccountId", "reference"),
    ("IsPrivate", "boolean"),
    ("Name", "string"),
    ("Description", "textarea"),
    ("StageName", "picklist"),
    ("Amount", "currency"),
    ("Probability", "percent"),
    ("ExpectedRevenue", "currency"),
    ("TotalOpportunityQuantity", "double"),
    ("CloseDate", "date"),
    ("Type", "picklist"),
    ("NextStep", "string"),
    ("LeadSource", "picklist"),
    ("IsClosed", "boolean"),
    ("IsWon", "boolean"),
    ("ForecastCategory", "picklist"),
    ("CampaignId", "reference"),
    ("Pricebook2Id", "reference"),
    ("OwnerId", "reference"),
    ("CreatedDate", "datetime"),
    ("CreatedById", "reference"),
    ("LastModifiedDate", "datetime"),
    ("LastModifiedById", "reference"),
    ("SystemModstamp", "datetime"),
    ("LastActivityDate", "date"),
    ("FiscalQuarter", "int"),
    ("FiscalYear", "int"),
    ("Fiscal", "string"),
]
DESCRIBE = [{"name": name, "type": kind, "nillable": name != "Id"} for name, kind in FIELDS]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def template(rows: int, typed: bool) -> dict[str, pa.Array]:
    """Column values shared by every batch (all but Id and SystemModstamp)."""
    rng = np.random.default_rng(7)

    def ids(prefix: str, n: int) -> pa.Array:
        numbers = pa.array(rng.integers(0, n, rows)).cast(pa.string())
        return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, 15, "0"), "")

    def choice(values: list[str]) -> pa.Array:
        return pa.array(np.array(values)[rng.integers(0, len(values), rows)])

    def booleans() -> pa.Array:
        flags = rng.integers(0, 2, rows).astype(bool)
        return pa.array(flags) if typed else pa.array(np.where(flags, "true", "false"))

    def numbers(scale: float, integer: bool = False) -> pa.Array:
        values = rng.random(rows) * scale
        array = pa.array(values.round(0).astype(np.int64) if integer else values.round(2))
        return array if typed else array.cast(pa.string())

    def timestamps(suffix: str) -> pa.Array:
        seconds = rng.integers(0, 86400 * 365, rows)
        stamps = pa.array(seconds + int(EPOCH.timestamp()), pa.timestamp("s"))
        text = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(text, suffix, "")

    datetime_suffix = ".000+0000" if typed else ".000Z"
    dates = pc.strftime(
        pa.array(rng.integers(0, 86400 * 365, rows) + int(EPOCH.timestamp()), pa.timestamp("s")),
        format="%Y-%m-%d",
    )
    words = "renewal expansion upsell cross-sell pilot enterprise tier migration service".split()
    description = pc.binary_join_element_wise(
        choice(words), choice(words), pa.scalar("deal: " + "lorem ipsum dolor sit amet " * 2), " "
    )
    return {
        "IsDeleted": booleans(),
        "AccountId": ids("001", 50_000),
        "IsPrivate": booleans(),
        "Name": pc.binary_join_element_wise(choice(words), ids("", 1_000_000), " "),
        "Description": description,
        "StageName": choice(["Prospecting", "Qualification", "Negotiation/Review", "Closed Won"]),
        "Amount": numbers(1_000_000),
        "Probability": numbers(100, integer=True),
        "ExpectedRevenue": numbers(500_000),
        "TotalOpportunityQuantity": numbers(1000),
        "CloseDate": dates,
        "Type": choice(["New Customer", "Existing Customer - Upgrade"]),
        "NextStep": choice(["call", "demo", "send quote", ""]),
        "LeadSource": choice(["Web", "Phone Inquiry", "Partner Referral"]),
        "IsClosed": booleans(),
        "IsWon": booleans(),
        "ForecastCategory": choice(["Pipeline", "Closed"]),
        "CampaignId": ids("701", 100),
        "Pricebook2Id": ids("01s", 3),
        "OwnerId": ids("005", 40),
        "CreatedDate": timestamps(datetime_suffix),
        "CreatedById": ids("005", 40),
        "LastModifiedDate": timestamps(datetime_suffix),
        "LastModifiedById": ids("005", 40),
        "LastActivityDate": dates,
        "FiscalQuarter": numbers(4, integer=True),
        "FiscalYear": numbers(2026, integer=True),
        "Fiscal": choice(["2026 1", "2026 2", "2026 3"]),
    }


def batches(
    total: int, batch_rows: int, typed: bool, stamp_base: datetime, timer: list[float]
) -> Iterator[pa.RecordBatch]:
    """Stream `total` rows; generation time is added to timer[0] so it can be subtracted."""
    started = time.perf_counter()
    shared = template(batch_rows, typed)
    suffix = ".000+0000" if typed else ".000Z"
    timer[0] += time.perf_counter() - started
    for offset in range(0, total, batch_rows):
        started = time.perf_counter()
        n = min(batch_rows, total - offset)
        numbers = pa.array(np.arange(offset, offset + n)).cast(pa.string())
        ids = pc.binary_join_element_wise("006", pc.utf8_lpad(numbers, 15, "0"), "")
        seconds = np.arange(offset, offset + n) % 86400
        stamp = pa.array(seconds + int(stamp_base.timestamp()), pa.timestamp("s"))
        stamps = pc.binary_join_element_wise(pc.strftime(stamp, format="%Y-%m-%dT%H:%M:%S"), suffix, "")
        columns = {"Id": ids, "SystemModstamp": stamps}
        columns.update({name: array.slice(0, n) for name, array in shared.items()})
        batch = pa.RecordBatch.from_pydict({name: columns[name] for name, _ in FIELDS})
        timer[0] += time.perf_counter() - started
        yield batch


def run_phase(conn: psycopg.Connection, table, label: str, args: argparse.Namespace, stamp_base: datetime) -> None:
    generation = [0.0]
    started = time.perf_counter()
    result = load_window(
        conn,
        table,
        batches(args.rows, args.batch_rows, args.typed, stamp_base, generation),
        stamp_base,
        stamp_base + timedelta(days=1),
    )
    elapsed = time.perf_counter() - started
    load_only = elapsed - generation[0]
    print(
        f"{label:<28} {result.extracted:>9,} rows  {elapsed:7.2f} s  {result.extracted / elapsed:>9,.0f} rows/s "
        f"end-to-end  {result.extracted / load_only:>9,.0f} rows/s without generation "
        f"({generation[0]:.2f} s)  inserted={result.inserted:,} updated={result.updated:,} "
        f"unchanged={result.unchanged:,} csv={result.bytes / 1e6:,.0f} MB  "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument(
        "--typed", action="store_true", help="typed Arrow values (REST JSON) instead of text (Bulk CSV)"
    )
    parser.add_argument("--skip-update", action="store_true", help="only measure the load into the empty table")
    args = parser.parse_args()

    print(f"peak RSS before loading {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    url = create_database("sfp_bench")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            table = ensure_mirror_table(conn, "Opportunity", DESCRIBE)
            run_phase(conn, table, "into empty mirror", args, EPOCH)
            if not args.skip_update:
                run_phase(conn, table, "update every row (upsert)", args, EPOCH + timedelta(days=1))
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
