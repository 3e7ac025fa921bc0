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
    _signal.signal(_signal.SIGINT, interrupted_early)
    from .cli import entry as command_line
    command_line()
