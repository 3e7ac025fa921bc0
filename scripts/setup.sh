#!/usr/bin/env bash
# Create .venv and install soxs-mflat (C++ core built from source) with its test tools.
# Idempotent; safe to run on a fresh Debian machine with python3 (>= 3.10) and g++.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v g++ >/dev/null || ! command -v cmake >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq g++ cmake >/dev/null
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test]"
