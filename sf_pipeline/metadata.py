"""Run metadata as the library packages give it: plain values (str, int, float, bool, dict, list), which Dagster
shows as text, numbers and JSON by itself, and `Markdown` for text the UI should render (a table, a YAML block).

No Dagster here, so the libraries' results can say what they show (`ApplyResult.as_metadata()`, ...); the glue turns
a `Markdown` into Dagster's markdown kind (`sf_pipeline.resources.dagster_metadata`).
"""

from __future__ import annotations


class Markdown(str):
    """Text the Dagster UI renders as Markdown."""

    __slots__ = ()
