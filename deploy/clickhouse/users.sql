-- The same two users as users.d/tracehouse.xml, in SQL, for servers whose users are managed with SQL
-- (ClickHouse Cloud, or access_management enabled): run as an admin, after replacing the passwords.
CREATE DATABASE IF NOT EXISTS tracehouse;

-- The collector: writes spans and runs the schema migrations, in the tracehouse database only.
CREATE USER IF NOT EXISTS tracehouse_ingest IDENTIFIED WITH sha256_password BY 'change-me-ingest';
GRANT ALL ON tracehouse.* TO tracehouse_ingest;

-- Grafana: reads the tracehouse database and nothing else. readonly = 1 (settings fixed, except the
-- query timeout the plugin sets), allow_ddl = 0 and no CREATE TEMPORARY TABLE or source privileges,
-- so table functions (file, url, s3, remote, mysql, ...) are refused.
CREATE SETTINGS PROFILE IF NOT EXISTS tracehouse_grafana SETTINGS
    readonly = 1 CONST,
    allow_ddl = 0 CONST,
    max_memory_usage = 4000000000,
    max_execution_time = 60 MIN 1 MAX 300 CHANGEABLE_IN_READONLY;
CREATE USER IF NOT EXISTS tracehouse_grafana IDENTIFIED WITH sha256_password BY 'change-me-grafana'
    SETTINGS PROFILE 'tracehouse_grafana';
GRANT SELECT ON tracehouse.* TO tracehouse_grafana;
