"""Seeded corruptor of input sets (for tests/test_fuzz.py) and a fork-per-case driver of the Python CLI.

A case copies one file of a good set (a raw flat, the master bias, the order table or the SOF) and
corrupts it: a header card's value replaced by a wrong type or an extreme number, a card blanked,
random bytes overwritten in the header or the data, the file truncated, a table cell or a degree
changed, a SOF line dropped, duplicated, re-tagged or garbled. The other inputs are used in place.

Driver (``python tests/fuzz.py``): imports the package once, then for each JSON argv on stdin forks a
child that runs ``soxs_mflat.cli.main`` with stdout/stderr in files, and answers one JSON line with the
exit code, the signal that killed it, whether it hung, and its stderr."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CARD = 80
BLOCK = 2880
BAD_VALUES = ["'twenty  '", "0", "-1", "1E300", "-2147483649", "T", "''", "'NaN     '", "1.5", "99999", "-0.0"]


@dataclass
class Case:
    name: str
    sof: Path
    target: str          # the corrupted file's name ("" for the SOF itself)


def header_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every header in a FITS file (by scanning for END cards on block boundaries)."""
    spans, pos = [], 0
    while pos < len(data):
        start, end = pos, None
        while pos + CARD <= len(data):
            if data[pos:pos + 8] == b"END     ":
                end = pos + CARD
                break
            pos += CARD
        if end is None:
            break
        hdr = data[start:end].decode("ascii", "replace")
        size = _data_size(hdr)
        pos = start + -(-(end - start) // BLOCK) * BLOCK + -(-size // BLOCK) * BLOCK
        spans.append((start, end))
    return spans


def _data_size(hdr: str) -> int:
    vals = {hdr[i:i + 8].strip(): hdr[i + 10:i + 80].split("/")[0].strip() for i in range(0, len(hdr), CARD)}
    try:
        n = abs(int(vals.get("BITPIX", 8))) // 8
        naxis = int(vals.get("NAXIS", 0))
        size = 1
        for k in range(1, naxis + 1):
            size *= int(vals.get(f"NAXIS{k}", 0))
        return (n * size if naxis else 0) + int(vals.get("PCOUNT", 0) or 0)
    except ValueError:
        return 0


def _set_card(data: bytearray, at: int, value: str) -> None:
    key = data[at:at + CARD].decode("ascii", "replace")
    if key.startswith("HIERARCH"):
        name = key.split("=")[0].rstrip()
        card = f"{name} = {value}"
    else:
        card = f"{key[:8]}= {value:>20s}"
    data[at:at + CARD] = card[:CARD].ljust(CARD).encode("ascii", "replace")


def corrupt_fits(data: bytearray, rng: random.Random) -> str:
    spans = header_spans(bytes(data))
    kind = rng.choice(["card", "card", "card", "blank", "bytes-header", "bytes-data", "truncate"])
    if not spans:
        kind = "bytes-data"
    if kind in ("card", "blank", "bytes-header"):
        start, end = rng.choice(spans)
        cards = [p for p in range(start, end - CARD, CARD) if data[p:p + 8].strip() and data[p:p + 3] != b"END"]
        at = rng.choice(cards)
        key = data[at:at + CARD].decode("ascii", "replace").split("=")[0].strip()
        if kind == "card":
            value = rng.choice(BAD_VALUES)
            _set_card(data, at, value)
            return f"{key} = {value}"
        if kind == "blank":
            data[at:at + CARD] = b" " * CARD
            return f"{key} removed"
        pos = rng.randrange(at, at + CARD)
        data[pos] = rng.randrange(256)
        return f"byte {pos} in the header"
    if kind == "bytes-data":
        for _ in range(rng.choice([1, 8, 64])):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        return "random bytes"
    cut = rng.randrange(len(data))
    del data[cut:]
    return f"truncated at {cut}"


def corrupt_table(path: Path, rng: random.Random) -> str:
    """A cell of the order table changed through astropy (a well-formed file with wrong content)."""
    import numpy as np
    from astropy.io import fits
    with fits.open(path, memmap=False) as hl:
        ext = rng.choice([1, 2])
        d = hl[ext].data
        what = rng.choice(["extreme", "nan", "degree", "rows"])
        if what == "rows":
            n = rng.choice([0, 1, len(d) - 1])
            hl[ext] = fits.BinTableHDU(d[:n], header=hl[ext].header)
            desc = f"ext {ext} cut to {n} rows"
        else:
            col = rng.choice([c for c in d.columns.names if d[c].dtype.kind in "iuf"])
            v = {"extreme": rng.choice([1e300, -1e17, 1000.0, 2.0**31]), "nan": float("nan"),
                 "degree": float(rng.choice([-1, 0, 9, 40]))}[what]
            if d[col].dtype.kind in "iu":
                info = np.iinfo(d[col].dtype)
                lo, hi = max(int(info.min), -2**31), min(int(info.max), 2**31 - 1)   # exact as floats
                v = int(min(max(v, lo), hi)) if np.isfinite(v) else -1
            d[col][rng.randrange(len(d))] = v
            desc = f"ext {ext} {col} = {v}"
        hl.writeto(path, overwrite=True, output_verify="silentfix")
    return desc


def corrupt_fits_file(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    desc = corrupt_fits(data, rng)
    path.write_bytes(bytes(data))
    return desc


def corrupt_sof(lines: list[str], rng: random.Random) -> tuple[list[str], str]:
    i = rng.randrange(len(lines))
    kind = rng.choice(["drop", "duplicate", "retag", "garble", "binary", "missing"])
    path, tag = lines[i].split()[:2]
    if kind == "drop":
        return lines[:i] + lines[i + 1:], f"line {i + 1} dropped"
    if kind == "duplicate":
        return lines + [lines[i]], f"line {i + 1} twice"
    if kind == "retag":
        other = rng.choice([ln.split()[1] for ln in lines] + ["MASTER_DARK_NIR", "LAMP,DFLAT_UVB", "junk"])
        return lines[:i] + [f"{path} {other}"] + lines[i + 1:], f"line {i + 1} tagged {other}"
    if kind == "garble":
        return lines[:i] + [f"{path} {tag} EXTRA COLUMNS"] + lines[i + 1:], f"line {i + 1} garbled"
    if kind == "missing":
        return lines[:i] + [f"{path}.nosuch {tag}"] + lines[i + 1:], f"line {i + 1} names a missing file"
    junk = "".join(chr(rng.randrange(1, 256)) for _ in range(40))
    return lines[:i] + [junk] + lines[i + 1:], f"line {i + 1} replaced by bytes"


def make_case(base_sof: Path, workdir: Path, rng: random.Random, index: int) -> Case:
    """One corrupted copy of the set in workdir/case<index>/."""
    lines = [ln for ln in base_sof.read_text().splitlines() if ln.strip()]
    d = workdir / f"case{index:03d}"
    d.mkdir(parents=True)
    target = rng.choice(["raw", "raw", "bias", "table", "table", "sof"])
    if target == "sof":
        new, desc = corrupt_sof(lines, rng)
        sof = d / "set.sof"
        sof.write_bytes("\n".join(new).encode("latin-1") + b"\n")
        return Case(f"sof: {desc}", sof, sof.name)
    pick = {"raw": "FLAT", "bias": "MASTER_BIAS", "table": "ORDER_TAB"}[target]
    i = rng.choice([k for k, ln in enumerate(lines) if pick in ln.split()[1]])
    src = Path(lines[i].split()[0])
    dst = d / src.name
    shutil.copyfile(src, dst)
    desc = corrupt_table(dst, rng) if target == "table" and rng.random() < 0.5 else corrupt_fits_file(dst, rng)
    lines[i] = f"{dst} {lines[i].split()[1]}"
    sof = d / "set.sof"
    sof.write_text("\n".join(lines) + "\n")
    return Case(f"{src.name}: {desc}", sof, dst.name)


def _run_child(argv: list[str], out: Path) -> None:
    os.environ.pop("SOXS_MFLAT_TRACEBACK", None)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
    code = 1
    try:
        from soxs_mflat.cli import main
        code = main(argv)
    except BaseException:    # reported by the parent as a traceback
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def drive(timeout: float) -> None:
    import soxs_mflat.cli  # noqa: F401  (imported once, before forking)
    import soxs_mflat.recipe  # noqa: F401
    import soxs_mflat.plots  # noqa: F401
    for line in sys.stdin:
        job = json.loads(line)
        out = Path(job["out"])
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _run_child(job["argv"], out)
        status, hung = None, False
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() - t0 > timeout:
                os.kill(pid, signal.SIGKILL)
                status, hung = os.waitpid(pid, 0)[1], True
            else:
                time.sleep(0.01)
        rc = os.waitstatus_to_exitcode(status)
        err = (out / "stderr").read_text(errors="replace")
        print(json.dumps({"rc": rc, "hung": hung, "stderr": err[-4000:], "seconds": time.monotonic() - t0}),
              flush=True)


if __name__ == "__main__":
    drive(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)


def names_in(text: str) -> set[str]:
    return set(re.findall(r"[\w.,+-]+\.(?:fits|sof)\b", text))
