"""Deterministic bulk generator of a realistic org: `generate_org(org, size, seed)`.

`size` is the number of Opportunities; the other objects follow fixed ratios (see `planned_counts`).
Rows are built as tuples and written with `executemany`, one transaction per object, bypassing the
per-record validation of `OrgStore.insert` for speed (1,000,000 Opportunities in well under a minute).
The data is nevertheless exactly what the validated write path would have produced had each record
been inserted at its CreatedDate by its CreatedById and last updated at its LastModifiedDate by its
LastModifiedById: derived fields follow `store._derive` (names, stage-driven probability/forecast/
closed/won flags, expected revenue, fiscal period, case IsClosed/ClosedDate), defaults follow
`store._apply_defaults` (booleans 0, case numbers), values are in their stored form, every lookup
points at a record created before the child, and ids come from `store.reserve_ids` + `ids.make_id`
(ids ascend with CreatedDate, as in a real org). The tests replay samples through the validated path.

Timestamps are spread over the 365 days before the org clock's now, concentrated in working hours
(UTC, weekdays); LastModifiedDate = SystemModstamp lies in [CreatedDate, now). Same seed, size and
clock instant on a fresh org give an identical org, ids included. Afterwards the lookup columns
are indexed (`ensure_lookup_indexes`) so that deletes, which look up children, stay fast on big orgs.

`generate_custom_records(org, {name: count}, seed)` fills further custom objects (e.g. declared in an
extra custom-objects YAML) the same way, with values made from each field's describe.
"""

from __future__ import annotations

import math
import queue
import random
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

from . import ids
from .schema import NUMBER_TYPES, TEXT_TYPES
from .standard_objects import INDUSTRIES
from .store import STAGES, q

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
WINDOW_DAYS = 365
CHUNK = 20_000
_EPOCH = date(1970, 1, 1)

# ----------------------------------------------------------------- word lists
FIRST_NAMES = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Steven",
    "Emily",
    "Paul",
    "Donna",
    "Andrew",
    "Michelle",
    "Joshua",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Laura",
    "Ryan",
    "Helen",
    "Jacob",
    "Sharon",
    "Gary",
    "Cynthia",
    "Nicholas",
    "Kathleen",
    "Eric",
    "Amy",
    "Jonathan",
    "Angela",
    "Priya",
    "Arjun",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Carlos",
    "Sofia",
    "Mateo",
    "Lucia",
    "Lars",
    "Ingrid",
    "Pierre",
    "Camille",
    "Hans",
    "Greta",
    "Omar",
    "Fatima",
    "Kwame",
    "Amara",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Patel",
    "Shah",
    "Chen",
    "Wang",
    "Tanaka",
    "Suzuki",
    "Kim",
    "Park",
    "Muller",
    "Schmidt",
    "Dubois",
    "Moreau",
    "Rossi",
    "Bianchi",
    "Jensen",
    "Nielsen",
    "Larsen",
    "Novak",
    "Kowalski",
    "Okafor",
    "Mensah",
    "Haddad",
    "Cohen",
    "Murphy",
    "Kelly",
    "Sullivan",
    "Byrne",
    "Fischer",
    "Weber",
    "Costa",
)
COMPANY_WORDS_A = (
    "Blue",
    "Red",
    "Silver",
    "Golden",
    "Green",
    "North",
    "South",
    "East",
    "West",
    "Summit",
    "Pioneer",
    "Atlas",
    "Apex",
    "Bright",
    "Cedar",
    "Coastal",
    "Crystal",
    "Delta",
    "Eagle",
    "Evergreen",
    "First",
    "Granite",
    "Harbor",
    "Horizon",
    "Iron",
    "Keystone",
    "Liberty",
    "Lunar",
    "Maple",
    "Meridian",
    "Nova",
    "Oak",
    "Orion",
    "Pacific",
    "Peak",
    "Pinnacle",
    "Prime",
    "Quantum",
    "Redwood",
    "River",
    "Rocky",
    "Sierra",
    "Solar",
    "Sterling",
    "Stone",
    "Sun",
    "Titan",
    "Trinity",
    "United",
    "Vertex",
    "Vista",
)
COMPANY_WORDS_B = (
    "Bridge",
    "Valley",
    "Ridge",
    "Harbor",
    "Point",
    "Field",
    "Wave",
    "Path",
    "Gate",
    "Crest",
    "Forge",
    "Stream",
    "Lake",
    "Mountain",
    "Bay",
    "Rock",
    "Tree",
    "Star",
    "Light",
    "Line",
    "Works",
    "Peak",
    "Wind",
    "Leaf",
    "Shore",
    "Port",
    "Mill",
    "Spring",
    "Hill",
    "Park",
)
COMPANY_WORDS_C = (
    "Logistics",
    "Analytics",
    "Foods",
    "Energy",
    "Health",
    "Media",
    "Systems",
    "Software",
    "Capital",
    "Consulting",
    "Manufacturing",
    "Pharma",
    "Motors",
    "Telecom",
    "Retail",
    "Insurance",
    "Robotics",
    "Construction",
    "Design",
    "Networks",
    "Labs",
    "Biotech",
    "Financial",
    "Foods",
    "Apparel",
    "Airlines",
    "Shipping",
    "Hospitality",
    "Education",
    "Security",
)
COMPANY_SUFFIXES = ("Inc.", "LLC", "Ltd", "Corp.", "Group", "Co.", "Holdings", "Partners", "GmbH", "PLC", "")
DIVISIONS = ("EMEA", "APAC", "North America", "LATAM", "Europe", "UK", "Germany", "Japan", "Canada", "Nordics")
DOMAINS = (".com", ".com", ".com", ".net", ".io", ".co", ".org")
PRODUCTS = (
    "Platform License",
    "Enterprise Subscription",
    "Support Renewal",
    "Professional Services",
    "Data Migration",
    "Training Package",
    "Add-on Seats",
    "Premium Support",
    "Integration Bundle",
    "Analytics Module",
    "Implementation",
    "Hardware Refresh",
    "Managed Services",
    "Security Suite",
    "Cloud Storage",
    "Consulting Retainer",
    "Upgrade",
    "Pilot",
    "Expansion",
    "Multi-year Renewal",
)
NEXT_STEPS = (
    "Send proposal",
    "Schedule demo",
    "Follow-up call",
    "Legal review",
    "Pricing approval",
    "Technical deep dive",
    "Security questionnaire",
    "Executive briefing",
    "Send contract",
    "Reference call",
)
OPP_DESCRIPTIONS = (
    "Customer is evaluating two competitors.",
    "Budget approved for this fiscal year.",
    "Champion is the IT director.",
    "Renewal with expansion potential.",
    "Procurement requires three quotes.",
    "Decision expected after board meeting.",
    "Pilot succeeded; rolling out to more teams.",
)
ACCOUNT_DESCRIPTIONS = (
    "Key account in the region.",
    "Long-standing customer since the first release.",
    "Referred by a partner.",
    "Strategic account; quarterly business reviews.",
    "Expanding into new markets this year.",
    "Met at the annual conference.",
)
TITLES = (
    "CEO",
    "CFO",
    "CTO",
    "COO",
    "VP Sales",
    "VP Marketing",
    "VP Engineering",
    "Director of IT",
    "IT Manager",
    "Procurement Manager",
    "Operations Manager",
    "Head of Finance",
    "Buyer",
    "Product Manager",
    "Project Manager",
    "Software Engineer",
    "Office Manager",
    "Account Manager",
    "Marketing Manager",
    "Head of Customer Success",
)
DEPARTMENTS = (
    "Sales",
    "Marketing",
    "Finance",
    "IT",
    "Operations",
    "Procurement",
    "Engineering",
    "Executive",
    "Legal",
    "Support",
)
CASE_SUBJECTS = (
    "Cannot log in",
    "Invoice discrepancy",
    "Request for training",
    "Feature request",
    "Performance issue",
    "Integration error",
    "Data export question",
    "Password reset",
    "Billing address change",
    "Outage report",
    "License upgrade question",
    "Installation problem",
    "Equipment malfunction",
    "Report not loading",
    "API limit reached",
    "Missing records",
    "Slow dashboard",
    "Account merge request",
)
CASE_DESCRIPTIONS = (
    "Customer reported the issue by phone.",
    "Issue started after the latest release.",
    "Affects several users in the finance team.",
    "Customer sent screenshots by email.",
    "Happens intermittently, mostly in the morning.",
    "Workaround provided, waiting for confirmation.",
)
CASE_COMMENTS = (
    "Escalated to tier 2.",
    "Waiting on customer.",
    "Reproduced in sandbox.",
    "Fix scheduled for next release.",
)
STREETS = (
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Market",
    "Mission",
    "Broadway",
    "High",
    "Church",
    "Station",
    "King",
    "Queen",
    "Victoria",
    "River",
)
STREET_KINDS = ("St", "Ave", "Blvd", "Rd", "Way", "Lane", "Drive", "Street", "Road", "Plaza")

# city, state, country, postal prefix, postal digits, lat, lon, phone prefix
CITIES = (
    ("San Francisco", "CA", "USA", "941", 2, 37.7749, -122.4194, "(415) 555-"),
    ("New York", "NY", "USA", "100", 2, 40.7128, -74.0060, "(212) 555-"),
    ("Chicago", "IL", "USA", "606", 2, 41.8781, -87.6298, "(312) 555-"),
    ("Austin", "TX", "USA", "787", 2, 30.2672, -97.7431, "(512) 555-"),
    ("Seattle", "WA", "USA", "981", 2, 47.6062, -122.3321, "(206) 555-"),
    ("Boston", "MA", "USA", "021", 2, 42.3601, -71.0589, "(617) 555-"),
    ("Denver", "CO", "USA", "802", 2, 39.7392, -104.9903, "(303) 555-"),
    ("Atlanta", "GA", "USA", "303", 2, 33.7490, -84.3880, "(404) 555-"),
    ("Miami", "FL", "USA", "331", 2, 25.7617, -80.1918, "(305) 555-"),
    ("Los Angeles", "CA", "USA", "900", 2, 34.0522, -118.2437, "(213) 555-"),
    ("Dallas", "TX", "USA", "752", 2, 32.7767, -96.7970, "(214) 555-"),
    ("Minneapolis", "MN", "USA", "554", 2, 44.9778, -93.2650, "(612) 555-"),
    ("Portland", "OR", "USA", "972", 2, 45.5152, -122.6784, "(503) 555-"),
    ("Phoenix", "AZ", "USA", "850", 2, 33.4484, -112.0740, "(602) 555-"),
    ("Toronto", "ON", "Canada", "M5V ", 0, 43.6532, -79.3832, "(416) 555-"),
    ("Vancouver", "BC", "Canada", "V6B ", 0, 49.2827, -123.1207, "(604) 555-"),
    ("London", "England", "United Kingdom", "EC1A ", 0, 51.5074, -0.1278, "+44 20 7946 "),
    ("Manchester", "England", "United Kingdom", "M1 ", 0, 53.4808, -2.2426, "+44 161 496 "),
    ("Edinburgh", "Scotland", "United Kingdom", "EH1 ", 0, 55.9533, -3.1883, "+44 131 496 "),
    ("Dublin", "Leinster", "Ireland", "D02 ", 0, 53.3498, -6.2603, "+353 1 555 "),
    ("Paris", "Ile-de-France", "France", "750", 2, 48.8566, 2.3522, "+33 1 55 55 "),
    ("Lyon", "Auvergne-Rhone-Alpes", "France", "690", 2, 45.7640, 4.8357, "+33 4 55 55 "),
    ("Berlin", "Berlin", "Germany", "101", 2, 52.5200, 13.4050, "+49 30 5555 "),
    ("Munich", "Bavaria", "Germany", "803", 2, 48.1351, 11.5820, "+49 89 5555 "),
    ("Hamburg", "Hamburg", "Germany", "204", 2, 53.5511, 9.9937, "+49 40 5555 "),
    ("Amsterdam", "North Holland", "Netherlands", "101", 1, 52.3676, 4.9041, "+31 20 555 "),
    ("Stockholm", "Stockholm", "Sweden", "111 ", 2, 59.3293, 18.0686, "+46 8 555 "),
    ("Copenhagen", "Capital Region", "Denmark", "10", 2, 55.6761, 12.5683, "+45 55 55 "),
    ("Zurich", "Zurich", "Switzerland", "80", 2, 47.3769, 8.5417, "+41 44 555 "),
    ("Madrid", "Madrid", "Spain", "280", 2, 40.4168, -3.7038, "+34 91 555 "),
    ("Milan", "Lombardy", "Italy", "201", 2, 45.4642, 9.1900, "+39 02 5555 "),
    ("Sydney", "NSW", "Australia", "20", 2, -33.8688, 151.2093, "+61 2 5550 "),
    ("Melbourne", "VIC", "Australia", "30", 2, -37.8136, 144.9631, "+61 3 5550 "),
    ("Singapore", "Singapore", "Singapore", "0189", 2, 1.3521, 103.8198, "+65 6555 "),
    ("Tokyo", "Tokyo", "Japan", "100-00", 2, 35.6762, 139.6503, "+81 3 5555 "),
    ("Sao Paulo", "SP", "Brazil", "01310-", 3, -23.5505, -46.6333, "+55 11 5555 "),
)

ACCOUNT_TYPES = (
    ("Customer - Direct",) * 5
    + ("Prospect",) * 4
    + ("Customer - Channel",) * 2
    + ("Channel Partner / Reseller", "Installation Partner", "Technology Partner", "Other")
)
RATINGS = ("Hot", "Warm", "Warm", "Cold", "Cold", None)
OWNERSHIPS = ("Private", "Private", "Private", "Public", "Subsidiary", "Other")
SOURCES = ("Web", "Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other", None)
OPP_TYPES = (
    ("New Customer",) * 9
    + ("Existing Customer - Upgrade",) * 6
    + ("Existing Customer - Replacement",) * 3
    + ("Existing Customer - Downgrade",) * 2
    + (None,)
)
OPEN_STAGES = (
    ("Prospecting",) * 20
    + ("Qualification",) * 18
    + ("Needs Analysis",) * 15
    + ("Value Proposition",) * 13
    + ("Id. Decision Makers",) * 10
    + ("Perception Analysis",) * 8
    + ("Proposal/Price Quote",) * 9
    + ("Negotiation/Review",) * 7
)
SALUTATIONS = ("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", None, None, None)
CASE_TYPES = ("Mechanical", "Electrical", "Electronic", "Structural", "Other", None)
CASE_REASONS = (
    "Installation",
    "Equipment Complexity",
    "Performance",
    "Breakdown",
    "Equipment Design",
    "Feedback",
    "Other",
    None,
)
CASE_ORIGINS = ("Phone",) * 7 + ("Email",) * 8 + ("Web",) * 5
CASE_PRIORITIES = ("High",) * 2 + ("Medium",) * 5 + ("Low",) * 3
CASE_OPEN_STATUSES = ("New",) * 7 + ("Working",) * 9 + ("Escalated",) * 4
LEAD_OPEN_STATUSES = ("Open - Not Contacted", "Open - Not Contacted", "Working - Contacted")
ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)

_STAGE_INFO = {s: (p, fc, int(closed), int(won)) for s, (p, fc, closed, won) in STAGES.items()}


def planned_counts(size: int) -> dict[str, int]:
    """Records per object that `generate_org(org, size)` creates."""
    if size < 0:
        raise ValueError("size must be >= 0")
    accounts = max(1, size // 10)
    return {
        "Account": accounts,
        "Contact": 2 * accounts,
        "Opportunity": size,
        "Lead": size // 20,
        "Case": size // 5,
        "OpportunityContactRole": size // 10,
        "Invoice__c": size // 5,
    }


# ----------------------------------------------------------------- ids and time formatting
def id_range(key_prefix: str, first: int, count: int) -> Iterator[str]:
    """`ids.make_id(key_prefix, n)` for n in first..first+count-1, about ten times faster."""
    b62 = ids._BASE62
    alphabet = ids._CHECKSUM_ALPHABET
    head = key_prefix + ids.POD
    if len(head) != 6:
        yield from (ids.make_id(key_prefix, n) for n in range(first, first + count))
        return
    c1 = ids.checksum(head[:5] + "00000" + "00000")[0]
    pair_bits = []
    for n in range(62 * 62):
        s = b62[n // 62] + b62[n % 62]
        pair_bits.append((s, (8 if s[0].isupper() else 0) | (16 if s[1].isupper() else 0)))
    n, end = first, first + count
    while n < end:
        hi, lo = divmod(n, 62**5)
        a, b = divmod(lo, 3844)
        if hi >= 62**4:
            raise OverflowError("id counter out of range")
        hs = b62[hi // 238328] + b62[hi // 3844 % 62] + b62[hi // 62 % 62] + b62[hi % 62]
        a_s = b62[a // 3844] + b62[a // 62 % 62] + b62[a % 62]
        a_bits = sum(1 << j for j, ch in enumerate(a_s) if ch.isupper())
        c2 = ids.checksum("00000" + head[5] + hs + "00000")[1]
        stem = head + hs + a_s
        mid = c1 + c2
        stop = min(3844, b + end - n)
        for s, bits in pair_bits[b:stop]:
            yield stem + s + mid + alphabet[a_bits | bits]
        n += stop - b


class _Formatter:
    """Fast ms-since-epoch -> Salesforce datetime/date text (`YYYY-MM-DDTHH:MM:SS.mmm+0000`)."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        self._hm = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
        self._sms = [f"{s:02d}.{ms:03d}+0000" for s in range(60) for ms in range(1000)]

    def day(self, day_number: int) -> str:
        s = self._days.get(day_number)
        if s is None:
            s = self._days[day_number] = (_EPOCH + timedelta(days=day_number)).isoformat()
        return s

    def ts(self, ms: int) -> str:
        d, rem = divmod(ms, DAY_MS)
        s = self._days.get(d)
        if s is None:
            s = self.day(d)
        return s + "T" + self._hm[rem // 60000] + self._sms[rem % 60000]


class _Timeline:
    """Maps u in [0, 1) onto the window [start, end) with most weight in weekday working hours (UTC)."""

    def __init__(self, end_ms: int, days: int = WINDOW_DAYS):
        self.end = end_ms
        self.start = end_ms - days * DAY_MS
        hours = days * 24
        weights = []
        for h in range(hours):
            t = datetime.fromtimestamp((self.start + h * HOUR_MS) / 1000, UTC)
            if t.weekday() >= 5:
                w = 0.04
            elif 8 <= t.hour < 18:
                w = 1.0
            elif t.hour in (7, 18, 19):
                w = 0.3
            else:
                w = 0.03
            weights.append(w)
        total = sum(weights)
        self.w = [w / total for w in weights]
        cum = [0.0]
        for w in self.w:
            cum.append(cum[-1] + w)
        cum[-1] = 1.0
        self.cum = cum
        self.hours = hours

    def at(self, u: float) -> int:
        h = bisect_right(self.cum, u) - 1
        if h >= self.hours:
            return self.end - 1
        if h < 0:
            h = 0
        ms = self.start + h * HOUR_MS + int((u - self.cum[h]) / self.w[h] * HOUR_MS)
        return ms if ms < self.end else self.end - 1

    def u_of(self, ms: int) -> float:
        h, rem = divmod(ms - self.start, HOUR_MS)
        if h < 0:
            return 0.0
        if h >= self.hours:
            return 1.0
        return self.cum[h] + self.w[h] * rem / HOUR_MS


def _chunks_in_background(rows: Iterable[tuple], size: int = CHUNK) -> Iterator[list[tuple]]:
    """Lists of `size` rows, built by a producer thread while the caller writes the previous ones.

    sqlite3 releases the GIL while it steps a statement, so generating the next chunk in Python
    overlaps with SQLite inserting the current one. The producer never touches the connection.
    """
    chunks: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            it = iter(rows)
            while True:
                chunk = list(islice(it, size))
                if not put(chunk) or not chunk:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=produce, name="devorg-generator", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def ensure_lookup_indexes(store: Any, targets: Iterable[str] | None = None) -> list[str]:
    """Index the lookup columns that deletes of `targets` (default: every deletable object) scan.

    `OrgStore.delete` looks up the children of each deleted record through every lookup pointing at
    its object (to cascade or clear them); without an index each lookup is a full table scan, which
    makes mass deletes on a big org take hours. Creating the index after a bulk load is cheap (a sort).
    Names are `<object>_<field>` in lower case. Returns the names of the indexes created.
    """
    schema = store.schema
    wanted = (
        [schema.get(t) for t in targets] if targets is not None else [o for o in schema.objects.values() if o.deletable]
    )
    created = []
    with store.lock:
        existing = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        for target in wanted:
            if not target.deletable:
                continue
            for child, f in schema.references_to(target):
                name = f"{child.lower}_{f.lower}"
                if name in existing:
                    continue
                store.conn.execute(f"CREATE INDEX IF NOT EXISTS {q(name)} ON {q(child.name)}({q(f.name)})")
                existing.add(name)
                created.append(name)
    return created


# ----------------------------------------------------------------- the generator
def generate_org(org: Any, size: int, seed: int = 42) -> dict[str, int]:
    """Fill `org` with a realistic org of `size` Opportunities; returns the records created per object."""
    return _Generator(org, size, seed).run()


class _Generator:
    def __init__(self, org: Any, size: int, seed: int):
        self.org = org
        self.store = org.store
        self.schema = org.schema
        self.counts = planned_counts(size)
        self.seed = seed
        now = org.clock.now()
        self.now_ms = int(now.timestamp() * 1000)  # floor to ms: stored timestamps have ms precision
        self.tl = _Timeline(self.now_ms)
        self.fmt = _Formatter()
        self.now_day = self.now_ms // DAY_MS
        users = {}
        for key in ("admin", "integration", "sales1", "sales2", "sales3", "support"):
            try:
                users[key] = org.user(key).user_id
            except KeyError:
                pass
        if not users:
            rows = self.store.conn.execute('SELECT Id FROM "User" ORDER BY Id').fetchall()
            users = {f"user{i}": r[0] for i, r in enumerate(rows)}
        if not users:
            raise ValueError("the org has no users")
        fallback = next(iter(users.values()))
        self.admin = users.get("admin", fallback)
        self.integration = users.get("integration", fallback)
        self.support = users.get("support", fallback)
        self.sales = [users[k] for k in ("sales1", "sales2", "sales3") if k in users] or [fallback]
        # weighted pools, indexed with int(random() * len(pool))
        self.owner_pool = self.sales[:1] * 4 + self.sales[1:2] * 4 + self.sales[2:3] * 2 or self.sales
        self.editor_pool = self.owner_pool + [self.admin, self.integration]
        self.first: dict[str, int] = {}  # first id counter of each generated object
        self.parents_cache: dict[str, _Parents] = {}  # custom objects' lookup targets, see _custom

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}/{name}")

    # ----------------------------------------------------------------- plumbing
    def _bulk(self, obj_name: str, cols: list[str], make_rows: Callable[[int], Iterable[tuple]], count: int) -> int:
        """Insert `count` rows of obj_name made by make_rows(first id counter); returns that counter."""
        obj = self.schema.get(obj_name)
        known = {f.name for f in obj.stored_fields}
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise ValueError(f"generator columns not on {obj_name}: {unknown}")
        sql = f"INSERT INTO {q(obj.name)} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})"
        with self.store.transaction():
            first = self.store.reserve_ids(obj, count) if count else 0
            if count:
                for chunk in _chunks_in_background(make_rows(first)):
                    self.store.conn.executemany(sql, chunk)
        self.first[obj_name] = first
        return first

    def _lm(self, u: float, cd: int, r: Callable[[], float], p_unmodified: float, horizon: float = 1.0) -> int:
        """A LastModifiedDate for a record created at u (ms cd): unchanged, or some time later, < now."""
        if r() < p_unmodified:
            return cd
        lm = self.tl.at(u + (1.0 - u) * horizon * r())
        return lm if lm > cd else cd

    def _address(self, r: Callable[[], float]) -> tuple[int, str, str, str, str, str, float, float]:
        ci = int(r() * len(CITIES))
        city, state, country, prefix, digits, lat, lon, _ = CITIES[ci]
        street = (
            f"{1 + int(r() * 9899)} {STREETS[int(r() * len(STREETS))]} {STREET_KINDS[int(r() * len(STREET_KINDS))]}"
        )
        if digits:
            postal = prefix + str(int(r() * 10**digits)).zfill(digits)
        else:
            postal = prefix + str(1 + int(r() * 9)) + "ABDEFGHJLNPQRSTUWXYZ"[int(r() * 20)] + "XY"[int(r() * 2)]
        return (
            ci,
            street,
            city,
            state,
            postal,
            country,
            round(lat + (r() - 0.5) * 0.1, 6),
            round(lon + (r() - 0.5) * 0.1, 6),
        )

    @staticmethod
    def _phone(ci: int, r: Callable[[], float]) -> str:
        return CITIES[ci][7] + str(int(r() * 10000)).zfill(4)

    def _company(self, r: Callable[[], float]) -> tuple[str, str]:
        """(company name, web domain)."""
        kind = r()
        if kind < 0.55:
            a, b = COMPANY_WORDS_A[int(r() * len(COMPANY_WORDS_A))], COMPANY_WORDS_B[int(r() * len(COMPANY_WORDS_B))]
            c = COMPANY_WORDS_C[int(r() * len(COMPANY_WORDS_C))]
            base = f"{a}{b.lower()} {c}"
            slug = f"{a}{b}{c}"
        elif kind < 0.8:
            a, c = COMPANY_WORDS_A[int(r() * len(COMPANY_WORDS_A))], COMPANY_WORDS_C[int(r() * len(COMPANY_WORDS_C))]
            base = f"{a} {c}"
            slug = f"{a}{c}"
        else:
            x, y = LAST_NAMES[int(r() * len(LAST_NAMES))], LAST_NAMES[int(r() * len(LAST_NAMES))]
            c = COMPANY_WORDS_C[int(r() * len(COMPANY_WORDS_C))]
            base = f"{x} & {y} {c}"
            slug = f"{x}{y}"
        suffix = COMPANY_SUFFIXES[int(r() * len(COMPANY_SUFFIXES))]
        name = f"{base} {suffix}" if suffix else base
        return name, slug.lower() + DOMAINS[int(r() * len(DOMAINS))]

    # ----------------------------------------------------------------- objects
    def run(self) -> dict[str, int]:
        c = self.counts
        with self.store.lock:
            self._accounts(c["Account"])
            self._contacts(c["Contact"])
            self._opportunities(c["Opportunity"])
            self._leads(c["Lead"])
            self._cases(c["Case"])
            self._contact_roles(c["OpportunityContactRole"])
            self._invoices(c["Invoice__c"])
            ensure_lookup_indexes(self.store)
            self.store.set_meta(
                "generator", {"size": c["Opportunity"], "seed": self.seed, "now": self.fmt.ts(self.now_ms), "counts": c}
            )
        return dict(c)

    def _accounts(self, n: int) -> None:
        r = self.rng("Account").random
        tl, fmt = self.tl, self.fmt
        owner_pool, editor_pool = self.owner_pool, self.editor_pool
        integration = self.integration
        self.acc_u = acc_u = array("d")
        self.acc_ids: list[str] = []
        self.acc_names: list[str] = []
        self.acc_domains: list[str] = []
        self.acc_owner: list[str] = []
        self.acc_city = array("H")
        cols = [
            "Id",
            "IsDeleted",
            "Name",
            "Type",
            "ParentId",
            "BillingStreet",
            "BillingCity",
            "BillingState",
            "BillingPostalCode",
            "BillingCountry",
            "BillingLatitude",
            "BillingLongitude",
            "ShippingStreet",
            "ShippingCity",
            "ShippingState",
            "ShippingPostalCode",
            "ShippingCountry",
            "Phone",
            "Fax",
            "AccountNumber",
            "Website",
            "Sic",
            "Industry",
            "AnnualRevenue",
            "NumberOfEmployees",
            "Ownership",
            "TickerSymbol",
            "Description",
            "Rating",
            "Site",
            "OwnerId",
            "AccountSource",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]

        def rows(first: int) -> Iterator[tuple]:
            for i, rid in enumerate(id_range("001", first, n)):
                u = (i + r()) / n
                cd = tl.at(u)
                parent = None
                if i >= 5 and r() < 0.04:
                    p = int(r() * i)
                    parent = self.acc_ids[p]
                    base = self.acc_names[p]
                    for suffix in COMPANY_SUFFIXES:
                        if suffix and base.endswith(" " + suffix):
                            base = base[: -len(suffix) - 1]
                            break
                    name = f"{base} {DIVISIONS[int(r() * len(DIVISIONS))]}"
                    domain = self.acc_domains[p]
                else:
                    name, domain = self._company(r)
                ci, street, city, state, postal, country, lat, lon = self._address(r)
                if r() < 0.6:
                    ship = (street, city, state, postal, country)
                elif r() < 0.5:
                    ship = (None,) * 5
                else:
                    _, *ship = self._address(r)
                    ship = tuple(ship[:5])
                big = r()
                employees = int(10 ** (1 + 4.2 * big * big))
                revenue = float(round(employees * (50_000 + r() * 250_000), -3))
                ownership = OWNERSHIPS[int(r() * len(OWNERSHIPS))]
                ticker = None
                if ownership == "Public":
                    ticker = "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(r() * 26)] for _ in range(3 + int(r() * 2)))
                owner = owner_pool[int(r() * len(owner_pool))]
                creator = (
                    owner if r() < 0.7 else (integration if r() < 0.6 else editor_pool[int(r() * len(editor_pool))])
                )
                lm = self._lm(u, cd, r, 0.35)
                editor = creator if lm == cd else (owner if r() < 0.6 else editor_pool[int(r() * len(editor_pool))])
                cds, lms = fmt.ts(cd), fmt.ts(lm)
                acc_u.append(u)
                self.acc_ids.append(rid)
                self.acc_names.append(name)
                self.acc_domains.append(domain)
                self.acc_owner.append(owner)
                self.acc_city.append(ci)
                yield (
                    rid,
                    0,
                    name,
                    ACCOUNT_TYPES[int(r() * len(ACCOUNT_TYPES))],
                    parent,
                    street,
                    city,
                    state,
                    postal,
                    country,
                    lat,
                    lon,
                    *ship,
                    self._phone(ci, r),
                    self._phone(ci, r) if r() < 0.2 else None,
                    f"AC{first + i:08d}" if r() < 0.7 else None,
                    "www." + domain if r() < 0.85 else None,
                    str(1000 + int(r() * 8999)) if r() < 0.5 else None,
                    INDUSTRIES[int(r() * len(INDUSTRIES))] if r() < 0.9 else None,
                    revenue if r() < 0.8 else None,
                    employees if r() < 0.85 else None,
                    ownership,
                    ticker,
                    ACCOUNT_DESCRIPTIONS[int(r() * len(ACCOUNT_DESCRIPTIONS))] if r() < 0.2 else None,
                    RATINGS[int(r() * len(RATINGS))],
                    "Headquarters" if r() < 0.1 else None,
                    owner,
                    SOURCES[int(r() * len(SOURCES))],
                    cds,
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Account", cols, rows, n)

    def _contacts(self, n: int) -> None:
        r = self.rng("Contact").random
        tl, fmt = self.tl, self.fmt
        n_acc = len(self.acc_u)
        acc_u = self.acc_u
        # Every account gets one contact soon after it was created; the rest go to random accounts.
        plan = []
        for a in range(n_acc):
            plan.append((acc_u[a] + (1.0 - acc_u[a]) * r() * 0.02, a))
        for _ in range(n - n_acc):
            a = int(r() * n_acc)
            plan.append((acc_u[a] + (1.0 - acc_u[a]) * r(), a))
        plan.sort()
        self.con_u = con_u = array("d")
        self.con_ids: list[str] = []
        self.acc_contacts: dict[int, list[int]] = {}
        owner_pool, editor_pool = self.owner_pool, self.editor_pool
        cols = [
            "Id",
            "IsDeleted",
            "AccountId",
            "LastName",
            "FirstName",
            "Salutation",
            "Name",
            "MailingStreet",
            "MailingCity",
            "MailingState",
            "MailingPostalCode",
            "MailingCountry",
            "Phone",
            "MobilePhone",
            "ReportsToId",
            "Email",
            "Title",
            "Department",
            "LeadSource",
            "Birthdate",
            "OwnerId",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]

        def rows(first: int) -> Iterator[tuple]:
            for c, rid in enumerate(id_range("003", first, n)):
                u, a = plan[c]
                cd = tl.at(u)
                first_name = FIRST_NAMES[int(r() * len(FIRST_NAMES))]
                last_name = LAST_NAMES[int(r() * len(LAST_NAMES))]
                siblings = self.acc_contacts.setdefault(a, [])
                reports_to = self.con_ids[siblings[int(r() * len(siblings))]] if siblings and r() < 0.25 else None
                siblings.append(c)
                if r() < 0.7:
                    _, street, city, state, postal, country, _, _ = self._address_for(a, r)
                else:
                    street = city = state = postal = country = None
                ci = self.acc_city[a]
                owner = self.acc_owner[a] if r() < 0.8 else owner_pool[int(r() * len(owner_pool))]
                creator = owner if r() < 0.75 else editor_pool[int(r() * len(editor_pool))]
                lm = self._lm(u, cd, r, 0.4)
                editor = creator if lm == cd else (owner if r() < 0.6 else editor_pool[int(r() * len(editor_pool))])
                birth = None
                if r() < 0.2:
                    birth = fmt.day(self.now_day - 365 * 22 - int(r() * 365 * 40))
                lms = fmt.ts(lm)
                con_u.append(u)
                self.con_ids.append(rid)
                yield (
                    rid,
                    0,
                    self.acc_ids[a],
                    last_name,
                    first_name,
                    SALUTATIONS[int(r() * len(SALUTATIONS))],
                    f"{first_name} {last_name}",
                    street,
                    city,
                    state,
                    postal,
                    country,
                    self._phone(ci, r),
                    self._phone(ci, r) if r() < 0.5 else None,
                    reports_to,
                    f"{first_name.lower()}.{last_name.lower()}@{self.acc_domains[a]}" if r() < 0.9 else None,
                    TITLES[int(r() * len(TITLES))] if r() < 0.85 else None,
                    DEPARTMENTS[int(r() * len(DEPARTMENTS))] if r() < 0.6 else None,
                    SOURCES[int(r() * len(SOURCES))],
                    birth,
                    owner,
                    fmt.ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Contact", cols, rows, n)

    def _address_for(self, a: int, r: Callable[[], float]) -> tuple:
        """A street address in the account's city."""
        ci = self.acc_city[a]
        city, state, country, prefix, digits, lat, lon, _ = CITIES[ci]
        street = (
            f"{1 + int(r() * 9899)} {STREETS[int(r() * len(STREETS))]} {STREET_KINDS[int(r() * len(STREET_KINDS))]}"
        )
        postal = prefix + str(int(r() * 10**digits)).zfill(digits) if digits else prefix + "1AA"
        return ci, street, city, state, postal, country, lat, lon

    def _opportunities(self, n: int) -> None:
        r = self.rng("Opportunity").random
        gauss = self.rng("Opportunity/amount").gauss
        tl, fmt = self.tl, self.fmt
        at = tl.at
        acc_u, acc_ids, acc_names, acc_owner = self.acc_u, self.acc_ids, self.acc_names, self.acc_owner
        n_acc = len(acc_u)
        owner_pool, editor_pool = self.owner_pool, self.editor_pool
        n_owner, n_editor = len(owner_pool), len(editor_pool)
        integration = self.integration
        now_day = self.now_day
        stage_info = _STAGE_INFO
        ts, day = fmt.ts, fmt.day
        exp = math.exp
        self.opp_u = opp_u = array("d")
        self.opp_account = opp_account = array("l")
        self.opp_amount = opp_amount = array("d")
        self.opp_won = opp_won = bytearray()
        self.opp_owner = opp_owner = array("B")
        owner_index = {u: i for i, u in enumerate(owner_pool)}
        self.owner_list = owner_pool
        u0 = acc_u[0] if n_acc else 0.0
        span = 1.0 - u0
        cols = [
            "Id",
            "IsDeleted",
            "AccountId",
            "IsPrivate",
            "Name",
            "Description",
            "StageName",
            "Amount",
            "Probability",
            "ExpectedRevenue",
            "TotalOpportunityQuantity",
            "CloseDate",
            "Type",
            "NextStep",
            "LeadSource",
            "IsClosed",
            "IsWon",
            "ForecastCategory",
            "ForecastCategoryName",
            "HasOpportunityLineItem",
            "OwnerId",
            "FiscalQuarter",
            "FiscalYear",
            "Fiscal",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]
        n_products, n_stages, n_types, n_sources = len(PRODUCTS), len(OPEN_STAGES), len(OPP_TYPES), len(SOURCES)

        def rows(first: int) -> Iterator[tuple]:
            k = 0
            for i, rid in enumerate(id_range("006", first, n)):
                u = u0 + (i + r()) / n * span
                while k < n_acc and acc_u[k] <= u:
                    k += 1
                a = int(r() * k)
                cd = at(u)
                cd_day = cd // DAY_MS
                oi = int(r() * n_owner)
                owner = owner_pool[oi]
                if r() < 0.75:
                    owner = acc_owner[a]
                    oi = owner_index.get(owner, oi)
                creator = owner if r() < 0.8 else (integration if r() < 0.5 else editor_pool[int(r() * n_editor)])
                age = 1.0 - u
                if age > 0.003 and r() < 0.08 + 0.85 * age:
                    won = r() < 0.42
                    stage = "Closed Won" if won else "Closed Lost"
                    lm = at(u + age * r() * 0.35)
                    if lm < cd:
                        lm = cd
                    close_day = lm // DAY_MS
                    next_step = None
                else:
                    stage = OPEN_STAGES[int(r() * n_stages)]
                    close_day = now_day - 20 + int(r() * 200)
                    if close_day < cd_day:
                        close_day = cd_day + int(r() * 60)
                    lm = cd if r() < 0.3 else at(u + age * r())
                    if lm < cd:
                        lm = cd
                    next_step = NEXT_STEPS[int(r() * len(NEXT_STEPS))] if r() < 0.4 else None
                editor = creator if lm == cd else (owner if r() < 0.7 else editor_pool[int(r() * n_editor)])
                prob, forecast, closed, is_won = stage_info[stage]
                if r() < 0.03:
                    amount = None
                    expected = None
                else:
                    amount = float(max(5, round(exp(gauss(9.6, 1.1)) / 100)) * 100)
                    expected = round(amount * prob / 100, 2)
                close = day(close_day)
                year, month = int(close[:4]), int(close[5:7])
                quarter = (month - 1) // 3 + 1
                lms = ts(lm)
                opp_u.append(u)
                opp_account.append(a)
                opp_amount.append(math.nan if amount is None else amount)
                opp_won.append(is_won)
                opp_owner.append(oi)
                yield (
                    rid,
                    0,
                    acc_ids[a],
                    1 if r() < 0.01 else 0,
                    f"{acc_names[a]} - {PRODUCTS[int(r() * n_products)]}"[:120],
                    OPP_DESCRIPTIONS[int(r() * len(OPP_DESCRIPTIONS))] if r() < 0.1 else None,
                    stage,
                    amount,
                    prob,
                    expected,
                    float(1 + int(r() * 50)) if r() < 0.25 else None,
                    close,
                    OPP_TYPES[int(r() * n_types)],
                    next_step,
                    SOURCES[int(r() * n_sources)],
                    closed,
                    is_won,
                    forecast,
                    forecast,
                    0,
                    owner,
                    quarter,
                    year,
                    f"{year} {quarter}",
                    ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Opportunity", cols, rows, n)

    def _leads(self, n: int) -> None:
        r = self.rng("Lead").random
        tl, fmt = self.tl, self.fmt
        owner_pool, editor_pool, integration = self.owner_pool, self.editor_pool, self.integration
        cols = [
            "Id",
            "IsDeleted",
            "LastName",
            "FirstName",
            "Salutation",
            "Name",
            "Title",
            "Company",
            "Street",
            "City",
            "State",
            "PostalCode",
            "Country",
            "Phone",
            "MobilePhone",
            "Email",
            "Website",
            "Description",
            "LeadSource",
            "Status",
            "Industry",
            "Rating",
            "AnnualRevenue",
            "NumberOfEmployees",
            "OwnerId",
            "IsConverted",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]

        def rows(first: int) -> Iterator[tuple]:
            for i, rid in enumerate(id_range("00Q", first, n)):
                u = (i + r()) / n
                cd = tl.at(u)
                first_name = FIRST_NAMES[int(r() * len(FIRST_NAMES))]
                last_name = LAST_NAMES[int(r() * len(LAST_NAMES))]
                company, domain = self._company(r)
                ci, street, city, state, postal, country, _, _ = self._address(r)
                age = 1.0 - u
                if r() < 0.6 * age:
                    status = "Closed - Not Converted"
                    lm = self._lm(u, cd, r, 0.0, 0.3)
                else:
                    status = LEAD_OPEN_STATUSES[int(r() * len(LEAD_OPEN_STATUSES))]
                    lm = self._lm(u, cd, r, 0.5 if status.startswith("Open") else 0.0)
                owner = owner_pool[int(r() * len(owner_pool))]
                creator = integration if r() < 0.6 else owner
                editor = creator if lm == cd else (owner if r() < 0.8 else editor_pool[int(r() * len(editor_pool))])
                employees = int(10 ** (1 + r() * 3.5))
                lms = fmt.ts(lm)
                yield (
                    rid,
                    0,
                    last_name,
                    first_name,
                    SALUTATIONS[int(r() * len(SALUTATIONS))],
                    f"{first_name} {last_name}",
                    TITLES[int(r() * len(TITLES))] if r() < 0.8 else None,
                    company,
                    street if r() < 0.6 else None,
                    city,
                    state,
                    postal,
                    country,
                    self._phone(ci, r),
                    self._phone(ci, r) if r() < 0.3 else None,
                    f"{first_name.lower()}.{last_name.lower()}@{domain}" if r() < 0.9 else None,
                    "www." + domain if r() < 0.5 else None,
                    None,
                    SOURCES[int(r() * len(SOURCES))],
                    status,
                    INDUSTRIES[int(r() * len(INDUSTRIES))] if r() < 0.7 else None,
                    RATINGS[int(r() * len(RATINGS))],
                    float(employees * 100_000) if r() < 0.5 else None,
                    employees if r() < 0.6 else None,
                    owner,
                    0,
                    fmt.ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Lead", cols, rows, n)

    def _cases(self, n: int) -> None:
        r = self.rng("Case").random
        tl, fmt = self.tl, self.fmt
        at = tl.at
        acc_u, acc_ids, n_acc = self.acc_u, self.acc_ids, len(self.acc_u)
        con_u, con_ids, acc_contacts = self.con_u, self.con_ids, self.acc_contacts
        support, admin, integration = self.support, self.admin, self.integration
        sales = self.owner_pool
        case_number = self.store.get_meta("case_number") or 0
        u0 = acc_u[0] if n_acc else 0.0
        span = 1.0 - u0
        cols = [
            "Id",
            "IsDeleted",
            "CaseNumber",
            "ContactId",
            "AccountId",
            "ParentId",
            "SuppliedName",
            "SuppliedEmail",
            "SuppliedPhone",
            "SuppliedCompany",
            "Type",
            "Status",
            "Reason",
            "Origin",
            "Subject",
            "Priority",
            "Description",
            "IsClosed",
            "ClosedDate",
            "IsEscalated",
            "OwnerId",
            "Comments",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]
        case_ids: list[str] = []

        def rows(first: int) -> Iterator[tuple]:
            k = 0
            for i, rid in enumerate(id_range("500", first, n)):
                u = u0 + (i + r()) / n * span
                while k < n_acc and acc_u[k] <= u:
                    k += 1
                cd = at(u)
                account = contact = None
                supplied = (None, None, None, None)
                origin = CASE_ORIGINS[int(r() * len(CASE_ORIGINS))]
                if r() < 0.92:
                    a = int(r() * k)
                    account = acc_ids[a]
                    before = [c for c in acc_contacts.get(a, ()) if con_u[c] <= u]
                    if before and r() < 0.9:
                        contact = con_ids[before[int(r() * len(before))]]
                if contact is None and origin != "Phone":
                    fn, ln = FIRST_NAMES[int(r() * len(FIRST_NAMES))], LAST_NAMES[int(r() * len(LAST_NAMES))]
                    company, domain = self._company(r)
                    supplied = (f"{fn} {ln}", f"{fn.lower()}.{ln.lower()}@{domain}", None, company)
                parent = case_ids[int(r() * i)] if i > 10 and r() < 0.02 else None
                age = 1.0 - u
                if age > 0.001 and r() < 0.35 + 0.6 * age:
                    status = "Closed"
                    lm = at(u + age * r() * 0.05)
                    if lm < cd:
                        lm = cd
                    escalated = 1 if r() < 0.05 else 0
                else:
                    status = CASE_OPEN_STATUSES[int(r() * len(CASE_OPEN_STATUSES))]
                    lm = self._lm(u, cd, r, 0.5 if status == "New" else 0.0, 0.5)
                    escalated = 1 if status == "Escalated" else 0
                x = r()
                owner = support if x < 0.75 else (sales[int(r() * len(sales))] if x < 0.9 else admin)
                creator = support if r() < 0.5 else (integration if r() < 0.6 else owner)
                editor = creator if lm == cd else (owner if r() < 0.8 else support)
                lms = fmt.ts(lm)
                case_ids.append(rid)
                yield (
                    rid,
                    0,
                    f"{case_number + i + 1:08d}",
                    contact,
                    account,
                    parent,
                    *supplied,
                    CASE_TYPES[int(r() * len(CASE_TYPES))],
                    status,
                    CASE_REASONS[int(r() * len(CASE_REASONS))],
                    origin,
                    CASE_SUBJECTS[int(r() * len(CASE_SUBJECTS))],
                    CASE_PRIORITIES[int(r() * len(CASE_PRIORITIES))],
                    CASE_DESCRIPTIONS[int(r() * len(CASE_DESCRIPTIONS))] if r() < 0.5 else None,
                    1 if status == "Closed" else 0,
                    lms if status == "Closed" else None,
                    escalated,
                    owner,
                    CASE_COMMENTS[int(r() * len(CASE_COMMENTS))] if escalated else None,
                    fmt.ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Case", cols, rows, n)
        if n:
            self.store.set_meta("case_number", case_number + n)

    def _contact_roles(self, n: int) -> None:
        r = self.rng("OpportunityContactRole").random
        n_opp = len(self.opp_u)
        if n and not n_opp:
            raise ValueError("contact roles need opportunities")
        opp_u, opp_account, con_u, acc_contacts = self.opp_u, self.opp_account, self.con_u, self.acc_contacts
        seen: set[tuple[int, int]] = set()
        plan = []
        for _ in range(n):
            for _attempt in range(1000):
                j = int(r() * n_opp)
                contacts = acc_contacts[opp_account[j]]
                c = contacts[int(r() * len(contacts))]
                if (j, c) not in seen:
                    break
            seen.add((j, c))
            base = max(opp_u[j], con_u[c])
            plan.append((base + (1.0 - base) * r() * 0.1, j, c))
        del seen
        plan.sort()
        tl, fmt = self.tl, self.fmt
        owner_list, editor_pool = self.owner_list, self.editor_pool
        opp_owner = self.opp_owner
        opp_first = self.first["Opportunity"]
        cols = [
            "Id",
            "IsDeleted",
            "OpportunityId",
            "ContactId",
            "Role",
            "IsPrimary",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]

        def rows(first: int) -> Iterator[tuple]:
            has_primary: set[int] = set()
            for (u, j, c), rid in zip(plan, id_range("00K", first, n), strict=True):
                cd = tl.at(u)
                primary = 0
                if j not in has_primary:
                    has_primary.add(j)
                    primary = 1
                owner = owner_list[opp_owner[j]]
                creator = owner if r() < 0.85 else editor_pool[int(r() * len(editor_pool))]
                lm = self._lm(u, cd, r, 0.85)
                editor = creator if lm == cd else owner
                lms = fmt.ts(lm)
                yield (
                    rid,
                    0,
                    ids.make_id("006", opp_first + j),
                    self.con_ids[c],
                    ROLES[int(r() * len(ROLES))] if r() < 0.9 else None,
                    primary,
                    fmt.ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("OpportunityContactRole", cols, rows, n)

    def _invoices(self, n: int) -> None:
        r = self.rng("Invoice__c").random
        n_opp = len(self.opp_u)
        if n and not n_opp:
            raise ValueError("invoices need opportunities")
        opp_u, opp_won = self.opp_u, self.opp_won
        plan = []
        for _ in range(n):
            j = int(r() * n_opp)
            for _attempt in range(3):  # invoices follow won deals, mostly
                if opp_won[j]:
                    break
                j = int(r() * n_opp)
            base = opp_u[j]
            plan.append((base + (1.0 - base) * r() * 0.5, j))
        plan.sort()
        tl, fmt, now_ms = self.tl, self.fmt, self.now_ms
        opp_account, opp_amount, opp_owner = self.opp_account, self.opp_amount, self.opp_owner
        owner_list, integration = self.owner_list, self.integration
        opp_first = self.first["Opportunity"]
        inv_obj = self.schema.get("Invoice__c")
        number0 = self.store.count(inv_obj, include_deleted=True)
        cols = [
            "Id",
            "IsDeleted",
            "OwnerId",
            "Name",
            "Account__c",
            "Opportunity__c",
            "Invoice_Number__c",
            "Amount__c",
            "Due_Date__c",
            "Status__c",
            "Paid__c",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]

        def rows(first: int) -> Iterator[tuple]:
            for i, ((u, j), rid) in enumerate(zip(plan, id_range(inv_obj.key_prefix, first, n), strict=True)):
                cd = tl.at(u)
                a = opp_account[j]
                linked = r() < 0.85
                amount = opp_amount[j]
                if math.isnan(amount) or not linked:
                    amount = float(round(math.exp(9 + r() * 2.5), -1))
                else:
                    amount = round(amount * (1.0, 1.0, 1.0, 0.5, 0.25)[int(r() * 5)], 2)
                due_ms = cd + 30 * DAY_MS
                x = r()
                if due_ms < now_ms:
                    status = "Paid" if x < 0.7 else "Overdue" if x < 0.84 else "Void" if x < 0.9 else None
                else:
                    status = "Sent" if x < 0.5 else "Draft" if x < 0.78 else "Paid" if x < 0.9 else None
                owner = owner_list[opp_owner[j]] if linked else self.acc_owner[a]
                creator = integration if r() < 0.5 else owner
                if status in ("Paid", "Overdue", "Void"):
                    lm = tl.at(u + (1.0 - u) * r() * 0.2)
                    if lm < cd:
                        lm = cd
                else:
                    lm = self._lm(u, cd, r, 0.5, 0.2)
                editor = creator if lm == cd else (integration if r() < 0.6 else owner)
                number = f"INV-{number0 + i + 1:07d}"
                lms = fmt.ts(lm)
                yield (
                    rid,
                    0,
                    owner,
                    number,
                    self.acc_ids[a],
                    ids.make_id("006", opp_first + j) if linked else None,
                    number,
                    amount,
                    fmt.day(due_ms // DAY_MS),
                    status,
                    1 if status == "Paid" else 0,
                    fmt.ts(cd),
                    creator,
                    lms,
                    editor,
                    lms,
                )

        self._bulk("Invoice__c", cols, rows, n)

    def _custom(self, obj: Any, n: int) -> None:
        """Generate `n` records of custom object `obj` (see `generate_custom_records`)."""
        r = self.rng(obj.name).random
        tl, fmt = self.tl, self.fmt
        owner_pool, editor_pool, integration = self.owner_pool, self.editor_pool, self.integration
        n_owner, n_editor = len(owner_pool), len(editor_pool)
        fields = [f for f in obj.stored_fields if f.custom and f.createable]
        refs = [f for f in fields if f.type == "reference"]
        parent_field = next((f for f in refs if f.reference_to[0] not in ("User", "Group")), None)
        number0 = self.store.count(obj, include_deleted=True)
        cache = self.parents_cache

        def parents_of(target: str) -> _Parents:
            if target not in cache:
                cache[target] = _Parents(self.store, self.schema.get(target))
            return cache[target]

        parent = parents_of(parent_field.reference_to[0]) if parent_field else None
        if parent_field and n and not len(parent):
            raise ValueError(
                f"{obj.name}.{parent_field.name}: no {parent.name} records to point at; generate the parents first"
            )
        # Lookups other than the parent: from the parent's own lookup to the same object, else an older record.
        others = []
        for f in refs:
            if f is parent_field:
                continue
            target = f.reference_to[0]
            if target in ("User", "Group"):
                others.append((f, "user", None, None))
                continue
            via = next((name for name, to in parent.targets.items() if target in to), None) if parent else None
            others.append((f, "via" if via else "older", via, parents_of(target)))
        makers = [(f, _custom_value_maker(self, obj, f, number0)) for f in fields if f.type != "reference"]
        external = next((f for f in fields if f.type in TEXT_TYPES and (f.external_id or f.unique)), None)
        initials = _initials(obj.label or obj.name[:-3])
        cols = [
            "Id",
            "IsDeleted",
            "OwnerId",
            "Name",
            *(f.name for f in refs),
            *(f.name for f, _ in makers),
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
        ]
        maker_fns = [m for _, m in makers]
        ext_index = next((k for k, (f, _) in enumerate(makers) if f is external), None)

        u0, first_ms = 0.0, 0
        if parent is not None and len(parent):
            first_ms = int(datetime.fromisoformat(parent.created[0].replace("+0000", "+00:00")).timestamp() * 1000)
            u0 = min(tl.u_of(first_ms + 1000), 0.999)  # children come after their first possible parent
        span = 1.0 - u0

        def pick(pool: _Parents, cds: str, recent: bool) -> int | None:
            k = bisect_right(pool.created, cds)
            if k == 0:
                return None
            if recent and r() < 0.6:
                return k - 1 - int(r() * min(k, max(1, k // 50)))
            return int(r() * k)

        def rows(first: int) -> Iterator[tuple]:
            for i, rid in enumerate(id_range(obj.key_prefix, first, n)):
                u = u0 + (i + r()) / n * span
                cd = tl.at(u)
                cds = fmt.ts(cd)
                lookups = []
                owner = None
                j = None
                if parent is not None:
                    j = pick(parent, cds, recent=True)
                    if j is None:  # only before the parent's first record, which u0 rules out
                        j, cd = 0, max(cd, first_ms)
                        cds = fmt.ts(cd)
                    lookups.append(parent.ids[j])
                    if parent.owner is not None and r() < 0.7:
                        owner = parent.owner[j]
                for f, how, via, pool in others:
                    if how == "user":
                        value = owner_pool[int(r() * n_owner)] if not f.nillable or r() < 0.8 else None
                    elif how == "via":
                        value = parent.lookup_values[via][j]
                        if value is None and not f.nillable:
                            k = pick(pool, cds, recent=False)
                            value = pool.ids[k] if k is not None else None
                    else:
                        value = None
                        if not f.nillable or r() < 0.7:
                            k = pick(pool, cds, recent=False)
                            value = pool.ids[k] if k is not None else None
                    lookups.append(value)
                if owner is None:
                    owner = owner_pool[int(r() * n_owner)]
                creator = owner if r() < 0.7 else (integration if r() < 0.6 else editor_pool[int(r() * n_editor)])
                lm = self._lm(u, cd, r, 0.4)
                editor = creator if lm == cd else (owner if r() < 0.6 else editor_pool[int(r() * n_editor)])
                values = [m(r, i, cd, lm) for m in maker_fns]
                name = values[ext_index][:80] if ext_index is not None else f"{initials}-{number0 + i + 1:07d}"
                lms = fmt.ts(lm)
                yield (rid, 0, owner, name, *lookups, *values, cds, creator, lms, editor, lms)

        self._bulk(obj.name, cols, rows, n)
        cache.pop(obj.name, None)  # its records changed: reload when a later object points at it


# ----------------------------------------------------------------- custom objects of any shape
TEXT_SNIPPETS = OPP_DESCRIPTIONS + ACCOUNT_DESCRIPTIONS + CASE_DESCRIPTIONS + CASE_COMMENTS
_CODE_WORDS = ("number", "code", "reference", "sku", "tracking", "serial", "key", "batch", "version")
_FUTURE_DATE_WORDS = ("due", "end", "expir", "renewal", "until", "deadline", "delivery", "close")
_UNSUPPORTED = ("address", "location", "base64", "time", "encryptedstring", "combobox", "anytype")


def generate_custom_records(org: Any, counts: Mapping[str, int], seed: int = 42) -> dict[str, int]:
    """Fill custom objects of any shape: `counts[name]` records each, in the order given.

    For objects `generate_org` does not know, e.g. those declared in an extra custom-objects YAML.
    Values follow each custom field's describe (type, length, precision/scale, picklist values),
    with a few hints taken from field names (`...Number__c` holds codes, `Due...`/`End...` dates lie
    ahead). The first lookup to an object other than User is the record's parent: an existing record
    created before it, most often a recent one. A further lookup takes the parent's own value when
    the parent has a lookup to the same object (a Payment's Account is its Invoice's Account), else an
    older record of the target. So list parents before their children. Everything else follows
    `generate_org`: timestamps in the year before the org clock's now, users, ascending ids, stored
    forms, lookup indexes; same seed, counts and clock instant give the same records.
    """
    gen = _Generator(org, 0, seed)
    done: dict[str, int] = {}
    with gen.store.lock:
        for name, n in counts.items():
            obj = gen.schema.get(name)
            if not obj.custom:
                raise ValueError(f"{obj.name} is not a custom object: generate_org fills the standard ones")
            if n < 0:
                raise ValueError(f"{obj.name}: the number of records must be >= 0, got {n}")
            gen._custom(obj, n)
            done[obj.name] = n
        ensure_lookup_indexes(gen.store)
        meta = gen.store.get_meta("generator_custom") or {}
        meta_counts = dict(meta.get("counts") or {})
        for name, n in done.items():
            meta_counts[name] = meta_counts.get(name, 0) + n
        gen.store.set_meta("generator_custom", {"seed": seed, "now": gen.fmt.ts(gen.now_ms), "counts": meta_counts})
    return done


class _Parents:
    """The live records of one object, oldest first: ids, CreatedDate texts, owners and lookups."""

    def __init__(self, store: Any, obj: Any):
        self.name = obj.name
        self.lookups = [
            f.name
            for f in obj.stored_fields
            if f.type == "reference" and f.name not in ("CreatedById", "LastModifiedById", "OwnerId")
        ]
        owner = ["OwnerId"] if obj.has_field("OwnerId") else []
        cols = ["Id", "CreatedDate", *owner, *self.lookups]
        where = " WHERE IsDeleted = 0" if obj.has_field("IsDeleted") else ""
        rows = store.conn.execute(
            f"SELECT {', '.join(map(q, cols))} FROM {q(obj.name)}{where} ORDER BY CreatedDate, Id"
        ).fetchall()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
        self.ids: list[str] = list(columns[0])
        self.created: list[str] = list(columns[1])
        self.owner: list[str] | None = list(columns[2]) if owner else None
        base = 2 + len(owner)
        self.lookup_values = {name: list(columns[base + k]) for k, name in enumerate(self.lookups)}
        self.targets = {f.name: f.reference_to for f in obj.fields if f.name in self.lookup_values}

    def __len__(self) -> int:
        return len(self.ids)


def _initials(label: str) -> str:
    words = [w for w in label.replace("_", " ").split() if w]
    return "".join(w[0] for w in words).upper() or "REC"


def _custom_value_maker(gen: _Generator, obj: Any, f: Any, number0: int) -> Callable[..., Any]:
    """A function (r, i, cd_ms, lm_ms) -> stored value for one custom field (not a lookup)."""
    t, lname = f.type, f.name.lower()
    fmt = gen.fmt
    p_null = (
        0.0
        if not f.nillable
        else {"textarea": 0.55, "date": 0.2, "datetime": 0.3, "url": 0.4, "phone": 0.25, "email": 0.2}.get(t, 0.12)
    )

    def nullable(make: Callable[..., Any]) -> Callable[..., Any]:
        if not p_null:
            return make
        return lambda r, i, cd, lm: None if r() < p_null else make(r, i, cd, lm)

    if t in _UNSUPPORTED:
        if not f.nillable:
            raise ValueError(f"{obj.name}.{f.name}: cannot generate values of type {t}")
        return lambda r, i, cd, lm: None
    if t == "boolean":
        share = 0.7 if any(w in lname for w in ("active", "enabled", "valid")) else 0.3
        return lambda r, i, cd, lm: 1 if r() < share else 0
    if t in ("picklist", "multipicklist"):
        values = f.picklist or tuple(f"Option {k}" for k in range(1, 6))
        nv = len(values)
        if t == "picklist":
            return nullable(lambda r, i, cd, lm: values[int(nv * r() ** 1.6)])

        def multi(r: Callable[[], float], i: int, cd: int, lm: int) -> str:
            chosen = {int(nv * r() ** 1.6) for _ in range(1 + int(r() * min(3, nv)))}
            return ";".join(values[k] for k in sorted(chosen))

        return nullable(multi)
    if t in NUMBER_TYPES or t == "int":
        scale = f.scale if t != "int" else 0
        digits = (f.precision - f.scale) if f.precision else 9
        top = min(10.0**digits - 1, 1e9)
        if t == "percent":
            lo, hi = -1.0, 2.0  # 0.1 .. 100
        elif t == "currency" or any(w in lname for w in ("amount", "price", "cost", "fee", "revenue")):
            lo, hi = 1.0, 5.5
        elif t == "int" or any(w in lname for w in ("quantity", "count", "units", "seats", "number")):
            lo, hi = 0.0, 3.2
        else:
            lo, hi = -0.5, 3.0
        span = hi - lo
        if t == "int":
            return nullable(lambda r, i, cd, lm: int(min(top, 10 ** (lo + span * r()))))
        if t == "percent":
            return nullable(lambda r, i, cd, lm: round(min(top, 100.0, 10 ** (lo + span * r())), scale))
        return nullable(lambda r, i, cd, lm: round(min(top, 10 ** (lo + span * r())), scale))
    if t == "date":
        if any(w in lname for w in _FUTURE_DATE_WORDS):
            first, width = 7, 400
        elif "birth" in lname:
            first, width = -365 * 60, 365 * 40
        else:
            first, width = -30, 60
        return nullable(lambda r, i, cd, lm: fmt.day(cd // DAY_MS + first + int(r() * width)))
    if t == "datetime":
        return nullable(lambda r, i, cd, lm: fmt.ts(cd + int((lm - cd) * r())))
    if t == "email":

        def email(r: Callable[[], float], i: int, cd: int, lm: int) -> str:
            first_name = FIRST_NAMES[int(r() * len(FIRST_NAMES))].lower()
            last_name = LAST_NAMES[int(r() * len(LAST_NAMES))].lower()
            return f"{first_name}.{last_name}@{gen._company(r)[1]}"[: f.length or 80]

        return nullable(email)
    if t == "phone":
        return nullable(lambda r, i, cd, lm: gen._phone(int(r() * len(CITIES)), r))
    if t == "url":
        return nullable(lambda r, i, cd, lm: ("https://www." + gen._company(r)[1])[: f.length or 255])
    if t == "textarea":
        n_snippets = len(TEXT_SNIPPETS)
        length = f.length or 255

        def text(r: Callable[[], float], i: int, cd: int, lm: int) -> str:
            parts = [TEXT_SNIPPETS[int(r() * n_snippets)] for _ in range(1 + int(r() * 3))]
            return " ".join(parts)[:length]

        return nullable(text)
    # string and other text types
    length = f.length or 255
    if f.external_id or f.unique:
        code = _initials(obj.label or obj.name[:-3])
        return lambda r, i, cd, lm: f"{code}-{number0 + i + 1:08d}"[:length]
    if any(w in lname for w in _CODE_WORDS):
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return nullable(
            lambda r, i, cd, lm: (
                letters[int(r() * 24)] + letters[int(r() * 24)] + "-" + str(100000 + int(r() * 900000))
            )[:length]
        )
    if "city" in lname:
        return nullable(lambda r, i, cd, lm: CITIES[int(r() * len(CITIES))][0][:length])
    if "country" in lname:
        return nullable(lambda r, i, cd, lm: CITIES[int(r() * len(CITIES))][2][:length])
    if any(w in lname for w in ("product", "plan", "item", "service")):
        return nullable(lambda r, i, cd, lm: PRODUCTS[int(r() * len(PRODUCTS))][:length])
    if any(w in lname for w in ("subject", "title", "summary", "topic", "reason")):
        return nullable(lambda r, i, cd, lm: CASE_SUBJECTS[int(r() * len(CASE_SUBJECTS))][:length])
    if any(w in lname for w in ("contact", "person", "rep", "manager", "agent")):
        return nullable(
            lambda r, i, cd, lm: (
                FIRST_NAMES[int(r() * len(FIRST_NAMES))] + " " + LAST_NAMES[int(r() * len(LAST_NAMES))]
            )[:length]
        )
    if "name" in lname or "company" in lname or "vendor" in lname or "carrier" in lname:
        return nullable(lambda r, i, cd, lm: gen._company(r)[0][:length])
    return nullable(
        lambda r, i, cd, lm: (
            COMPANY_WORDS_A[int(r() * len(COMPANY_WORDS_A))] + " " + COMPANY_WORDS_B[int(r() * len(COMPANY_WORDS_B))]
        )[:length]
    )
