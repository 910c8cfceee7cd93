{#
  A vanished record (hard-deleted, purged, merged away, or gone for an unknown reason) is closed in history
  by the run of the window that found it, even when its closing time lies in an earlier window: the mirror
  row carries the end of that window in _sfp_found_in_window (sf_pipeline/warehouse/vanished.py). Mirror
  tables created before those columns existed simply have no such rows.
#}
{% macro salesforce_found_in_window(relation) -%}
    {%- set window = salesforce_window() -%}
    {%- if window is not none -%}
        {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- if '_sfp_found_in_window' in names -%}
            or {{ adapter.quote('_sfp_found_in_window') }} = {{ salesforce_timestamp_literal(window.end) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
