#!/bin/sh
# One-shot: create Temporal's persistence and visibility schemas in PostgreSQL, or bring
# them up to date. Safe to run again: `create` of an existing database is ignored.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
PORT=${DB_PORT:-5432}
SCHEMAS=/etc/temporal/schema/postgresql/v12

until nc -z -w 5 "$POSTGRES_SEEDS" "$PORT"; do
  echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$PORT"
  sleep 2
done

for database in temporal temporal_visibility; do
  case $database in
    temporal) versions=$SCHEMAS/temporal/versioned ;;
    *) versions=$SCHEMAS/visibility/versioned ;;
  esac
  sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" \
    -u "$POSTGRES_USER" --db "$database" "$@"; }
  sql create || echo "database $database exists"
  sql setup-schema -v 0.0
  sql update-schema -d "$versions"
done
echo "Temporal schemas are up to date"
