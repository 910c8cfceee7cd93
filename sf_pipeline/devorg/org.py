"""One emulated org: metadata, data, clock, users and their credentials, sessions, API limits.

Everything the HTTP layer needs is here, so tests, the CLI and scenarios can drive an org
in-process or through the server with the same semantics.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .clock import Clock
from .errors import SalesforceError
from .organization import LEGACY_ORG_ID, new_org_id, organization_object, organization_row
from .schema import Schema
from .standard_objects import STANDARD_OBJECTS
from .store import OrgStore, q

DEFAULT_CUSTOM_OBJECTS = Path(__file__).with_name("custom_objects.yaml")
ORG_ID = LEGACY_ORG_ID  # the id of orgs made before each org had its own (see Org.org_id)
DEFAULT_DAILY_LIMIT = 5_000_000
# Session Settings > Timeout value: 2 hours by default; Setup offers these values (Salesforce Help,
# "Modify Session Security Settings"). Access tokens live as long as the session (REST API Developer
# Guide, "Understanding the OAuth Refresh Token Process").
SESSION_TIMEOUTS = {
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "8h": 28800,
    "12h": 43200,
    "24h": 86400,
}
DEFAULT_SESSION_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class UserSpec:
    key: str  # short handle used by the CLI and scenarios: admin, integration, ...
    first: str
    last: str
    title: str


DEFAULT_USERS = [
    UserSpec("admin", "Ada", "Admin", "System Administrator"),
    UserSpec("integration", "Marketing", "Integration", "Marketing Integration"),
    UserSpec("sales1", "Sam", "Seller", "Account Executive"),
    UserSpec("sales2", "Riya", "Rao", "Account Executive"),
    UserSpec("sales3", "Jon", "Berg", "Sales Manager"),
    UserSpec("support", "Cam", "Helper", "Support Agent"),
]


@dataclass
class Credentials:
    user_id: str
    key: str
    username: str
    password: str
    security_token: str


@dataclass
class Session:
    """A session (SOAP session id or OAuth access token). It ends `timeout` after its last recorded activity;
    activity is recorded only once half the timeout has passed since the previous record, as Salesforce
    documents for the Timeout value ("The last active session time value isn't updated until halfway
    through the timeout period", Session Security Settings)."""

    token: str
    user_id: str
    last_active: datetime

    def expires(self, timeout: timedelta) -> datetime:
        return self.last_active + timeout


class Org:
    """A devorg org. `data_dir=None` keeps everything in memory.

    `sandbox=True` makes a new org a sandbox (`Organization.IsSandbox`); None keeps what an existing org is.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        custom_objects: str | Path | None = None,
        name: str = "devorg",
        daily_limit: int | None = None,
        extra_objects: int | None = None,
        sandbox: bool | None = None,
    ):
        self.name = name
        self.data_dir = Path(data_dir) if data_dir else None
        # each org owns its metadata: fields added at run time must not leak into other orgs
        self.schema = Schema([obj.copy() for obj in STANDARD_OBJECTS] + [organization_object()])
        self.schema.load_custom_objects(DEFAULT_CUSTOM_OBJECTS)
        if custom_objects:
            self.schema.load_custom_objects(custom_objects)
        self.clock = Clock()
        db_path = None
        if self.data_dir:
            # owner-only: the org's data, its sessions, connected-app secret and control token live here
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
            db_path = str(self.data_dir / "org.sqlite3")
        from .files import prepare_schema
        from .wide import FieldHistory, add_extra_objects, resolve_polymorphic, widen

        widen(self.schema)  # every standard object of a real org, with its describe-global flags
        prepare_schema(self.schema)  # Attachment, Document, ContentVersion... as files.py writes them
        self.store = OrgStore(self.schema, db_path, self.clock)
        extra = extra_objects if extra_objects is not None else int(self.store.get_meta("extra_objects") or 0)
        if extra:
            with self.store.transaction():
                for obj in add_extra_objects(self.schema, extra):
                    self.store.ensure_table(obj)
            self.store.set_meta("extra_objects", extra)
        resolve_polymorphic(self.schema)
        if self.store.get_meta("metadata_created") is None:  # describes' Last-Modified (composite.py)
            self.store.set_meta("metadata_created", self.store.now())
        self.store.on_change = FieldHistory(self.schema)
        self._restore_added_fields()
        from .field_types import restore_field_type_changes

        restore_field_type_changes(self)
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.faults = None  # set by the server that serves this org (FaultInjector)
        app = self.store.get_meta("connected_app")
        if not app:
            app = {"client_id": "3MVG9devorg" + secrets.token_hex(20), "client_secret": secrets.token_hex(32)}
            self.store.set_meta("connected_app", app)
        self.client_id, self.client_secret = app["client_id"], app["client_secret"]
        if not self.store.get_meta("control_token"):
            self.store.set_meta("control_token", secrets.token_urlsafe(32))
        self.control_token: str = self.store.get_meta("control_token")
        if daily_limit is not None:
            self.store.set_meta("daily_limit", daily_limit)
        self.credentials: dict[str, Credentials] = {
            c["username"].lower(): Credentials(**c) for c in (self.store.get_meta("credentials") or [])
        }
        existed = bool(self.credentials)
        if not existed:
            self._create_default_users()
        self._ensure_organization(sandbox, existed)
        from .automation import install as install_automation
        from .sharing import install as install_sharing

        install_automation(self)  # the org's triggers and flows on updates, as stored with its data
        install_sharing(self)  # its organization-wide defaults
        for token, s in (self.store.get_meta("sessions") or {}).items():
            active = (
                s.get("last_active") or (datetime.fromisoformat(s["expires"]) - DEFAULT_SESSION_TIMEOUT).isoformat()
            )
            self.sessions[token] = Session(token, s["user_id"], datetime.fromisoformat(active))
        from .limits import OrgLimits, RollingUsage

        self.limits_settings = OrgLimits()
        self._usage = RollingUsage((self.store.get_meta("api_usage") or {}).get("minutes"))
        from .query import QueryEngine  # local import: query builds on store

        self.queries = QueryEngine(self.store, self.schema)

    # ----------------------------------------------------------------- users and auth
    def _create_default_users(self) -> None:
        user = self.schema.get("User")
        creds = []
        admin_id = None
        for spec in DEFAULT_USERS:
            username = f"{spec.key}@{self.name}.example.com"
            values = {
                "Username": username,
                "FirstName": spec.first,
                "LastName": spec.last,
                "Alias": spec.key[:8],
                "Email": username,
                "Title": spec.title,
                "TimeZoneSidKey": "GMT",
                "LocaleSidKey": "en_US",
                "EmailEncodingKey": "UTF-8",
                "LanguageLocaleKey": "en_US",
                "CompanyName": "Devorg Inc.",
                "IsActive": True,
            }
            if admin_id is None:
                # The first user creates itself: nobody else exists yet.
                admin_id = self.store.new_id(user)
                self._bootstrap_user(admin_id, values)
                uid = admin_id
            else:
                uid = self.store.insert(user, values, admin_id)
            creds.append(Credentials(uid, spec.key, username, f"{spec.key}-Passw0rd!", secrets.token_hex(12)))
        self.credentials = {c.username.lower(): c for c in creds}
        self.store.set_meta("credentials", [c.__dict__ for c in creds])

    def _bootstrap_user(self, uid: str, values: dict[str, Any]) -> None:
        now = self.store.now()
        row = dict(
            values,
            Id=uid,
            Name=f"{values['FirstName']} {values['LastName']}",
            IsActive=1,
            UserType="Standard",
            CreatedDate=now,
            CreatedById=uid,
            LastModifiedDate=now,
            LastModifiedById=uid,
            SystemModstamp=now,
        )
        cols = list(row)
        self.store.conn.execute(
            f'INSERT INTO "User" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})', [row[c] for c in cols]
        )

    def _ensure_organization(self, sandbox: bool | None, existed: bool) -> None:
        """This org's id and kind, drawn once and kept with its data, and its one Organization record."""
        saved = self.store.get_meta("organization")
        if saved is None:
            # Data made before orgs had ids of their own keeps the id all orgs had then.
            saved = {"id": LEGACY_ORG_ID if existed else new_org_id(), "sandbox": bool(sandbox)}
            self.store.set_meta("organization", saved)
        elif sandbox is not None and bool(sandbox) != saved["sandbox"]:
            kind = "a sandbox" if saved["sandbox"] else "a production org"
            raise ValueError(
                f"the org in {self.data_dir} is {kind} ({saved['id']}); Salesforce never turns one "
                "into the other (a sandbox is a new org): start it without the sandbox option, or "
                "use another data directory"
            )
        self.org_id: str = saved["id"]
        self.is_sandbox: bool = saved["sandbox"]
        table = q(self.schema.get("Organization").name)
        if self.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:
            first = sorted(self.credentials.values(), key=lambda c: c.user_id)
            admin = next((c.user_id for c in first if c.key == "admin"), first[0].user_id if first else "")
            row = organization_row(
                self.org_id,
                name=f"Devorg Inc. ({self.name})",
                sandbox=self.is_sandbox,
                admin_id=admin,
                now=self.store.now(),
            )
            cols = list(row)
            self.store.conn.execute(
                f"INSERT INTO {table} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )

    def user(self, key_or_username: str) -> Credentials:
        wanted = key_or_username.lower()
        for c in self.credentials.values():
            if c.key == wanted or c.username.lower() == wanted or c.user_id.lower() == wanted:
                return c
        raise KeyError(
            f"no devorg user {key_or_username!r}; users: {', '.join(c.key for c in self.credentials.values())}"
        )

    def check_password(self, username: str, password: str) -> Credentials | None:
        c = self.credentials.get(username.lower())
        if c and password in (c.password + c.security_token, c.password):
            return c
        return None

    def new_session(self, user_id: str) -> Session:
        token = self.org_id[:15] + "!" + secrets.token_urlsafe(72)
        s = Session(token, user_id, self.clock.now())
        with self._lock:
            self.sessions[token] = s
            self._save_sessions()
        return s

    @property
    def session_timeout(self) -> timedelta:
        seconds = self.store.get_meta("session_timeout_seconds")
        return timedelta(seconds=int(seconds)) if seconds else DEFAULT_SESSION_TIMEOUT

    def set_session_timeout(self, value: str) -> None:
        """Setup > Session Settings > Timeout value: one of 15m, 30m, 1h, 2h, 4h, 8h, 12h, 24h."""
        if value not in SESSION_TIMEOUTS:
            raise ValueError(
                f"session timeout {value!r} is not one Salesforce offers; choose one of {', '.join(SESSION_TIMEOUTS)}"
            )
        self.store.set_meta("session_timeout_seconds", SESSION_TIMEOUTS[value])

    def session(self, token: str | None) -> Session:
        """The live session for a token, or INVALID_SESSION_ID (401) once it timed out: the one check every
        API of devorg makes (REST, Bulk API 2.0, SOAP, userinfo; Bulk API 1.0 uses it too)."""
        s = self.sessions.get(token or "")
        now = self.clock.now()
        timeout = self.session_timeout
        if s is None or s.expires(timeout) <= now:
            raise SalesforceError("INVALID_SESSION_ID", "Session expired or invalid", status=401)
        if now - s.last_active >= timeout / 2:
            with self._lock:
                s.last_active = now
                self._save_sessions()
        return s

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()
            self._save_sessions()

    def _save_sessions(self) -> None:
        self.store.set_meta(
            "sessions",
            {t: {"user_id": s.user_id, "last_active": s.last_active.isoformat()} for t, s in self.sessions.items()},
        )

    # ----------------------------------------------------------------- API limits
    @property
    def daily_limit(self) -> int:
        return int(self.store.get_meta("daily_limit") or DEFAULT_DAILY_LIMIT)

    def set_daily_limit(self, limit: int) -> None:
        self.store.set_meta("daily_limit", limit)

    def api_usage(self) -> int:
        """API requests in the last 24 hours of the org clock (Salesforce's allocation is a rolling 24 hours)."""
        with self._lock:
            return self._usage.used(self.clock.now())

    def reset_api_usage(self) -> None:
        from .limits import RollingUsage

        with self._lock:
            self._usage = RollingUsage()
            self.store.set_meta("api_usage", {"minutes": {}})

    def count_request(self) -> int:
        """Count one API request against the rolling 24-hour allocation; REQUEST_LIMIT_EXCEEDED when spent."""
        with self._lock:
            now = self.clock.now()
            used = self._usage.used(now)
            if used >= self.daily_limit:
                raise SalesforceError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", status=403)
            self._usage.add(now)
            self.store.set_meta("api_usage", {"minutes": self._usage.to_json()})
            return used + 1

    def limits(self) -> dict[str, Any]:
        limit = self.daily_limit
        used = self.api_usage()
        return {
            "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
            "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
            "HourlyODataCallout": {"Max": 10000, "Remaining": 10000},
        }

    # ----------------------------------------------------------------- metadata changes
    def add_custom_field(self, object_name: str, spec: dict[str, Any]) -> None:
        """Create a custom field on a live object (persisted in the org's metadata)."""
        from .schema import custom_field

        obj = self.schema.get(object_name)
        with self.store.lock:
            obj.add_field(custom_field(obj.name, spec))
            self.store.ensure_table(obj)
            added = self.store.get_meta("added_fields") or []
            self.store.set_meta("added_fields", [*added, {"object": obj.name, **spec}])
        from .composite import mark_modified

        mark_modified(self, obj.name)  # describes answer If-Modified-Since with 200 again

    def change_field_type(self, object_name: str, field_name: str, new_type: str, **size: Any) -> dict[str, Any]:
        """Change a custom field's type as an admin does in Setup; describe and stored values follow
        (see field_types.py for the conversions and the Salesforce Help article they come from)."""
        from .composite import mark_modified
        from .field_types import change_field_type

        changed = change_field_type(self, object_name, field_name, new_type, **size)
        # A type change is a metadata change: the object's describe answers If-Modified-Since with 200 again
        # (REST API Developer Guide, "sObject Describe", If-Modified-Since: "If the object metadata has not
        # changed since the included date, a 304 Not Modified status code is returned").
        mark_modified(self, self.schema.get(object_name).name)
        return changed

    def _restore_added_fields(self) -> None:
        from .schema import custom_field

        for spec in self.store.get_meta("added_fields") or []:
            spec = dict(spec)
            obj = self.schema.get(spec.pop("object"))
            if not obj.has_field(spec["name"]):
                obj.add_field(custom_field(obj.name, spec))
                self.store.ensure_table(obj)

    # ----------------------------------------------------------------- clock
    def set_clock(self, instant: datetime, freeze: bool = False) -> None:
        self.clock.set(instant, freeze=freeze)
        self.store.save_clock()
        self.purge_recycle_bin()

    def advance_clock(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self.store.save_clock()
        self.purge_recycle_bin()

    def purge_recycle_bin(self) -> int:
        """Permanently delete what has spent 15 days in the recycle bin (recycle_bin.py); every API call checks."""
        store = self.store
        now = self.clock.now()
        if not store.bin.is_due(now):
            return 0
        with store.lock, store.transaction():
            return store.bin.purge_due(now)

    def close(self) -> None:
        self.store.save_clock()
        self.store.conn.close()
        if getattr(self, "_blobs", None) is not None:
            self._blobs.close()
