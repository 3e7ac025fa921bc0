"""The soxs-mflat command's first module: Ctrl-C is an interrupt (exit 130, one line, no traceback) from
the first instant, while the command's modules (argparse, numpy, astropy) are still being imported;
cli.main() then takes the signal over."""
from __future__ import annotations

import _signal   # the interpreter's own (always loaded): `import signal` imports enum, itself interruptible
import os
import sys


def interrupted_early(signum, frame) -> None:
    """SIGINT before cli.main() runs: nothing can have been written yet."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    os.write(2, f"\nsoxs-mflat{' ' + command if command else ''}: interrupted by SIGINT; nothing was written\n"
             .encode())
    os._exit(130)


def entry() -> None:
    start_process()
    from .cli import entry as command_line
    command_line()


def start_process() -> None:
    """Before the command's imports (the console script's and ``python -m soxs_mflat.cli``'s first step)."""
    _signal.signal(_signal.SIGINT, interrupted_early)
    # No numpy call of the command runs BLAS on large matrices (the fits are the C++ core's): OpenBLAS's
    # thread pool only spun, 6 % of a run's CPU and ~0.09 s of its wall time on 2 cores. A user's setting wins;
    # the QC-plot process and batch workers inherit it.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
