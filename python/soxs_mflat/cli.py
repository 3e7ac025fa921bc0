"""Command line of soxs-mflat (``soxs-mflat --help``)."""
from __future__ import annotations

import argparse
import sys
import time

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soxs-mflat", description="SOXS / X-shooter master-flat recipe")
    p.add_argument("--version", action="version", version=f"soxs-mflat {__import__('soxs_mflat').__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("simulate", help="write a simulated raw flat set with calibrations, SOF and truth")
    s.add_argument("--instrument", required=True, choices=["soxs", "xshooter"])
    s.add_argument("--arm", required=True, choices=["uvb", "vis", "nir"])
    s.add_argument("--out", required=True, help="output directory (created)")
    s.add_argument("--nflats", type=int, default=5)
    s.add_argument("--binning", default="1x1", help="1x1, 1x2, 2x1 or 2x2 (UVB/VIS only)")
    s.add_argument("--seed", type=int, default=0)
    return p


def _simulate(args: argparse.Namespace) -> int:
    from .simulate.run import simulate_set
    t0 = time.perf_counter()
    try:
        w = simulate_set(args.instrument, args.arm, args.out, args.nflats, args.binning, args.seed)
    except ValueError as exc:
        print(f"soxs-mflat simulate: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {len(w['raw']) + len(w['off'])} raw frames and calibrations to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"SOF:   {w['sof']}")
    print(f"truth: {w['truth']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        return _simulate(args)
    parser.print_help()
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
