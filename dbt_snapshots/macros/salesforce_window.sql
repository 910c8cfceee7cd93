{#
  The rows of one extraction window: systemmodstamp >= window_start and < window_end (half-open,
  like the extraction, so a record stamped exactly at a boundary belongs to one window only).
  Snapshotting only these rows makes a snapshot's cost grow with the rows changed in the window,
  not with the size of the object. Run with
    dbt snapshot --select <objects> --vars '{window_start: ..., window_end: ...}'
#}
{% macro salesforce_window_filter(column='systemmodstamp') -%}
    {%- set window_start = var('window_start', none) -%}
    {%- set window_end = var('window_end', none) -%}
    {%- if execute and (window_start is none or window_end is none) -%}
        {{ exceptions.raise_compiler_error(
            "snapshots of the Salesforce backup need the window to snapshot: "
            ~ "dbt snapshot --vars '{window_start: 2026-01-01T00:00:00Z, window_end: 2026-01-01T01:00:00Z}'") }}
    {%- endif -%}
    {{ adapter.quote(column) }} >= {{ salesforce_timestamp_literal(window_start) }}
    and {{ adapter.quote(column) }} < {{ salesforce_timestamp_literal(window_end) }}
{%- endmacro %}

{% macro salesforce_timestamp_literal(value) -%}
    cast('{{ (value ~ "") | replace("'", "''") }}' as timestamptz)
{%- endmacro %}
