#!/usr/bin/env bash
# Create .venv and install soxs-mflat (C++ core built from source) with its test tools; install
# Debian's esorex + libcpl-dev (when run as root with apt) and build the esorex plugin into
# build/esorex/recipes. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }
need=()
command -v g++ >/dev/null || need+=(g++)
command -v cmake >/dev/null || need+=(cmake)
command -v esorex >/dev/null || need+=(esorex)
[ -f /usr/include/cpl.h ] || need+=(libcpl-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)   # the plugin checks .gz streams with zlib
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing ${need[*]} with apt-get"
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "setup: could not install ${need[*]} (not root?); esorex tests will be skipped"
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test]"
if [ -f /usr/include/cpl.h ] && command -v cmake >/dev/null; then
  cmake -S . -B build/esorex -DSOXS_BUILD_ESOREX_RECIPE=ON -DSOXS_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build/esorex -j 2 >/dev/null
  echo "setup: esorex plugin built in build/esorex/recipes"
  .venv/bin/python -m pip install -q python-cpl || echo "setup: python-cpl could not be installed; its tests will be skipped"
fi
