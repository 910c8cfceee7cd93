"""The change-volume chart of an incident, without a plotting library: a small PNG and a text sparkline.

Why a hand-written PNG: matplotlib is not a dependency, and a bar chart is only filled rectangles. The PNG
(bars of the 5-minute buckets, the damaging ones in red, hour ticks under the axis) goes into the
incident report and, as a data URI, into its markdown, which the Dagster UI renders; the unicode
sparkline carries the same shape where images are not shown (logs, plain-text metadata).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

BACKGROUND = (255, 255, 255)
BAR = (70, 110, 160)
HIGHLIGHT = (214, 39, 40)
AXIS = (120, 120, 120)
GRID = (225, 225, 225)
SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: Sequence[bytearray], width: int) -> bytes:
    """An 8-bit RGB PNG from rows of `width * 3` bytes (filter type 0 on every row)."""
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, len(pixels), 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )


def bar_chart_png(
    values: Sequence[int],
    highlight: Sequence[bool] | None = None,
    *,
    bar_width: int = 3,
    gap: int = 1,
    height: int = 160,
    ticks_every: int = 12,
) -> bytes:
    """A bar per value, scaled to the largest; bars flagged in `highlight` red; a tick every
    `ticks_every` bars (an hour of 5-minute buckets), a longer one every 6 ticks.

    A value above zero is at least one pixel high, so a quiet bucket is told apart from an empty one.
    """
    margin, axis_gap, tick = 8, 2, 6
    count = len(values)
    width = max(1, 2 * margin + count * (bar_width + gap) - gap) if count else 2 * margin + 1
    plot_bottom = height - margin - tick - axis_gap  # the axis line's row
    plot_height = plot_bottom - margin
    rows = [bytearray(BACKGROUND * width) for _ in range(height)]

    def fill(x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        left, right = max(x0, 0), min(x1, width)
        if right <= left:
            return
        span = bytes(color) * (right - left)
        for y in range(max(y0, 0), min(y1, height)):
            rows[y][3 * left : 3 * right] = span

    for fraction in (0.25, 0.5, 0.75, 1.0):  # light grid lines at quarters of the peak
        y = plot_bottom - round(plot_height * fraction)
        fill(margin, y, width - margin, y + 1, GRID)
    peak = max(values, default=0)
    for i, value in enumerate(values):
        x = margin + i * (bar_width + gap)
        if value > 0 and peak > 0:
            bar = max(1, round(plot_height * value / peak))
            color = HIGHLIGHT if highlight and highlight[i] else BAR
            fill(x, plot_bottom - bar, x + bar_width, plot_bottom, color)
        if ticks_every and i % ticks_every == 0:
            length = tick if i % (ticks_every * 6) == 0 else tick // 2
            fill(x, plot_bottom + axis_gap, x + 1, plot_bottom + axis_gap + length, AXIS)
    fill(margin, plot_bottom, width - margin, plot_bottom + 1, AXIS)
    return encode_png(rows, width)


def sparkline(values: Sequence[int], width: int = 72) -> str:
    """The values as a line of block characters, buckets summed in groups to fit `width` characters."""
    if not values:
        return ""
    group = -(-len(values) // width)  # ceiling division
    sums = [sum(values[i : i + group]) for i in range(0, len(values), group)]
    peak = max(sums)
    if peak == 0:
        return SPARK_LEVELS[0] * len(sums)
    top = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[0] if s == 0 else SPARK_LEVELS[max(1, round(top * s / peak))] for s in sums)
