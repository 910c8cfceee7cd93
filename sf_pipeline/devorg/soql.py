"""SOQL for devorg: a lark (LALR) parser and a compiler from SOQL to SQLite SQL over OrgStore's tables.

`compile_soql` turns one SOQL statement into a `CompiledQuery`: the SQL fragments (FROM with the
LEFT JOINs its relationship paths need, WHERE with its parameters, ORDER BY, LIMIT/OFFSET) plus the
metadata the executor (query.py) needs to shape REST records and Bulk CSV rows.

Semantics follow Salesforce rather than SQL:
- text comparisons, LIKE and text sorting are case-insensitive (COLLATE NOCASE);
- `!=`, `<>` and NOT IN also match nulls; `<`, `>`, LIKE and IN never do; NOT is two-valued;
- id and reference literals may be 15- or 18-character ids (normalized with `ids.normalize`);
- datetime literals are converted to UTC and compared as stored text (`...+0000`);
- date literals (TODAY, LAST_N_DAYS:n, ...) are ranges of UTC days relative to `now`;
- picklists sort in picklist order, like the org's setup order;
- `query` hides IsDeleted = 1 rows, `queryAll` (include_deleted) shows them.

Errors are SalesforceErrors shaped like a real org's: MALFORMED_QUERY, INVALID_TYPE and INVALID_FIELD
(and INVALID_QUERY_FILTER_OPERATOR for bad id literals) carry the query line, a caret and
`ERROR at Row:r:Column:c` before the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path as _FsPath
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from . import ids
from .clock import format_datetime, parse_datetime
from .errors import SalesforceError, invalid_type
from .schema import NUMBER_TYPES, TEXT_TYPES, FieldDef, ObjectDef, Schema

__all__ = [
    "Aggregate",
    "CompiledQuery",
    "Join",
    "SelectColumn",
    "compile_soql",
    "located_error",
    "parse_soql",
]

MAX_OFFSET = 2000
_GRAMMAR = (_FsPath(__file__).with_name("soql.lark")).read_text()


def q(name: str) -> str:
    """Quote an SQLite identifier (same rule as store.q)."""
    return '"' + name.replace('"', '""') + '"'


# ====================================================================== errors
def located_error(code: str, message: str, text: str, line: int, column: int, status: int = 400) -> SalesforceError:
    """A query error in a real org's shape: the offending query line, a caret, `ERROR at Row:..`."""
    lines = text.split("\n")
    src = lines[line - 1] if 0 < line <= len(lines) else text
    caret = " " * max(column - 1, 0) + "^"
    return SalesforceError(code, f"\n{src}\n{caret}\nERROR at Row:{line}:Column:{column}\n{message}", status=status)


# ====================================================================== AST
@dataclass
class PathRef:
    tokens: list[Token]

    @property
    def tok(self) -> Token:
        return self.tokens[0]

    @property
    def text(self) -> str:
        return ".".join(t.value for t in self.tokens)


@dataclass
class Value:
    kind: str  # STRING NUMBER DATETIME DATE DATE_LITERAL DATE_N_LITERAL NULL TRUE FALSE
    tok: Token


@dataclass
class Cond:
    op: str  # and / or / not / = != < <= > >= / like / in / notin
    args: list[Any]
    path: PathRef | None = None
    tok: Token | None = None  # the operator token (for carets)


@dataclass
class SelectItem:
    kind: str  # field / count_all / count_field / function_field (MAX, MIN)
    tok: Token
    path: PathRef | None = None
    alias: Token | None = None
    function: str = "count"


@dataclass
class OrderItem:
    path: PathRef
    desc: bool
    nulls_first: bool | None


@dataclass
class QueryAst:
    select: list[SelectItem]
    obj: Token
    alias: Token | None
    where: Cond | None
    order: list[OrderItem]
    limit: Token | None
    offset: Token | None


class _Reserved(Exception):
    def __init__(self, tok: Token):
        self.tok = tok


class _ToAst(Transformer):
    """Tree -> AST (run inline by the LALR parser). Keyword tokens are dropped where not needed."""

    def start(self, c):
        return c[0]

    def reserved(self, c):
        raise _Reserved(c[0])

    def query(self, c):
        it = iter(c)
        next(it)  # SELECT
        select = next(it)
        next(it)  # FROM
        obj, alias = next(it)
        where = None
        order: list[OrderItem] = []
        limit = offset = None
        for part in it:
            kind, val = part
            if kind == "where":
                where = val
            elif kind == "order":
                order = val
            elif kind == "limit":
                limit = val
            else:
                offset = val
        return QueryAst(select, obj, alias, where, order, limit, offset)

    def select_list(self, c):
        return list(c)

    def select_field(self, c):
        return SelectItem("field", c[0].tok, path=c[0])

    def count_all(self, c):
        return SelectItem("count_all", c[0])

    def count_field(self, c):
        return SelectItem("count_field", c[0], path=c[1], alias=c[2] if len(c) > 2 else None)

    def function_field(self, c):
        return SelectItem(
            "function_field", c[0], path=c[1], alias=c[2] if len(c) > 2 else None, function=c[0].value.lower()
        )

    def object_ref(self, c):
        return c[0], (c[1] if len(c) > 1 else None)

    def path(self, c):
        return PathRef(list(c))

    def where_clause(self, c):
        return ("where", c[1])

    def and_cond(self, c):
        return Cond("and", [x for x in c if isinstance(x, Cond)])

    def or_cond(self, c):
        return Cond("or", [x for x in c if isinstance(x, Cond)])

    def not_cond(self, c):
        return Cond("not", [c[1]], tok=c[0])

    def compare(self, c):
        op = c[1].value
        return Cond("!=" if op == "<>" else op, [c[2]], path=c[0], tok=c[1])

    def like(self, c):
        return Cond("like", [c[2]], path=c[0], tok=c[1])

    def in_list(self, c):
        return Cond("in", c[2], path=c[0], tok=c[1])

    def not_in_list(self, c):
        return Cond("notin", c[3], path=c[0], tok=c[1])

    def value_list(self, c):
        return list(c)

    def value(self, c):
        return Value(c[0].type, c[0])

    def order_clause(self, c):
        return ("order", [x for x in c if isinstance(x, OrderItem)])

    def order_item(self, c):
        desc = False
        nulls_first = None
        for x in c[1:]:
            if x[0] == "dir":
                desc = x[1]
            else:
                nulls_first = x[1]
        return OrderItem(c[0], desc, nulls_first)

    def direction(self, c):
        return ("dir", c[0].type == "DESC")

    def nulls(self, c):
        return ("nulls", c[1].type == "FIRST")

    def limit_clause(self, c):
        return ("limit", c[1])

    def offset_clause(self, c):
        return ("offset", c[1])


_INLINE_PARSER = Lark(_GRAMMAR, parser="lalr", lexer="basic", maybe_placeholders=False, transformer=_ToAst())
_WORD = re.compile(r"'(?:[^'\\\n]|\\.)*'?|[A-Za-z0-9_.:+-]+|\S")


def parse_soql(text: str) -> QueryAst:
    """Parse SOQL into devorg's AST, raising MALFORMED_QUERY like a real org."""
    try:
        return _INLINE_PARSER.parse(text)
    except _Reserved as exc:
        raise _unexpected(text, exc.tok.line, exc.tok.column, exc.tok.value) from None
    except VisitError as exc:  # lark may wrap exceptions raised by the inline transformer
        if isinstance(exc.orig_exc, _Reserved):
            tok = exc.orig_exc.tok
            raise _unexpected(text, tok.line, tok.column, tok.value) from None
        raise
    except UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            line, col = _end_position(text)
            raise _unexpected(text, line, col, "<EOF>") from None
        raise _unexpected(text, tok.line, tok.column, tok.value) from None
    except UnexpectedCharacters as exc:
        m = _WORD.match(text, exc.pos_in_stream)
        raise _unexpected(text, exc.line, exc.column, m.group(0) if m else text[exc.pos_in_stream]) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark input errors
        raise _unexpected(text, getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1, "<EOF>") from None


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    if not stripped:
        return 1, 1
    lines = stripped.split("\n")
    return len(lines), len(lines[-1]) + 1


def _unexpected(text: str, line: int, column: int, tok: str) -> SalesforceError:
    return located_error("MALFORMED_QUERY", f"unexpected token: {tok}", text, line, column)


# ====================================================================== compiled form
@dataclass
class Join:
    """One LEFT JOIN to a parent object, keyed by the lower-cased relationship path from the root."""

    key: tuple[str, ...]
    alias: str
    obj: ObjectDef
    rel_name: str  # canonical relationship name (the JSON key / CSV header segment)
    parent_key: tuple[str, ...]
    on_sql: str  # e.g. t1."Id" = t0."AccountId"


@dataclass
class SelectColumn:
    """One selected field: `path` in canonical case, e.g. ("Account", "Owner", "Name")."""

    path: tuple[str, ...]
    field: FieldDef
    obj: ObjectDef  # the object that owns the field
    alias: str  # SQL table alias holding the column(s)
    join_key: tuple[str, ...]  # () for the root object

    @property
    def header(self) -> str:
        return ".".join(self.path)

    @property
    def sql(self) -> str:
        return f"{self.alias}.{q(self.field.name)}"


@dataclass
class Aggregate:
    name: str  # alias, or exprN
    sql: str  # e.g. count(t0."Id")


@dataclass
class CompiledQuery:
    """SOQL compiled to SQLite. `kind` is "records", "count" (COUNT()) or "aggregate" (COUNT(field))."""

    text: str
    obj: ObjectDef
    kind: str
    columns: list[SelectColumn]
    aggregates: list[Aggregate]
    joins: dict[tuple[str, ...], Join]
    filter_join_keys: set[tuple[str, ...]]
    where_sql: str  # "" or "WHERE ..."
    params: list[Any]
    order_sql: str  # "" or "ORDER BY ..."
    limit: int | None
    offset: int | None
    has_compound: bool = False
    compound_columns: list[SelectColumn] = field(default_factory=list)

    # ---------------------------------------------------------------- SQL builders
    def join_sql(self, keys: set[tuple[str, ...]]) -> str:
        wanted: set[tuple[str, ...]] = set()
        for k in keys:
            while k:
                wanted.add(k)
                k = self.joins[k].parent_key
        return "".join(
            f" LEFT JOIN {q(j.obj.name)} AS {j.alias} ON {j.on_sql}" for k, j in self.joins.items() if k in wanted
        )

    def select_join_keys(self) -> set[tuple[str, ...]]:
        return {c.join_key for c in self.columns if c.join_key}

    def _limit_sql(self) -> tuple[str, list[Any]]:
        if self.limit is None and not self.offset:
            return "", []
        return " LIMIT ? OFFSET ?", [-1 if self.limit is None else self.limit, self.offset or 0]

    def filtered_from(self, extra_keys: set[tuple[str, ...]] = frozenset()) -> str:
        return f"{q(self.obj.name)} AS t0{self.join_sql(self.filter_join_keys | set(extra_keys))}"

    def rowid_sql(self) -> tuple[str, list[Any]]:
        """SQL (and params) listing the matching rows' rowids in result order, LIMIT/OFFSET applied."""
        lim, lp = self._limit_sql()
        sql = f"SELECT t0.rowid FROM {self.filtered_from()} {self.where_sql} {self.order_sql}{lim}"
        return sql, self.params + lp

    def count_sql(self) -> tuple[str, list[Any]]:
        """SQL for COUNT(): the number of matching rows, LIMIT/OFFSET applied."""
        lim, lp = self._limit_sql()
        if lim:
            return (
                f"SELECT count(*) FROM (SELECT 1 FROM {self.filtered_from()} {self.where_sql}{lim})",
                self.params + lp,
            )
        return f"SELECT count(*) FROM {self.filtered_from()} {self.where_sql}", list(self.params)

    def aggregate_sql(self) -> tuple[str, list[Any]]:
        """SQL computing the aggregate row (one row, one value per Aggregate)."""
        exprs = ", ".join(a.sql for a in self.aggregates)
        return (
            f"SELECT {exprs} FROM {self.filtered_from(self.select_join_keys())} {self.where_sql}",
            list(self.params),
        )

    def rows_by_rowid_sql(self, exprs: list[str]) -> str:
        """SQL selecting `exprs` for the rows whose rowids are given as a JSON array (one parameter),
        in the order of that array. Parents are re-joined, so a page reads current parent values."""
        return (
            f"SELECT {', '.join(exprs)} FROM json_each(?) AS _j CROSS JOIN {q(self.obj.name)} AS t0 "
            f"ON t0.rowid = _j.value{self.join_sql(self.select_join_keys())} ORDER BY _j.id"
        )


# ====================================================================== compiler
_TYPE_NAMES = {
    "boolean": "boolean",
    "int": "integer",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "date": "date",
    "datetime": "dateTime",
    "id": "id",
    "reference": "id",
    "time": "time",
}
_QUOTED_TYPES = TEXT_TYPES | {"id", "reference"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_RANGE_FLIP = {"<=": ">", "<": ">="}
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?(Z|[+-][0-9]{2}:?[0-9]{2})", re.IGNORECASE
)


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


def date_literal_range(literal: str, today: date) -> tuple[date, date]:
    """[start, end) in days for a SOQL date literal such as TODAY or LAST_N_DAYS:7 (weeks start Sunday,
    fiscal years are calendar years)."""
    name, _, arg = literal.upper().partition(":")
    name = name.replace("_FISCAL_", "_")
    n = int(arg) if arg else 0
    d1 = timedelta(days=1)
    week = today - timedelta(days=(today.weekday() + 1) % 7)
    month = today.replace(day=1)
    quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = date(today.year, 1, 1)
    fixed = {
        "YESTERDAY": (today - d1, today),
        "TODAY": (today, today + d1),
        "TOMORROW": (today + d1, today + 2 * d1),
        "LAST_WEEK": (week - 7 * d1, week),
        "THIS_WEEK": (week, week + 7 * d1),
        "NEXT_WEEK": (week + 7 * d1, week + 14 * d1),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_90_DAYS": (today - 90 * d1, today + d1),
        "NEXT_90_DAYS": (today + d1, today + 91 * d1),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "LAST_YEAR": (_add_months(year, -12), year),
        "THIS_YEAR": (year, _add_months(year, 12)),
        "NEXT_YEAR": (_add_months(year, 12), _add_months(year, 24)),
    }
    if name in fixed:
        return fixed[name]
    if name == "LAST_N_DAYS":
        return today - n * d1, today + d1
    if name == "NEXT_N_DAYS":
        return today + d1, today + (n + 1) * d1
    if name == "N_DAYS_AGO":
        return today - n * d1, today - (n - 1) * d1
    if name == "LAST_N_WEEKS":
        return week - 7 * n * d1, week
    if name == "NEXT_N_WEEKS":
        return week + 7 * d1, week + 7 * (n + 1) * d1
    if name == "N_WEEKS_AGO":
        return week - 7 * n * d1, week - 7 * (n - 1) * d1
    for unit, start, months in (("MONTHS", month, 1), ("QUARTERS", quarter, 3), ("YEARS", year, 12)):
        if name == f"LAST_N_{unit}":
            return _add_months(start, -months * n), start
        if name == f"NEXT_N_{unit}":
            return _add_months(start, months), _add_months(start, months * (n + 1))
        if name == f"N_{unit}_AGO":
            return _add_months(start, -months * n), _add_months(start, -months * (n - 1))
    raise ValueError(literal)  # pragma: no cover - the grammar only lets known literals through


@dataclass
class _Resolved:
    field: FieldDef
    obj: ObjectDef
    alias: str
    join_key: tuple[str, ...]
    path: tuple[str, ...]
    tok: Token

    @property
    def sql(self) -> str:
        return f"{self.alias}.{q(self.field.name)}"


class _Compiler:
    def __init__(self, text: str, schema: Schema, now: datetime, include_deleted: bool):
        self.text = text
        self.schema = schema
        self.now = now
        self.include_deleted = include_deleted
        self.joins: dict[tuple[str, ...], Join] = {}
        self.filter_keys: set[tuple[str, ...]] = set()
        self.params: list[Any] = []

    # ---------------------------------------------------------------- helpers
    def err(self, code: str, message: str, tok: Token) -> SalesforceError:
        return located_error(code, message, self.text, tok.line, tok.column)

    def resolve(self, path: PathRef) -> _Resolved:
        toks = path.tokens
        if len(toks) > 1:
            first = toks[0].value.lower()
            if (self.alias is not None and first == self.alias.value.lower()) or (
                self.alias is None and first == self.obj.lower and first not in self.obj.by_relationship
            ):
                toks = toks[1:]
        obj = self.obj
        alias = "t0"
        key: tuple[str, ...] = ()
        canon: list[str] = []
        for tok in toks[:-1]:
            rel = obj.by_relationship.get(tok.value.lower())
            target = None
            if rel is not None:
                target = next((t for t in (self.schema.find(n) for n in rel.reference_to) if t is not None), None)
            if rel is None or target is None:
                raise self.err(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{tok.value}' in field path. If you are attempting to use "
                    "a custom relationship, be sure to append the '__r' after the custom relationship name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                    path.tok,
                )
            parent_key = key
            key = key + (rel.relationship_name.lower(),)
            join = self.joins.get(key)
            if join is None:
                join = Join(
                    key=key,
                    alias=f"t{len(self.joins) + 1}",
                    obj=target,
                    rel_name=rel.relationship_name,
                    parent_key=parent_key,
                    on_sql=f't{len(self.joins) + 1}."Id" = {alias}.{q(rel.name)}',
                )
                self.joins[key] = join
            alias = join.alias
            canon.append(rel.relationship_name)
            obj = target
        last = toks[-1]
        f = obj.by_lower.get(last.value.lower())
        if f is None:
            raise self.err(
                "INVALID_FIELD",
                f"No such column '{last.value}' on entity '{obj.name}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL or "
                "the describe call for the appropriate names.",
                path.tok,
            )
        canon.append(f.name)
        return _Resolved(f, obj, alias, key, tuple(canon), path.tok)

    # ---------------------------------------------------------------- entry point
    def compile(self, ast: QueryAst) -> CompiledQuery:
        obj = self.schema.find(ast.obj.value)
        if obj is None:
            raise self.err("INVALID_TYPE", invalid_type(ast.obj.value).message, ast.obj)
        self.obj = obj
        self.alias = ast.alias

        kind, columns, aggregates, compound = self.compile_select(ast)

        where_parts = []
        if not self.include_deleted and obj.has_field("IsDeleted"):
            where_parts.append('t0."IsDeleted" = 0')
        if ast.where is not None:
            where_parts.append(self.cond(ast.where))
        where_sql = ("WHERE " + " AND ".join(where_parts)) if where_parts else ""

        order_sql = ""
        if ast.order:
            if kind != "records":
                p = ast.order[0].path
                raise self.err("MALFORMED_QUERY", f"Ordered field must be grouped or aggregated: {p.text}", p.tok)
            order_sql = "ORDER BY " + ", ".join(self.order_item(o) for o in ast.order)

        limit = self.int_clause(ast.limit) if ast.limit is not None else None
        offset = self.int_clause(ast.offset) if ast.offset is not None else None
        if offset is not None and offset > MAX_OFFSET:
            raise SalesforceError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")

        return CompiledQuery(
            text=self.text,
            obj=obj,
            kind=kind,
            columns=columns,
            aggregates=aggregates,
            joins=self.joins,
            filter_join_keys=self.filter_keys,
            where_sql=where_sql,
            params=self.params,
            order_sql=order_sql,
            limit=limit,
            offset=offset,
            has_compound=bool(compound),
            compound_columns=compound,
        )

    def int_clause(self, tok: Token) -> int:
        if not tok.value.isdigit():
            raise self.err("MALFORMED_QUERY", f"unexpected token: {tok.value}", tok)
        value = int(tok.value)
        if value > 2**31 - 1:
            raise self.err("MALFORMED_QUERY", f"numeric value out of range: {tok.value}", tok)
        return value

    # ---------------------------------------------------------------- SELECT
    def compile_select(self, ast: QueryAst):
        for item in ast.select:
            if item.kind == "function_field" and item.function not in ("max", "min"):
                # a function devorg does not implement (SUM, FIELDS...): refused where a parser without its rule
                # would stop, at the parenthesis after its name
                raise located_error(
                    "MALFORMED_QUERY",
                    "unexpected token: (",
                    self.text,
                    item.tok.line,
                    item.tok.column + len(item.tok.value),
                )
        columns: list[SelectColumn] = []
        aggregates: list[Aggregate] = []
        compound: list[SelectColumn] = []
        seen: set[str] = set()
        count_all = [i for i in ast.select if i.kind == "count_all"]
        plain = [i for i in ast.select if i.kind == "field"]
        aggs = [i for i in ast.select if i.kind in ("count_field", "function_field")]
        if count_all and len(ast.select) > 1:
            other = next(i for i in ast.select if i is not count_all[0])
            raise self.err(
                "MALFORMED_QUERY",
                "COUNT() cannot be used with other fields or aggregates"
                if other.kind != "field"
                else f"Field must be grouped or aggregated: {other.path.text}",
                other.tok,
            )
        if aggs and plain:
            raise self.err(
                "MALFORMED_QUERY", f"Field must be grouped or aggregated: {plain[0].path.text}", plain[0].tok
            )
        if count_all:
            return "count", columns, aggregates, compound
        expr_n = 0
        names: set[str] = set()
        for item in ast.select:
            res = self.resolve(item.path)
            if item.kind in ("count_field", "function_field"):
                if res.join_key:
                    self.filter_keys.add(res.join_key)
                op = item.function.upper()
                if (
                    not res.field.stored
                    or (res.field.type == "textarea" and res.field.length > 255)
                    or (op != "COUNT" and res.field.type in ("boolean", "textarea", "multipicklist", "base64"))
                ):
                    raise self.err(
                        "MALFORMED_QUERY", f"field {res.field.name} does not support aggregate operator {op}", item.tok
                    )
                if item.alias is not None:
                    name = item.alias.value
                else:
                    name = f"expr{expr_n}"
                    expr_n += 1
                if name.lower() in names:
                    raise self.err("MALFORMED_QUERY", f"duplicate alias: {name}", item.alias or item.tok)
                names.add(name.lower())
                aggregates.append(Aggregate(name, f"{item.function}({res.sql})"))
                continue
            key = ".".join(res.path).lower()
            if key in seen:
                raise SalesforceError("INVALID_FIELD", f"duplicate field selected: {'.'.join(res.path)}")
            seen.add(key)
            col = SelectColumn(path=res.path, field=res.field, obj=res.obj, alias=res.alias, join_key=res.join_key)
            columns.append(col)
            if not res.field.stored:
                compound.append(col)
        return ("aggregate" if aggregates else "records"), columns, aggregates, compound

    # ---------------------------------------------------------------- ORDER BY
    def order_item(self, item: OrderItem) -> str:
        res = self.resolve(item.path)
        f = res.field
        if not f.filterable:
            raise self.err("INVALID_FIELD", f"field '{f.name}' can not be sorted in a query call", item.path.tok)
        if res.join_key:
            self.filter_keys.add(res.join_key)
        direction = "DESC" if item.desc else "ASC"
        nulls_first = (not item.desc) if item.nulls_first is None else item.nulls_first
        nulls = "NULLS FIRST" if nulls_first else "NULLS LAST"
        col = res.sql
        if f.type == "picklist" and f.picklist:
            # Picklists sort in the order their values are defined, unknown values after, by text.
            whens = " ".join(f"WHEN {_sql_str(v)} THEN {i}" for i, v in enumerate(f.picklist))
            rank = f"CASE WHEN {col} IS NULL THEN NULL ELSE (CASE {col} {whens} ELSE {len(f.picklist)} END) END"
            return f"{rank} {direction} {nulls}, {col} COLLATE NOCASE {direction} {nulls}"
        if f.type in TEXT_TYPES:
            return f"{col} COLLATE NOCASE {direction} {nulls}"
        return f"{col} {direction} {nulls}"

    # ---------------------------------------------------------------- WHERE
    def cond(self, c: Cond) -> str:
        if c.op == "and":
            return "(" + " AND ".join(self.cond(x) for x in c.args) + ")"
        if c.op == "or":
            return "(" + " OR ".join(self.cond(x) for x in c.args) + ")"
        if c.op == "not":
            return f"(NOT {self.cond(c.args[0])})"
        res = self.resolve(c.path)
        f = res.field
        if not f.filterable:
            raise self.err("INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call", c.path.tok)
        if res.join_key:
            self.filter_keys.add(res.join_key)
        col = res.sql
        coll = " COLLATE NOCASE" if f.type in TEXT_TYPES else ""
        if c.op == "like":
            return self.like(res, c)
        if c.op in ("in", "notin"):
            sql = self.in_list(res, c.args, coll)
            return f"(NOT {sql})" if c.op == "notin" else sql
        lit = self.literal(res, c.args[0], c.op)
        op = c.op
        if lit[0] == "null":
            if op == "=":
                return f"{col} IS NULL"
            if op == "!=":
                return f"{col} IS NOT NULL"
            raise self.err("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on null: {op}", c.tok)
        if lit[0] == "range":
            return self.range_cond(col, op, lit)
        if f.type == "boolean" and op not in ("=", "!="):
            raise self.err("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on boolean field: {op}", c.tok)
        self.params.append(lit[1])
        if op == "=":
            return f"{col} IS ?{coll}"
        if op == "!=":
            return f"{col} IS NOT ?{coll}"
        return f"({col} IS NOT NULL AND {col} {op} ?{coll})"

    def range_cond(self, col: str, op: str, lit: tuple) -> str:
        _, lo_op, lo, hi_op, hi = lit
        if op in ("=", "!="):
            self.params += [lo, hi]
            inside = f"({col} IS NOT NULL AND {col} {lo_op} ? AND {col} {hi_op} ?)"
            return inside if op == "=" else f"(NOT {inside})"
        if op == ">":
            self.params.append(hi)
            return f"({col} IS NOT NULL AND {col} {_RANGE_FLIP[hi_op]} ?)"
        if op == ">=":
            self.params.append(lo)
            return f"({col} IS NOT NULL AND {col} {lo_op} ?)"
        if op == "<":
            self.params.append(lo)
            return f"({col} IS NOT NULL AND {col} < ?)"
        self.params.append(hi)  # <=
        return f"({col} IS NOT NULL AND {col} {hi_op} ?)"

    def like(self, res: _Resolved, c: Cond) -> str:
        f = res.field
        v = c.args[0]
        if f.type not in TEXT_TYPES:
            if f.type in ("id", "reference") and v.kind == "STRING":
                raise self.err("INVALID_QUERY_FILTER_OPERATOR", "invalid operator on id field", c.tok)
            self.type_error(res, v)
        if v.kind != "STRING":
            self.type_error(res, v)
        self.params.append(self.unescape(v.tok, like=True))
        return f"({res.sql} IS NOT NULL AND {res.sql} LIKE ? ESCAPE '\\')"

    def in_list(self, res: _Resolved, values: list[Value], coll: str) -> str:
        col = res.sql
        scalars: list[Any] = []
        ranges: list[tuple] = []
        has_null = False
        for v in values:
            lit = self.literal(res, v, "=")
            if lit[0] == "null":
                has_null = True
            elif lit[0] == "range":
                ranges.append(lit)
            else:
                scalars.append(lit[1])
        parts = []
        if scalars:
            self.params += scalars
            parts.append(f"{col}{coll} IN ({', '.join('?' * len(scalars))})")
        for lit in ranges:
            parts.append(self.range_cond(col, "=", lit))
        body = " OR ".join(parts) if parts else "0"
        if has_null:
            return f"({col} IS NULL OR {body})"
        return f"({col} IS NOT NULL AND ({body}))"

    # ---------------------------------------------------------------- literals
    def type_error(self, res: _Resolved, v: Value) -> None:
        f = res.field
        t = f.type
        if t in _QUOTED_TYPES:
            name = "id" if t in ("id", "reference") else "string"
            msg = f"value of filter criterion for field '{f.name}' must be of type {name} and should be enclosed in quotes"
        else:
            name = _TYPE_NAMES.get(t, t)
            msg = (
                f"value of filter criterion for field '{f.name}' must be of type {name} and should not be "
                "enclosed in quotes"
            )
        raise self.err("INVALID_FIELD", msg, res.tok)

    def literal(self, res: _Resolved, v: Value, op: str) -> tuple:
        """("null",) | ("scalar", value) | ("range", lo_op, lo, hi_op, hi)."""
        f = res.field
        t = f.type
        k = v.kind
        if k == "NULL":
            return ("null",)
        if t in ("id", "reference"):
            if k != "STRING":
                self.type_error(res, v)
            raw = self.unescape(v.tok)
            if raw == "":
                return ("null",)
            rid = ids.normalize(raw)
            if rid is None:
                raise self.err("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {raw}", v.tok)
            return ("scalar", rid)
        if t in TEXT_TYPES:
            if k != "STRING":
                self.type_error(res, v)
            return ("scalar", self.unescape(v.tok))
        if t == "boolean":
            if k not in ("TRUE", "FALSE"):
                self.type_error(res, v)
            return ("scalar", 1 if k == "TRUE" else 0)
        if t == "int" or t in NUMBER_TYPES:
            if k != "NUMBER":
                self.type_error(res, v)
            text = v.tok.value
            return ("scalar", float(text) if any(ch in text for ch in ".") else int(text))
        if t == "date":
            if k == "DATE":
                return ("scalar", self.date_value(v.tok))
            if k in ("DATE_LITERAL", "DATE_N_LITERAL"):
                start, end = date_literal_range(v.tok.value, self.now.date())
                return ("range", ">=", start.isoformat(), "<=", (end - timedelta(days=1)).isoformat())
            self.type_error(res, v)
        if t == "datetime":
            if k == "DATETIME":
                try:
                    if not _DATETIME.fullmatch(v.tok.value):
                        raise ValueError(v.tok.value)
                    return ("scalar", format_datetime(parse_datetime(v.tok.value)))
                except ValueError:
                    raise self.err("MALFORMED_QUERY", f"unexpected token: {v.tok.value}", v.tok) from None
            if k in ("DATE_LITERAL", "DATE_N_LITERAL"):
                start, end = date_literal_range(v.tok.value, self.now.date())
                return (
                    "range",
                    ">=",
                    f"{start.isoformat()}T00:00:00.000+0000",
                    "<",
                    f"{end.isoformat()}T00:00:00.000+0000",
                )
            self.type_error(res, v)
        self.type_error(res, v)
        raise AssertionError("unreachable")  # pragma: no cover

    def date_value(self, tok: Token) -> str:
        try:
            return date.fromisoformat(tok.value).isoformat()
        except ValueError:
            raise self.err("MALFORMED_QUERY", f"unexpected token: {tok.value}", tok) from None

    def unescape(self, tok: Token, like: bool = False) -> str:
        s = tok.value[1:-1]
        if "\\" not in s:
            return s
        out = []
        i = 0
        while i < len(s):
            ch = s[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            nxt = s[i + 1]
            if nxt in "%_":
                out.append("\\" + nxt if like else nxt)
            elif nxt == "\\" and like:
                out.append("\\\\")
            elif nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", s[i + 2 : i + 6]):
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 4
            else:
                raise self.err(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{s}'. Illegal character sequence '\\{nxt}' in string literal.",
                    tok,
                )
            i += 2
        return "".join(out)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def compile_soql(text: str, schema: Schema, *, now: datetime, include_deleted: bool) -> CompiledQuery:
    """Parse and compile one SOQL statement against `schema`. `now` (the org clock) anchors date literals;
    include_deleted=True is queryAll. Raises SalesforceError (status 400) for anything a real org rejects
    and for SOQL devorg does not implement."""
    ast = parse_soql(text)
    return _Compiler(text, schema, now, include_deleted).compile(ast)
