"""Run unmodified public Salesforce clients against devorg: each is installed by
scripts/ensure-clients.sh into its own cached environment (never the product's .venv), and trusts
devorg's CA through the environment variables its HTTP stack reads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sf_pipeline.devorg.runner import DevOrgServer

CHECKOUT = Path(__file__).resolve().parents[2]
CLIENTS_ROOT = Path(os.environ.get("SF_PIPELINE_CLIENTS", Path.home() / ".cache" / "sf-pipeline-clients"))


def ensure_client(name: str) -> Path:
    """Install (once) and return the client's environment folder; fails with the installer's output."""
    result = subprocess.run(
        [str(CHECKOUT / "scripts" / "ensure-clients.sh"), name], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/ensure-clients.sh {name} failed:\n{result.stdout}\n{result.stderr}")
    return CLIENTS_ROOT / name


def client_env(server: DevOrgServer, **extra: str) -> dict[str, str]:
    """The process environment for a client: devorg's CA trusted by Python (requests) and Node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALESFORCE_", "SFDX_", "SF_", "CUMULUSCI_"))}
    env.update(
        {
            "REQUESTS_CA_BUNDLE": server.ca_bundle,
            "SSL_CERT_FILE": server.ca_bundle,
            "NODE_EXTRA_CA_CERTS": server.ca_bundle,
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result
