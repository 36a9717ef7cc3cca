#!/usr/bin/env bash
# Quick start 1/2: install Perf Sentinel and run the demo end to end (generate 5 weeks of metrics with a
# latency regression, backfill a local Prometheus, analyze once, print what was found).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prometheus.sh
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e .
exec perfsentinel demo "$@"
