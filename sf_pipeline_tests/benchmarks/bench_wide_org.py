"""Benchmark a wide devorg org: hundreds of sObjects, millions of records and thousands of files, generated
on a file-backed org in a temp dir, as `sf-pipeline devorg serve --data DIR --generate SIZE --extra-objects N
--files F` builds it.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_wide_org.py                 # 2,000,000 records, 10,000 files
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_wide_org.py --records 200000 --files 1000   # smoke

Prints the objects (total, replicateable, custom), the records per kind of object, the files and their bytes
on disk, the seconds taken by each phase and in total, and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

try:
    import sf_pipeline.devorg  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sf_pipeline.devorg.generator import generate_org  # noqa: E402
from sf_pipeline.devorg.org import Org  # noqa: E402
from sf_pipeline.devorg.store import q  # noqa: E402
from sf_pipeline.devorg.wide_generator import generate_wide  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=2_000_000, help="records in the whole org (default 2,000,000)")
    p.add_argument(
        "--opportunities",
        type=int,
        default=200_000,
        help="size given to generate_org for the standard objects (default 200,000 Opportunities)",
    )
    p.add_argument("--extra-objects", type=int, default=100, help="generated custom objects (default 100)")
    p.add_argument("--files", type=int, default=10_000, help="files (ContentVersion) to attach (default 10,000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=None, help="org directory (default: a temp dir, removed afterwards)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="devorg-wide-bench-") as tmp:
        data_dir = Path(args.data or tmp)
        t0 = time.perf_counter()
        org = Org(data_dir, extra_objects=args.extra_objects)
        org.set_clock(datetime.now(UTC), freeze=True)
        t_schema = time.perf_counter() - t0
        t1 = time.perf_counter()
        standard = generate_org(org, args.opportunities, args.seed)
        t_standard = time.perf_counter() - t1
        t2 = time.perf_counter()
        wide = generate_wide(org, max(0, args.records - sum(standard.values())), args.files, args.seed)
        t_wide = time.perf_counter() - t2
        total_s = time.perf_counter() - t0

        objects = list(org.schema.objects.values())
        flags = [o.global_entry("59.0") for o in objects]
        replicateable = sum(1 for f in flags if f["replicateable"])
        custom = [o for o in objects if o.custom]
        custom_c = [o for o in custom if o.name.endswith("__c")]
        with org.store.lock:
            per_object = {
                o.name: org.store.conn.execute(f"SELECT count(*) FROM {q(o.name)}").fetchone()[0] for o in objects
            }
        records = sum(per_object.values())
        filled = sum(1 for n in per_object.values() if n)
        blob_dir = data_dir / "blobs"
        blob_files = [f for f in blob_dir.rglob("*") if f.is_file()] if blob_dir.exists() else []
        blob_bytes = sum(f.stat().st_size for f in blob_files)
        kinds = {
            "standard (generate_org)": sum(standard.values()),
            "generated custom __c": sum(per_object[o.name] for o in custom_c),
            "__History/__Share/__Feed": sum(per_object[o.name] for o in custom if not o.name.endswith("__c")),
            "Task/Event": per_object.get("Task", 0) + per_object.get("Event", 0),
            "ContentVersion/Document/Link": sum(
                per_object.get(n, 0) for n in ("ContentVersion", "ContentDocument", "ContentDocumentLink")
            ),
        }
        print(f"wide org -> {data_dir}")
        print(
            f"  sObjects: {len(objects)} ({replicateable} replicateable, {len(custom)} custom of which "
            f"{len(custom_c)} __c objects; {filled} hold records)"
        )
        print(f"  records: {records:,}")
        for kind, n in kinds.items():
            print(f"    {kind}: {n:,}")
        print(
            f"  files: {per_object.get('ContentVersion', 0):,} ContentVersions, {len(blob_files):,} blob files, "
            f"{blob_bytes / 1e6:,.1f} MB on disk"
        )
        print(
            f"  seconds: schema {t_schema:.1f}, standard objects {t_standard:.1f}, wide objects and files "
            f"{t_wide:.1f}, total {total_s:.1f} ({records / total_s:,.0f} records/s)"
        )
        print(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        del wide
        org.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
