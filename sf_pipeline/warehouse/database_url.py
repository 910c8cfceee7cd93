"""PostgreSQL URLs as the pipeline shows and derives them: the password never shown, another database on the same
server, libpq parameters (`sslmode`, `sslrootcert`, ...) kept as given.

A database URL is `postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.pem`
(or libpq's `key=value` form). Query parameters go to libpq unchanged, so a remote database's TLS is set in the
URL itself (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

HIDDEN = "***"
_DRIVER = re.compile(r"^postgres(?:ql)?\+\w+://")


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or a `password=` parameter) replaced by `***`, for any
    message, log line, console output or report that shows it."""
    text = (url or "").strip()
    if "://" not in text:  # libpq key=value
        try:
            parts = conninfo_to_dict(text)
        except Exception:  # noqa: BLE001 - an unparseable string is not shown at all
            return "<a database URL that could not be parsed>"
        if parts.get("password"):
            parts["password"] = HIDDEN
        return make_conninfo("", **parts)
    parsed = urlsplit(text)
    netloc = parsed.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        if ":" in user:
            netloc = f"{user.split(':', 1)[0]}:{HIDDEN}@{host}"
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, HIDDEN if k.lower() == "password" else v) for k, v in pairs], safe="*/")
    return urlunsplit((parsed.scheme, netloc, parsed.path, query, parsed.fragment))


def database_name(url: str) -> str:
    """The database a URL names (libpq's default, the user name, when it names none)."""
    parts = conninfo_to_dict(_DRIVER.sub("postgresql://", url.strip()))
    return str(parts.get("dbname") or parts.get("user") or "postgres")


def with_database(url: str, name: str) -> str:
    """The same server, credentials and parameters, another database."""
    text = _DRIVER.sub("postgresql://", url.strip())
    if "://" not in text:
        return make_conninfo(text, dbname=name)
    parsed = urlsplit(text)
    return urlunsplit((parsed.scheme, parsed.netloc, "/" + quote(name, safe=""), parsed.query, parsed.fragment))
