"""Command line of soxs-mflat (``soxs-mflat --help``)."""
from __future__ import annotations

if __name__ == "__main__":   # python -m soxs_mflat.cli: Ctrl-C is an interrupt from the first import on
    from soxs_mflat._entry import start_process
    start_process()

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

EXIT_INTERNAL = 1    # a bug: one line on stderr instead of a traceback (SOXS_MFLAT_TRACEBACK=1 shows it)
EXIT_BAD_INPUT = 2   # bad input or output directory: nothing was written
EXIT_PROCESSING = 3  # processing or writing failed: nothing was written
EXIT_QC_FAILED = 4   # --strict-qc: products written, but a QC value is outside its acceptable range
EXIT_BUSY = 5        # another run holds the lock of the output directory: nothing was written
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}   # 128 + signal number: nothing was written
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE: the reader of stdout or stderr went away before the command had reported


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soxs-mflat", description="SOXS / X-shooter master-flat recipe")
    p.add_argument("--version", action="version", version=f"soxs-mflat {__import__('soxs_mflat').__version__}")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run the master-flat recipe on a SOF, a directory or a list of FITS files",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"exit codes: 0 done (QC out of range flagged and warned about); {EXIT_INTERNAL} internal "
                       f"error; {EXIT_BAD_INPUT} bad input, nothing written; {EXIT_PROCESSING} processing failed, "
                       f"nothing written;\n  {EXIT_QC_FAILED} --strict-qc and a QC value out of range, products "
                       f"written; {EXIT_BUSY} output directory busy; 130 / 143 interrupted (SIGINT / SIGTERM);\n"
                       f"  {EXIT_BROKEN_PIPE} the reader of its output went away first (| head)")
    r.add_argument("inputs", nargs="+", help="SOF file, directory, or FITS files")
    r.add_argument("-o", "--outdir", default=".", help="product directory (default: .)")
    r.add_argument("-s", "--settings", help="YAML settings file (see soxs-mflat params --yaml)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override one parameter")
    r.add_argument("--overwrite", action="store_true", help="replace existing products")
    talk = r.add_mutually_exclusive_group()   # -q -v together: a usage error, not one silently winning
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="no progress display, QC table or log messages; QC failures and errors still go to stderr")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="progress lines with timings and informational messages on stderr (also when not a terminal)")
    r.add_argument("--log", metavar="FILE", help="write a log of the run (inputs, parameters, steps with timings, "
                   "QC, products) to FILE")
    r.add_argument("--strict-qc", action="store_true",
                   help=f"exit with code {EXIT_QC_FAILED} when a QC value is outside its acceptable range")
    r.add_argument("--plots", choices=["pdf", "none"], default="pdf",
                   help="QC PDFs beside the products (default), or none (as batch --plots none)")
    pp = sub.add_parser("params", help="list the recipe parameters and their defaults")
    pp.add_argument("--instrument", type=str.lower, choices=["soxs", "xshooter"], help="default: soxs")
    pp.add_argument("--arm", type=str.lower, choices=["uvb", "vis", "nir"], help="default: vis")
    form = pp.add_mutually_exclusive_group()   # --yaml --markdown printed the table alone, silently
    form.add_argument("--yaml", action="store_true", help="print a settings file to copy and edit (with the values "
                      "of --instrument/--arm when given)")
    form.add_argument("--markdown", action="store_true", help="print the parameter table of docs/recipe.md")
    f = sub.add_parser("fix-datamd5", help="recompute DATAMD5 and the checksums of FITS products in place "
                       "(esorex with CPL 7.2.3 / CFITSIO 4.2 writes a wrong DATAMD5; see docs/recipe.md)")
    f.add_argument("files", nargs="+", help="FITS products")
    s = sub.add_parser("simulate", help="write a simulated raw flat set with calibrations, SOF and truth")
    s.add_argument("--instrument", required=True, type=str.lower, choices=["soxs", "xshooter"])   # as headers: SOXS
    s.add_argument("--arm", required=True, type=str.lower, choices=["uvb", "vis", "nir"])
    s.add_argument("--out", required=True, help="output folder, new or empty (created)")
    s.add_argument("--nflats", type=int, default=5, help="raw lamp flats per lamp (default 5)")
    s.add_argument("--binning", default="1x1", help="1x1, 1x2, 2x1 or 2x2 (UVB/VIS only)")
    s.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files (default 0)")
    s.add_argument("--stress", default="", help="stress conditions, e.g. scatter=0.02,level=0.08,tilt=0.04,"
                   "cosmics=2000,stale=1 (see docs/simulator.md)")
    from .cli_archive import add_archive_commands
    add_archive_commands(sub)
    p.subcommands = sub.choices   # main: an unknown option is reported with its command's usage
    return p


def used_folder(path) -> str | None:
    """Why a simulation may not write into ``path`` (None: it may): a new set among an older one's files
    mixed two seeds under one SOF and truth, silently."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        return f"{p} is a file, not a folder"
    if p.is_dir() and any(p.iterdir()):
        return f"{p} is not empty (the new files would mix with those there); give a new or empty folder"
    return None


def _simulate(args: argparse.Namespace) -> int:
    from .simulate.run import simulate_set
    t0 = time.perf_counter()
    problem = used_folder(args.out)
    if problem:
        print(f"soxs-mflat simulate: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        w = simulate_set(args.instrument, args.arm, args.out, args.nflats, args.binning, args.seed, args.stress)
    except ValueError as exc:
        print(f"soxs-mflat simulate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {len(w['raw']) + len(w['off'])} raw frames and calibrations to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"SOF:   {w['sof']}")
    print(f"truth: {w['truth']}")
    return 0


class _Progress:
    """Step messages: one status line on a terminal (stderr), or with -v one log line per step with the
    elapsed time (to stderr whatever it is, and to the --log file); each step's duration is logged too."""

    def __init__(self, enabled: bool, verbose: bool = False):
        import logging
        self.log = logging.getLogger("soxs_mflat")
        self.line = enabled and not verbose and sys.stderr.isatty()
        self.t0 = self.t_step = time.perf_counter()
        self.n, self.step = 0, ""

    def __call__(self, msg: str) -> None:
        self._close_step()
        self.n, self.step = self.n + 1, msg
        now = time.perf_counter()
        self.log.info("[%6.2f s] step %d: %s", now - self.t0, self.n, msg)
        if self.line:
            sys.stderr.write(f"\r\033[K[{now - self.t0:6.1f} s] {self.n}. {msg}")
            sys.stderr.flush()

    def _close_step(self) -> None:
        if self.step:
            self.log.info("step %d took %.2f s", self.n, time.perf_counter() - self.t_step)
        self.t_step, self.step = time.perf_counter(), ""

    def done(self) -> None:
        self._close_step()
        if self.line and self.n:
            sys.stderr.write("\r\033[K")


def _setup_logging(args: argparse.Namespace) -> None:
    """stderr: errors with -q, warnings by default, info with -v; --log FILE: everything at info level."""
    import logging
    log = logging.getLogger("soxs_mflat")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):   # a previous run's in this process (its log file closed)
        log.removeHandler(h)
        h.close()
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING)
    err.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    err.addFilter(lambda record: not getattr(record, "log_file_only", False))
    log.addHandler(err)
    if args.log:   # its folder made if missing (--log OUT/run.log before OUT exists)
        Path(args.log).expanduser().parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(args.log, mode="w", encoding="utf-8")
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)


def _error(text: str) -> None:
    """An error line on stderr and, with --log FILE, in the log: it tells why nothing was written."""
    import logging
    print(text, file=sys.stderr)
    log = logging.getLogger("soxs_mflat")
    if log.handlers:   # none yet (an interrupt before the run's logging is set up): logging's last-resort
        log.error(text.lstrip("\n"), extra={"log_file_only": True})   # handler would print the line a second time


def _log_result(res) -> None:
    import logging
    from .qc import format_table
    log = logging.getLogger("soxs_mflat")
    once = {"log_file_only": True}   # stdout shows the table and the products (-v printed them twice)
    log.info("QC:\n%s", format_table(res.qc), extra=once)
    for lamp, rows in res.qc_per_lamp.items():
        log.info("QC %s:\n%s", lamp, format_table(rows), extra=once)
    width = max(map(len, res.products), default=0)
    for label, path in res.products.items():
        log.info("product %-*s %s", width, label, path, extra=once)
    log.info("finished in %.2f s", res.seconds)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _in_worker(fn, *args):
    """Run ``fn`` in a thread and wait in the main thread, which so takes SIGINT/SIGTERM within 0.2 s
    even while the C++ core holds the worker for seconds; the worker's exception is re-raised here."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:   # re-raised in the main thread
            box["error"] = exc
    th = threading.Thread(target=target, name="soxs-mflat-run", daemon=True)
    th.start()
    while th.is_alive():
        th.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _run(args: argparse.Namespace) -> int:
    # first, before numpy and astropy are imported here: the QC-plot server imports the drawing layer (reportlab) meanwhile
    import gc
    from .plotserver import PlotServer
    server = PlotServer.start() if args.plots == "pdf" else None
    gc.disable()   # the imports make ~10^5 objects and no garbage: collections cost 10 % of their time
    try:
        return _run_with(args, server)
    finally:
        gc.unfreeze()
        gc.enable()
        if server is not None:
            server.close()


EXIT_MEANING = {0: "done", EXIT_INTERNAL: "internal error", EXIT_BAD_INPUT: "bad input, nothing written",
                EXIT_PROCESSING: "processing failed, nothing written",
                EXIT_QC_FAILED: "--strict-qc: a QC value out of range, products written",
                EXIT_BUSY: "output directory busy, nothing written",
                **{code: f"interrupted by {sig.name}, nothing written" for sig, code in EXIT_SIGNAL.items()}}


def _run_with(args: argparse.Namespace, server) -> int:
    code = _run_logged(args, server)
    _log_exit(code)
    return code


def _log_exit(code: int) -> None:
    """The log's last line (--log FILE, -v): the exit code and what it means; the log is flushed."""
    import logging
    log = logging.getLogger("soxs_mflat")
    log.info("exit code %d (%s)", code, EXIT_MEANING.get(code, "?"))
    for h in log.handlers:
        h.flush()


def _run_logged(args: argparse.Namespace, server) -> int:
    from .errors import InputError, ProcessingError
    from .output import OutputBusy
    from .recipe import run_mflat
    import gc
    gc.freeze()    # what the imports made is never scanned again
    gc.enable()
    problem = _log_problem(args) if args.log else None
    if problem:   # opened for writing below: an input or a product would be lost before any check ran
        print(f"soxs-mflat run: input error: --log {args.log}: {problem}; nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        _setup_logging(args)
    except OSError as exc:
        print(f"soxs-mflat run: input error: cannot write the log file: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    progress = _Progress(not args.quiet, args.verbose)
    try:
        res = _in_worker(run_mflat, inputs, args.outdir, args.settings, args.param, args.overwrite, progress,
                         args.plots == "pdf", server)
    except OutputBusy as exc:
        progress.done()
        _error(f"soxs-mflat run: output directory busy: {exc}")
        return EXIT_BUSY
    except InputError as exc:
        progress.done()
        _error(f"soxs-mflat run: input error: {exc}")
        return EXIT_BAD_INPUT
    except ProcessingError as exc:
        progress.done()
        _error(f"soxs-mflat run: processing failed: {exc}")
        return EXIT_PROCESSING
    progress.done()
    _log_result(res)
    code = EXIT_QC_FAILED if args.strict_qc and any(r.flag == "fail" for r in res.qc) else 0
    try:
        return _report(args, res)
    except BrokenPipeError:   # `soxs-mflat run ... | head`: the products are written; stop quietly, same code
        quiet_stdout()
        return code


def _log_problem(args: argparse.Namespace) -> str | None:
    """Why the --log file may not be written (it is opened, truncated, before the inputs are verified): it is an
    input (a SOF, a file given or listed in one), a product's or the run's own file in the output directory,
    or an existing FITS file; None when it may."""
    from .frames import _looks_like_fits, parse_sof
    from .rules import VerificationError
    log = Path(args.log).expanduser()
    if log.is_dir():
        return "is a directory"
    inputs = [Path(a).expanduser() for a in args.inputs]
    if args.settings:   # read after the log is opened
        inputs.append(Path(args.settings).expanduser())
    for a in list(inputs):
        if a.is_file() and not _looks_like_fits(a):
            try:
                inputs += [p for p, _ in parse_sof(a)]
            except VerificationError:   # the run reports it
                pass
    if any(_same_file(log, p) for p in inputs):
        return "is an input of this run"
    from .output import LOCK_NAME
    from .recipe import QC_JSON, product_paths
    from .uvb import lamp_tags
    ours = {p.name for arm in ("UVB", "VIS", "NIR") for tag in ("", *lamp_tags())
            for p in product_paths(Path("."), arm, tag).values()} | {QC_JSON, LOCK_NAME}
    if log.name in ours and _same_dir(log.parent, Path(args.outdir).expanduser()):
        return "is the place of one of the run's products in the output directory"
    if log.exists() and _looks_like_fits(log):
        return "is an existing FITS file (a log is text: choose another name)"
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b) or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _same_dir(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _report(args: argparse.Namespace, res) -> int:
    from .qc import failure_text, failures, format_table
    bad = failures(res.qc)
    if args.quiet:   # the recipe's QC warnings were not shown at this level: the same lines as without -q
        for r in bad:
            print(f"WARNING: {failure_text(r)}", file=sys.stderr)
    else:
        print(format_table(res.qc))
        print()
        width = max(map(len, res.products), default=0)   # UVB's labels run to "BKGROUND FITS DLAMP"
        for label, path in res.products.items():
            print(f"{label:{width}s}  {path}")
        print(f"\nsoxs_mflat {res.arm} finished in {res.seconds:.1f} s" + (f"; {len(bad)} QC value(s) out of range"
                                                                         if bad else ""))
        sys.stdout.flush()
    return EXIT_QC_FAILED if bad and args.strict_qc else 0


def _params(args: argparse.Namespace) -> int:
    from . import settings
    if args.instrument == "soxs" and args.arm == "uvb":
        print("soxs-mflat params: error: SOXS has no UVB arm (arms: vis, nir)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.markdown:
            print(settings.markdown_table(), end="")
        elif args.yaml:
            inst = args.instrument or ("xshooter" if args.arm == "uvb" else "soxs" if args.arm else None)
            print(settings.example_yaml(inst, args.arm or ("vis" if inst else None)), end="")
        else:
            inst = args.instrument or ("xshooter" if args.arm == "uvb" else "soxs")
            arm = args.arm or "vis"
            chosen = "" if args.instrument and args.arm else " (choose with --instrument / --arm)"
            print(f"# soxs_mflat parameters for {inst.upper()} {arm.upper()}{chosen}")
            defs = settings.definitions()
            ranges = {name: settings.range_text(d) or "-" for name, d in defs.items()}
            w = max(map(len, ranges.values()))   # ">= 1, <= 101, odd" ran into the descriptions
            for name, d in defs.items():
                val = settings.default(name, inst, arm)
                print(f"{name:46s} {d['type']:5s} {str(val):8s} {ranges[name]:{w}s} {d['description']}")
        sys.stdout.flush()
    except BrokenPipeError:   # e.g. `soxs-mflat params | head`: stop quietly, as other command-line tools do
        quiet_stdout()
    return 0


def quiet_stdout() -> None:
    """stdout to /dev/null after a broken pipe: the interpreter's final flush would raise again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fix_datamd5(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .products import check_product, rewrite_with_datamd5
    for path in args.files:   # every file checked before any is rewritten
        try:
            check_product(path)
        except (OSError, InputError) as exc:
            print(f"soxs-mflat fix-datamd5: {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    for path in args.files:
        try:
            old, new = rewrite_with_datamd5(path)
        except (OSError, InputError) as exc:
            print(f"soxs-mflat fix-datamd5: {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"{path}: DATAMD5 {old} -> {new}" if old != new else f"{path}: DATAMD5 {new} (unchanged)")
    return 0


COMMANDS = {"simulate": _simulate, "run": _run, "params": _params, "fix-datamd5": _fix_datamd5}


def main(argv: list[str] | None = None) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler) if in_main else None   # from _entry's
    name = "?"
    try:   # from the first step: Ctrl-C while the parser's modules are imported is an interrupt too
        name = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "?")
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:   # argparse leaves these to the top-level parser, whose usage does not show the command's options
            parser.subcommands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
        name = args.command or name
        command = COMMANDS.get(args.command) or getattr(args, "archive_command", None)
        if command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        return command(args)
    except (KeyboardInterrupt, _Terminated) as exc:
        return _interrupted(name, signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM)
    except BrokenPipeError:   # output into `| head` that closed: stop quietly with 128 + SIGPIPE, as a command
        quiet_stdout()       # the pipe kills does (0 would hide a failure the command had still to report)
        return EXIT_BROKEN_PIPE
    except Exception as exc:   # a bug: a clean line and a documented exit code, never a traceback
        if os.environ.get("SOXS_MFLAT_TRACEBACK"):
            raise
        _error(f"soxs-mflat {name}: internal error: {type(exc).__name__}: {exc} (please report it; "
               f"SOXS_MFLAT_TRACEBACK=1 shows the traceback)")
        if name == "run":
            _log_exit(EXIT_INTERNAL)
        return EXIT_INTERNAL
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term)
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not the clean-up's SIG_IGN
                from ._entry import interrupted_early   # its words say nothing was written: not true any more
                signal.signal(signal.SIGINT, signal.default_int_handler if old_int is interrupted_early else old_int)


def _interrupted(command: str, sig: signal.Signals) -> int:
    """Remove the temporaries of the run and exit with 128 + the signal number; the recipe thread may
    still be inside the C++ core, so the process ends here (os._exit) rather than waiting for it."""
    for s in EXIT_SIGNAL:
        signal.signal(s, signal.SIG_IGN)     # a second Ctrl-C does not interrupt the clean-up
    output = sys.modules.get(f"{__package__}.output")   # not loaded yet: the run wrote nothing (and an
    if output is not None:                              # import here could meet a half-imported module)
        output.abort_all()
    code = EXIT_SIGNAL[sig]
    what = "; nothing was written" if command == "run" else ""
    try:
        sys.stdout.flush()
        _error(f"\nsoxs-mflat {command}: interrupted by {sig.name}{what}")
        sys.stderr.flush()
        if command == "run":
            _log_exit(code)
    except (OSError, ValueError):
        pass
    if any(t.name == "soxs-mflat-run" and t.is_alive() for t in threading.enumerate()):
        os._exit(code)
    for s in EXIT_SIGNAL:
        signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
    return code


def entry() -> None:
    """The soxs-mflat command: main(), then, after `run`, an exit without the interpreter's teardown (the
    OS frees the ~10^5 objects of numpy's and astropy's modules at once: 0.07-0.1 s of a SOXS VIS run).
    The log, stdout and stderr are flushed first; the products are committed by then. Other commands
    (batch: a Dask cluster that shuts down in atexit handlers) exit normally."""
    code = main()
    if sys.argv[1:2] == ["run"]:
        import logging
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the command is done: a Ctrl-C during the interpreter's
    sys.exit(code)                                 # teardown printed "Exception ignored ... KeyboardInterrupt"


if __name__ == "__main__":
    entry()
