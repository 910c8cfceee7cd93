{#
  dbt's default writes a custom schema as <target schema>_<custom> (salesforce_history_salesforce_history
  here); the backup's history must land in exactly the schema the snapshot names.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
