"""Benchmark devorg's bulk generator (and optionally a scenario) on a file-backed org in a temp dir,
as `sf-pipeline devorg serve --data DIR --generate SIZE` builds it.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_generator.py --size 1000000
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_generator.py --size 100000 --scenario orphan-opportunities
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_generator.py --size 1000000 --scenario business-day \
        --scenario mass-delete

Prints the seconds taken, records/s and the peak RSS of this process.
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1_000_000, help="number of Opportunities (default 1,000,000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=None, help="org directory (default: a temp dir, removed afterwards)")
    p.add_argument("--memory", action="store_true", help="in-memory SQLite instead of a file")
    p.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="then run this scenario and time it (repeatable: run in the order given)",
    )
    p.add_argument("--fraction", type=float, default=None, help="the scenario's fraction")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="devorg-bench-") as tmp:
        data_dir = None if args.memory else Path(args.data or tmp)
        org = Org(data_dir)
        org.set_clock(datetime.now(UTC), freeze=True)  # fixed instant: a reproducible org
        t0 = time.perf_counter()
        counts = generate_org(org, args.size, args.seed)
        seconds = time.perf_counter() - t0
        total = sum(counts.values())
        print(f"generate_org(size={args.size:,}, seed={args.seed}) -> {'memory' if data_dir is None else data_dir}")
        for name, n in counts.items():
            print(f"  {name:<24} {n:>10,}")
        print(f"  {'total':<24} {total:>10,}")
        print(f"seconds: {seconds:.2f}   records/s: {total / seconds:,.0f}   peak RSS: {peak_rss_mb():,.0f} MB")
        if data_dir is not None:
            size_mb = sum(f.stat().st_size for f in data_dir.iterdir() if f.is_file()) / 2**20
            print(f"database files: {size_mb:,.0f} MB")
        for name in args.scenario:
            from sf_pipeline.devorg.scenarios import run_scenario

            t0 = time.perf_counter()
            result = run_scenario(org, name, fraction=None if name == "business-day" else args.fraction)
            seconds = time.perf_counter() - t0
            changed = sum(len(v) for v in result.changed.values())
            print(
                f"scenario {name}: {changed:,} records changed in {seconds:.2f} s "
                f"({changed / seconds if seconds else 0:,.0f} records/s, "
                f"{seconds / changed * 1e6 if changed else 0:,.0f} us/record)   peak RSS: {peak_rss_mb():,.0f} MB"
            )
        org.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
