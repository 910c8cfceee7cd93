"""The Bulk API 2.0 extraction path against devorg, loaded into PostgreSQL for real.

Large windows are read as several Bulk query jobs over SystemModstamp slices (newest first, the next
job running while this one is read), and their CSV pages go to COPY as received. What a user needs
from that: every record of the window exactly once, with the same values as the REST path, even
when the org changes while the window is read; no jobs left behind in the org; a page that does not
hold what it announced fails the load and leaves the mirror as it was.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from sf_pipeline.devorg.runner import DevOrgServer
from sf_pipeline.salesforce.client import SalesforceClient
from sf_pipeline.salesforce.extract import ExtractStats, bulk_slices, extract_window
from sf_pipeline.warehouse.csvpage import CsvPage, CsvPageError
from sf_pipeline.warehouse.errors import WarehouseLoadError
from sf_pipeline.warehouse.load import load_window
from sf_pipeline.warehouse.schema import backup_fields, ensure_mirror_table
from sf_pipeline_tests.devorg_fixtures import connect

pytestmark = pytest.mark.e2e
START = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory):
    with DevOrgServer(tmp_path_factory.mktemp("bulk") / "devorg", generate=300) as server:
        yield server


def client_for(server: DevOrgServer) -> SalesforceClient:
    return SalesforceClient(connect(server), backoff=0.05)


def window_end(server: DevOrgServer) -> datetime:
    return server.org.clock.now() + timedelta(hours=1)  # an open window: the org may change inside it


def page_ids(pages: list) -> list[str]:
    ids = []
    for page in pages:
        if isinstance(page, CsvPage):
            rows = list(csv.DictReader(io.StringIO(page.data.decode())))
            ids += [r["Id"] for r in rows]
        else:
            ids += page.column("Id").to_pylist()
    return ids


def mirror_rows(conn: psycopg.Connection, schema: str) -> list[tuple]:
    return conn.execute(f"SELECT * FROM {schema}.opportunity ORDER BY id").fetchall()


def test_slices_cover_the_window_once_and_split_only_large_windows(org: DevOrgServer):
    client = client_for(org)
    end = window_end(org)
    total = client.count(f"SystemModstamp < {end:%Y-%m-%dT%H:%M:%SZ}", "Opportunity")
    slices = bulk_slices(client, "Opportunity", START, end, total, slice_records=60)
    assert len(slices) >= 4
    assert all(0 < n <= 60 for _, _, n in slices), slices
    assert sum(n for _, _, n in slices) == total
    for (_, b, _), (a, _, _) in zip(slices, slices[1:], strict=False):
        assert b <= a  # ordered, no overlap
    assert bulk_slices(client, "Opportunity", START, end, total, slice_records=total) == [(START, end, total)]
    capped = bulk_slices(client, "Opportunity", START, end, total, slice_records=1, max_slices=5)
    assert len(capped) <= 5 and sum(n for _, _, n in capped) == total


def test_sliced_bulk_extraction_equals_the_rest_extraction_and_leaves_no_jobs(org: DevOrgServer, pg_url: str):
    client = client_for(org)
    fields = [f["name"] for f in backup_fields(client.describe("Opportunity")["fields"])]
    end = window_end(org)
    stats = ExtractStats("Opportunity", START, end)
    pages = list(
        extract_window(
            client,
            "Opportunity",
            fields,
            START,
            end,
            bulk_threshold=10,
            bulk_page_size=25,
            bulk_slice_records=60,
            stats=stats,
        )
    )
    ids = page_ids(pages)
    assert stats.mode == "bulk" and stats.bulk_jobs >= 4 and stats.extracted == len(ids) == stats.expected
    assert len(set(ids)) == len(ids)  # each record once
    assert all(isinstance(p, CsvPage) for p in pages)

    describe = client.describe("Opportunity")["fields"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        bulk_table = ensure_mirror_table(conn, "Opportunity", describe, schema="via_bulk")
        loaded = load_window(conn, bulk_table, iter(pages), START, end, unique_ids=True)
        assert loaded.into_empty_table and loaded.inserted == len(ids)
        rest_table = ensure_mirror_table(conn, "Opportunity", describe, schema="via_rest")
        load_window(
            conn,
            rest_table,
            extract_window(client, "Opportunity", fields, START, end, bulk_threshold=10_000),
            START,
            end,
        )
        assert mirror_rows(conn, "via_bulk") == mirror_rows(conn, "via_rest")
        # the first load dropped and rebuilt the key and the index: both are back, as they were
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'via_bulk'").fetchall()
        assert sorted(i.replace("via_bulk", "s") for (i,) in indexes) == sorted(
            i.replace("via_rest", "s")
            for (i,) in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'via_rest'").fetchall()
        )
        assert any("opportunity_pkey" in i for (i,) in indexes)
    listed = client.restful("jobs/query")["records"]
    assert [j for j in listed if j["state"] not in ("Deleted",)] == []


def test_a_record_changed_while_the_window_is_read_never_comes_twice(org: DevOrgServer, pg_url: str):
    client = client_for(org)
    fields = [f["name"] for f in backup_fields(client.describe("Opportunity")["fields"])]
    end = window_end(org)
    oldest = client.sf.query("SELECT Id FROM Opportunity ORDER BY SystemModstamp ASC LIMIT 1")["records"][0]["Id"]
    stats = ExtractStats("Opportunity", START, end)
    stream = extract_window(
        client,
        "Opportunity",
        fields,
        START,
        end,
        bulk_threshold=10,
        bulk_page_size=10,
        bulk_slice_records=60,
        stats=stats,
    )
    pages = [next(stream)]  # the newest slice is being read ...
    connect(org, "admin").Opportunity.update(oldest, {"Description": "changed during the backup"})
    pages += list(stream)  # ... when the oldest record moves into it
    ids = page_ids(pages)
    assert len(set(ids)) == len(ids), "a record came twice"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        table = ensure_mirror_table(
            conn, "Opportunity", client.describe("Opportunity")["fields"], schema="changed_meanwhile"
        )
        result = load_window(conn, table, iter(pages), START, end, unique_ids=True)
    assert result.inserted == len(ids)


def test_csv_page_checks_its_header_and_announced_count():
    body = b'"Id","Name"\n"001","A, with comma"\n"002","two\nlines"\n'
    page = CsvPage.parse(body, 2, ["Id", "Name"])
    assert page.columns == ("Id", "Name") and bytes(page.rows).startswith(b'"001"')
    with pytest.raises(CsvPageError, match="expected"):
        CsvPage.parse(body, 2, ["Id", "Amount"])
    with pytest.raises(CsvPageError, match="announced 4 records"):
        CsvPage.parse(body, 4, ["Id", "Name"])
    with pytest.raises(CsvPageError, match="no header"):
        CsvPage.parse(b"", 0, ["Id"])


DESCRIBE = [
    {"name": "Id", "type": "id", "length": 18},
    {"name": "Name", "type": "string", "length": 80},
    {"name": "Amount", "type": "currency"},
    {"name": "SystemModstamp", "type": "datetime"},
    {"name": "IsDeleted", "type": "boolean"},
]
PAGE = (
    b'"Id","Name","Amount","SystemModstamp","IsDeleted"\n'
    b'"006000000000001AAA","Quote ""this"", and\nthat",1.5,"2024-01-01T00:00:00.000Z","false"\n'
    b'"006000000000002AAA",,,"2024-01-02T00:00:00.000Z","true"\n'
)
W0, W1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize("first_load", [True, False])
def test_csv_pages_load_as_sent_with_quotes_newlines_and_nulls(pg_url: str, first_load: bool):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        table = ensure_mirror_table(conn, "Opportunity", DESCRIBE, schema=f"pages_{first_load:d}")
        result = load_window(
            conn,
            table,
            [CsvPage.parse(PAGE, 2, ["Id", "Name", "Amount", "SystemModstamp", "IsDeleted"])],
            W0,
            W1,
            unique_ids=first_load,
        )
        assert (result.inserted, result.deleted) == (2, 1)
        rows = conn.execute(
            f"SELECT id, name, amount, isdeleted FROM pages_{first_load:d}.opportunity ORDER BY id"
        ).fetchall()
    assert rows == [
        ("006000000000001AAA", 'Quote "this", and\nthat', 1.5, False),
        ("006000000000002AAA", None, None, True),
    ]


@pytest.mark.parametrize("first_load", [True, False])
def test_a_page_holding_fewer_records_than_announced_loads_nothing(pg_url: str, first_load: bool):
    good = CsvPage.parse(PAGE, 2)
    short = CsvPage(good.data, good.columns, 3, good.start)  # announces 3, holds 2 (lines: one value has two)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        table = ensure_mirror_table(conn, "Opportunity", DESCRIBE, schema=f"short_{first_load:d}")
        with pytest.raises(WarehouseLoadError, match="announced 3 records but held 2"):
            load_window(conn, table, [short], W0, W1, unique_ids=first_load)
        assert conn.execute(f"SELECT count(*) FROM short_{first_load:d}.opportunity").fetchone()[0] == 0
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = %s", (f"short_{first_load:d}",)
            ).fetchone()[0]
            == 2
        )  # key and index intact


def test_a_record_twice_in_a_first_load_fails_and_keeps_the_key(pg_url: str):
    twice = PAGE + b'"006000000000001AAA","again",2,"2024-01-03T00:00:00.000Z","false"\n'
    with psycopg.connect(pg_url, autocommit=True) as conn:
        table = ensure_mirror_table(conn, "Opportunity", DESCRIBE, schema="twice")
        with pytest.raises(WarehouseLoadError, match="appears twice"):
            load_window(conn, table, [CsvPage.parse(twice, 3)], W0, W1, unique_ids=True)
        assert conn.execute("SELECT count(*) FROM twice.opportunity").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'twice'").fetchone()[0] == 2


@pytest.mark.parametrize("value", [0, -5, "many", 1.5])
def test_bulk_slice_records_must_be_a_positive_whole_number(tmp_path, value):
    from sf_pipeline.settings import SettingsError, load_settings
    from sf_pipeline_tests.pipeline_fixtures import write_settings

    good = write_settings(tmp_path / "good.yaml", ["Opportunity"], bulk_slice_records=100_000)
    assert load_settings(str(good)).bulk_slice_records == 100_000
    bad = write_settings(tmp_path / "bad.yaml", ["Opportunity"], bulk_slice_records=value)
    with pytest.raises(SettingsError, match="backup.bulk_slice_records must be a positive whole number"):
        load_settings(str(bad))
