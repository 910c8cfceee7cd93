"""Which org a connection reaches: its `Organization` record (one row; its Id is the org id, prefix 00D).

Salesforce's object reference, "Organization": `IsSandbox` is true in a sandbox, and the Id identifies the
org (a sandbox refresh makes a new org with a new id). simple-salesforce's `is_sandbox()` asks the same
query (reference/salesforce-api-fidelity.md, section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from sf_pipeline.salesforce.client import SalesforceClient

from .errors import OrganizationUnreadable

ORGANIZATION_SOQL = "SELECT Id, Name, IsSandbox, OrganizationType, InstanceName FROM Organization"


@dataclass(frozen=True)
class Organization:
    """The identity of the org an alias's credentials reach."""

    id: str
    name: str
    is_sandbox: bool
    organization_type: str | None = None
    instance_name: str | None = None

    def label(self) -> str:
        kind = "sandbox" if self.is_sandbox else "production org"
        return f"{self.id} ({self.name}, {kind})"


def read_organization(client: SalesforceClient) -> Organization:
    """The org's Organization record, in one REST query."""
    return organization_from_answer(
        client, client.call(lambda: client.sf.query(ORGANIZATION_SOQL), "query Organization")
    )


def organization_from_answer(client: SalesforceClient, answer: dict) -> Organization:
    """The Organization from the answer to `ORGANIZATION_SOQL` (a REST query, or a Composite Batch subrequest's
    `result`, which is the same body: REST API Developer Guide, "Composite Batch")."""
    records = answer.get("records") or []
    if len(records) != 1:
        raise OrganizationUnreadable(
            f"org {client.alias!r} answered {len(records)} Organization records to "
            f"`{ORGANIZATION_SOQL}` (a real org has exactly one)"
        )
    row = records[0]
    return Organization(
        id=str(row["Id"]),
        name=str(row.get("Name") or ""),
        is_sandbox=row.get("IsSandbox") is True,
        organization_type=row.get("OrganizationType"),
        instance_name=row.get("InstanceName"),
    )
