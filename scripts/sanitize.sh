#!/usr/bin/env bash
# The core and its C++ check driver under AddressSanitizer + UBSan (CI step of scripts/test.sh):
# any out-of-bounds access, leak or undefined behaviour aborts with a report. About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/sanitize -DSOXS_SANITIZE=ON -DSOXS_BUILD_TESTS=ON -DSOXS_BUILD_PYTHON=OFF -DSOXS_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build/sanitize -j 2 --target core_checks >build/sanitize/build.log 2>&1 || { cat build/sanitize/build.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 build/sanitize/core_checks
