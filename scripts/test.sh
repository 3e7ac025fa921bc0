#!/usr/bin/env bash
# Install (scripts/setup.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the core and its C++ check driver under AddressSanitizer + UBSan (about a minute)
bash scripts/sanitize.sh
# run from tests/ so that the installed package, not the source tree, is imported
.venv/bin/python -m pytest -q tests "$@"
