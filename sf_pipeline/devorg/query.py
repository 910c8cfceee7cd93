"""Query execution for devorg: REST query/queryAll pages with query locators, and Bulk API 2.0 CSV rows.

REST (`QueryEngine.run` / `QueryEngine.more`): `run` compiles the SOQL, snapshots the ordered rowids
of every matching row into a compact `array('q')` (8 bytes a row), and returns the first page. If
more rows remain, the snapshot is kept as a cursor under a query locator (`01g` + 15 base62
characters) and the page carries `nextRecordsUrl` = `/services/data/v<ver>/query/<locator>-<offset>`.
`more` serves any page of a cursor by reading exactly that page's rows by rowid (re-joining parent
objects), so paging is O(page) and reading a page never changes the cursor: a `nextRecordsUrl` can be
fetched again. Up to MAX_CURSORS cursors are kept (least recently used evicted); an unknown or evicted
locator gives INVALID_QUERY_LOCATOR.

Records are shaped like Salesforce's: `attributes` first, then the selected fields in select order
with their describe names; parent paths are nested objects with their own `attributes` (or null when
the lookup is empty); compound address fields are built from their components. The per-row shaping
function is generated once per query (Python source compiled with `exec`) so a page of 2,000 rows
costs one SQLite statement plus one list comprehension.

Bulk API 2.0 (`QueryEngine.csv_rows` / `iter_csv_rows`): values are formatted in SQL (booleans
`true`/`false`, datetimes `...000Z`, whole numbers without `.0`, null as empty) and rows are read in
chunks by rowid from the same kind of snapshot, holding `store.lock` only while a chunk is read.
Bulk rejects what Salesforce's Bulk API rejects, with errorCode API_ERROR (status 400):
COUNT()/COUNT(field) ("Aggregate queries are not supported in Bulk Query"), OFFSET ("OFFSET is not
supported in Bulk Query") and compound fields ("Selecting compound data not supported in Bulk Query").
Parent-to-child subqueries are already MALFORMED_QUERY. LIMIT and ORDER BY are accepted.
"""

from __future__ import annotations

import secrets
import string
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson

from .errors import SalesforceError
from .schema import NUMBER_TYPES, FieldDef, ObjectDef, Schema
from .soql import CompiledQuery, SelectColumn, compile_soql, q
from .store import OrgStore

__all__ = ["CSV_CHUNK", "MAX_CURSORS", "CsvRows", "QueryEngine", "csv_value_sql"]

MAX_CURSORS = 50
CSV_CHUNK = 20000
_SNAPSHOT_CHUNK = 100000
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude")


def _invalid_locator() -> SalesforceError:
    return SalesforceError("INVALID_QUERY_LOCATOR", "invalid query locator", status=400)


def _bulk_error(message: str) -> SalesforceError:
    return SalesforceError("API_ERROR", message, status=400)


def _address(street, city, state, postal, country, lat, lon):  # noqa: ANN001 - hot path helper
    if (
        street is None
        and city is None
        and state is None
        and postal is None
        and country is None
        and lat is None
        and lon is None
    ):
        return None
    return {
        "city": city,
        "country": country,
        "geocodeAccuracy": None,
        "latitude": lat,
        "longitude": lon,
        "postalCode": postal,
        "state": state,
        "street": street,
    }


# ====================================================================== REST record shaping
@dataclass
class _Node:
    key: tuple[str, ...]
    obj: ObjectDef
    rel_name: str | None
    alias: str
    items: list  # ("field", SelectColumn) | ("node", _Node)
    id_index: int = -1


class _RecordShaper:
    """SQL expressions for a page plus a generated function turning its rows into REST record dicts."""

    def __init__(self, cq: CompiledQuery):
        root = _Node((), cq.obj, None, "t0", [])
        nodes = {(): root}
        for col in cq.columns:
            node = root
            for i in range(len(col.join_key)):
                k = col.join_key[: i + 1]
                child = nodes.get(k)
                if child is None:
                    j = cq.joins[k]
                    child = _Node(k, j.obj, j.rel_name, j.alias, [])
                    nodes[k] = child
                    node.items.append(("node", child))
                node = child
            node.items.append(("field", col))
        self.exprs: list[str] = []
        self.types: list[str] = []  # object name per url slot
        body = self._gen(root)
        src = f"def build(rows, U, A):\n    return [{body} for r in rows]\n"
        ns: dict[str, Any] = {}
        exec(compile(src, f"<soql shaper {cq.obj.name}>", "exec"), ns)  # noqa: S102 - generated from schema names
        self._build: Callable = ns["build"]
        self.source = src
        self._urls: dict[str, tuple[str, ...]] = {}

    def _expr(self, sql: str) -> int:
        self.exprs.append(sql)
        return len(self.exprs) - 1

    def _gen(self, node: _Node) -> str:
        node.id_index = self._expr(f'{node.alias}."Id"')
        slot = len(self.types)
        self.types.append(node.obj.name)
        parts = [f'"attributes": {{"type": {node.obj.name!r}, "url": U[{slot}] + r[{node.id_index}]}}']
        for kind, item in node.items:
            if kind == "node":
                inner = self._gen(item)
                parts.append(f"{item.rel_name!r}: (None if r[{item.id_index}] is None else {inner})")
                continue
            col: SelectColumn = item
            f = col.field
            if not f.stored:
                parts.append(f"{f.name!r}: {self._compound(col)}")
            elif f.type == "boolean":  # never null in Salesforce: a NULL (column added later) reads false
                parts.append(f"{f.name!r}: r[{self._expr(col.sql)}] == 1")
            elif f.type == "base64":  # a REST query returns the blob's URL, not its bytes (files.py)
                parts.append(
                    f"{f.name!r}: (None if r[{self._expr(col.sql)}] is None else "
                    f"U[{slot}] + r[{node.id_index}] + {'/' + f.name!r})"
                )
            else:
                parts.append(f"{f.name!r}: r[{self._expr(col.sql)}]")
        return "{" + ", ".join(parts) + "}"

    def _compound(self, col: SelectColumn) -> str:
        f = col.field
        if f.type != "address":
            return "None"
        prefix = f.name[: -len("Address")]
        args = []
        for part in _ADDRESS_PARTS:
            comp = col.obj.by_lower.get((prefix + part).lower())
            args.append(
                f"r[{self._expr(f'{col.alias}.{q(comp.name)}')}]" if comp is not None and comp.stored else "None"
            )
        return f"A({', '.join(args)})"

    def build(self, rows: list[tuple], api_version: str) -> list[dict[str, Any]]:
        urls = self._urls.get(api_version)
        if urls is None:
            urls = tuple(f"/services/data/v{api_version}/sobjects/{t}/" for t in self.types)
            self._urls[api_version] = urls
        return self._build(rows, urls, _address)


@dataclass
class _Cursor:
    cq: CompiledQuery
    shaper: _RecordShaper
    sql: str
    rowids: array
    batch_size: int


# ====================================================================== CSV
def csv_value_sql(field: FieldDef, c: str) -> str:
    """SQL turning column expression `c` of `field` into its Bulk CSV text (null -> empty string)."""
    t = field.type
    if t == "boolean":
        return f"CASE {c} WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE '' END"
    if t == "datetime":
        return f"coalesce(substr({c}, 1, 23) || 'Z', '')"
    if t == "int":
        return f"coalesce(CAST(CAST({c} AS INTEGER) AS TEXT), '')"
    if t in NUMBER_TYPES:
        return (
            f"CASE WHEN {c} IS NULL THEN '' WHEN {c} = CAST({c} AS INTEGER) "
            f"THEN CAST(CAST({c} AS INTEGER) AS TEXT) ELSE CAST({c} AS TEXT) END"
        )
    return f"coalesce({c}, '')"


class CsvRows:
    """A Bulk query's result: `header`, `total` (rows matched when the query ran) and iteration over rows
    (lists of strings, in result order). Rows are read in chunks of CSV_CHUNK from the rowid snapshot."""

    def __init__(self, store: OrgStore, cq: CompiledQuery, rowids: array):
        self._store = store
        self.header: list[str] = [c.header for c in cq.columns]
        # One JSON array of strings per row, parsed by orjson: much cheaper than letting the sqlite3
        # module build one Python object per value (see bench_soql.py).
        exprs = ", ".join(csv_value_sql(c.field, c.sql) for c in cq.columns)
        self._sql = cq.rows_by_rowid_sql([f"json_array({exprs})"])
        self._rowids = rowids
        self.total = len(rowids)

    def __iter__(self) -> Iterator[list[str]]:
        rowids = self._rowids
        conn = self._store.conn
        lock = self._store.lock
        sql = self._sql
        loads = orjson.loads
        first = itemgetter(0)
        for start in range(0, len(rowids), CSV_CHUNK):
            arg = "[" + ",".join(map(str, rowids[start : start + CSV_CHUNK])) + "]"
            with lock:
                rows = conn.execute(sql, (arg,)).fetchall()
            yield from map(loads, map(first, rows))


# ====================================================================== engine
class QueryEngine:
    """Runs SOQL against an OrgStore: REST pages with query locators, and Bulk API 2.0 CSV rows."""

    def __init__(self, store: OrgStore, schema: Schema, max_cursors: int = MAX_CURSORS):
        self.store = store
        self.schema = schema
        self.max_cursors = max_cursors
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- compile / snapshot
    def compile(self, text: str, *, include_deleted: bool, user_id: str | None = None) -> CompiledQuery:
        """`user_id`: the running user, who sees only the records sharing lets it see (sharing.py)."""
        from .wide import check_query_restrictions

        cq = compile_soql(text, self.schema, now=self.store.clock.now(), include_deleted=include_deleted)
        check_query_restrictions(cq.obj, text)  # objects that cannot be queried, or not without a filter
        sharing = self.store.sharing
        if sharing is not None and sharing.restricts(cq.obj, user_id):
            cq.where_sql = f'{cq.where_sql} AND t0."OwnerId" = ?' if cq.where_sql else 'WHERE t0."OwnerId" = ?'
            cq.params = [*cq.params, user_id]
        return cq

    def _snapshot(self, cq: CompiledQuery) -> array:
        sql, params = cq.rowid_sql()
        out = array("q")
        with self.store.lock:
            cur = self.store.conn.execute(sql, params)
            while True:
                chunk = cur.fetchmany(_SNAPSHOT_CHUNK)
                if not chunk:
                    break
                out.extend([r[0] for r in chunk])
        if not cq.order_sql and len(out) > 1:
            # Without ORDER BY Salesforce promises no order (real orgs return roughly insertion order);
            # a range filter read through an index gives index order, and then the rows would be read
            # back scattered across the table. Insertion (rowid) order reads them sequentially.
            out = array("q", sorted(out))
        return out

    # ---------------------------------------------------------------- REST
    def run(
        self,
        text: str,
        *,
        include_deleted: bool,
        batch_size: int | None = 2000,
        api_version: str = "59.0",
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Execute a REST query (include_deleted=False) or queryAll (True); returns the first page's body."""
        cq = self.compile(text, include_deleted=include_deleted, user_id=user_id)
        if cq.kind == "count":
            sql, params = cq.count_sql()
            with self.store.lock:
                n = self.store.conn.execute(sql, params).fetchone()[0]
            return {"totalSize": n, "done": True, "records": []}
        if cq.kind == "aggregate":
            sql, params = cq.aggregate_sql()
            with self.store.lock:
                values = self.store.conn.execute(sql, params).fetchone()
            rec: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for agg, v in zip(cq.aggregates, values, strict=True):
                rec[agg.name] = v
            records = [rec][cq.offset or 0 :]
            if cq.limit is not None:
                records = records[: cq.limit]
            return {"totalSize": len(records), "done": True, "records": records}
        batch = 2000 if batch_size is None else max(200, min(2000, int(batch_size)))
        rowids = self._snapshot(cq)
        shaper = _RecordShaper(cq)
        cursor = _Cursor(cq, shaper, cq.rows_by_rowid_sql(shaper.exprs), rowids, batch)
        locator = None
        if len(rowids) > batch:
            locator = self._register(cursor)
        return self._page(cursor, locator, 0, api_version)

    def more(self, locator_with_offset: str, api_version: str = "59.0") -> dict[str, Any]:
        """The page at `<locator>-<offset>` (from a nextRecordsUrl, under query/ or queryAll/)."""
        last = locator_with_offset.strip("/").rsplit("/", 1)[-1]  # tolerate ".../query/<locator>-<offset>"
        locator, sep, offset_text = last.rpartition("-")
        if not sep or not locator or not offset_text.isdigit():
            raise _invalid_locator()
        with self._lock:
            cursor = self._cursors.get(locator)
            if cursor is not None:
                self._cursors.move_to_end(locator)
        offset = int(offset_text)
        if cursor is None or offset >= len(cursor.rowids):
            raise _invalid_locator()
        return self._page(cursor, locator, offset, api_version)

    def _register(self, cursor: _Cursor) -> str:
        with self._lock:
            while True:
                locator = "01g" + "".join(secrets.choice(_BASE62) for _ in range(15))
                if locator not in self._cursors:
                    break
            self._cursors[locator] = cursor
            while len(self._cursors) > self.max_cursors:
                self._cursors.popitem(last=False)
        return locator

    def _page(self, cursor: _Cursor, locator: str | None, offset: int, api_version: str) -> dict[str, Any]:
        total = len(cursor.rowids)
        end = min(offset + cursor.batch_size, total)
        records: list[dict[str, Any]] = []
        if end > offset:
            arg = "[" + ",".join(map(str, cursor.rowids[offset:end])) + "]"
            with self.store.lock:
                rows = self.store.conn.execute(cursor.sql, (arg,)).fetchall()
            records = cursor.shaper.build(rows, api_version)
        done = end >= total
        body: dict[str, Any] = {"totalSize": total, "done": done}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v{api_version}/query/{locator}-{end}"
        body["records"] = records
        return body

    # ---------------------------------------------------------------- Bulk API 2.0
    def csv_rows(self, text: str, *, include_deleted: bool, user_id: str | None = None) -> CsvRows:
        """Compile a Bulk API 2.0 query (operation query / queryAll) and snapshot its rows."""
        cq = self.compile(text, include_deleted=include_deleted, user_id=user_id)
        if cq.kind != "records":
            raise _bulk_error("Aggregate queries are not supported in Bulk Query")
        if cq.offset is not None:
            raise _bulk_error("OFFSET is not supported in Bulk Query")
        if cq.has_compound:
            raise _bulk_error("Selecting compound data not supported in Bulk Query")
        return CsvRows(self.store, cq, self._snapshot(cq))

    def iter_csv_rows(
        self, text: str, *, include_deleted: bool, user_id: str | None = None
    ) -> tuple[list[str], Iterator[list[str]]]:
        """(header, rows) of a Bulk API 2.0 query; values are strings formatted like Bulk CSV results."""
        result = self.csv_rows(text, include_deleted=include_deleted, user_id=user_id)
        return result.header, iter(result)
