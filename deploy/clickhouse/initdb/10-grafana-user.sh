#!/bin/bash
# Runs once, when the ClickHouse data volume is created (the image's initdb hook). Creates the
# read-only user Grafana queries as; the stampline schema itself is created by
# `stampline store migrate` (the stampline-migrate service), so its migrations are recorded.
set -euo pipefail
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS ${CLICKHOUSE_DB};
CREATE USER IF NOT EXISTS ${GRAFANA_CLICKHOUSE_USER}
    IDENTIFIED WITH sha256_password BY '${GRAFANA_CLICKHOUSE_PASSWORD}'
    SETTINGS readonly = 2;  -- reads only; may still set query settings, as the plugin does
GRANT SELECT ON ${CLICKHOUSE_DB}.* TO ${GRAFANA_CLICKHOUSE_USER};
SQL
