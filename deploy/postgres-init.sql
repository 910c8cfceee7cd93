-- Runs once, when the compose PostgreSQL starts on an empty volume (docker-entrypoint-initdb.d, as the superuser,
-- connected to POSTGRES_DB = dagster). Neither Dagster nor the pipeline logs in as a superuser:
--   dagster      owns Dagster's storage, the database `dagster` (webservers, daemon, code location, runs);
--   sf_pipeline  owns the backup database `sf_backup` (mirror, history, incidents, restore audit): the code
--                location and its runs only.
-- Neither can create roles or databases, and each can connect to its own database only. Their passwords come
-- from the container's environment (deploy/database.env through docker-compose.yaml), never from this file.
\set ON_ERROR_STOP on
\getenv dagster_password DAGSTER_PG_PASSWORD
\getenv sf_pipeline_password SF_PIPELINE_DB_PASSWORD
\if :{?dagster_password}
\else
  \set dagster_password ''
\endif
\if :{?sf_pipeline_password}
\else
  \set sf_pipeline_password ''
\endif
SELECT :'dagster_password' = '' AS no_dagster_password, :'sf_pipeline_password' = '' AS no_sf_pipeline_password \gset
\if :no_dagster_password
  DO $$ BEGIN RAISE EXCEPTION 'DAGSTER_PG_PASSWORD is empty or not set: put it in deploy/database.env'; END $$;
\endif
\if :no_sf_pipeline_password
  DO $$ BEGIN RAISE EXCEPTION 'SF_PIPELINE_DB_PASSWORD is empty or not set: put it in deploy/database.env'; END $$;
\endif

CREATE ROLE dagster LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'dagster_password';
CREATE ROLE sf_pipeline LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'sf_pipeline_password';

-- Dagster's database (created by the image from POSTGRES_DB): the owner also owns its schema public (PG 15+)
ALTER DATABASE dagster OWNER TO dagster;
REVOKE ALL ON DATABASE dagster FROM PUBLIC;

CREATE DATABASE sf_backup OWNER sf_pipeline;
REVOKE ALL ON DATABASE sf_backup FROM PUBLIC;
