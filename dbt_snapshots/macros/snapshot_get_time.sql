{#
  dbt-postgres returns now()::timestamp without time zone, and dbt warns that it differs from the
  type of updated_at (SystemModstamp is timestamptz). Our timestamps are all timestamptz.
#}
{% macro postgres__snapshot_get_time() -%}
    now()::timestamptz
{%- endmacro %}
