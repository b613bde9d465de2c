#!/usr/bin/env bash
# One command: set everything up (virtualenv, requirements, database, migrations, demo data,
# frontend build) and keep the app running on http://localhost:${CRM_PORT:-3000}.
# The app runs under scripts/supervise.py: the frontend is built once per code version, a crashed
# server is restarted, and Ctrl-C (or SIGTERM) stops it cleanly.
source "$(dirname "$0")/env.sh"
python -m crm_app.cli setup --leads "${CRM_DEMO_LEADS:-3000}"
exec python scripts/supervise.py --port "${CRM_PORT:-3000}"
