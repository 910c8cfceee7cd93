"""Fill a wide org: generated custom objects, their history/share/feed rows, activities, and files.

`generate_wide(org, records, files)` adds about `records` rows across the generated custom objects
(through `generate_custom_records`, so lookups and master-detail parents are real records), one
history `created` row plus tracked changes per record of a tracked object, owner share rows for
private objects, feed rows, Tasks and Events on accounts, and `files` ContentVersions (each with its
ContentDocument and a ContentDocumentLink to a record) whose bytes are written to the org's blob
directory with a configurable size mix. Rows are written with SQL in one transaction per object,
like `generate_org`.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from .clock import format_datetime
from .files import blobs
from .generator import ensure_lookup_indexes, generate_custom_records, id_range
from .schema import ObjectDef
from .store import q

# size in bytes -> share of files
DEFAULT_SIZE_MIX = {4 * 1024: 0.70, 64 * 1024: 0.25, 1024 * 1024: 0.05}
_FILE_TYPES = (("pdf", "PDF"), ("png", "PNG"), ("docx", "WORD_X"), ("csv", "CSV"), ("txt", "TEXT"))


def generated_extras(org: Any) -> list[ObjectDef]:
    return [o for o in org.schema.objects.values() if getattr(o, "generated_extra", False)]


def generate_wide(
    org: Any, records: int, files: int = 0, seed: int = 42, size_mix: Mapping[int, float] | None = None
) -> dict[str, int]:
    """Add about `records` rows and `files` files to an org that has generated extra objects."""
    rnd = random.Random(seed)
    store = org.store
    extras = generated_extras(org)
    counts: dict[str, int] = {}
    if extras and records:
        # their history, share and feed rows add about twice as many again (see below)
        per_object = max(1, int(records * 0.33) // len(extras))
        counts.update(generate_custom_records(org, {o.name: per_object for o in extras}, seed))
    now = org.clock.now()
    stamps = [
        format_datetime(now - timedelta(seconds=s))
        for s in sorted((rnd.randrange(365 * 86400) for _ in range(20000)), reverse=True)
    ]
    users = [c.user_id for c in org.credentials.values()]
    with store.lock, store.transaction():
        for obj in extras:
            parent_rows = store.conn.execute(
                f"SELECT Id, CreatedDate, OwnerId FROM {q(obj.name)} WHERE IsDeleted = 0"
            ).fetchall()
            tracked = getattr(obj, "history_tracking", None)
            base = obj.name[:-3]
            hist = org.schema.find(f"{base}__History") if tracked else None
            if hist is not None:
                fields = tracked[2]
                rows = []
                for rid, created, owner in parent_rows:
                    rows.append((rid, created, owner, "created", None, None))
                    for _ in range(rnd.randrange(3)):
                        f = fields[rnd.randrange(len(fields))]
                        rows.append(
                            (
                                rid,
                                stamps[rnd.randrange(len(stamps))],
                                rnd.choice(users),
                                f,
                                f"old {rnd.randrange(1000)}",
                                f"new {rnd.randrange(1000)}",
                            )
                        )
                counts[hist.name] = _insert(
                    store,
                    hist,
                    ("ParentId", "CreatedDate", "CreatedById", "Field", "OldValue", "NewValue"),
                    rows,
                    with_deleted=True,
                )
            share = org.schema.find(f"{base}__Share")
            if share is not None:
                rows = [(rid, owner, "All", "Owner", created, owner) for rid, created, owner in parent_rows]
                counts[share.name] = _insert(
                    store,
                    share,
                    ("ParentId", "UserOrGroupId", "AccessLevel", "RowCause", "LastModifiedDate", "LastModifiedById"),
                    rows,
                    with_deleted=True,
                )
            feed = org.schema.find(f"{base}__Feed")
            if feed is not None:
                rows = [
                    (rid, "TrackedChange", created, owner, created, created, 0, 0)
                    for rid, created, owner in parent_rows[::2]
                ]
                counts[feed.name] = _insert(
                    store,
                    feed,
                    (
                        "ParentId",
                        "Type",
                        "CreatedDate",
                        "CreatedById",
                        "LastModifiedDate",
                        "SystemModstamp",
                        "CommentCount",
                        "LikeCount",
                    ),
                    rows,
                    with_deleted=True,
                )
        done = sum(counts.values())
        accounts = [r[0] for r in store.conn.execute("SELECT Id FROM Account WHERE IsDeleted = 0")]
        rest = max(0, records - done)
        if accounts and rest:
            for name, share in (("Task", 0.6), ("Event", 0.4)):
                obj = org.schema.get(name)
                n = int(rest * share)
                rows = (
                    (
                        accounts[rnd.randrange(len(accounts))],
                        f"{name} {i}",
                        stamps[rnd.randrange(len(stamps))],
                        rnd.choice(users),
                    )
                    for i in range(n)
                )
                counts[name] = _insert_activity(store, obj, rows, n)
        if files:
            counts.update(_files(org, files, rnd, size_mix or DEFAULT_SIZE_MIX, accounts, stamps, users))
        ensure_lookup_indexes(store)
    return counts


def _insert(store: Any, obj: ObjectDef, cols: tuple[str, ...], rows: list[tuple], with_deleted: bool) -> int:
    if not rows:
        return 0
    first = store.reserve_ids(obj, len(rows))
    names = ["Id", *cols] + (["IsDeleted"] if with_deleted and obj.has_field("IsDeleted") else [])
    extra = (0,) if len(names) > len(cols) + 1 else ()
    store.conn.executemany(
        f"INSERT INTO {q(obj.name)} ({', '.join(map(q, names))}) VALUES ({', '.join('?' * len(names))})",
        (((rid, *row, *extra)) for rid, row in zip(id_range(obj.key_prefix, first, len(rows)), rows, strict=True)),
    )
    return len(rows)


def _insert_activity(store: Any, obj: ObjectDef, rows: Iterable[tuple], n: int) -> int:
    if not n:
        return 0
    first = store.reserve_ids(obj, n)
    cols = [
        "Id",
        "WhatId",
        "AccountId",
        "Subject",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
        "CreatedById",
        "LastModifiedById",
        "OwnerId",
        "IsDeleted",
    ]
    cols = [c for c in cols if obj.has_field(c)]

    def shaped():
        for rid, (account, subject, stamp, user) in zip(id_range(obj.key_prefix, first, n), rows, strict=False):
            values = {
                "Id": rid,
                "WhatId": account,
                "AccountId": account,
                "Subject": subject,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
                "CreatedById": user,
                "LastModifiedById": user,
                "OwnerId": user,
                "IsDeleted": 0,
            }
            yield tuple(values[c] for c in cols)

    store.conn.executemany(
        f"INSERT INTO {q(obj.name)} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})", shaped()
    )
    return n


def _files(
    org: Any,
    n: int,
    rnd: random.Random,
    size_mix: Mapping[int, float],
    accounts: list[str],
    stamps: list[str],
    users: list[str],
) -> dict[str, int]:
    """n ContentVersions (version 1, latest) with their ContentDocuments, links and blob files."""
    store = org.store
    schema = org.schema
    cv, cd, cdl = schema.get("ContentVersion"), schema.get("ContentDocument"), schema.get("ContentDocumentLink")
    sizes, weights = list(size_mix), list(size_mix.values())
    noise = os.urandom(max(sizes))
    bs = blobs(org)
    cv_ids = list(id_range(cv.key_prefix, store.reserve_ids(cv, n), n))
    cd_ids = list(id_range(cd.key_prefix, store.reserve_ids(cd, n), n))
    links = n * (2 if accounts else 1)
    link_ids = id_range(cdl.key_prefix, store.reserve_ids(cdl, links), links)
    cv_rows, cd_rows, link_rows = [], [], []
    total_bytes = 0
    for i in range(n):
        size = rnd.choices(sizes, weights)[0]
        ext, file_type = _FILE_TYPES[i % len(_FILE_TYPES)]
        head = f"devorg file {i}\n".encode()
        data = (head + noise[: max(0, size - len(head))])[:size]
        total_bytes += len(data)
        bs.write(cv_ids[i], "VersionData", data)
        stamp, user = stamps[rnd.randrange(len(stamps))], users[rnd.randrange(len(users))]
        title = f"File {i:05d}"
        cv_rows.append(
            (
                cv_ids[i],
                cd_ids[i],
                title,
                f"{title}.{ext}",
                "1",
                1,
                len(data),
                hashlib.md5(data).hexdigest(),
                file_type,
                ext,
                "VersionData",
                "S",
                "C",
                "R",
                "A",
                "N",
                1,
                stamp,
                user,
                stamp,
                user,
                stamp,
                user,
                0,
            )
        )
        cd_rows.append(
            (cd_ids[i], title, cv_ids[i], len(data), file_type, ext, "R", 0, user, stamp, user, stamp, user, stamp, 0)
        )
        link_rows.append((next(link_ids), cd_ids[i], user, "I", "AllUsers", stamp, 0))
        if accounts:
            link_rows.append(
                (next(link_ids), cd_ids[i], accounts[rnd.randrange(len(accounts))], "V", "AllUsers", stamp, 0)
            )
    _rows(
        store,
        cv,
        (
            "Id",
            "ContentDocumentId",
            "Title",
            "PathOnClient",
            "VersionNumber",
            "IsLatest",
            "ContentSize",
            "Checksum",
            "FileType",
            "FileExtension",
            "VersionData",
            "ContentLocation",
            "Origin",
            "PublishStatus",
            "SharingOption",
            "SharingPrivacy",
            "IsMajorVersion",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
            "OwnerId",
            "IsDeleted",
        ),
        cv_rows,
    )
    _rows(
        store,
        cd,
        (
            "Id",
            "Title",
            "LatestPublishedVersionId",
            "ContentSize",
            "FileType",
            "FileExtension",
            "PublishStatus",
            "IsArchived",
            "OwnerId",
            "CreatedDate",
            "CreatedById",
            "LastModifiedDate",
            "LastModifiedById",
            "SystemModstamp",
            "IsDeleted",
        ),
        cd_rows,
    )
    _rows(
        store,
        cdl,
        ("Id", "ContentDocumentId", "LinkedEntityId", "ShareType", "Visibility", "SystemModstamp", "IsDeleted"),
        link_rows,
    )
    return {"ContentVersion": n, "ContentDocument": n, "ContentDocumentLink": len(link_rows), "file bytes": total_bytes}


def _rows(store: Any, obj: ObjectDef, cols: tuple[str, ...], rows: list[tuple]) -> None:
    store.conn.executemany(
        f"INSERT INTO {q(obj.name)} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))})", rows
    )
