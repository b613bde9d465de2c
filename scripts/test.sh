#!/usr/bin/env bash
# One command: set everything up and run the whole test suite (unit, database and browser tests).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k scoring`.
source "$(dirname "$0")/env.sh"
if [ -z "${CRM_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> Installing Chromium for the browser tests (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium is needed for the browser tests: install it (e.g. 'sudo apt-get install chromium')"
    echo "or set CRM_CHROMIUM to its path." >&2
    exit 1
  fi
fi
exec python -m pytest "$@"
