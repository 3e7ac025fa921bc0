#!/usr/bin/env bash
# Install (scripts/setup.sh), simulate an X-shooter VIS flat set and run the master-flat engine on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m soxs_mflat.demo "${1:-demo-out}"
