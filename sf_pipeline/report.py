"""An HTML report of an incident and what was done about it: the timeline, what the anomaly check found,
the sandbox seeding, and each restore run (plan, outcome, verification) as stored in the backup database.

One self-contained file (the chart is embedded), for the ticket, the post-mortem or the auditor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import psycopg
from psycopg.rows import dict_row

from sf_pipeline.anomalies.incidents import StoredIncident, format_instant


@dataclass(frozen=True)
class TimelineEntry:
    label: str
    at: datetime  # on the org's clock
    detail: str = ""


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ incident.report.title }}</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #1d2330; }
 h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
 table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ddd; padding: .3em .6em; }
 th { background: #f4f5f8; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
 img { max-width: 100%; border: 1px solid #eee; }
 code, pre { font: 12px ui-monospace, monospace; background: #f4f5f8; } pre { padding: .8em; overflow-x: auto; }
 .ok { color: #17803d; } .bad { color: #b42318; } .muted { color: #667085; }
</style></head><body>
<h1>{{ incident.report.severity|upper }}: {{ incident.report.title }}</h1>
<p class="muted">Incident {{ incident.id }} on org <code>{{ incident.report.org }}</code>, window
{{ instant(incident.report.window_start) }} to {{ instant(incident.report.window_end) }}. Report generated {{ generated }}.</p>

<h2>Timeline (org clock, UTC)</h2>
<table><tr><th>event</th><th>at</th><th>after the damage</th></tr>
{% for e in timeline %}<tr><td>{{ e.label }}{% if e.detail %} <span class="muted">{{ e.detail }}</span>{% endif %}</td>
<td>{{ instant(e.at) }}</td><td class="n">{{ since(e.at) }}</td></tr>{% endfor %}</table>

<h2>What happened</h2>
<ul>
 <li><b>What</b>: {{ what }}</li>
 <li><b>Records affected</b>: {{ "{:,}".format(incident.report.affected_count) }}{% if incident.report.share is not none %}
   ({{ "%.1f"|format(incident.report.share * 100) }}% of the live {{ incident.report.object }} records){% endif %}</li>
 {% if incident.report.first_change %}<li><b>When</b>: {{ instant(incident.report.first_change) }} to
   {{ instant(incident.report.last_change) }} (SystemModstamp)</li>{% endif %}
 {% if incident.report.user_id %}<li><b>By</b>: {{ incident.report.user_label }}</li>{% endif %}
</ul>
{% if incident.report.sample %}<table><tr><th>record</th><th>name</th><th>before</th><th>after</th></tr>
{% for s in incident.report.sample %}<tr><td><code>{{ s.id }}</code></td><td>{{ s.name or "" }}</td>
<td>{{ values(s.before) }}</td><td>{{ values(s.after) }}</td></tr>{% endfor %}</table>{% endif %}
{% if incident.report.volume %}<p>Change volume of {{ incident.report.object }} over the 24 hours to the window's end
(5-minute buckets; red: the damaging changes):</p><img alt="change volume" src="{{ incident.report.chart_data_uri() }}">{% endif %}
<p>{{ incident.report.restore_note }}</p>
<details><summary>the restore config (launchpad YAML of the restore job)</summary>
<pre>{{ incident.restore_config_yaml() }}</pre></details>

{% if seed %}<h2>Rehearsal sandbox: seeded from the backup</h2>
<p>Org <code>{{ seed.config.target_org }}</code> seeded with the state of {{ seed.config.as_of }}
(after the damage, to reproduce it): {{ "{:,}".format(seed.copied) }} records in
{{ "%.1f"|format(seed.seconds) }} s, {{ seed.api_calls }} API calls; insert order {{ seed.order|join(" → ") }}.</p>
<table><tr><th>object</th><th>selected</th><th>parents</th><th>inserted</th><th>updated</th><th>failed</th>
<th>not settable on insert</th></tr>
{% for o in seed.objects.values() %}<tr><td>{{ o.object }}</td><td class="n">{{ o.selected }}</td>
<td class="n">{{ o.parents }}</td><td class="n">{{ o.inserted }}</td><td class="n">{{ o.updated }}</td>
<td class="n">{{ o.failed }}</td><td>{{ o.not_settable|join(", ") }}</td></tr>{% endfor %}</table>
{% for n in seed.notes %}<p class="muted">{{ n }}</p>{% endfor %}{% endif %}

{% for r in restores %}<h2>{{ r.title }}</h2>
<p>Run <code>{{ r.run_id }}</code> on org <code>{{ r.target_org }}</code>: status
<b class="{{ 'ok' if r.status in ('verified', 'planned') else 'bad' }}">{{ r.status }}</b>.
Records per classification: {{ r.counts_text }}.</p>
{% for n in r.notes %}<p class="muted">{{ n }}</p>{% endfor %}
{% if r.outcomes %}<table><tr><th>outcome</th><th>records</th></tr>{% for k, v in r.outcomes %}
<tr><td>{{ k }}</td><td class="n">{{ "{:,}".format(v) }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.preview %}<details><summary>plan preview</summary><pre>{{ r.preview }}</pre></details>{% endif %}
{% endfor %}

<h2>Check it yourself</h2>
<pre>{{ queries }}</pre>
</body></html>
""")


def _restore_rows(conn: psycopg.Connection[Any], runs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    with conn.cursor(row_factory=dict_row) as cur:
        for title, run_id in runs:
            plan = cur.execute(
                "SELECT run_id, target_org, status, counts, details FROM sf_pipeline.restore_plans WHERE run_id = %s",
                (run_id,),
            ).fetchone()
            if plan is None:
                continue
            outcomes = cur.execute(
                "SELECT coalesce(outcome, 'not written (dry run)') AS outcome, "
                "count(DISTINCT record_id) AS n FROM sf_pipeline.restore_items WHERE run_id = %s "
                "GROUP BY 1 ORDER BY 2 DESC",
                (run_id,),
            ).fetchall()
            details = plan["details"] or {}
            out.append(
                {
                    "title": title,
                    "run_id": run_id,
                    "target_org": plan["target_org"],
                    "status": plan["status"],
                    "counts_text": ", ".join(f"{k} {v:,}" for k, v in (plan["counts"] or {}).items() if v) or "none",
                    "notes": details.get("notes") or [],
                    "outcomes": [(r["outcome"], r["n"]) for r in outcomes],
                    "preview": details.get("preview") or "",
                }
            )
    return out


def write_incident_report(
    path: str | Path,
    conn: psycopg.Connection[Any],
    incident: StoredIncident,
    *,
    timeline: Sequence[TimelineEntry] = (),
    seed: Any = None,
    restores: Sequence[tuple[str, str]] = (),
    database_hint: str = "",
    generated: datetime | None = None,
) -> Path:
    """Write the report to `path`; `restores` are (title, restore run id) pairs, in the order they ran."""
    report = incident.report
    damage = report.first_change or (timeline[0].at if timeline else None)

    def since(at: datetime) -> str:
        if damage is None:
            return ""
        seconds = int((at - damage).total_seconds())
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 0 else ""

    def values(mapping: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}: {'(empty)' if v is None else v}" for k, v in mapping.items())

    queries = "\n".join(
        [
            f"-- {database_hint}" if database_hint else "-- the backup database",
            f"SELECT * FROM sf_pipeline.incidents WHERE id = {incident.id};",
            "SELECT run_id, target_org, status, counts FROM sf_pipeline.restore_plans ORDER BY created_at;",
            "SELECT * FROM sf_pipeline.restore_audit ORDER BY id DESC LIMIT 20;",
            "SELECT object, count(*) FROM sf_pipeline.id_map GROUP BY 1;",
        ]
    )
    html = _TEMPLATE.render(
        incident=incident,
        timeline=timeline,
        seed=seed,
        restores=_restore_rows(conn, restores),
        what=report.what,
        instant=format_instant,
        since=since,
        values=values,
        queries=queries,
        generated=format_instant(generated or datetime.now().astimezone()),
    )
    out = Path(path)
    out.write_text(html, encoding="utf-8")
    return out
