"""Command line of soxs-mflat (``soxs-mflat --help``)."""
from __future__ import annotations

import argparse
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_PROCESSING = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soxs-mflat", description="SOXS / X-shooter master-flat recipe")
    p.add_argument("--version", action="version", version=f"soxs-mflat {__import__('soxs_mflat').__version__}")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("run", help="run the master-flat recipe on a SOF, a directory or a list of FITS files")
    r.add_argument("inputs", nargs="+", help="SOF file, directory, or FITS files")
    r.add_argument("-o", "--outdir", default=".", help="product directory (default: .)")
    r.add_argument("-s", "--settings", help="YAML settings file (see soxs-mflat params --yaml)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override one parameter")
    r.add_argument("--overwrite", action="store_true", help="replace existing products")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress display or log messages")
    pp = sub.add_parser("params", help="list the recipe parameters and their defaults")
    pp.add_argument("--instrument", choices=["soxs", "xshooter"], default="soxs")
    pp.add_argument("--arm", choices=["uvb", "vis", "nir"], default="vis")
    pp.add_argument("--yaml", action="store_true", help="print a settings file to copy and edit")
    pp.add_argument("--markdown", action="store_true", help="print the parameter table of docs/recipe.md")
    f = sub.add_parser("fix-datamd5", help="recompute DATAMD5 and the checksums of FITS products in place "
                       "(esorex with CPL 7.2.3 / CFITSIO 4.2 writes a wrong DATAMD5; see docs/recipe.md)")
    f.add_argument("files", nargs="+", help="FITS products")
    s = sub.add_parser("simulate", help="write a simulated raw flat set with calibrations, SOF and truth")
    s.add_argument("--instrument", required=True, choices=["soxs", "xshooter"])
    s.add_argument("--arm", required=True, choices=["uvb", "vis", "nir"])
    s.add_argument("--out", required=True, help="output directory (created)")
    s.add_argument("--nflats", type=int, default=5)
    s.add_argument("--binning", default="1x1", help="1x1, 1x2, 2x1 or 2x2 (UVB/VIS only)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--stress", default="", help="stress conditions, e.g. scatter=0.02,level=0.08,tilt=0.04,"
                   "cosmics=2000,stale=1 (see docs/simulator.md)")
    return p


def _simulate(args: argparse.Namespace) -> int:
    from .simulate.run import simulate_set
    t0 = time.perf_counter()
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
    """One status line on a terminal (stderr), silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.n = 0

    def __call__(self, msg: str) -> None:
        if self.enabled:
            self.n += 1
            sys.stderr.write(f"\r\033[K[{time.perf_counter() - self.t0:6.1f} s] {self.n}. {msg}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.n:
            sys.stderr.write("\r\033[K")


def _run(args: argparse.Namespace) -> int:
    import logging
    from .errors import InputError, ProcessingError
    from .qc import format_table
    from .recipe import run_mflat
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    progress = _Progress(not args.quiet)
    try:
        res = run_mflat(inputs, args.outdir, args.settings, args.param, args.overwrite, progress)
    except InputError as exc:
        progress.done()
        print(f"soxs-mflat run: input error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProcessingError as exc:
        progress.done()
        print(f"soxs-mflat run: processing failed: {exc}", file=sys.stderr)
        return EXIT_PROCESSING
    progress.done()
    if not args.quiet:
        print(format_table(res.qc))
        print()
        for label, path in res.products.items():
            print(f"{label:18s} {path}")
        print(f"\nsoxs_mflat {res.arm} finished in {res.seconds:.1f} s")
    return 0


def _params(args: argparse.Namespace) -> int:
    from . import settings
    if args.yaml:
        print(settings.example_yaml(), end="")
        return 0
    if args.markdown:
        print(settings.markdown_table(), end="")
        return 0
    for name, d in settings.definitions().items():
        val = settings.default(name, args.instrument, args.arm)
        print(f"{name:46s} {d['type']:5s} {str(val):8s} {d['description']}")
    return 0


def _fix_datamd5(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .products import rewrite_with_datamd5
    for path in args.files:
        try:
            old, new = rewrite_with_datamd5(path)
        except (OSError, InputError) as exc:
            print(f"soxs-mflat fix-datamd5: {path}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"{path}: DATAMD5 {old} -> {new}" if old != new else f"{path}: DATAMD5 {new} (unchanged)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "run":
        return _run(args)
    if args.command == "params":
        return _params(args)
    if args.command == "fix-datamd5":
        return _fix_datamd5(args)
    parser.print_help()
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
