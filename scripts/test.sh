#!/usr/bin/env bash
# Quick start 2/2: install everything the tests need and run the whole suite (unit, integration against real
# Prometheus/Alertmanager, rule and chart checks). pytest's exit code 5 ("no tests collected") is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prometheus.sh || exit 1
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e ".[test]" || exit 1
python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
