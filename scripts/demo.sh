#!/usr/bin/env bash
# Quick start 1/2: install Perf Sentinel and run the demo end to end (generate 5 weeks of metrics with a
# latency regression, backfill a local Prometheus, analyze once, print what was found).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prometheus.sh
python3 -m pip install -q -e . 2>&1 | grep -v "Running pip as the 'root' user" || true
exec perfsentinel demo "$@"
