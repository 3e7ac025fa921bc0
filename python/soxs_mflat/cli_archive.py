"""The archive subcommands of ``soxs-mflat``: simulate-archive, organise, batch."""
from __future__ import annotations

import argparse
import sys
import time

EXIT_BAD_INPUT = 2
EXIT_PROCESSING = 3
MAX_WORKERS = 256   # local worker processes (each holds one set, ~0.35 GB): beyond this, use a scheduler


def _workers(text: str) -> int:
    """--workers: a whole number in 1..MAX_WORKERS (0 and negatives were accepted and meant 1; 1000 hung)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{n} is not in 1..{MAX_WORKERS} (for more, start a Dask cluster and give "
                                         "--scheduler)")
    return n


def add_archive_commands(sub) -> None:
    a = sub.add_parser("simulate-archive", help="write a simulated raw archive (several nights, arms and setups; "
                       "ESO archive file names; distractors; one incomplete set) and its truth")
    a.add_argument("--out", required=True, help="output folder, new or empty: OUT/archive (the tree) and OUT/truth")
    a.add_argument("--nights", type=int, required=True)
    a.add_argument("--instruments", nargs="+", type=str.lower, choices=["soxs", "xshooter"],
                   default=["soxs", "xshooter"])
    a.add_argument("--setups", nargs="+", metavar="INST/ARM/BIN",
                   help="setups observed each night, e.g. soxs/vis/2x2 (soxs/vis/2x2@0: on the first night only; "
                   "default: three per instrument)")
    a.add_argument("--nflats", type=int, default=3)
    a.add_argument("--compress", nargs="*", default=None, metavar="{'',gz,fz,Z}",
                   help="compression cycled over the sets ('' = none, gz, fz = tile-compressed, Z = unix compress; "
                   "default: all four, Z only where the ncompress package is installed)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(archive_command=_simulate_archive)
    o = sub.add_parser("organise", help="find the master-flat sets of a directory tree and their calibrations")
    o.add_argument("dir", help="directory tree of raw frames and calibrations")
    o.add_argument("--json", action="store_true", help="print the sets as a JSON list")
    o.add_argument("--sof-dir", help="write one SOF per complete set into this folder")
    o.set_defaults(archive_command=_organise)
    b = sub.add_parser("batch", help="organise a directory (or take SOFs) and reduce every complete set on Dask",
                       epilog="exit codes: 0 every complete set done (now or before); 2 bad input; 3 a set failed "
                              "(see the report); 5 another batch is writing into OUT; 130 / 143 interrupted; 141 the "
                              "reader of its output went away first (| head)")
    b.add_argument("inputs", nargs="+", help="a directory tree, or SOF files")
    b.add_argument("-o", "--out", required=True, help="output root: OUT/reduced/<night>/soxs-mflat/<set>/")
    w = b.add_mutually_exclusive_group()
    w.add_argument("--workers", type=_workers, default=2, help=f"local Dask worker processes, 1..{MAX_WORKERS}, at "
                   "most one per set to reduce (default 2)")
    w.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    b.add_argument("--plots", choices=["pdf", "none"], default="pdf",
                   help="QC PDFs of every set and qc_trends.pdf (default pdf; none: no PDF, the CSV/Parquet summary only)")
    b.add_argument("--overwrite", action="store_true", help="reduce sets whose products exist and verify")
    b.add_argument("-s", "--settings", help="YAML settings file for every set")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(archive_command=_batch)


def _simulate_archive(args: argparse.Namespace) -> int:
    from .simulate.archive import simulate_archive
    t0 = time.perf_counter()
    compress = args.compress if args.compress is not None else _default_compressions()
    from .cli import used_folder
    problem = used_folder(args.out)
    if problem:
        print(f"soxs-mflat simulate-archive: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        truth = simulate_archive(args.out, args.nights, args.instruments, args.setups, args.nflats,
                                 list(compress), args.seed)
    except ValueError as exc:
        print(f"soxs-mflat simulate-archive: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    n_ok = sum(s["complete"] for s in truth["sets"])
    print(f"wrote {len(truth['sets'])} sets ({n_ok} complete) and {truth['n_ignored'] + truth['n_unusable']} distractor files to "
          f"{truth['archive']} in {time.perf_counter() - t0:.1f} s; truth in {args.out}/truth/sets.json")
    return 0


def _default_compressions() -> tuple[str, ...]:
    from .simulate.archive import COMPRESSIONS
    try:
        import ncompress  # noqa: F401
        return COMPRESSIONS
    except ImportError:
        print("soxs-mflat simulate-archive: no .fits.Z files (pip install ncompress to write them)", file=sys.stderr)
        return tuple(c for c in COMPRESSIONS if c != "Z")


def _organise(args: argparse.Namespace) -> int:
    from pathlib import Path
    from .organise import format_table, organise, to_json
    if not Path(args.dir).is_dir():
        print(f"soxs-mflat organise: {args.dir}: not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        o = organise(args.dir, args.sof_dir)
    except OSError as exc:     # the SOF folder cannot be made or written (no SOF is left half-written)
        print(f"soxs-mflat organise: --sof-dir {args.sof_dir}: cannot write SOFs: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(to_json(o))
        print(f"{len(o.sets)} sets, {o.counts()}", file=sys.stderr)
        for line in o.set_aside():     # the unusable files, each with its reason
            print(f"unusable: {line}", file=sys.stderr)
    else:
        print(format_table(o))
        if args.sof_dir:
            print(f"{sum(s.complete for s in o.sets)} SOFs written to {args.sof_dir}")
    return 0


def _batch(args: argparse.Namespace) -> int:
    from .batch import run_batch
    return run_batch(args)
