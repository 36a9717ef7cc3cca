#!/usr/bin/env bash
# Quick start 2/2: install everything the tests need and run the whole suite (unit, integration against real
# Prometheus/Alertmanager, rule and chart checks). pytest's exit code 5 ("no tests collected") is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-prometheus.sh || exit 1
# tests/test_image.py builds the container image with buildah from a debootstrapped Debian base
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null; } \
    || exit 1
fi
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q -e ".[test]" || exit 1
python3 -m pytest -q -p no:cacheprovider "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
