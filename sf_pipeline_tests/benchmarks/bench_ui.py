"""Benchmark the Dagster UI on a wide org with a year of 15-minute windows (issue 14): code location load time in a
real `dagster-webserver`, and the time until the asset graph and a `history/<Object>` asset's partitions page are
rendered in headless Chromium (Playwright, as the browser tests).

The org: devorg's standard catalog and `--extra-objects` generated custom objects (`objects: all`, the same
excludes as bench_discovery), discovered into the state file; partitions `*/15 * * * *` from a year ago
(35,040 windows). The Dagster instance keeps its runs and events in PostgreSQL. Materialized partitions: the
newest window of a few objects backed up for real (Dagster, dbt, the warehouse), and the history asset of
`--object` materialized in every window of the year but a few holes (events stored in batches, as the backup's
materializations look: same metadata), so its partitions page shows a year of health. Then the partition
status sensor ticks, as the daemon would run it after such a backfill (`--cold-status`: not, as before it
existed, and the first page to ask builds the status).

Each GraphQL request the pages sent on their first load is sent again alone (`--replays` times) to time the
server per operation. `--compare-with /work/main` starts a second webserver on the same instance with that
checkout's code and takes every figure for both, alternating, with their ratios (CPU-bound figures on a loaded
machine compare as ratios taken side by side, not as absolute seconds).

    .venv/bin/python sf_pipeline_tests/benchmarks/bench_ui.py                     # 100 extra objects, a year
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_ui.py --extra-objects 10 --days 30 --repeat 1
    .venv/bin/python sf_pipeline_tests/benchmarks/bench_ui.py --compare-with /work/main --graphql-dump /tmp/gql.json

Needs PostgreSQL at 127.0.0.1:5432 and Chromium (scripts/ensure-chromium.sh). Prints each figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

try:
    import sf_pipeline  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402

KEY = "%Y-%m-%d-%H:%M"
TARGET_S = 5.0
EXCLUDE = ["*Share", "*Feed", "*ChangeEvent"]


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_settings(path: Path, start: datetime, include: list[str] | None) -> Path:
    backup: dict = {
        "org": "production",
        "objects": "all",
        "exclude": EXCLUDE,
        "partitions": {"cron": "*/15 * * * *", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "schedule_lag_minutes": 10,
    }
    if include:
        backup["include"] = include
    path.write_text(yaml.safe_dump({"orgs": {"production": {}}, "backup": backup}))
    return path


def store_year_of_materializations(instance, asset_key, keys: list[str], metadata: dict, batch: int = 2000) -> float:
    """Store one materialization per partition key, as the backup job's (runless events, written in batches)."""
    from dagster._core.definitions.events import AssetMaterialization
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    t = time.perf_counter()
    storage = instance.event_log_storage
    entries = []
    now = time.time()
    for i, key in enumerate(keys):
        mat = AssetMaterialization(asset_key=asset_key, partition=key, metadata=metadata)
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=RUNLESS_JOB_NAME,
            event_specific_data=StepMaterializationData(mat),
        )
        entries.append(
            EventLogEntry(
                error_info=None,
                level=logging.INFO,
                user_message="",
                run_id=RUNLESS_RUN_ID,
                timestamp=now - (len(keys) - i),
                dagster_event=event,
            )
        )
        if len(entries) >= batch:
            storage.store_event_batch(entries)
            entries = []
    if entries:
        storage.store_event_batch(entries)
    return time.perf_counter() - t


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def wait_for(condition, webserver, t0: float, timeout: float = 600) -> float:
    while time.perf_counter() - t0 < timeout:
        if condition():
            return time.perf_counter() - t0
        if webserver.process.poll() is not None:
            raise SystemExit(f"dagster-webserver exited:\n{webserver.log()[-5000:]}")
        time.sleep(0.1)
    raise SystemExit(f"dagster-webserver not up in {timeout} s")


def reload_location(url: str) -> float:
    """Seconds of a code location reload, as the UI's "Reload" button asks for it; fails unless it loads."""
    import urllib.request

    from sf_pipeline_tests.ui.conftest import LOCATION

    query = """mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) {
      __typename ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename
      ... on PythonError { message } } } ... on PythonError { message } } }"""
    body = json.dumps({"query": query, "variables": {"n": LOCATION}}).encode()
    request = urllib.request.Request(f"{url}/graphql", data=body, headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as resp:
        answer = json.load(resp)["data"]["reloadRepositoryLocation"]
    seconds = time.perf_counter() - t
    entry = answer.get("locationOrLoadError") or {}
    if answer["__typename"] != "WorkspaceLocationEntry" or entry.get("__typename") != "RepositoryLocation":
        raise SystemExit(f"the code location did not reload: {answer}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extra-objects", type=int, default=100, help="generated custom objects (default 100)")
    p.add_argument("--days", type=int, default=365, help="partitions start this many days ago (default 365)")
    p.add_argument("--object", default="Opportunity", help="the history asset whose partitions page is timed")
    p.add_argument("--include", action="append", default=None, help="backup.include pattern (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="page loads timed per page (default 3)")
    p.add_argument("--reloads", type=int, default=2, help="code location reloads timed (default 2)")
    p.add_argument("--screenshots", type=Path, default=None, help="save a screenshot of each page here")
    p.add_argument(
        "--cold-status",
        action="store_true",
        help="leave the partition status cache cold after the year is stored (no tick of the partition status "
        "sensor, as before it existed): the first partitions page builds it",
    )
    p.add_argument(
        "--compare-with",
        type=Path,
        default=None,
        help="another checkout (e.g. /work/main): a second webserver loads its sf_pipeline on the same instance; "
        "every figure is taken for both, alternating, side by side",
    )
    p.add_argument(
        "--replays",
        type=int,
        default=3,
        help="each GraphQL request the pages sent is sent again this many times, alone, to time the server (0: no)",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=0,
        help="keep the webservers and the org up this many seconds after the figures (to query or profile them)",
    )
    p.add_argument("--graphql-dump", type=Path, default=None, help="write the pages' GraphQL requests here (JSON)")
    args = p.parse_args(argv)

    import dagster as dg

    from sf_pipeline.backup.catalog_state import read_state, refresh_state_file, state_path
    from sf_pipeline.devorg.runner import DevOrgServer
    from sf_pipeline.settings import load_settings
    from sf_pipeline.warehouse.dbt_project import DBT_PROJECT_DIR
    from sf_pipeline_tests.pg_fixtures import create_database, drop_database
    from sf_pipeline_tests.pipeline_fixtures import dagster_home
    from sf_pipeline_tests.ui.conftest import CHROMIUM, REPO_ROOT, DagsterWebserver

    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh")
    print(f"[{datetime.now(UTC):%H:%M:%S} UTC, {load_average()}]", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        root = Path(tmp)
        server = DevOrgServer(root / "org", generate=200, extra_objects=args.extra_objects)
        db = create_database("sfp_bench_ui")
        webservers: dict[str, DagsterWebserver] = {}
        try:
            with server:
                now = server.org.clock.now().astimezone(UTC)
                newest = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0) - timedelta(minutes=15)
                start = newest.replace(hour=0, minute=0) - timedelta(days=args.days)
                os.environ.update(server.env("production"))
                os.environ["SF_PIPELINE_DATABASE_URL"] = db
                os.environ["SF_PIPELINE_STATE_DIR"] = str(root / "state")
                shutil.copytree(DBT_PROJECT_DIR, root / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
                os.environ["SF_PIPELINE_DBT_PROJECT_DIR"] = str(root / "dbt")
                settings_file = write_settings(root / "sf_pipeline.yaml", start, args.include)
                os.environ["SF_PIPELINE_SETTINGS"] = str(settings_file)
                os.environ["DAGSTER_HOME"] = str(dagster_home(root / "dagster_home", db))
                settings = load_settings(settings_file)
                t = time.perf_counter()
                refresh_state_file(settings)
                [catalog] = read_state(state_path(settings).read_text()).values()
                print(
                    f"discovery: {len(catalog.objects)} objects backed up, {len(catalog.skipped)} skipped "
                    f"({time.perf_counter() - t:.1f} s)",
                    flush=True,
                )

                from sf_pipeline.definitions import build_definitions

                t = time.perf_counter()
                defs = build_definitions(str(settings_file))  # parses the dbt project once, as a first deploy
                graph = defs.resolve_asset_graph()
                keys = graph.get_all_asset_keys()
                history_key = dg.AssetKey(["history", args.object])
                partitions_def = graph.get(history_key).partitions_def
                windows = partitions_def.get_partition_keys()
                print(
                    f"definitions (first build, dbt parse included): {time.perf_counter() - t:.1f} s; {len(keys)} "
                    f"assets; {len(windows):,} partitions ({windows[0]} .. {windows[-1]})",
                    flush=True,
                )

                # the newest window backed up for real for a few objects (their first window: the full load)
                instance = dg.DagsterInstance.get()
                real = ["Account", "Contact", args.object]
                selection = {
                    k for k in keys if len(k.path) == 2 and k.path[1] in real and k.path[0] in ("salesforce", "history")
                }
                job = defs.resolve_job_def("backup").get_subset(asset_selection=selection, asset_check_selection=set())
                t = time.perf_counter()
                first = windows[-1]
                result = job.execute_in_process(partition_key=first, instance=instance, raise_on_error=False)
                print(
                    f"real backup of {sorted(k.to_user_string() for k in selection)} for {first}: "
                    f"{'ok' if result.success else 'FAILED'} in {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
                [mat] = [
                    e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()
                    if e.asset_key == history_key
                ] or [None]
                metadata = dict(mat.metadata) if mat is not None else {}
                # the rest of the year, as a year of backups leaves it: every window but a hole every ~10 days
                year = [k for i, k in enumerate(windows[:-1]) if i % 1000 != 999]
                stored_s = store_year_of_materializations(instance, history_key, year, metadata)
                print(
                    f"stored {len(year):,} materializations of {history_key.to_user_string()} in {stored_s:.1f} s "
                    f"(metadata keys: {sorted(metadata)[:8]})",
                    flush=True,
                )
                warm_partition_status(instance, defs, history_key, partitions_def, args.cold_status)
                instance.dispose()

                # ------------------------------------------------------------- the webserver
                roots = {"this checkout": REPO_ROOT}
                if args.compare_with is not None:
                    roots = {"this checkout": REPO_ROOT, str(args.compare_with): args.compare_with.resolve()}
                print(f"[webserver{'s' if len(roots) > 1 else ''}; {load_average()}]", flush=True)
                for label, code_root in roots.items():
                    log = root / f"dagster-webserver-{len(webservers)}.log"
                    webservers[label] = DagsterWebserver(log, code_root=code_root)
                started = {}
                for label, webserver in webservers.items():  # one after the other: each start alone
                    t = time.perf_counter()
                    webserver.start()
                    up_s = wait_for(lambda w=webserver: http_ok(f"{w.url}/server_info"), webserver, t)
                    webserver.wait_until_ready(timeout=600)
                    started[label] = (time.perf_counter() - t, up_s)
                reloads: dict[str, list[float]] = {label: [] for label in webservers}
                for _ in range(args.reloads):  # alternating, side by side
                    for label, webserver in webservers.items():
                        reloads[label].append(reload_location(webserver.url))
                for label in webservers:
                    start_s, up_s = started[label]
                    print(
                        f"[{label}] webserver start to the code location LOADED: {start_s:.1f} s (its HTTP server "
                        f"answered after {up_s:.1f} s); code location reload (GraphQL reloadRepositoryLocation, the "
                        "load alone): " + ", ".join(f"{r:.1f} s" for r in reloads[label]),
                        flush=True,
                    )
                urls = {label: w.url for label, w in webservers.items()}
                figures, requests = browse(urls, args, history_key, keys, len(year) + (mat is not None))
                if args.graphql_dump:
                    fields = ("webserver", "page", "body", "browser_seconds", "bytes")
                    args.graphql_dump.write_text(json.dumps([dict(zip(fields, r, strict=True)) for r in requests]))
                if args.replays:
                    replay_graphql(urls, requests, args.replays)
                print(f"\nsummary ({load_average()}):")
                for label in webservers:
                    print(
                        f"  [{label}] code location reload {min(reloads[label]):.1f} s (webserver start to LOADED "
                        f"{started[label][0]:.1f} s); "
                        + "; ".join(
                            f"{name} {min(v):.1f} s best / {max(v):.1f} s worst of {len(v)}"
                            + ("" if max(v) < TARGET_S else " (over 5 s)")
                            for name, v in figures[label].items()
                        )
                    )
                if len(webservers) == 2:
                    this, other = webservers
                    ratios = [f"code location reload {min(reloads[this]) / min(reloads[other]):.2f}"] + [
                        f"{name} {min(figures[this][name]) / min(figures[other][name]):.2f} (best), "
                        f"{sorted(figures[this][name])[len(v) // 2] / sorted(figures[other][name])[len(v) // 2]:.2f}"
                        " (median)"
                        for name, v in figures[this].items()
                    ]
                    print(f"  ratio this checkout / {other}: " + "; ".join(ratios))
                if args.hold:
                    print(
                        f"holding {args.hold:.0f} s: "
                        + ", ".join(f"[{lb}] {u}" for lb, u in urls.items())
                        + f"; DAGSTER_HOME={os.environ['DAGSTER_HOME']}",
                        flush=True,
                    )
                    time.sleep(args.hold)
        finally:
            for webserver in webservers.values():
                webserver.stop()
            drop_database(db)
    return 0


def warm_partition_status(instance, defs, history_key, partitions_def, cold: bool) -> None:
    """The partition status sensor's ticks after the year is stored, as the daemon runs them (unless `cold`);
    and Dagster's read of history's status once it is warm (what each page's queries pay then)."""
    import dagster as dg
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from sf_pipeline.backup.sensors import SENSOR_NAME

    if cold:
        print("partition status left cold (--cold-status): the first page that asks builds it", flush=True)
        return
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    t = time.perf_counter()
    for n in range(1, 100):
        message = sensor(dg.build_sensor_context(instance=instance)).skip_message
        print(f"partition status sensor, tick {n}: {message}", flush=True)
        if not message.startswith("refreshed"):
            break
    ticks_s = time.perf_counter() - t
    t = time.perf_counter()
    get_and_update_asset_status_cache_value(instance, history_key, partitions_def)
    print(
        f"partition status: the sensor's ticks {ticks_s:.1f} s in all; then {history_key.to_user_string()}'s "
        f"status read (Dagster's update, nothing left to do) {time.perf_counter() - t:.3f} s ({load_average()})",
        flush=True,
    )


def browse(
    urls: dict[str, str], args, history_key, keys, materialized: int
) -> tuple[dict[str, dict[str, list[float]]], list[tuple[str, str, str, float, int]]]:
    """Each page timed `args.repeat` times per webserver (alternating); and the GraphQL requests each page sent on
    its first load: (webserver, page, request body, seconds until the browser had the answer, answer bytes)."""
    from playwright.sync_api import sync_playwright

    from sf_pipeline_tests.ui.conftest import CHROMIUM

    history = history_key.to_user_string()
    figures = {label: {"asset graph": [], "history partitions page": []} for label in urls}
    requests: list[tuple[str, str, str, float, int]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        for attempt in range(args.repeat):
            for label, url in urls.items():
                # a new context each time: no cached Apollo state, but the HTTP cache of the JS bundle is per
                # context too
                context = browser.new_context(viewport={"width": 1600, "height": 1000}, timezone_id="UTC")
                context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
                page = context.new_page()
                page.add_locator_handler(
                    page.get_by_text("Join the Dagster community"),
                    lambda p=page: p.get_by_role("button", name="Skip").click(),
                )
                page.set_default_timeout(120_000)
                current = {"page": None}
                if attempt == 0:
                    page.on("requestfinished", lambda r, lb=label, c=current: record_graphql(r, lb, c, requests))
                try:
                    timed_pages(page, url, args, history, materialized, figures[label], attempt, current)
                except Exception:
                    if args.screenshots:
                        page.screenshot(path=args.screenshots / "ui-failure.png")
                    raise
                print(
                    f"load {attempt + 1} [{label}]: asset graph {figures[label]['asset graph'][-1]:.1f} s, {history} "
                    f"partitions page {figures[label]['history partitions page'][-1]:.1f} s ({load_average()})",
                    flush=True,
                )
                context.close()
        browser.close()
    return figures, requests


def record_graphql(request, label: str, current: dict, requests: list) -> None:
    """A finished GraphQL request of the page being timed (`current["page"]`), its body kept to replay it."""
    if current["page"] is None or not urlparse(request.url).path.endswith("/graphql") or request.method != "POST":
        return
    seconds = request.timing["responseEnd"] / 1000  # from the request's start, in ms
    try:
        size = request.sizes()["responseBodySize"]
    except Exception:  # noqa: BLE001 - a size is a nicety
        size = -1
    requests.append((label, current["page"], request.post_data or "", seconds, size))


def operation_name(body: str) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return "?"
    name = payload.get("operationName")
    if name:
        return name
    match = re.search(r"(query|mutation)\s+(\w+)", payload.get("query", ""))
    return match.group(2) if match else "?"


def replay_graphql(urls: dict[str, str], requests: list, replays: int) -> None:
    """Send each recorded GraphQL request again, alone, `replays` times per webserver (alternating): the server's
    time per operation, free of the browser and of the page's other requests (CPU-bound: compare as ratios)."""
    import urllib.request

    bodies = [
        (label, page, body)
        for label, page, body, _, _ in requests
        if body and not json.loads(body).get("query", "").lstrip().startswith("mutation")
    ]
    best: dict[tuple[str, str, str], list[float]] = {}
    sizes: dict[tuple[str, str, str], int] = {}
    for round_ in range(replays):
        for label, page, body in bodies:
            request = urllib.request.Request(
                f"{urls[label]}/graphql", data=body.encode(), headers={"Content-Type": "application/json"}
            )
            t = time.perf_counter()
            with urllib.request.urlopen(request, timeout=600) as resp:
                answer = resp.read()
            seconds = time.perf_counter() - t
            key = (label, page, operation_name(body))
            best.setdefault(key, []).append(seconds)
            if round_ == 0:
                sizes[key] = sizes.get(key, 0) + len(answer)
    # per webserver, page and operation: requests on the first load, the server's time summed over them
    # (the best of `replays` rounds), the bytes answered; the browser's wait for them as it saw it
    seen: dict[tuple[str, str, str], list[float]] = {}
    for label, page, body, seconds, _ in requests:
        seen.setdefault((label, page, operation_name(body)), []).append(seconds)
    print(f"\nGraphQL per operation of each page's first load ({load_average()}):", flush=True)
    labels = list(urls)
    header = "  page / operation".ljust(52) + "".join(f"| {lb[:24]:>24} server s (n, KB), browser s " for lb in labels)
    print(header + ("| ratio" if len(labels) == 2 else ""))
    ops = sorted(
        {(page, op) for _, page, op in best},
        key=lambda po: (po[0], -max(replay_total(best, (lb, *po), replays) for lb in labels)),
    )
    for page, op in ops:
        row = f"  {page} / {op}"[:51].ljust(52)
        totals = []
        for lb in labels:
            total = replay_total(best, (lb, page, op), replays)
            totals.append(total)
            n = len(seen.get((lb, page, op), []))
            row += f"| {total:8.3f} s ({n:2d}, {sizes.get((lb, page, op), 0) / 1024:7.0f} KB), "
            row += f"{max(seen.get((lb, page, op), [0])):6.2f} s max".ljust(14)
        if len(labels) == 2:
            row += f"| {totals[0] / totals[1]:.2f}" if totals[1] > 0 else "| -"
        print(row)
    for lb in labels:
        for page in sorted({p for _, p, _ in best}):
            total = sum(replay_total(best, (lb, page, op), replays) for p, op in ops if p == page)
            print(f"  [{lb}] {page}: {total:.2f} s of server time in all")


def replay_total(best: dict, key: tuple[str, str, str], replays: int) -> float:
    """The server time of one operation's requests of a page: their sum in the best of the rounds."""
    times = best.get(key, [])
    if not times:
        return 0.0
    per_round = len(times) // replays or 1
    return min(sum(times[i * per_round : (i + 1) * per_round]) for i in range(replays))


def timed_pages(
    page, url: str, args, history: str, materialized: int, figures: dict, attempt: int, current: dict
) -> None:
    # 1. the global asset graph: rendered when the nodes in view are drawn with their live partition status
    # ("N partitions" comes with the definitions, "x% filled" with each asset's partition health). The graph
    # draws only the nodes in view (a large graph is virtualized), so no particular asset is waited for.
    current["page"] = "asset graph"
    t = time.perf_counter()
    page.goto(f"{url}/asset-groups")
    page.get_by_text(re.compile(r"^[\d,]+ partitions$")).first.wait_for(state="visible")
    page.get_by_text(re.compile(r"^\d+% filled$")).first.wait_for(state="visible")
    figures["asset graph"].append(time.perf_counter() - t)
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.screenshots / f"ui-asset-graph-{attempt}.png")

    # 2. the history asset's partitions page: rendered when the health bar's counts are shown
    current["page"] = "partitions page"
    t = time.perf_counter()
    page.goto(f"{url}/assets/{history}?view=partitions")
    counts = page.get_by_text(re.compile(r"^Materialized \([\d,]+\)$")).first
    counts.wait_for(state="visible")
    figures["history partitions page"].append(time.perf_counter() - t)
    shown = counts.inner_text()
    assert shown == f"Materialized ({materialized:,})" or shown == f"Materialized ({materialized})", shown
    current["page"] = None
    if args.screenshots:
        page.screenshot(path=args.screenshots / f"ui-history-partitions-{attempt}.png")


if __name__ == "__main__":
    raise SystemExit(main())
