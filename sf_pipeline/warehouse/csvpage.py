"""A page of CSV rows that goes to PostgreSQL's COPY as it is, without being parsed in Python.

Bulk API 2.0 sends query results as RFC 4180 CSV (header line first, comma, LF, empty field = null),
which is exactly what `COPY ... (FORMAT csv)` reads. Parsing such a page into Arrow and writing it out
again as CSV cost about a third of the backup's own CPU for nothing, so a Bulk page is handed to the
loader as bytes. Only the header line is parsed (to map columns) and the line feeds are counted (a
cheap check of the announced record count); the loader also checks COPY's row count against the sum
of the announced counts before it commits.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pacsv


def read_text_csv(data: bytes, columns: list[str] | tuple[str, ...]) -> pa.Table:
    """A Bulk CSV page (header line first) as an Arrow table of text columns; an unquoted empty field is
    null, as Salesforce means it."""
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )


class CsvPageError(ValueError):
    """A CSV page does not hold what its producer announced."""


@dataclass(frozen=True)
class CsvPage:
    data: bytes  # the whole page as received: header line, then rows
    columns: tuple[str, ...]  # header names, in the page's order
    num_rows: int  # records announced by the producer (Sforce-NumberOfRecords)
    start: int  # offset of the first row in `data`

    @property
    def rows(self) -> memoryview:
        """The rows without the header, without copying the page."""
        return memoryview(self.data)[self.start :]

    @property
    def nbytes(self) -> int:
        return len(self.data) - self.start

    @classmethod
    def parse(cls, data: bytes, num_rows: int, expected: list[str] | None = None) -> CsvPage:
        """Read the header line of `data`; check it against `expected` names (ignoring case and order)
        and the announced `num_rows` against the line feeds (a value may hold a line feed, so there can
        be more, never fewer)."""
        end = data.find(b"\n")
        if end < 0:
            raise CsvPageError("CSV page has no header line (no line feed found)")
        header = next(csv.reader([data[:end].decode("utf-8").rstrip("\r")]))
        if expected is not None:
            got = {h.lower() for h in header}
            missing = [f for f in expected if f.lower() not in got]
            if missing or len(header) != len(expected):
                raise CsvPageError(f"CSV page has columns {header}, expected {expected}")
        lines = data.count(b"\n", end + 1) + (not data.endswith(b"\n"))  # + a last row without a line feed
        if lines < num_rows:
            raise CsvPageError(f"CSV page announced {num_rows} records but holds at most {lines}")
        return cls(data, tuple(header), num_rows, end + 1)
