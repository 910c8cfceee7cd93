"""Benchmark devorg's SOQL execution: REST paging (run + more) and Bulk CSV row streaming.

Builds an in-memory org with N Opportunities (raw executemany inserts, 1,000 Accounts as parents)
and prints rows/s for each path.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_soql.py --rows 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sf_pipeline.devorg import ids  # noqa: E402
from sf_pipeline.devorg.clock import Clock, format_datetime  # noqa: E402
from sf_pipeline.devorg.query import QueryEngine  # noqa: E402
from sf_pipeline.devorg.schema import Schema  # noqa: E402
from sf_pipeline.devorg.standard_objects import STANDARD_OBJECTS  # noqa: E402
from sf_pipeline.devorg.store import STAGES, OrgStore, q  # noqa: E402

STAGE_NAMES = list(STAGES)


def build_org(n_opps: int, n_accounts: int = 1000) -> tuple[OrgStore, Schema]:
    schema = Schema(STANDARD_OBJECTS)
    schema.load_custom_objects(ROOT / "sf_pipeline/devorg/custom_objects.yaml")
    clock = Clock()
    clock.set(datetime(2026, 11, 24, 12, 0, tzinfo=UTC), freeze=True)
    store = OrgStore(schema, None, clock)
    user_id = ids.make_id("005", 1)
    store.insert(
        schema.get("User"),
        {
            "Username": "bench@example.com",
            "LastName": "Bench",
            "FirstName": "Ada",
            "Alias": "bench",
            "Email": "bench@example.com",
            "TimeZoneSidKey": "GMT",
            "LocaleSidKey": "en_US",
            "EmailEncodingKey": "UTF-8",
            "LanguageLocaleKey": "en_US",
        },
        user_id=user_id,
    )
    now = store.now()
    rnd = random.Random(42)

    acc = schema.get("Account")
    acc_ids = [ids.make_id("001", i + 1) for i in range(n_accounts)]
    acc_cols = [
        "Id",
        "IsDeleted",
        "Name",
        "Industry",
        "OwnerId",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
        "BillingCity",
    ]
    store.conn.executemany(
        f"INSERT INTO {q(acc.name)} ({', '.join(map(q, acc_cols))}) VALUES ({', '.join('?' * len(acc_cols))})",
        [
            (
                aid,
                0,
                f"Account {i}",
                rnd.choice(("Banking", "Retail", None)),
                user_id,
                now,
                user_id,
                now,
                user_id,
                now,
                "Paris",
            )
            for i, aid in enumerate(acc_ids)
        ],
    )
    store.reserve_ids(acc, n_accounts)

    opp = schema.get("Opportunity")
    cols = [
        "Id",
        "IsDeleted",
        "AccountId",
        "IsPrivate",
        "Name",
        "Description",
        "StageName",
        "Amount",
        "Probability",
        "ExpectedRevenue",
        "CloseDate",
        "Type",
        "LeadSource",
        "IsClosed",
        "IsWon",
        "ForecastCategory",
        "ForecastCategoryName",
        "HasOpportunityLineItem",
        "OwnerId",
        "FiscalQuarter",
        "FiscalYear",
        "Fiscal",
        "CreatedDate",
        "CreatedById",
        "LastModifiedDate",
        "LastModifiedById",
        "SystemModstamp",
    ]
    sql = f"INSERT INTO {q(opp.name)} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})"
    base = datetime(2024, 1, 1, tzinfo=UTC)
    batch = []
    with store.lock:
        store.conn.execute("BEGIN")
        for i in range(n_opps):
            stage = STAGE_NAMES[i % len(STAGE_NAMES)]
            prob, forecast, closed, won = STAGES[stage]
            amount = float(rnd.randrange(1000, 500000)) if i % 7 else None
            close = (base + timedelta(days=i % 900)).date().isoformat()
            ts = format_datetime(base + timedelta(seconds=i * 13))
            batch.append(
                (
                    ids.make_id("006", i + 1),
                    0,
                    acc_ids[i % n_accounts],
                    0,
                    f"Opportunity {i}",
                    "A description" if i % 3 == 0 else None,
                    stage,
                    amount,
                    float(prob),
                    None if amount is None else round(amount * prob / 100, 2),
                    close,
                    "New Customer",
                    "Web",
                    int(closed),
                    int(won),
                    forecast,
                    forecast,
                    0,
                    user_id,
                    (int(close[5:7]) - 1) // 3 + 1,
                    int(close[:4]),
                    f"{close[:4]} {(int(close[5:7]) - 1) // 3 + 1}",
                    ts,
                    user_id,
                    ts,
                    user_id,
                    ts,
                )
            )
            if len(batch) >= 50000:
                store.conn.executemany(sql, batch)
                batch.clear()
        if batch:
            store.conn.executemany(sql, batch)
        store.conn.execute("COMMIT")
    store.reserve_ids(opp, n_opps)
    return store, schema


REST_QUERY = (
    "SELECT Id, IsDeleted, AccountId, IsPrivate, Name, Description, StageName, Amount, Probability, "
    "ExpectedRevenue, CloseDate, Type, LeadSource, IsClosed, IsWon, ForecastCategory, ForecastCategoryName, "
    "OwnerId, FiscalQuarter, FiscalYear, Fiscal, CreatedDate, CreatedById, LastModifiedDate, LastModifiedById, "
    "SystemModstamp, Account.Name FROM Opportunity"
)


def bench_rest(engine: QueryEngine, query: str, serialize: bool) -> tuple[int, float, float]:
    import orjson

    t0 = time.perf_counter()
    c0 = time.process_time()
    page = engine.run(query, include_deleted=False, batch_size=2000)
    n = len(page["records"])
    if serialize:
        orjson.dumps(page)
    while not page["done"]:
        page = engine.more(page["nextRecordsUrl"].rsplit("/", 1)[1], "59.0")
        n += len(page["records"])
        if serialize:
            orjson.dumps(page)
    return n, time.perf_counter() - t0, time.process_time() - c0


def bench_csv(engine: QueryEngine, query: str, write: bool) -> tuple[int, float, float]:
    import csv
    import io

    t0 = time.perf_counter()
    c0 = time.process_time()
    header, rows = engine.iter_csv_rows(query, include_deleted=False)
    n = 0
    if write:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
            if n % 50000 == 0:
                buf.seek(0)
                buf.truncate()
    else:
        for _ in rows:
            n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200000)
    args = ap.parse_args()

    t0 = time.perf_counter()
    store, schema = build_org(args.rows)
    print(f"built org with {args.rows:,} Opportunities in {time.perf_counter() - t0:.1f}s")
    engine = QueryEngine(store, schema)

    print("(wall clock, and CPU time of this process: on a shared machine the CPU figure is the stable one)")

    def report(label: str, n: int, dt: float, cpu: float) -> None:
        print(f"{label:<56} {n:>9,} rows  wall {dt:6.2f}s {n / dt:>9,.0f}/s  cpu {cpu:6.2f}s {n / cpu:>9,.0f}/s")

    report("REST run+more, 27 fields + Account.Name", *bench_rest(engine, REST_QUERY, serialize=False))
    report("REST run+more, same + orjson.dumps of each page", *bench_rest(engine, REST_QUERY, serialize=True))
    report(
        "REST run+more, SELECT Id, Name, Amount",
        *bench_rest(engine, "SELECT Id, Name, Amount FROM Opportunity", serialize=False),
    )
    report("Bulk CSV rows, 27 fields + Account.Name", *bench_csv(engine, REST_QUERY, write=False))
    report("Bulk CSV rows, same + csv.writer", *bench_csv(engine, REST_QUERY, write=True))
    report(
        "Bulk CSV rows, WHERE Amount > 100000 ORDER BY CloseDate",
        *bench_csv(engine, REST_QUERY + " WHERE Amount > 100000 ORDER BY CloseDate", write=False),
    )


if __name__ == "__main__":
    main()
