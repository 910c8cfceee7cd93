"""Benchmark the backup code path end to end against a devorg running in a separate process.

The path measured is the one `salesforce/<Object>` runs (sf_pipeline/backup/assets.py):
`SalesforceClient` -> `describe` -> `backup_fields` -> `ensure_mirror_table` -> `extract_window` ->
`load_window`, into a fresh PostgreSQL database, then `run_snapshot` (dbt) for the history.

Parts (each can be skipped with --skip):
  full       all Opportunities (1,000,000 by default) as one window: records/s, wall seconds, peak RSS of
             this process (ru_maxrss, must stay < 500 MB) and devorg's (VmHWM), CPU seconds per process;
  breakdown  the same window again, extraction alone (pages drained into files) and load
             alone (from that file into another fresh database), to see where the time goes;
  compare    the code users write by hand (simple-salesforce query_all -> pandas.DataFrame -> to_sql)
             on a SystemModstamp window of ~--subset records, and our path on exactly that window;
  unchanged  a window of the big object in which nothing changed: API calls (describe + COUNT) and seconds;
  history    initial `dbt snapshot` of everything loaded by `full`, then --changes Opportunities updated
             in devorg (sObject Collections PATCH, 200 a call), their window extracted + loaded and
             snapshotted, against an empty-window snapshot as dbt's start-up baseline;
  org20      the Dagster `backup` job (build_definitions + execute_in_process) on a second, small devorg
             with 13 extra custom objects (20 backed-up objects), for a window in which nothing changed:
             API calls summed over the `salesforce/<Object>` materializations, and wall time.

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_backup.py                       # 1M, ~3 min
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_backup.py --data-dir /tmp/devorg-1m  # reuse the org

With --data-dir the big org is kept (and reused when it already has Opportunities: generating 1M takes
~35 s); `history` updates --changes x --repeat Opportunities in it each run. Everything else (databases,
dbt project copies, the small org) is temporary and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import requests

ROOT = Path(__file__).resolve().parents[2]
try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:  # run as a plain script from a checkout that is not pip-installed
    sys.path.insert(0, str(ROOT))

from sf_pipeline.devorg.clock import parse_datetime  # noqa: E402
from sf_pipeline.salesforce.client import SalesforceClient  # noqa: E402
from sf_pipeline.salesforce.connection import OrgCredentials, TrustingSession, connect  # noqa: E402
from sf_pipeline.salesforce.extract import (  # noqa: E402
    DEFAULT_BULK_THRESHOLD,
    ExtractStats,
    extract_window,
    window_filter,
    window_soql,
)
from sf_pipeline.warehouse import (  # noqa: E402
    backup_fields,
    ensure_mirror_table,
    load_window,
    run_snapshot,
)
from sf_pipeline.warehouse import load as load_module  # noqa: E402
from sf_pipeline.warehouse.csvpage import CsvPage  # noqa: E402
from sf_pipeline_tests.benchmarks.org_fixtures import control, dbt_project, stop_process  # noqa: E402
from sf_pipeline_tests.pg_fixtures import create_database, drop_database  # noqa: E402

PARTS = ("full", "breakdown", "compare", "unchanged", "history", "org20")
STANDARD_OBJECTS = [
    "Account",
    "Contact",
    "Opportunity",
    "Lead",
    "Case",
    "OpportunityContactRole",
    "Invoice__c",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ====================================================================== measuring
def peak_rss_mb() -> float:
    """ru_maxrss of this process (KiB on Linux), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(pid: int | str, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss(pid: int | str) -> bool:
    """Reset VmHWM of a process we own (Linux >= 4.0: `echo 5 > /proc/PID/clear_refs`)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def proc_cpu_seconds(pid: int | None) -> float:
    """user + system CPU seconds of a process, all its threads (0 when it cannot be read)."""
    if pid is None:
        return 0.0
    if pid == os.getpid():
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """CPU seconds spent by named processes between start() and stop()."""

    def __init__(self, **pids: int | None):
        self.pids = dict(pids)
        self.before: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def add(self, name: str, pid: int | None) -> None:
        self.pids[name] = pid
        self.before[name] = proc_cpu_seconds(pid)

    def start(self) -> CpuMeter:
        self.before = {n: proc_cpu_seconds(p) for n, p in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.spent = {n: proc_cpu_seconds(p) - self.before.get(n, 0.0) for n, p in self.pids.items()}
        return self.spent

    def describe(self, wall: float) -> str:
        parts = [f"{n} {s:,.1f} s ({s / wall:.0%})" for n, s in self.spent.items()]
        return "CPU: " + ", ".join(parts) + f" of {wall:,.1f} s wall (2 cores = 200%)"


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MB"


# ====================================================================== devorg in its own process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevOrgProcess:
    """`sf-pipeline devorg serve` in a subprocess; its export lines parsed into `env`."""

    def __init__(self, data_dir: Path, generate: int, log_path: Path, custom_objects: Path | None = None):
        self.data_dir = data_dir
        self.generate = generate
        self.log_path = log_path
        self.custom_objects = custom_objects
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.control_url = ""
        self.control_token = ""
        self.generation_peak_mb: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 900) -> DevOrgProcess:
        exe = Path(sys.executable).with_name("sf-pipeline")
        command = [
            str(exe) if exe.exists() else "sf-pipeline",
            "devorg",
            "serve",
            "--data",
            str(self.data_dir),
            "--generate",
            str(self.generate),
            "--port",
            str(self.port),
        ]
        if self.custom_objects:
            command += ["--custom-objects", str(self.custom_objects)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        assert self.proc.stdout is not None
        while not (self.control_url and self.control_token):
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(timeout=10)
                raise SystemExit(
                    f"devorg exited ({self.proc.returncode}) before printing its export lines; see {self.log_path}"
                )
            match = re.match(r"export (\w+)=(.*)$", line.rstrip("\n"))
            if not match:
                continue
            key, value = match.groups()
            if key.startswith("SALESFORCE_"):
                self.env[key] = value
            elif key.endswith("_CONTROL_URL"):
                self.control_url = value
            elif key.endswith("_CONTROL_TOKEN"):
                self.control_token = value
        self.generation_peak_mb = proc_status_mb(self.proc.pid, "VmHWM")
        deadline = time.monotonic() + timeout
        while True:  # the export lines come before uvicorn listens
            try:
                self.control("clock", method="GET")
                return self
            except requests.RequestException:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"devorg did not start listening; see {self.log_path}") from None
                time.sleep(0.1)

    @property
    def ca_bundle(self) -> str:
        return next(v for k, v in self.env.items() if k.endswith("_CA_BUNDLE"))

    def control(self, action: str, body: dict | None = None, method: str = "POST") -> Any:
        return control(self.ca_bundle, self.control_url, self.control_token, action, body, method, timeout=600)

    def now(self) -> datetime:
        return parse_datetime(self.control("clock", method="GET")["now"])

    def credentials(self) -> OrgCredentials:
        return OrgCredentials.from_env("production", self.env)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None


# ====================================================================== helpers on the org (not counted)
def floor_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def count(sf, sobject: str, start: datetime, end: datetime) -> int:
    soql = f"SELECT COUNT() FROM {sobject} WHERE {window_filter(start, end)}"
    return int(sf.query(soql, include_deleted=True)["totalSize"])


def stamp_range(sf, sobject: str) -> tuple[datetime, datetime]:
    """Oldest and newest SystemModstamp of an object (deleted records included)."""
    out = []
    for order in ("ASC", "DESC"):
        rec = sf.query(
            f"SELECT SystemModstamp FROM {sobject} ORDER BY SystemModstamp {order} LIMIT 1",
            include_deleted=True,
        )["records"][0]
        out.append(parse_datetime(rec["SystemModstamp"]))
    return out[0], out[1]


def subset_end(sf, sobject: str, start: datetime, end: datetime, wanted: int) -> tuple[datetime, int]:
    """The smallest whole-second `x` with COUNT([start, x)) >= wanted, by bisection on seconds."""
    lo, hi = 1, int((end - start).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if count(sf, sobject, start, start + timedelta(seconds=mid)) >= wanted:
            hi = mid
        else:
            lo = mid + 1
    x = start + timedelta(seconds=lo)
    return x, count(sf, sobject, start, x)


def empty_hour(
    sf, objects: list[str], now: datetime, not_before: datetime | None = None, max_hours: int = 24 * 14
) -> tuple[datetime, datetime]:
    """The latest complete hour before `now` in which none of `objects` has a SystemModstamp."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for _ in range(max_hours):
        start = end - timedelta(hours=1)
        if not_before and start < not_before:
            break
        if all(count(sf, o, start, end) == 0 for o in objects):
            return start, end
        end = start
    raise SystemExit(f"no hour without changes to {objects} in the {max_hours} hours before {now}")


def quiet_window(ctx: dict) -> tuple[datetime, datetime]:
    """From the end of the full window (just after the newest SystemModstamp) to now: nothing changed in it.

    With 1,000,000 Opportunities spread over a year every hour holds changes, so the window "since the
    last run" is the unchanged one.
    """
    start = ctx["full_window"][1]
    while (end := floor_second(ctx["devorg"].now())) <= start:
        time.sleep(0.5)
    if count(ctx["sf"], "Opportunity", start, end):
        raise SystemExit(f"Opportunity changed in {start} .. {end}: something else is writing to the org")
    return start, end


# ====================================================================== our path
def our_backup(
    creds: OrgCredentials,
    db_url: str,
    sobject: str,
    start: datetime,
    end: datetime,
    cpu: CpuMeter | None = None,
) -> dict[str, Any]:
    """One window of one object exactly as `salesforce/<Object>` does it (login not timed)."""
    client = SalesforceClient(connect(creds), alias=creds.alias)
    if cpu:
        cpu.start()
    started = time.perf_counter()
    describe = client.describe(sobject)
    names = [f["name"] for f in backup_fields(describe["fields"])]
    stats = ExtractStats(sobject, start, end)
    with psycopg.connect(db_url) as conn:
        if cpu:
            cpu.add("postgres backend", conn.info.backend_pid)
        table = ensure_mirror_table(conn, sobject, describe["fields"])
        batches = extract_window(client, sobject, names, start, end, bulk_threshold=DEFAULT_BULK_THRESHOLD, stats=stats)
        result = load_window(conn, table, batches, start, end, unique_ids=True)  # as the asset does
        if cpu:
            cpu.stop()
    seconds = time.perf_counter() - started
    if result.extracted != stats.extracted:
        raise SystemExit(f"{sobject}: extracted {stats.extracted} records but loaded {result.extracted}")
    return {
        "seconds": seconds,
        "records": result.extracted,
        "expected": stats.expected,
        "mode": stats.mode,
        "api_calls": client.api_calls,
        "fields": len(names),
        "load": result,
        "stats": stats,
        "mb": (client.bytes_received + result.bytes) / 1e6,
    }


def extract_only(
    creds: OrgCredentials, sobject: str, start: datetime, end: datetime, ipc_path: Path, cpu: CpuMeter
) -> dict[str, Any]:
    """Drain `extract_window` without loading; pages go to files in `ipc_path` (time reported apart):
    Bulk CSV pages as received, REST batches as Arrow IPC."""
    client = SalesforceClient(connect(creds), alias=creds.alias)
    names = [f["name"] for f in backup_fields(client.describe(sobject)["fields"])]
    stats = ExtractStats(sobject, start, end)
    write_seconds = 0.0
    rows = 0
    ipc_path.mkdir(parents=True, exist_ok=True)
    cpu.start()
    started = time.perf_counter()
    for i, page in enumerate(
        extract_window(client, sobject, names, start, end, bulk_threshold=DEFAULT_BULK_THRESHOLD, stats=stats)
    ):
        t = time.perf_counter()
        if isinstance(page, CsvPage):
            (ipc_path / f"{i:06d}.{page.num_rows}.csv").write_bytes(page.data)
        else:
            with (
                pa.OSFile(str(ipc_path / f"{i:06d}.{page.num_rows}.arrow"), "wb") as sink,
                pa.ipc.new_stream(sink, page.schema) as writer,
            ):
                writer.write_batch(page)
        write_seconds += time.perf_counter() - t
        rows += page.num_rows
    seconds = time.perf_counter() - started
    cpu.stop()
    return {"seconds": seconds, "write_seconds": write_seconds, "records": rows}


def saved_pages(ipc_path: Path) -> Iterator[Any]:
    for path in sorted(ipc_path.iterdir()):
        n = int(path.suffixes[0][1:])
        if path.suffix == ".csv":
            yield CsvPage.parse(path.read_bytes(), n)
        else:
            with pa.OSFile(str(path), "rb") as source:
                yield from pa.ipc.open_stream(source)


def load_only(
    creds: OrgCredentials,
    db_url: str,
    sobject: str,
    start: datetime,
    end: datetime,
    ipc_path: Path,
    cpu: CpuMeter,
) -> dict[str, Any]:
    """`ensure_mirror_table` + `load_window` of the pages read back from `ipc_path` (fresh database)."""
    client = SalesforceClient(connect(creds), alias=creds.alias)
    describe = client.describe(sobject)
    copy_seconds = []

    def timed_copy(*a: Any, **kw: Any) -> Any:  # times the COPY; behaviour unchanged
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            copy_seconds.append(time.perf_counter() - t)

    original = load_module._copy_pages
    load_module._copy_pages = timed_copy
    try:
        cpu.start()
        started = time.perf_counter()
        with psycopg.connect(db_url) as conn:
            cpu.add("postgres backend", conn.info.backend_pid)
            table = ensure_mirror_table(conn, sobject, describe["fields"])
            result = load_window(conn, table, saved_pages(ipc_path), start, end, unique_ids=True)
            cpu.stop()
        seconds = time.perf_counter() - started
    finally:
        load_module._copy_pages = original
    return {
        "seconds": seconds,
        "records": result.extracted,
        "copy_seconds": sum(copy_seconds),
        "load_window_seconds": result.seconds,
    }


# ====================================================================== the hand-written path
def hand_written(creds: OrgCredentials, db_url: str, soql: str, table: str) -> dict[str, Any]:
    """simple-salesforce query_all -> pandas.DataFrame -> DataFrame.to_sql, as users write it."""
    import pandas as pd
    from simple_salesforce import Salesforce
    from sqlalchemy import create_engine

    sf = Salesforce(
        username=creds.username,
        password=creds.password,
        security_token=creds.security_token or "",
        domain=creds.login_domain(),
        session=TrustingSession(creds.ca_bundle),
    )
    engine = create_engine(re.sub(r"^postgresql://", "postgresql+psycopg2://", db_url))
    reset_peak_rss("self")
    try:
        t0 = time.perf_counter()
        records = sf.query_all(soql, include_deleted=True)["records"]
        t1 = time.perf_counter()
        df = pd.DataFrame(records).drop(columns=["attributes"])
        t2 = time.perf_counter()
        df.to_sql(table, engine, if_exists="append", index=False)
        t3 = time.perf_counter()
        rows = len(df)
        peak = proc_status_mb("self", "VmHWM")
        del df, records
    finally:
        engine.dispose()
    return {
        "seconds": t3 - t0,
        "query": t1 - t0,
        "dataframe": t2 - t1,
        "to_sql": t3 - t2,
        "records": rows,
        "peak_mb": peak,
    }


# ====================================================================== updating records in devorg
def update_records(creds: OrgCredentials, ids: list[str], tag: str, chunk: int = 200) -> float:
    """PATCH composite/sobjects, `chunk` records a call; returns seconds. Raises on any failure."""
    sf = connect(creds)
    started = time.perf_counter()
    for i in range(0, len(ids), chunk):
        records = [
            {"attributes": {"type": "Opportunity"}, "id": rid, "NextStep": f"{tag} #{i + j}"}
            for j, rid in enumerate(ids[i : i + chunk])
        ]
        result = sf.restful(
            "composite/sobjects", method="PATCH", data=json.dumps({"allOrNone": True, "records": records})
        )
        failed = [r for r in result if not r.get("success")]
        if failed:
            raise SystemExit(f"update failed: {failed[:3]}")
    return time.perf_counter() - started


# ====================================================================== parts
def part_full(ctx: dict, out: dict) -> None:
    creds, devorg = ctx["creds"], ctx["devorg"]
    start, end = ctx["full_window"]
    print(
        f"\n== 1. full extract + load: Opportunity {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} "
        f"({ctx['full_expected']:,} records)"
    )
    ctx["db_full"] = db = ctx["new_db"]()
    rss_before = peak_rss_mb()
    reset_peak_rss(devorg.pid)
    cpu = CpuMeter(benchmark=os.getpid(), devorg=devorg.pid)
    r = our_backup(creds, db, "Opportunity", start, end, cpu=cpu)
    rss = peak_rss_mb()
    devorg_peak = proc_status_mb(devorg.pid, "VmHWM")
    rate = r["records"] / r["seconds"]
    print(
        f"ours: {r['records']:,} records ({r['fields']} fields, {r['mode']}, {r['api_calls']} API calls, "
        f"{r['mb']:,.0f} MB CSV received + copied) in {r['seconds']:,.1f} s -> {rate:,.0f} records/s "
        f"[target >= 50,000: {'met' if rate >= 50_000 else 'MISSED'}]"
    )
    after = r["load"].seconds - r["stats"].seconds
    print(
        f"  extract_window ran {r['stats'].seconds:,.1f} s ({r['stats'].bulk_jobs} Bulk jobs, overlapping the "
        f"COPY), load_window {r['load'].seconds:,.1f} s, of which ~{after:,.1f} s after the last page (first "
        f"load: key + index build; else: INSERT ... SELECT from staging; then commit); "
        f"into_empty_table={r['load'].into_empty_table}"
    )
    print(f"  {cpu.describe(r['seconds'])}")
    print(
        f"  peak RSS of this process {rss:,.0f} MB (before the run {rss_before:,.0f} MB) "
        f"[target < 500 MB: {'met' if rss < 500 else 'MISSED'}]; devorg peak while serving "
        f"{fmt_mb(devorg_peak)} (at start-up {fmt_mb(devorg.generation_peak_mb)})"
    )
    if r["records"] != ctx["full_expected"]:
        print(f"  !! expected {ctx['full_expected']:,} records")
    out["full"] = {
        "records": r["records"],
        "seconds": r["seconds"],
        "rate": rate,
        "rss_mb": rss,
        "extract_window_seconds": r["stats"].seconds,
        "load_window_seconds": r["load"].seconds,
        "after_last_batch_seconds": after,
        "devorg_peak_mb": devorg_peak,
        "cpu": cpu.spent,
        "api_calls": r["api_calls"],
    }


def part_breakdown(ctx: dict, out: dict) -> None:
    creds, devorg = ctx["creds"], ctx["devorg"]
    start, end = ctx["full_window"]
    print("\n== 1b. where the time goes: extraction alone, load alone (same window)")
    ipc = ctx["tmp"] / "opportunity-pages"
    cpu = CpuMeter(benchmark=os.getpid(), devorg=devorg.pid)
    e = extract_only(creds, "Opportunity", start, end, ipc, cpu)
    print(
        f"extraction alone: {e['records']:,} records in {e['seconds']:,.1f} s -> "
        f"{e['records'] / e['seconds']:,.0f} records/s (of which {e['write_seconds']:,.1f} s writing the page "
        f"files, {sum(f.stat().st_size for f in ipc.iterdir()) / 1e6:,.0f} MB); {cpu.describe(e['seconds'])}"
    )
    db = ctx["new_db"]()
    cpu = CpuMeter(benchmark=os.getpid())
    try:
        ld = load_only(creds, db, "Opportunity", start, end, ipc, cpu)
    finally:
        ctx["drop_db"](db)
        shutil.rmtree(ipc, ignore_errors=True)
    rest = ld["load_window_seconds"] - ld["copy_seconds"]
    print(
        f"load alone (from the saved pages): {ld['records']:,} records in {ld['seconds']:,.1f} s -> "
        f"{ld['records'] / ld['seconds']:,.0f} records/s; {cpu.describe(ld['seconds'])}"
    )
    print(
        f"  of which COPY into the (empty, unindexed) mirror {ld['copy_seconds']:,.1f} s "
        f"({ld['records'] / ld['copy_seconds']:,.0f} records/s), then primary key + index + tally + commit "
        f"{rest:,.1f} s"
    )
    out["breakdown"] = {
        "extract_seconds": e["seconds"],
        "extract_rate": e["records"] / e["seconds"],
        "ipc_write_seconds": e["write_seconds"],
        "load_seconds": ld["seconds"],
        "load_rate": ld["records"] / ld["seconds"],
        "load_copy_seconds": ld["copy_seconds"],
        "load_insert_seconds": rest,
    }


def part_compare(ctx: dict, out: dict, wanted: int) -> None:
    creds, sf = ctx["creds"], ctx["sf"]
    start = ctx["full_window"][0]
    end, n = subset_end(sf, "Opportunity", start, ctx["full_window"][1], wanted)
    print(
        f"\n== 2. hand-written path vs ours: Opportunity {start:%Y-%m-%d %H:%M:%S} .. {end:%Y-%m-%d %H:%M:%S} "
        f"({n:,} records)"
    )
    db = ctx["new_db"]()
    try:
        ours = our_backup(creds, db, "Opportunity", start, end)
        ours_rate = ours["records"] / ours["seconds"]
        print(
            f"ours:   {ours['records']:,} records ({ours['mode']}, {ours['api_calls']} API calls) in "
            f"{ours['seconds']:,.1f} s -> {ours_rate:,.0f} records/s"
        )
        names = [f["name"] for f in backup_fields(SalesforceClient(connect(creds)).describe("Opportunity")["fields"])]
        theirs = hand_written(creds, db, window_soql("Opportunity", names, start, end), "opportunity_pandas")
    finally:
        ctx["drop_db"](db)
    theirs_rate = theirs["records"] / theirs["seconds"]
    ratio = ours_rate / theirs_rate
    print(
        f"theirs: {theirs['records']:,} records in {theirs['seconds']:,.1f} s -> {theirs_rate:,.0f} records/s "
        f"(query_all {theirs['query']:,.1f} s = {theirs['records'] / theirs['query']:,.0f}/s, DataFrame "
        f"{theirs['dataframe']:,.1f} s, to_sql {theirs['to_sql']:,.1f} s = "
        f"{theirs['records'] / theirs['to_sql']:,.0f}/s); its peak RSS {fmt_mb(theirs['peak_mb'])}"
    )
    print(f"ratio ours/theirs: {ratio:,.1f}x [target >= 10x: {'met' if ratio >= 10 else 'MISSED'}]")
    if theirs["records"] != ours["records"]:
        print(f"  !! record counts differ: ours {ours['records']:,}, theirs {theirs['records']:,}")
    out["compare"] = {
        "records": n,
        "ours_rate": ours_rate,
        "ours_seconds": ours["seconds"],
        "theirs_rate": theirs_rate,
        "theirs_seconds": theirs["seconds"],
        "theirs_query_s": theirs["query"],
        "theirs_df_s": theirs["dataframe"],
        "theirs_to_sql_s": theirs["to_sql"],
        "ratio": ratio,
    }


def part_unchanged(ctx: dict, out: dict, repeat: int) -> None:
    creds = ctx["creds"]
    start, end = ctx["empty_window"] = quiet_window(ctx)
    print(
        f"\n== 3. unchanged window of the {ctx['full_expected']:,}-record Opportunity: "
        f"{start:%Y-%m-%d %H:%M:%S} .. {end:%H:%M:%S} (since the last change: nothing in it)"
    )
    seconds, calls = [], []
    for _ in range(repeat):
        r = our_backup(creds, ctx["db_full"], "Opportunity", start, end)
        seconds.append(r["seconds"])
        calls.append(r["api_calls"])
        assert r["records"] == 0, r
    print(
        f"ours: {max(calls)} API calls (runs: {calls}) [target <= 2: {'met' if max(calls) <= 2 else 'MISSED'}], "
        f"median {median(seconds):.3f} s (runs: {', '.join(f'{s:.3f}' for s in seconds)})"
    )
    out["unchanged"] = {"api_calls": max(calls), "seconds": median(seconds)}


def part_history(ctx: dict, out: dict, changes: int, repeat: int) -> None:
    creds, devorg = ctx["creds"], ctx["devorg"]
    db = ctx["db_full"]
    start, end = ctx["full_window"]
    project = dbt_project(ctx["tmp"] / "dbt_snapshots_history", ["Opportunity"])
    print(f"\n== 4. history: dbt snapshot of the full load, then of {changes:,} changes")
    t = time.perf_counter()
    first = run_snapshot(project, db, ["Opportunity"], start, end)
    initial = time.perf_counter() - t
    snap = first["snapshots"]["opportunity"]
    print(
        f"initial snapshot of {ctx['full_expected']:,} rows: {initial:,.1f} s (dbt: {snap['seconds']:,.1f} s in the "
        f"snapshot, rows_affected {snap['rows_affected']})"
    )
    empty = ctx.get("empty_window") or quiet_window(ctx)
    with psycopg.connect(db, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM salesforce.opportunity WHERE NOT isdeleted ORDER BY id DESC LIMIT %s",
                (changes * repeat,),
            )
        ]
    baseline, changed, loads = [], [], []
    for i in range(repeat):
        t = time.perf_counter()
        run_snapshot(project, db, ["Opportunity"], *empty)
        baseline.append(time.perf_counter() - t)

        time.sleep(1.1)  # the change window starts on a second no earlier update touched
        w_start = floor_second(devorg.now())
        update_seconds = update_records(creds, ids[i * changes : (i + 1) * changes], f"bench {w_start:%H%M%S}")
        w_end = floor_second(devorg.now()) + timedelta(seconds=1)
        r = our_backup(creds, db, "Opportunity", w_start, w_end)
        loads.append(r["seconds"])
        t = time.perf_counter()
        res = run_snapshot(project, db, ["Opportunity"], w_start, w_end)
        changed.append(time.perf_counter() - t)
        snap = res["snapshots"]["opportunity"]
        print(
            f"round {i + 1}: updated {changes:,} in devorg in {update_seconds:.1f} s; extract+load of their "
            f"window {r['records']:,} records ({r['mode']}, {r['load'].updated} updated, {r['api_calls']} API "
            f"calls) {r['seconds']:.2f} s; snapshot {changed[-1]:.2f} s (dbt in-snapshot {snap['seconds']:.2f} s, "
            f"rows_affected {snap['rows_affected']}); empty-window snapshot {baseline[-1]:.2f} s"
        )
        if r["records"] != changes:
            print(f"  !! the window held {r['records']:,} records, expected {changes:,}")
    with psycopg.connect(db, autocommit=True) as conn:
        versions, closed = conn.execute(
            "SELECT count(*), count(dbt_valid_to) FROM salesforce_history.opportunity"
        ).fetchone()
    x, y = median(changed), median(baseline)
    print(
        f"snapshot of {changes:,} changes: {x:.2f} s, of which dbt start-up {y:.2f} s -> {x - y:.2f} s beyond "
        f"start-up [target < 3 s: {'met' if x - y < 3 else 'MISSED'}] (medians of {repeat}); history now holds "
        f"{versions:,} versions, {closed:,} closed"
    )
    out["history"] = {
        "initial_seconds": initial,
        "changes_seconds": x,
        "startup_seconds": y,
        "beyond": x - y,
        "changes_load_seconds": median(loads),
        "versions": versions,
        "closed": closed,
    }


CUSTOM_FIELDS = [
    {"name": "Amount__c", "type": "currency", "precision": 16, "scale": 2},
    {"name": "Status__c", "type": "picklist", "values": ["New", "Open", "Closed"]},
    {"name": "Note__c", "type": "string", "length": 255},
    {"name": "Due_Date__c", "type": "date"},
]


def part_org20(ctx: dict, out: dict, size: int, repeat: int) -> None:
    import yaml

    tmp: Path = ctx["tmp"]
    extra = [f"Bench{i:02d}__c" for i in range(1, 14)]
    objects = STANDARD_OBJECTS + extra
    custom = tmp / "bench_custom_objects.yaml"
    custom.write_text(
        yaml.safe_dump({"objects": {name: {"label": f"Bench {name[5:7]}", "fields": CUSTOM_FIELDS} for name in extra}})
    )
    print(f"\n== 5. Dagster backup job, unchanged {len(objects)}-object org (--generate {size:,})")
    small = DevOrgProcess(tmp / "devorg-small", size, tmp / "devorg-small.log", custom_objects=custom).start()
    ctx["stack"].callback(small.stop)
    creds = small.credentials()
    sf = connect(creds)
    settings_start = datetime(2026, 11, 20, tzinfo=UTC)
    start, end = empty_hour(sf, objects, small.now(), not_before=settings_start)
    key = f"{start:%Y-%m-%d-%H:%M}"
    db = ctx["new_db"]()
    project = dbt_project(tmp / "dbt_snapshots_org20")
    settings = tmp / "sf_pipeline_org20.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "orgs": {"production": {}},
                "backup": {
                    "org": "production",
                    "objects": objects,
                    "partitions": {"cron": "0 * * * *", "start": "2026-11-20T00:00:00Z"},
                    "schedule_lag_minutes": 10,
                    "bulk_threshold": DEFAULT_BULK_THRESHOLD,
                    "api_budget": {"max_share_of_daily_limit": 0.5},
                },
            }
        )
    )
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {"postgres": {"postgres_url": re.sub(r"^postgresql://", "postgresql+psycopg2://", db)}},
                "telemetry": {"enabled": False},
            }
        )
    )
    env = {
        **small.env,
        "SF_PIPELINE_DATABASE_URL": db,
        "SF_PIPELINE_DBT_PROJECT_DIR": str(project),
        "SF_PIPELINE_SETTINGS": str(settings),
        "DAGSTER_HOME": str(home),
    }
    quiet = tmp / "org20-dagster.log"  # Dagster's event log and dbt's output, not interesting here
    with patched_environ(env):
        t = time.perf_counter()
        with output_to(quiet):
            import dagster as dg

            from sf_pipeline.definitions import build_definitions

            defs = build_definitions(str(settings))
        job = defs.resolve_job_def("backup")
        build = time.perf_counter() - t
        instance = dg.DagsterInstance.from_config(str(home))
        runs = []
        try:
            for i in range(1 + repeat):
                t = time.perf_counter()
                with output_to(quiet):
                    result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
                wall = time.perf_counter() - t
                if not result.success:
                    raise SystemExit(
                        f"the backup run failed; see {quiet} (kept: {tmp})\n" + Path(quiet).read_text()[-3000:]
                    )
                calls, per_object, extracted = 0, {}, 0
                for event in result.get_asset_materialization_events():
                    path = event.asset_key.path
                    if path[0] == "salesforce":
                        meta = event.materialization.metadata
                        per_object[path[1]] = meta["api_calls"].value
                        calls += meta["api_calls"].value
                        extracted += meta["records_extracted"].value
                runs.append({"wall": wall, "api_calls": calls, "objects": len(per_object), "records": extracted})
                label = "cold (creates tables)" if i == 0 else f"warm {i}"
                print(
                    f"run {i + 1} {label}: {len(per_object)} salesforce/* materializations, {extracted} records, "
                    f"{calls} API calls ({min(per_object.values())}-{max(per_object.values())} per object), "
                    f"{wall:,.1f} s wall"
                )
        finally:
            instance.dispose()
            try:
                from dagster._core.storage.defs_state.base import _current_storage

                _current_storage.set(None)
            except ImportError:
                pass
    small.stop()
    warm = runs[1:] or runs
    print(
        f"partition {key}; definitions built in {build:,.1f} s (incl. dbt parse); API calls per unchanged run "
        f"of {len(objects)} objects: {warm[-1]['api_calls']} ({warm[-1]['api_calls'] / len(objects):.0f} per "
        f"object); wall median of warm runs {median([r['wall'] for r in warm]):,.1f} s, cold {runs[0]['wall']:,.1f} s"
    )
    out["org20"] = {
        "objects": len(objects),
        "api_calls": warm[-1]["api_calls"],
        "cold_wall": runs[0]["wall"],
        "warm_wall": median([r["wall"] for r in warm]),
        "build_seconds": build,
        "partition": key,
    }


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors, so subprocesses too) to a file for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ====================================================================== main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000, help="Opportunities in the big org (default 1M)")
    ap.add_argument("--data-dir", type=Path, help="keep/reuse the big org here (default: a temp dir)")
    ap.add_argument("--subset", type=int, default=100_000, help="records in the hand-written comparison window")
    ap.add_argument("--changes", type=int, default=1_000, help="Opportunities updated for the history part")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the short measurements (medians)")
    ap.add_argument("--small-records", type=int, default=1_000, help="--generate of the 20-object org")
    ap.add_argument("--skip", action="append", default=[], choices=PARTS)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    skip = set(args.skip)
    if "full" in skip:
        skip |= {"unchanged", "history"}  # both work on the full load's database

    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-backup-")))
        databases: list[str] = []

        def new_db() -> str:
            url = create_database("sfp_bench_backup")
            databases.append(url)
            return url

        def drop_db(url: str) -> None:
            drop_database(url)
            if url in databases:
                databases.remove(url)

        stack.callback(lambda: [drop_database(u) for u in list(databases)])
        ctx: dict[str, Any] = {"tmp": tmp, "stack": stack, "new_db": new_db, "drop_db": drop_db}

        if {"full", "breakdown", "compare", "unchanged", "history"} - skip:
            data_dir = args.data_dir or tmp / "devorg-big"
            t = time.perf_counter()
            devorg = DevOrgProcess(data_dir, args.records, tmp / "devorg-big.log").start()
            stack.callback(devorg.stop)
            creds = devorg.credentials()
            sf = connect(creds)
            first, last = stamp_range(sf, "Opportunity")
            window = (floor_second(first), floor_second(last) + timedelta(seconds=1))
            expected = count(sf, "Opportunity", *window)
            print(
                f"devorg ready in {time.perf_counter() - t:,.1f} s (pid {devorg.pid}, {devorg.control_url}, "
                f"data {data_dir}); {expected:,} Opportunities; {os.cpu_count()} cores; peak RSS of this "
                f"process so far {peak_rss_mb():,.0f} MB"
            )
            ctx.update(devorg=devorg, creds=creds, sf=sf, full_window=window, full_expected=expected)
            out["records"] = expected
            if "full" not in skip:
                print(f"\n[{load_average()}]", end="")
                part_full(ctx, out)
            if "breakdown" not in skip:
                print(f"\n[{load_average()}]", end="")
                part_breakdown(ctx, out)
            if "compare" not in skip:
                print(f"\n[{load_average()}]", end="")
                part_compare(ctx, out, args.subset)
            if "unchanged" not in skip:
                print(f"\n[{load_average()}]", end="")
                part_unchanged(ctx, out, args.repeat)
            if "history" not in skip:
                print(f"\n[{load_average()}]", end="")
                part_history(ctx, out, args.changes, args.repeat)
            devorg.stop()
        if "org20" not in skip:
            print(f"\n[{load_average()}]", end="")
            part_org20(ctx, out, args.small_records, args.repeat)

    print(f"\n== summary ({load_average()})")
    print(json.dumps(out, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
