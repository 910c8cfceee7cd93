"""Privacy: masked seeding (masking.py), the right to be forgotten (forget.py) and history retention
(retention.py). Plain functions over plain data; the Dagster jobs are thin glue in definitions.py."""
