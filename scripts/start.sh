#!/usr/bin/env bash
# One command: set everything up (virtualenv, requirements, database, migrations, demo data,
# frontend build) and start the app on http://localhost:${CRM_PORT:-3000}.
source "$(dirname "$0")/env.sh"
python -m crm_app.cli setup --leads "${CRM_DEMO_LEADS:-3000}"
port="${CRM_PORT:-3000}"
echo "==> Starting the app on http://localhost:$port (first start builds the frontend: a few minutes)"
exec reflex run --env prod --single-port --frontend-port "$port" --backend-port "$port"
