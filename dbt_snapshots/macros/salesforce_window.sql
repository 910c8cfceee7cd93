{#
  The rows of one extraction window: systemmodstamp >= window_start and < window_end (half-open,
  like the extraction, so a record stamped exactly at a boundary belongs to one window only).
  Snapshotting only these rows makes a snapshot's cost grow with the rows changed in the window,
  not with the size of the object. Run with the window in the environment:
    SF_PIPELINE_WINDOW_START=2026-01-01T00:00:00Z SF_PIPELINE_WINDOW_END=2026-01-01T01:00:00Z \
        dbt snapshot --select <objects>

  Why the environment and not --vars: dbt re-parses the whole project when --vars change, and re-parses a file
  whose env_var() values changed (https://docs.getdbt.com/reference/parsing, "Known limitations"). The window
  changes every run, so it is read only while dbt executes (`execute`: false while dbt parses,
  https://docs.getdbt.com/reference/dbt-jinja-functions/execute): no parsed file depends on it, and consecutive
  windows reuse dbt's partial parse (partial_parse.msgpack) with nothing to re-parse. Environment variables are
  per process, so two windows snapshotted at once (two runs) never see each other's window.
#}
{% macro salesforce_window() -%}
    {#- {'start': ..., 'end': ...} of the window being snapshotted; none while dbt parses -#}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if var('window_start', none) is not none or var('window_end', none) is not none -%}
        {{ exceptions.raise_compiler_error(
            "the window to snapshot is read from the environment, not from --vars: "
            ~ "SF_PIPELINE_WINDOW_START=2026-01-01T00:00:00Z SF_PIPELINE_WINDOW_END=2026-01-01T01:00:00Z "
            ~ "dbt snapshot ...") }}
    {%- endif -%}
    {%- set window_start = env_var('SF_PIPELINE_WINDOW_START', '') -%}
    {%- set window_end = env_var('SF_PIPELINE_WINDOW_END', '') -%}
    {%- if not window_start or not window_end -%}
        {{ exceptions.raise_compiler_error(
            "snapshots of the Salesforce backup need the window to snapshot in SF_PIPELINE_WINDOW_START and "
            ~ "SF_PIPELINE_WINDOW_END: SF_PIPELINE_WINDOW_START=2026-01-01T00:00:00Z "
            ~ "SF_PIPELINE_WINDOW_END=2026-01-01T01:00:00Z dbt snapshot ...") }}
    {%- endif -%}
    {{ return({'start': window_start, 'end': window_end}) }}
{%- endmacro %}

{% macro salesforce_window_filter(column='systemmodstamp') -%}
    {%- set window = salesforce_window() -%}
    {%- if window is none -%}
        {#- parsing: the SQL is rendered again, with the window, when the snapshot executes -#}
        false
    {%- else -%}
        {{ adapter.quote(column) }} >= {{ salesforce_timestamp_literal(window.start) }}
        and {{ adapter.quote(column) }} < {{ salesforce_timestamp_literal(window.end) }}
    {%- endif -%}
{%- endmacro %}

{% macro salesforce_timestamp_literal(value) -%}
    cast('{{ (value ~ "") | replace("'", "''") }}' as timestamptz)
{%- endmacro %}
