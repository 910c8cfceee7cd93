"""Benchmark devorg's cascade delete: Accounts deleted one by one (as sObject Collections deletes them), each
taking its Contacts, Opportunities and contact roles with it and clearing the Invoices' lookups.

devorg generates `--size` Opportunities in memory (Accounts = size / 10); the Cases are deleted first (an Account
with Cases cannot be deleted), then `--accounts` Accounts are deleted 50 per transaction, as `bench_restore_tree.py`
deletes them over HTTPS (the HTTP layer is left out here: this is the store's own cost). Run it from two checkouts
at the same time to compare them:

    PYTHONPATH=. .venv/bin/python sf_pipeline_tests/benchmarks/bench_cascade_delete.py --size 20000 --accounts 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.devorg.generator import ensure_lookup_indexes, generate_org  # noqa: E402
from sf_pipeline.devorg.org import Org  # noqa: E402

CHUNK = 50


def run(size: int, accounts: int) -> None:
    org = Org()
    generate_org(org, size)
    store = org.store
    ensure_lookup_indexes(store)
    user = org.user("sales3").user_id
    case = org.schema.get("Case")
    for (cid,) in store.conn.execute('SELECT Id FROM "Case" WHERE IsDeleted = 0').fetchall():
        store.delete(case, cid, user)
    account = org.schema.get("Account")
    ids = [r[0] for r in store.conn.execute('SELECT Id FROM "Account" WHERE IsDeleted = 0 ORDER BY Id')][:accounts]
    records = sum(
        store.conn.execute(f'SELECT count(*) FROM "{o}" WHERE IsDeleted = 1').fetchone()[0]
        for o in ("Account", "Contact", "Opportunity", "OpportunityContactRole")
    )
    t = time.perf_counter()
    for i in range(0, len(ids), CHUNK):
        with store.transaction():
            for rid in ids[i : i + CHUNK]:
                store.delete(account, rid, user)
    wall = time.perf_counter() - t
    deleted = (
        sum(
            store.conn.execute(f'SELECT count(*) FROM "{o}" WHERE IsDeleted = 1').fetchone()[0]
            for o in ("Account", "Contact", "Opportunity", "OpportunityContactRole")
        )
        - records
    )
    cleared = store.conn.execute('SELECT count(*) FROM "Invoice__c" WHERE Account__c IS NULL').fetchone()[0]
    print(
        f"{len(ids):,} Accounts deleted with their cascade: {deleted:,} records in {wall:.1f} s = "
        f"{wall / deleted * 1e6:,.0f} µs a record ({cleared:,} invoices without an account)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20_000, help="generated Opportunities (Accounts = size / 10)")
    ap.add_argument("--accounts", type=int, default=1_000, help="Accounts to delete")
    args = ap.parse_args()
    run(args.size, args.accounts)


if __name__ == "__main__":
    main()
