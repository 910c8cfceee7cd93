"""Scale: the Dagster `backup` job on a 20-object org of 5,000,000 records, steps in parallel and one at a time.

The org: devorg's 7 generated objects (Account, Contact, Opportunity, Lead, Case, OpportunityContactRole,
Invoice__c; `generate_org` with --records / 5 Opportunities) and 13 more custom objects declared here
(19-27 fields each, lookups to Account, Opportunity, Case, Lead, Invoice__c or to each other) filled by
`generate_custom_records`, a few big objects and many small ones. devorg serves it in its own process.

The run: the first window of the `backup` job (the full load: every record of every object, then the
initial dbt snapshot) for all 20 objects, from `sf_pipeline.definitions.defs`, through `execute_job`
with the multiprocess executor (one process per step, as a deployed Dagster runs it) on a Dagster
instance with PostgreSQL storage, into a fresh warehouse database. Once per --concurrency value
(`max_concurrent` of the executor; default 2 = the cores here, then 1).

Measured per run:
  wall        from execute_job's call to its return;
  API calls   summed over the `salesforce/<Object>` materializations (`api_calls`), and devorg's own
              count of requests it served during the run;
  memory      sampled every --interval s: the largest sum of RSS over the run's processes (the run's
              own process, its step processes, dbt), the largest single process (VmHWM), devorg's
              VmHWM and the PostgreSQL backends' private memory (RSS minus shared);
  time split  phases from the event log (extract+load = the mirror steps, snapshots = the dbt step,
              start-up of the step processes); per step the time spent in Salesforce API calls
              (timed in the step processes by wrapping `SalesforceClient.call` from a sitecustomize
              put on the run's PYTHONPATH, the Bulk job's wait included) and the load's tail after the
              last page; CPU seconds per process kind (devorg = Salesforce, PostgreSQL backends of the
              warehouse = loading and snapshots, step processes, dbt, the run's own process), sampled.

    .venv/bin/python -m sf_pipeline_tests.benchmarks.bench_scale --data-dir /tmp/scale-org-5m  # 5M, keep the org
    .venv/bin/python -m sf_pipeline_tests.benchmarks.bench_scale --records 50000 --concurrency 2  # smoke test

Each run costs ~13 min here at 5M records (2 shared cores); generating the 5M org ~30 min on a loaded
machine. Even the smoke test takes minutes: each of the 21 step processes needs ~10 CPU s to start.

With --data-dir the generated org is kept and reused when it holds the same plan. Everything else
(databases, Dagster home, dbt project copy, the org without --data-dir) is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROBE_ENV = "SF_PIPELINE_BENCH_PROBE_DIR"
STANDARD = ["Account", "Contact", "Opportunity", "Lead", "Case", "OpportunityContactRole", "Invoice__c"]
PLAN_RECORDS = 5_000_000  # the weights below are record counts at this size

# ====================================================================== the 13 extra custom objects
# name: (records at 5M, label, key prefix, fields). Parents come before their children.
R = "reference"
EXTRA_OBJECTS: dict[str, tuple[int, str, str, list[dict[str, Any]]]] = {
    "Territory__c": (
        10_000,
        "Territory",
        "a1A",
        [
            {"name": "Territory_Code__c", "type": "string", "length": 20, "externalId": True},
            {"name": "Manager__c", "type": R, "referenceTo": "User", "relationshipName": "Manager__r"},
            {"name": "Region__c", "type": "picklist", "values": ["AMER", "EMEA", "APAC", "LATAM"]},
            {"name": "Country__c", "type": "string", "length": 80},
            {"name": "Quota__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Headcount__c", "type": "int"},
            {"name": "Is_Active__c", "type": "boolean"},
            {"name": "Segment__c", "type": "picklist", "values": ["Enterprise", "Mid-Market", "SMB"]},
            {"name": "Description__c", "type": "textarea", "length": 2000},
        ],
    ),
    "Product_Asset__c": (
        60_000,
        "Product Asset",
        "a1B",
        [
            {
                "name": "Account__c",
                "type": R,
                "referenceTo": "Account",
                "relationshipName": "Account__r",
                "required": True,
            },
            {"name": "Contact__c", "type": R, "referenceTo": "Contact", "relationshipName": "Contact__r"},
            {"name": "Serial_Number__c", "type": "string", "length": 40, "externalId": True},
            {"name": "Product_Name__c", "type": "string", "length": 120},
            {"name": "Status__c", "type": "picklist", "values": ["Installed", "Shipped", "Registered", "Obsolete"]},
            {"name": "Install_Date__c", "type": "date"},
            {"name": "Warranty_End_Date__c", "type": "date"},
            {"name": "Quantity__c", "type": "double", "precision": 12, "scale": 2},
            {"name": "Price__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Is_Competitor_Product__c", "type": "boolean"},
            {"name": "Location_City__c", "type": "string", "length": 80},
            {"name": "Notes__c", "type": "textarea", "length": 4000},
        ],
    ),
    "Subscription__c": (
        200_000,
        "Subscription",
        "a1C",
        [
            {
                "name": "Account__c",
                "type": R,
                "referenceTo": "Account",
                "relationshipName": "Account__r",
                "required": True,
            },
            {"name": "Opportunity__c", "type": R, "referenceTo": "Opportunity", "relationshipName": "Opportunity__r"},
            {
                "name": "Primary_Contact__c",
                "type": R,
                "referenceTo": "Contact",
                "relationshipName": "Primary_Contact__r",
            },
            {"name": "Contract_Number__c", "type": "string", "length": 30, "externalId": True},
            {"name": "Plan__c", "type": "picklist", "values": ["Starter", "Professional", "Enterprise", "Unlimited"]},
            {"name": "Seats__c", "type": "int"},
            {"name": "MRR__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Start_Date__c", "type": "date"},
            {"name": "End_Date__c", "type": "date"},
            {"name": "Renewal_Date__c", "type": "date"},
            {"name": "Auto_Renew__c", "type": "boolean"},
            {"name": "Status__c", "type": "picklist", "values": ["Active", "Trial", "Suspended", "Cancelled"]},
            {"name": "Billing_Frequency__c", "type": "picklist", "values": ["Monthly", "Quarterly", "Annual"]},
            {"name": "Discount__c", "type": "percent", "precision": 5, "scale": 2},
            {"name": "Usage_Tier__c", "type": "picklist", "values": ["Tier 1", "Tier 2", "Tier 3"]},
            {"name": "Notes__c", "type": "textarea", "length": 2000},
        ],
    ),
    "Order__c": (
        350_000,
        "Order",
        "a1D",
        [
            {
                "name": "Account__c",
                "type": R,
                "referenceTo": "Account",
                "relationshipName": "Account__r",
                "required": True,
            },
            {"name": "Opportunity__c", "type": R, "referenceTo": "Opportunity", "relationshipName": "Opportunity__r"},
            {"name": "Order_Number__c", "type": "string", "length": 30, "externalId": True},
            {"name": "Status__c", "type": "picklist", "values": ["Draft", "Activated", "Shipped", "Cancelled"]},
            {"name": "Total__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Order_Date__c", "type": "date"},
            {"name": "Due_Date__c", "type": "date"},
            {"name": "Discount__c", "type": "percent", "precision": 5, "scale": 2},
            {"name": "Line_Count__c", "type": "int"},
            {"name": "Is_Priority__c", "type": "boolean"},
            {"name": "Billing_Email__c", "type": "email"},
            {"name": "Phone__c", "type": "phone"},
            {"name": "Channels__c", "type": "multipicklist", "values": ["Web", "Phone", "Partner", "Store"]},
            {"name": "Approver__c", "type": R, "referenceTo": "User", "relationshipName": "Approver__r"},
            {"name": "Activated_At__c", "type": "datetime"},
            {"name": "Notes__c", "type": "textarea", "length": 1000},
        ],
    ),
    "Order_Line__c": (
        700_000,
        "Order Line",
        "a1E",
        [
            {
                "name": "Order__c",
                "type": R,
                "referenceTo": "Order__c",
                "relationshipName": "Order__r",
                "required": True,
                "cascadeDelete": True,
            },
            {"name": "Account__c", "type": R, "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Product_Name__c", "type": "string", "length": 120},
            {"name": "SKU_Code__c", "type": "string", "length": 20},
            {"name": "Quantity__c", "type": "double", "precision": 10, "scale": 0},
            {"name": "Unit_Price__c", "type": "currency", "precision": 14, "scale": 2},
            {"name": "Line_Amount__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Discount__c", "type": "percent", "precision": 5, "scale": 2},
            {"name": "Tax_Amount__c", "type": "currency", "precision": 14, "scale": 2},
            {"name": "Delivery_Date__c", "type": "date"},
            {"name": "Is_Taxable__c", "type": "boolean"},
            {"name": "Status__c", "type": "picklist", "values": ["Open", "Allocated", "Fulfilled", "Returned"]},
        ],
    ),
    "Shipment__c": (
        200_000,
        "Shipment",
        "a1F",
        [
            {
                "name": "Order__c",
                "type": R,
                "referenceTo": "Order__c",
                "relationshipName": "Order__r",
                "required": True,
            },
            {"name": "Account__c", "type": R, "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Carrier__c", "type": "picklist", "values": ["UPS", "FedEx", "DHL", "USPS", "Freight"]},
            {"name": "Tracking_Number__c", "type": "string", "length": 40},
            {"name": "Shipped_Date__c", "type": "date"},
            {"name": "Delivery_Date__c", "type": "date"},
            {"name": "Weight_Kg__c", "type": "double", "precision": 10, "scale": 2},
            {"name": "Cost__c", "type": "currency", "precision": 12, "scale": 2},
            {"name": "Status__c", "type": "picklist", "values": ["Pending", "In Transit", "Delivered", "Lost"]},
            {"name": "Destination_City__c", "type": "string", "length": 80},
            {"name": "Destination_Country__c", "type": "string", "length": 80},
            {"name": "Signed_By_Contact__c", "type": "string", "length": 80},
            {"name": "Is_Insured__c", "type": "boolean"},
            {"name": "Delivered_At__c", "type": "datetime"},
        ],
    ),
    "Payment__c": (
        300_000,
        "Payment",
        "a1G",
        [
            {
                "name": "Invoice__c",
                "type": R,
                "referenceTo": "Invoice__c",
                "relationshipName": "Invoice__r",
                "required": True,
            },
            {"name": "Account__c", "type": R, "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Amount__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Fee__c", "type": "currency", "precision": 10, "scale": 2},
            {"name": "Payment_Date__c", "type": "date"},
            {"name": "Method__c", "type": "picklist", "values": ["Card", "ACH", "Wire", "Check", "PayPal"]},
            {"name": "Reference_Number__c", "type": "string", "length": 40},
            {"name": "Status__c", "type": "picklist", "values": ["Pending", "Settled", "Failed", "Refunded"]},
            {"name": "Currency_Code__c", "type": "picklist", "values": ["USD", "EUR", "GBP", "JPY", "CAD"]},
            {"name": "Processed_At__c", "type": "datetime"},
            {"name": "Is_Refund__c", "type": "boolean"},
            {"name": "Notes__c", "type": "textarea", "length": 1000},
        ],
    ),
    "Usage_Event__c": (
        1_000_000,
        "Usage Event",
        "a1H",
        [
            {
                "name": "Subscription__c",
                "type": R,
                "referenceTo": "Subscription__c",
                "relationshipName": "Subscription__r",
                "required": True,
            },
            {"name": "Account__c", "type": R, "referenceTo": "Account", "relationshipName": "Account__r"},
            {
                "name": "Event_Type__c",
                "type": "picklist",
                "values": ["API Call", "Login", "Export", "Report Run", "Storage", "Sync"],
            },
            {"name": "Feature__c", "type": "picklist", "values": ["Core", "Analytics", "Integrations", "Mobile"]},
            {"name": "Quantity__c", "type": "double", "precision": 14, "scale": 2},
            {"name": "Duration_Seconds__c", "type": "int"},
            {"name": "Occurred_At__c", "type": "datetime"},
            {"name": "Region__c", "type": "picklist", "values": ["us-east", "us-west", "eu-central", "ap-south"]},
            {"name": "Is_Billable__c", "type": "boolean"},
            {"name": "User_Email__c", "type": "email"},
            {"name": "Session_Key__c", "type": "string", "length": 40},
        ],
    ),
    "Support_Entitlement__c": (
        100_000,
        "Support Entitlement",
        "a1I",
        [
            {
                "name": "Account__c",
                "type": R,
                "referenceTo": "Account",
                "relationshipName": "Account__r",
                "required": True,
            },
            {
                "name": "Product_Asset__c",
                "type": R,
                "referenceTo": "Product_Asset__c",
                "relationshipName": "Product_Asset__r",
            },
            {"name": "Type__c", "type": "picklist", "values": ["Phone Support", "Web Support", "Premier", "Onsite"]},
            {"name": "Start_Date__c", "type": "date"},
            {"name": "End_Date__c", "type": "date"},
            {"name": "Cases_Remaining__c", "type": "int"},
            {"name": "SLA_Hours__c", "type": "double", "precision": 6, "scale": 1},
            {"name": "Is_Active__c", "type": "boolean"},
            {"name": "Support_Manager__c", "type": "string", "length": 80},
            {"name": "Contract_Value__c", "type": "currency", "precision": 16, "scale": 2},
        ],
    ),
    "Contract_Term__c": (
        100_000,
        "Contract Term",
        "a1J",
        [
            {
                "name": "Opportunity__c",
                "type": R,
                "referenceTo": "Opportunity",
                "relationshipName": "Opportunity__r",
                "required": True,
            },
            {"name": "Account__c", "type": R, "referenceTo": "Account", "relationshipName": "Account__r"},
            {"name": "Term_Months__c", "type": "int"},
            {"name": "Start_Date__c", "type": "date"},
            {"name": "End_Date__c", "type": "date"},
            {"name": "Value__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Renewal_Type__c", "type": "picklist", "values": ["Automatic", "Manual", "Evergreen"]},
            {"name": "Payment_Terms__c", "type": "picklist", "values": ["Net 15", "Net 30", "Net 60", "Prepaid"]},
            {"name": "Is_Signed__c", "type": "boolean"},
            {"name": "Signed_At__c", "type": "datetime"},
            {"name": "Legal_Entity_Name__c", "type": "string", "length": 120},
            {"name": "Clauses__c", "type": "textarea", "length": 4000},
        ],
    ),
    "Survey_Response__c": (
        80_000,
        "Survey Response",
        "a1K",
        [
            {"name": "Case__c", "type": R, "referenceTo": "Case", "relationshipName": "Case__r", "required": True},
            {"name": "Contact__c", "type": R, "referenceTo": "Contact", "relationshipName": "Contact__r"},
            {"name": "Rating__c", "type": "picklist", "values": ["5", "4", "3", "2", "1"]},
            {"name": "Satisfaction__c", "type": "percent", "precision": 5, "scale": 1},
            {"name": "Would_Recommend__c", "type": "boolean"},
            {"name": "Channel__c", "type": "picklist", "values": ["Email", "SMS", "In-App"]},
            {"name": "Responded_At__c", "type": "datetime"},
            {"name": "Comment__c", "type": "textarea", "length": 2000},
        ],
    ),
    "Partner_Deal__c": (
        30_000,
        "Partner Deal",
        "a1L",
        [
            {
                "name": "Opportunity__c",
                "type": R,
                "referenceTo": "Opportunity",
                "relationshipName": "Opportunity__r",
                "required": True,
            },
            {
                "name": "Partner_Account__c",
                "type": R,
                "referenceTo": "Account",
                "relationshipName": "Partner_Account__r",
            },
            {"name": "Registration_Number__c", "type": "string", "length": 30, "externalId": True},
            {"name": "Status__c", "type": "picklist", "values": ["Submitted", "Approved", "Rejected", "Expired"]},
            {"name": "Commission__c", "type": "percent", "precision": 5, "scale": 2},
            {"name": "Deal_Value__c", "type": "currency", "precision": 16, "scale": 2},
            {"name": "Expiration_Date__c", "type": "date"},
            {"name": "Is_Approved__c", "type": "boolean"},
            {"name": "Partner_Rep__c", "type": "string", "length": 80},
        ],
    ),
    "Campaign_Touch__c": (
        20_000,
        "Campaign Touch",
        "a1M",
        [
            {"name": "Lead__c", "type": R, "referenceTo": "Lead", "relationshipName": "Lead__r", "required": True},
            {"name": "Contact__c", "type": R, "referenceTo": "Contact", "relationshipName": "Contact__r"},
            {"name": "Campaign_Name__c", "type": "string", "length": 120},
            {
                "name": "Channel__c",
                "type": "picklist",
                "values": ["Email", "Webinar", "Paid Search", "Event", "Social"],
            },
            {"name": "Touch_Date__c", "type": "date"},
            {"name": "Opened__c", "type": "boolean"},
            {"name": "Clicked__c", "type": "boolean"},
            {"name": "Cost__c", "type": "currency", "precision": 10, "scale": 2},
            {"name": "UTM_Source_Code__c", "type": "string", "length": 40},
            {"name": "Email__c", "type": "email"},
        ],
    ),
}
BACKED_UP = STANDARD + list(EXTRA_OBJECTS)


def plan(records: int) -> tuple[int, dict[str, int]]:
    """(Opportunities for `generate_org`, records per extra object) for an org of about `records` records."""
    from sf_pipeline.devorg.generator import planned_counts

    size = max(1, round(records * 1_000_000 / PLAN_RECORDS))
    extra = {name: max(1, round(weight * records / PLAN_RECORDS)) for name, (weight, *_rest) in EXTRA_OBJECTS.items()}
    total = sum(planned_counts(size).values()) + sum(extra.values())
    assert abs(total - records) <= max(20, records // 1000), (total, records)
    return size, extra


def write_objects_yaml(path: Path) -> Path:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "objects": {
                    name: {"label": label, "keyPrefix": prefix, "fields": fields}
                    for name, (_weight, label, prefix, fields) in EXTRA_OBJECTS.items()
                }
            },
            sort_keys=False,
        )
    )
    return path


# ====================================================================== generating the org (own process)
def generate_only(data_dir: Path, records: int, objects_yaml: Path, seed: int) -> None:
    """Child-process entry: generate the org into data_dir and print one JSON line."""
    from sf_pipeline.devorg.generator import generate_custom_records, generate_org
    from sf_pipeline.devorg.org import Org

    size, extra = plan(records)
    org = Org(data_dir, custom_objects=objects_yaml)
    # Every SystemModstamp lies before the top of this hour, so the first hourly window [.., hour) of the
    # backup holds the whole org and exists right away.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    org.set_clock(hour, freeze=True)
    started = time.perf_counter()
    counts = generate_org(org, size, seed)
    standard_seconds = time.perf_counter() - started
    counts.update(generate_custom_records(org, extra, seed))
    seconds = time.perf_counter() - started
    org.store.set_meta("bench_scale", {"records": records, "seed": seed, "hour": hour.isoformat(), "counts": counts})
    org.set_clock(datetime.now(UTC), freeze=False)  # serve on real time
    org.close()
    print(
        json.dumps(
            {
                "counts": counts,
                "seconds": seconds,
                "standard_seconds": standard_seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def existing_org(data_dir: Path) -> dict[str, Any] | None:
    db = data_dir / "org.sqlite3"
    if not db.exists():
        return None
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT value FROM _meta WHERE key = 'bench_scale'").fetchone()
    except sqlite3.Error:
        row = None
    finally:
        conn.close()
    return json.loads(row[0]) if row else None


def ensure_org(data_dir: Path, records: int, objects_yaml: Path, seed: int, log: Path) -> dict[str, Any]:
    meta = existing_org(data_dir)
    if meta and meta["records"] == records and meta["seed"] == seed:
        print(f"reusing the org in {data_dir} ({sum(meta['counts'].values()):,} records)")
        return {**meta, "generated": None}
    if (data_dir / "org.sqlite3").exists():
        raise SystemExit(f"{data_dir} holds another org; remove it or pick another --data-dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {records:,} records into {data_dir} ...", flush=True)
    with open(log, "ab") as err:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sf_pipeline_tests.benchmarks.bench_scale",
                "--generate-only",
                "--records",
                str(records),
                "--data-dir",
                str(data_dir),
                "--seed",
                str(seed),
                "--objects-yaml",
                str(objects_yaml),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"generation failed ({out.returncode}); see {log}")
    generated = json.loads(out.stdout.strip().splitlines()[-1])
    meta = existing_org(data_dir)
    assert meta is not None
    return {**meta, "generated": generated}


# ====================================================================== timing Salesforce in the step processes
def install_api_probe(directory: Path) -> None:
    """Time every `SalesforceClient.call` of this process (and of its forks) into directory/<pid>.json.

    Behaviour is unchanged; the file is rewritten after each call (tens of calls per step).
    """
    from sf_pipeline.salesforce.client import SalesforceClient

    if getattr(SalesforceClient.call, "_bench_probe", False):
        return
    original = SalesforceClient.call
    calls: dict[int, list[tuple[str, float, float]]] = defaultdict(list)
    lock = threading.Lock()

    def call(self, fn, what):  # noqa: ANN001, ANN202 - same signature as the wrapped method
        started = time.time()
        try:
            return original(self, fn, what)
        finally:
            pid = os.getpid()  # the step process, not the forkserver that installed the probe
            with lock:
                calls[pid].append((what, started, time.time()))
                (directory / f"{pid}.json").write_text(json.dumps(calls[pid]))

    call._bench_probe = True  # type: ignore[attr-defined]
    SalesforceClient.call = call  # type: ignore[method-assign]


SITECUSTOMIZE = f"""# written by bench_scale: installs the API-call probe in the run's Python processes (not dbt)
import os, sys
if os.environ.get("{PROBE_ENV}") and not sys.argv[0].endswith("dbt"):
    try:
        from pathlib import Path
        from sf_pipeline_tests.benchmarks.bench_scale import install_api_probe
        install_api_probe(Path(os.environ["{PROBE_ENV}"]))
    except Exception as exc:  # never break the run: its Salesforce seconds then read 0
        print(f"bench_scale: no API-call probe ({{exc}})", file=sys.stderr)
"""


# ====================================================================== sampling processes
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _stat(pid: int) -> tuple[float, int, int] | None:
    """(own CPU seconds, RSS bytes, private RSS bytes) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        resident, shared = Path(f"/proc/{pid}/statm").read_text().split()[1:3]
    except (OSError, IndexError):
        return None
    return ((int(fields[11]) + int(fields[12])) / CLK_TCK, int(resident) * PAGE, (int(resident) - int(shared)) * PAGE)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class ProcessSampler(threading.Thread):
    """Samples CPU and memory of the run's processes, devorg and our PostgreSQL backends."""

    def __init__(self, devorg_pid: int, postmaster_pid: int, databases: dict[str, str], interval: float):
        super().__init__(name="bench-sampler", daemon=True)
        self.root = os.getpid()
        self.devorg_pid = devorg_pid
        self.postmaster_pid = postmaster_pid
        self.databases = databases  # kind -> database name
        self.interval = interval
        self.stop_event = threading.Event()
        self.kind: dict[int, str] = {}
        self.series: dict[int, list[tuple[float, float]]] = defaultdict(list)  # pid -> [(t, cpu)]
        self.hwm: dict[int, int] = {}
        self.peak: dict[str, int] = defaultdict(int)  # summed RSS (or private RSS for PostgreSQL) per group
        self.peak_at: dict[str, float] = {}
        self.load: list[float] = []  # the machine's 1-minute load average at each sample

    def classify(self, pid: int, parent_kind: str | None) -> str:
        if pid in self.kind:
            return self.kind[pid]
        if pid == self.root:
            kind = "orchestrator"
        elif pid == self.devorg_pid:
            kind = "devorg"
        elif parent_kind is None:
            cmd = _cmdline(pid)
            kind = next((k for k, db in self.databases.items() if f" {db} " in f" {cmd} "), "")
        else:
            cmd = _cmdline(pid)
            kind = "dbt" if ("dbt" in cmd and "multiprocessing" not in cmd) or parent_kind == "dbt" else "step"
        self.kind[pid] = kind
        return kind

    def tick(self) -> None:
        now = time.time()
        self.load.append(os.getloadavg()[0])
        todo = [(self.root, "")]
        tree: list[tuple[int, str]] = []
        while todo:
            pid, parent = todo.pop()
            kind = self.classify(pid, parent or None)
            if kind != "devorg":  # devorg is our child too; it is counted on its own below
                tree.append((pid, kind))
                todo += [(c, kind) for c in _children(pid)]
        pids = tree + [(self.devorg_pid, "devorg")]
        for pid in _children(self.postmaster_pid):
            kind = self.classify(pid, None)
            if kind:
                pids.append((pid, kind))
        sums: dict[str, int] = defaultdict(int)
        for pid, kind in pids:
            st = _stat(pid)
            if st is None:
                continue
            cpu, rss, private = st
            self.series[pid].append((now, cpu))
            group = "pipeline" if kind in ("orchestrator", "step", "dbt") else kind
            sums[group] += private if kind.startswith("pg_") else rss
            if group == "pipeline":
                self.hwm[pid] = max(self.hwm.get(pid, 0), _hwm(pid))
        for group, value in sums.items():
            if value > self.peak[group]:
                self.peak[group] = value
                self.peak_at[group] = now

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.tick()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        self.tick()

    def cpu_by_kind(self, phases: list[tuple[str, float, float]]) -> dict[str, dict[str, float]]:
        """CPU seconds per process kind per phase (increments between samples, by the sample's time)."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for pid, points in self.series.items():
            kind = self.kind.get(pid, "devorg" if pid == self.devorg_pid else "?")
            for (t0, c0), (t1, c1) in zip(points, points[1:], strict=False):
                mid = (t0 + t1) / 2
                phase = next((name for name, a, b in phases if a <= mid < b), "other")
                out[kind][phase] += c1 - c0
        return out


# ====================================================================== one run of the backup job
def postmaster_pid(db_url: str) -> int:
    import psycopg

    with psycopg.connect(db_url) as conn:
        backend = conn.info.backend_pid
    fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def run_backup(ctx: dict[str, Any], concurrency: int) -> dict[str, Any]:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.events import DagsterEventType

    from sf_pipeline_tests.benchmarks.bench_backup import output_to, patched_environ, reset_peak_rss
    from sf_pipeline_tests.pg_fixtures import create_database, drop_database

    tmp: Path = ctx["tmp"]
    devorg = ctx["devorg"]
    warehouse = create_database("sfp_bench_scale_wh")
    storage = create_database("sfp_bench_scale_dagster")
    ctx["databases"] += [warehouse, storage]
    home = tmp / f"dagster_home_{concurrency}_{len(ctx['runs'])}"
    home.mkdir()
    import yaml

    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {"postgres": {"postgres_url": re.sub(r"^postgresql://", "postgresql+psycopg2://", storage)}},
                "telemetry": {"enabled": False},
            }
        )
    )
    probe = tmp / f"probe_{concurrency}_{len(ctx['runs'])}"
    probe.mkdir()
    site = tmp / "probe_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **devorg.env,
        "SF_PIPELINE_DATABASE_URL": warehouse,
        "SF_PIPELINE_DBT_PROJECT_DIR": str(ctx["dbt_project"]),
        "SF_PIPELINE_SETTINGS": str(ctx["settings"]),
        "DAGSTER_HOME": str(home),
        PROBE_ENV: str(probe),
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    log = tmp / f"run_{concurrency}_{len(ctx['runs'])}.log"
    names = {"pg_warehouse": warehouse.rsplit("/", 1)[1], "pg_dagster": storage.rsplit("/", 1)[1]}
    usage_before = devorg.control("limits", method="GET")["api_usage"]
    reset_peak_rss(devorg.pid)
    sampler = ProcessSampler(devorg.pid, ctx["postmaster"], names, ctx["interval"])
    load_before = os.getloadavg()
    with patched_environ(env):
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            # the code location as a deployment loads it: module sf_pipeline.definitions, attribute defs
            recon = ReconstructableRepository.for_module(
                "sf_pipeline.definitions", "defs", working_directory=str(ROOT)
            ).get_reconstructable_job("backup")
            with output_to(log):  # Dagster's and dbt's output, of this process and the step processes
                executor = recon.get_definition().executor_def.name
                # Dagster's default executor takes {multiprocess: {...}}; a multiprocess one its config directly
                config: dict[str, Any] = {"max_concurrent": concurrency}
                if executor == "multi_or_in_process_executor":
                    config = {"multiprocess": config}
                sampler.start()
                started = time.time()
                result = dg.execute_job(
                    recon,
                    instance=instance,
                    run_config={"execution": {"config": config}},
                    tags={"dagster/partition": ctx["partition"]},
                )
            finished = time.time()
            sampler.stop()
            run_id = result.run_id
            success = result.success
            entries = instance.all_logs(run_id)
        finally:
            instance.dispose()
    devorg_hwm = _hwm(devorg.pid)
    usage_after = devorg.control("limits", method="GET")["api_usage"]
    if not success:
        raise SystemExit(f"the backup run failed; see {log} (kept: {tmp})\n" + log.read_text()[-4000:])

    # ---------------------------------------------------------------- the event log
    steps: dict[str, dict[str, Any]] = defaultdict(dict)
    materializations: dict[str, dict[str, Any]] = {}
    for e in entries:
        ev = e.dagster_event
        if ev is None:
            continue
        t = e.timestamp
        if ev.event_type == DagsterEventType.STEP_WORKER_STARTING:
            steps[e.step_key]["worker_starting"] = t
        elif ev.event_type == DagsterEventType.STEP_START:
            steps[e.step_key]["start"] = t
            steps[e.step_key]["pid"] = ev.pid
        elif ev.event_type == DagsterEventType.STEP_SUCCESS:
            steps[e.step_key]["end"] = t
        elif ev.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = ev.step_materialization_data.materialization
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            materializations["/".join(mat.asset_key.path)] = {**meta, "step": e.step_key, "t": t}
    mirror_steps = {k: v for k, v in steps.items() if not k.startswith("history")}
    history_step = next(v for k, v in steps.items() if k.startswith("history"))
    mirror_start = min(v["start"] for v in mirror_steps.values())
    mirror_end = max(v["end"] for v in mirror_steps.values())
    phases = [
        ("start", started, mirror_start),
        ("extract+load", mirror_start, mirror_end),
        ("to snapshot", mirror_end, history_step["start"]),
        ("snapshots", history_step["start"], history_step["end"]),
        ("finish", history_step["end"], finished + 1),
    ]

    # ---------------------------------------------------------------- per object
    probes = {int(p.stem): json.loads(p.read_text()) for p in probe.glob("*.json")}
    objects = []
    for key, mat in materializations.items():
        if not key.startswith("salesforce/"):
            continue
        step = steps[mat["step"]]
        calls = probes.get(step.get("pid"), [])
        api = sum(b - a for _w, a, b in calls)
        data_calls = [(a, b) for w, a, b in calls if w.endswith("/results") or w in ("query", "queryMore")]
        post = next((a for w, a, _b in calls if w == "bulk POST query"), None)
        first_data = data_calls[0][0] if data_calls else None
        job_wait = (first_data - post) if post and first_data else 0.0
        polls = sum(b - a for w, a, b in calls if re.fullmatch(r"bulk GET query/[^/]+", w))
        last_data = data_calls[-1][1] if data_calls else step["start"]
        objects.append(
            {
                "object": key.split("/", 1)[1],
                "records": mat["records_extracted"],
                "mode": mat["extract_mode"],
                "api_calls": mat["api_calls"],
                "fields": mat["fields"],
                "worker_startup": step["start"] - step["worker_starting"],
                "step_seconds": step["end"] - step["start"],
                "salesforce_seconds": api
                - polls
                + job_wait,  # API calls, with the Bulk job's wait instead of its polls
                "load_tail_seconds": step["end"] - last_data,
                "load_seconds": mat["load_seconds"],
                "cpu_seconds": (sampler.series.get(step.get("pid")) or [(0, 0.0)])[-1][1],  # since the process began
                "start": step["start"] - started,
                "end": step["end"] - started,
            }
        )
    objects.sort(key=lambda o: -o["records"])
    snapshots = {k.split("/", 1)[1]: m for k, m in materializations.items() if k.startswith("history/")}

    cpu = sampler.cpu_by_kind(phases)
    wall = finished - started
    out = {
        "concurrency": concurrency,
        "executor": executor,
        "run_id": run_id,
        "wall": wall,
        "records": sum(o["records"] for o in objects),
        "objects": len(objects),
        "snapshots": len(snapshots),
        "api_calls": sum(o["api_calls"] for o in objects),
        "devorg_requests": usage_after - usage_before,
        "phases": {name: b - a for name, a, b in phases if name != "finish"}
        | {"finish": finished - history_step["end"]},
        "worker_startup_total": sum(o["worker_startup"] for o in objects)
        + (history_step["start"] - history_step["worker_starting"]),
        "history_worker_startup": history_step["start"] - history_step["worker_starting"],
        "salesforce_seconds": sum(o["salesforce_seconds"] for o in objects),
        "mirror_step_seconds": sum(o["step_seconds"] for o in objects),
        "load_tail_seconds": sum(o["load_tail_seconds"] for o in objects),
        "cpu": {k: dict(v) for k, v in cpu.items()},
        "peak_mb": {k: v / 2**20 for k, v in sampler.peak.items()},
        "max_process_mb": max(sampler.hwm.values(), default=0) / 2**20,
        "orchestrator_hwm_mb": sampler.hwm.get(os.getpid(), 0) / 2**20,
        "devorg_hwm_mb": devorg_hwm / 2**20,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "load_during": (min(sampler.load), sum(sampler.load) / len(sampler.load), max(sampler.load)),
        "per_object": objects,
        "log": str(log),
    }
    for url in (warehouse, storage):
        drop_database(url)
        ctx["databases"].remove(url)
    return out


# ====================================================================== reporting
def report_run(r: dict[str, Any]) -> None:
    c = r["cpu"]
    ph = r["phases"]

    def cpu_of(kind: str, phase: str | None = None) -> float:
        d = c.get(kind, {})
        return sum(d.values()) if phase is None else d.get(phase, 0.0)

    print(
        f"\n== max_concurrent={r['concurrency']} ({r['executor']} executor): {r['records']:,} records of {r['objects']} objects "
        f"({r['snapshots']} snapshots) in {r['wall']:,.1f} s wall -> {r['records'] / r['wall']:,.0f} records/s "
        f"[1-min load average during the run {r['load_during'][0]:.1f}-{r['load_during'][2]:.1f}, "
        f"mean {r['load_during'][1]:.1f}, on {os.cpu_count()} cores]"
    )
    print(
        f"API calls: {r['api_calls']} (sum of api_calls metadata); devorg served {r['devorg_requests']} counted "
        "requests"
    )
    print(
        f"memory: run's processes summed peak {r['peak_mb'].get('pipeline', 0):,.0f} MB (sampled), largest "
        f"process {r['max_process_mb']:,.0f} MB (VmHWM; orchestrator {r['orchestrator_hwm_mb']:,.0f} MB); devorg "
        f"{r['devorg_hwm_mb']:,.0f} MB (VmHWM); PostgreSQL warehouse backends private "
        f"{r['peak_mb'].get('pg_warehouse', 0):,.0f} MB"
    )
    print(
        f"phases: start {ph['start']:.1f} s | extract+load (mirror steps) {ph['extract+load']:.1f} s | "
        f"until the snapshot step runs {ph['to snapshot']:.1f} s | snapshots (dbt) {ph['snapshots']:.1f} s | "
        f"finish {ph['finish']:.1f} s"
    )
    print(
        f"step processes' start-up (STEP_WORKER_STARTING -> STEP_START), summed over {r['objects'] + 1} steps: "
        f"{r['worker_startup_total']:.1f} s"
    )
    print(
        f"mirror steps summed {r['mirror_step_seconds']:.1f} s, of which Salesforce API (incl. Bulk job wait) "
        f"{r['salesforce_seconds']:.1f} s, load tail after the last page {r['load_tail_seconds']:.1f} s"
    )
    kinds = ["devorg", "pg_warehouse", "step", "dbt", "orchestrator", "pg_dagster"]
    print("CPU seconds (sampled)  " + "  ".join(f"{k:>12}" for k in kinds))
    for phase in ("start", "extract+load", "to snapshot", "snapshots", "finish", None):
        label = phase or "total"
        print(f"  {label:<20} " + "  ".join(f"{cpu_of(k, phase):12.1f}" for k in kinds))
    print("per object: records  mode  API  step s  Salesforce s  load tail s  worker start s  step CPU s")
    for o in r["per_object"]:
        print(
            f"  {o['object']:<24} {o['records']:>10,} {o['mode']:>5} {o['api_calls']:>4} {o['step_seconds']:7.1f} "
            f"{o['salesforce_seconds']:12.1f} {o['load_tail_seconds']:12.1f} {o['worker_startup']:10.1f} "
            f"{o['cpu_seconds']:10.1f}"
        )


def report_summary(runs: list[dict[str, Any]]) -> None:
    print("\n== summary")
    head = [
        "max_concurrent",
        "executor",
        "wall s",
        "records/s",
        "API calls",
        "extract+load s",
        "snapshots s",
        "peak RSS sum MB",
        "devorg MB",
    ]
    print(" | ".join(head))
    for r in runs:
        print(
            " | ".join(
                [
                    str(r["concurrency"]),
                    r["executor"],
                    f"{r['wall']:,.1f}",
                    f"{r['records'] / r['wall']:,.0f}",
                    str(r["api_calls"]),
                    f"{r['phases']['extract+load']:.1f}",
                    f"{r['phases']['snapshots']:.1f}",
                    f"{r['peak_mb'].get('pipeline', 0):,.0f}",
                    f"{r['devorg_hwm_mb']:,.0f}",
                ]
            )
        )
    by = {}
    for r in runs:
        by.setdefault(r["concurrency"], []).append(r["wall"])
    if 1 in by and len(by) > 1:
        serial = min(by[1])
        for n, walls in sorted(by.items()):
            if n != 1:
                print(
                    f"speed-up of max_concurrent={n} over 1: {serial / min(walls):.2f}x (wall {serial:,.1f} s -> "
                    f"{min(walls):,.1f} s)"
                )


# ====================================================================== main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=PLAN_RECORDS, help="records in the org (default 5,000,000)")
    ap.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[2, 1],
        help="max_concurrent of the multiprocess executor, one run each, in this order (default 2 1)",
    )
    ap.add_argument("--data-dir", type=Path, help="keep/reuse the generated org here (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--interval", type=float, default=0.2, help="sampling interval, seconds")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--objects-yaml", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only:
        generate_only(args.data_dir, args.records, args.objects_yaml, args.seed)
        return

    from sf_pipeline.warehouse import DBT_PROJECT_DIR
    from sf_pipeline_tests.benchmarks.bench_backup import DevOrgProcess
    from sf_pipeline_tests.pg_fixtures import admin_url, drop_database

    size, extra = plan(args.records)
    free = shutil.disk_usage(args.data_dir.parent if args.data_dir else tempfile.gettempdir()).free
    need = args.records * 3_000  # SQLite org + mirror + history, measured about 2.2 KB a record
    print(
        f"org plan: {size:,} Opportunities (+ {sum(extra.values()):,} records of {len(extra)} more custom "
        f"objects); {os.cpu_count()} cores; free disk {free / 1e9:,.0f} GB (need about {need / 1e9:,.0f} GB); "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if free < need:
        raise SystemExit("not enough free disk for this size")

    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": [],
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        ctx: dict[str, Any] = {"tmp": tmp, "databases": [], "runs": out["runs"], "interval": args.interval}
        stack.callback(lambda: [drop_database(u) for u in list(ctx["databases"])])
        objects_yaml = write_objects_yaml(tmp / "scale_objects.yaml")
        data_dir = args.data_dir or tmp / "devorg"
        org = ensure_org(data_dir, args.records, objects_yaml, args.seed, tmp / "generate.log")
        out["org"] = {"counts": org["counts"], "generated": org["generated"], "records": sum(org["counts"].values())}
        if org["generated"]:
            g = org["generated"]
            total = sum(org["counts"].values())
            print(
                f"generated {total:,} records in {g['seconds']:,.1f} s ({total / g['seconds']:,.0f} records/s; "
                f"the 7 standard ones {g['standard_seconds']:,.1f} s), generator peak RSS {g['peak_rss_mb']:,.0f} MB"
            )
        print(
            "records per object: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(org["counts"].items(), key=lambda kv: -kv[1]))
        )
        hour = datetime.fromisoformat(org["hour"])
        start = hour - timedelta(hours=1)
        ctx["partition"] = f"{start:%Y-%m-%d-%H:%M}"

        devorg = DevOrgProcess(data_dir, 0, tmp / "devorg.log", custom_objects=objects_yaml).start()
        stack.callback(devorg.stop)
        ctx["devorg"] = devorg
        ctx["postmaster"] = postmaster_pid(admin_url())

        import yaml

        project = tmp / "dbt_snapshots"
        shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", ".user.yml"))
        ctx["dbt_project"] = project
        settings = tmp / "sf_pipeline_scale.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "orgs": {"production": {}},
                    "backup": {
                        "org": "production",
                        "objects": BACKED_UP,
                        "partitions": {"cron": "0 * * * *", "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
                        "schedule_lag_minutes": 10,
                        "api_budget": {"max_share_of_daily_limit": 0.5},
                    },
                }
            )
        )
        ctx["settings"] = settings
        print(
            f"devorg pid {devorg.pid}; window {ctx['partition']} (everything before {hour:%Y-%m-%d %H:%M} UTC); "
            f"{len(BACKED_UP)} objects"
        )
        for n in args.concurrency:
            print(
                f"\n[run max_concurrent={n}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}]", flush=True
            )
            r = run_backup(ctx, n)
            out["runs"].append(r)
            report_run(r)
        devorg.stop()
    report_summary(out["runs"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
