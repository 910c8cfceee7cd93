-- Runs once, when the compose PostgreSQL starts on an empty volume: the backup database (mirror, history,
-- incidents, restore audit) lives next to Dagster's own database `dagster`, owned by the same user.
CREATE DATABASE sf_backup;
