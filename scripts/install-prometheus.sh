#!/usr/bin/env bash
# Installs Prometheus (with promtool) and Alertmanager (with amtool) from Debian when they are missing.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null \
   && command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
