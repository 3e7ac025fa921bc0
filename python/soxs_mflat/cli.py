"""Command line of soxs-mflat (``soxs-mflat --help``)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soxs-mflat", description="SOXS / X-shooter master-flat recipe")
    p.add_argument("--version", action="version", version=f"soxs-mflat {__import__('soxs_mflat').__version__}")
    p.add_subparsers(dest="command")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
