"""Time `sf-pipeline demo` end to end (target: under 2 minutes for an org of 10,000 Opportunities).

Runs the real demo (two devorg orgs, PostgreSQL, Dagster, dbt) and prints the total, each step of its
timeline on the wall clock, and the ratio to the target. Runs --repeat times and reports the median.

    .venv/bin/python -m sf_pipeline_tests.benchmarks.bench_demo [--size 10000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from rich.console import Console

TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="Opportunities in the generated org")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    os.environ.pop("SF_PIPELINE_DATABASE_URL", None)  # the demo's own database on the local server

    from sf_pipeline.demo import run_demo

    totals = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-demo-") as data:
            began = time.monotonic()
            result, _ = run_demo(size=args.size, data_dir=data, console=Console(quiet=True))
            total = time.monotonic() - began
        totals.append(total)
        steps = ", ".join(f"{label.split(':')[0]} {seconds:.1f} s" for label, _, seconds in result.timeline)
        print(
            f"run {i + 1}: {total:.1f} s in all (org of {args.size:,} Opportunities); steps: {steps}; "
            f"setup and first backup: {total - sum(s for _, _, s in result.timeline):.1f} s"
        )
    median = statistics.median(totals)
    print(
        f"demo, {args.size:,} Opportunities: median {median:.1f} s over {len(totals)} run(s); "
        f"target {TARGET_SECONDS:.0f} s; ratio {median / TARGET_SECONDS:.2f} of the target"
    )


if __name__ == "__main__":
    main()
