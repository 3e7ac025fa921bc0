#!/usr/bin/env bash
# The core, its C++ check driver and the pybind11 module under AddressSanitizer + UBSan (CI step of
# scripts/test.sh): any out-of-bounds access, leak (C++ driver) or undefined behaviour aborts with a report
# (-fno-sanitize-recover=all, halt_on_error), which fails this script. About 1.5 minutes on 2 idle cores (the
# module and its tests: about 55 s of it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
B=build/sanitize
cmake -S . -B $B -DSOXS_SANITIZE=ON -DSOXS_BUILD_TESTS=ON -DSOXS_BUILD_PYTHON=ON -DSOXS_NATIVE=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DPython_EXECUTABLE="$(realpath $PY)" -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" \
  >/dev/null
cmake --build $B -j 2 --target core_checks _core >$B/build.log 2>&1 || { cat $B/build.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  $B/core_checks

# The Python package with the sanitized module in place of the installed one, and the tests of the kernels
# and of the core's input checks against it. Python itself is not instrumented: gcc's ASan runtime is
# preloaded; leaks are not checked there (the interpreter keeps its allocations to exit).
rm -rf $B/py && mkdir -p $B/py && cp -r python/soxs_mflat $B/py/ && cp $B/_core*.so $B/py/soxs_mflat/
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$B/py"
$PY -c "import soxs_mflat._core as c, sys; sys.exit(0 if c.__file__.startswith('$PWD/$B/py/') else 'not the sanitized module: ' + c.__file__)"
# --capture=sys: a sanitizer's report (written to fd 2) reaches the log before the abort
$PY -m pytest -q -p no:cacheprovider --capture=sys tests/test_stack.py tests/test_order_stats.py tests/test_polyfit.py \
  tests/test_edges.py tests/test_background.py tests/test_lowsens.py tests/test_stitch.py \
  tests/test_core_safety.py::test_bad_call_is_refused_cleanly tests/test_core_safety.py::test_huge_blur_sigma_is_bounded_and_exact
