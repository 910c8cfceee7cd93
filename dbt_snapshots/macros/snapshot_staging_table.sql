{#
  dbt's snapshot staging query compares the window's rows with the *current versions of the whole
  history table* (`snapshotted_data`), which PostgreSQL materializes in full: a 1,000-change window of a
  1,000,000-record object cost as much as snapshotting all of it. Narrow the current versions to the
  records of the window, so a snapshot's cost grows with the rows changed, not with the object size.
  With hard_deletes: ignore (ours), target_relation is used only for that lookup.
#}
{% macro postgres__snapshot_staging_table(strategy, source_sql, target_relation) -%}
    {%- set key = strategy.unique_key -%}
    {%- set narrowed -%}
        (select * from {{ target_relation }}
         where {{ key }} in (select {{ key }} from ({{ source_sql }}) as window_keys)) as window_history
    {%- endset -%}
    {{ return(default__snapshot_staging_table(strategy, source_sql, narrowed)) }}
{%- endmacro %}
