"""The products of one run, all or nothing: the output directory is checked before any processing
(a directory, writable, free space for the products, no directory or unwanted file in a product's
place) and locked against a second run; products are written into a hidden staging directory inside
it and renamed into place only when every one is complete. On any error or signal the staging
directory, the lock and a directory this run created are removed again."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Mapping

from .contract import section
from .errors import InputError, ProcessingError, SoxsMflatError

log = logging.getLogger("soxs_mflat")
_OUTPUT = section("products")["output"]          # data/contract/products.yaml (the plugin's names too)
LOCK_NAME, STAGING_PREFIX = _OUTPUT["lock_file"], _OUTPUT["staging_prefix"]
PDF_BYTES = 4 << 20          # a QC PDF: images reduced to <= 800 px per axis (measured: 0.3-2 MB)
TABLE_BYTES = 256 << 10      # an order table, qc.json
SPACE_MARGIN = 1.1


class OutputBusy(SoxsMflatError):
    """Another run holds the lock of the output directory."""


def product_bytes(paths: Iterable[Path], ny: int, nx: int) -> int:
    """Bytes the products will need: FLUX+ERRS (float32) and QUAL (uint8) for a master flat, one float32
    image for a background, a fixed allowance for tables, PDFs and qc.json."""
    total = 0
    for p in paths:
        name = Path(p).name
        if name.startswith("master_flat_"):
            total += ny * nx * 9 + 3 * 2880 * 4
        elif name.startswith("mflat_bkground_"):
            total += ny * nx * 4 + 2880 * 4
        else:
            total += PDF_BYTES if name.endswith(".pdf") else TABLE_BYTES
    return int(total * SPACE_MARGIN)


def lock_directory(outdir: Path, what: str = "run") -> int:
    """fcntl lock on ``outdir``/LOCK_NAME, holding this process's pid; returns its descriptor (close it and
    remove the file to release: unlock_directory). The file is removed at the end, so the inode is
    re-checked after locking (a run that found the old file may not lock a file already unlinked)."""
    outdir = Path(outdir)
    lock = outdir / LOCK_NAME
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"{outdir}: the output directory is not writable ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputBusy(f"{outdir}: another soxs-mflat {what}{holder} is writing into this "
                                 f"directory (lock file {lock}); wait for it or choose another -o") from None
            raise InputError(f"{outdir}: cannot lock the output directory ({exc.strerror})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError as exc:   # a full disk: nothing of the run can be written
                unlock_directory(outdir, fd)
                raise InputError(f"{outdir}: cannot write the lock file {lock} ({exc.strerror}); "
                                 "no product can be written there") from None
            return fd
        os.close(fd)
    raise OutputBusy(f"{outdir}: could not take the lock {lock}")


def unlock_directory(outdir: Path, fd: int) -> None:
    """Release lock_directory's lock: the lock file removed, then its descriptor closed."""
    try:
        os.unlink(Path(outdir) / LOCK_NAME)
    except OSError:
        pass
    os.close(fd)


class Staging:
    """``with Staging(outdir, finals, overwrite, nbytes) as st:`` write to ``st.path(final)``, then
    ``st.commit()``; leaving the block without a commit removes everything this run wrote."""

    def __init__(self, outdir: str | Path, finals: Iterable[Path], overwrite: bool, nbytes: int = 0,
                 unwritten: Iterable[Path] = ()):
        self.outdir = Path(outdir)
        self.finals = [Path(p) for p in finals]
        # products of the set this run does not write (QC PDFs with --plots none): an earlier run's are
        # replaced like the others (refused without overwrite, removed at the commit)
        self.unwritten = [Path(p) for p in unwritten]
        self.overwrite, self.nbytes = overwrite, nbytes
        self.dir: Path | None = None
        self.workers: list = []          # QC-plot processes, killed on abort
        self.plot_server = None          # plotserver.PlotServer rendering this run's QC pages
        self._lock_fd: int | None = None
        self._created: list[Path] = []   # directories this run created (removed again on abort)
        self._mutex = threading.Lock()

    def __enter__(self) -> "Staging":
        _ACTIVE.add(self)
        try:
            self._check_outdir()
            self._make_outdir()
            self._lock()              # before looking at the products: nobody else writes them meanwhile
            self._remove_stale_staging()
            self._check_products()
            self._check_space()
            try:
                self.dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.outdir))
            except OSError as exc:
                raise InputError(f"{self.outdir}: cannot create the staging directory ({exc.strerror})") from None
        except BaseException:
            self.abort()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.abort()

    def path(self, final: Path) -> Path:
        """Where ``final`` is written until the commit."""
        if self.dir is None:
            raise ProcessingError("the product set was already committed or aborted")
        return self.dir / Path(final).name

    # --- checks before processing -------------------------------------------------------------
    def _check_outdir(self) -> None:
        d = self.outdir
        if d.exists() and not d.is_dir():
            raise InputError(f"{d}: the output directory (-o) is an existing file, not a directory")
        anc = next((a for a in (d, *d.parents) if a.exists()), None)
        if anc is not None and not anc.is_dir():
            raise InputError(f"{d}: cannot create the output directory: {anc} is a file")

    def _check_products(self) -> None:
        for p in self.finals:
            if p.is_dir():
                raise InputError(f"{p}: a directory is in the place of a product; remove or rename it")
        existing = [str(p) for p in (*self.finals, *self.unwritten) if p.exists() or p.is_symlink()]
        if existing and not self.overwrite:
            raise InputError(f"products already exist (use --overwrite to replace them): {', '.join(existing)}")

    def _make_outdir(self) -> None:
        missing = [a for a in (self.outdir, *self.outdir.parents) if not a.exists()]
        try:
            for a in reversed(missing):
                a.mkdir()
                self._created.append(a)
        except OSError as exc:
            raise InputError(f"{self.outdir}: cannot create the output directory ({exc.strerror})") from None

    def _lock(self) -> None:
        self._lock_fd = lock_directory(self.outdir)   # from here on abort() removes the lock file

    def _remove_stale_staging(self) -> None:
        """Staging directories of runs killed before they could clean up (SIGKILL, a power cut; the CLI's or
        the plugin's: same prefix): with the lock held no live run owns one."""
        for d in self.outdir.glob(STAGING_PREFIX + "*"):
            if d.is_dir() and not d.is_symlink():
                shutil.rmtree(d, ignore_errors=True)
                log.warning("%s: removed the staging directory of an interrupted run", d)

    def _check_space(self) -> None:
        free = shutil.disk_usage(self.outdir).free
        if self.nbytes > free:
            raise InputError(f"{self.outdir}: not enough free space for the products (need about "
                             f"{self.nbytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free)")

    # --- the end of the run -------------------------------------------------------------------
    def commit(self, products: Mapping[str, Path]) -> dict[str, Path]:
        """Rename every staged product (``products``: label -> final path) into place."""
        for w in self.workers:
            if w.is_alive():
                raise ProcessingError("a QC plot worker is still running at commit")
        with self._mutex:
            staged = {p.name for p in self.dir.iterdir()}
            expected = {Path(p).name for p in products.values()}
            if staged != expected:
                raise ProcessingError(f"incomplete product set: staged {sorted(staged)}, expected {sorted(expected)}")
            for final in products.values():
                try:
                    os.replace(self.dir / Path(final).name, final)
                except OSError as exc:
                    raise ProcessingError(f"{final}: cannot write the product ({exc.strerror})") from None
            for stale in self.unwritten:
                try:
                    stale.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise ProcessingError(f"{stale}: cannot remove the earlier run's product ({exc.strerror})") from None
            os.rmdir(self.dir)
            self.dir = None
            self._created = []       # the directory now holds products
        return {label: Path(p) for label, p in products.items()}

    def abort(self) -> None:
        """Remove what this run wrote (staging directory, lock, created directories); idempotent and
        safe to call from a signal path."""
        with self._mutex:
            for w in self.workers:
                if w.is_alive():
                    w.kill()
                w.join(5)
            self.workers = []
            if self.dir is not None:
                for _ in range(10):   # the recipe thread may still be writing into it (a signal's clean-up)
                    shutil.rmtree(self.dir, ignore_errors=True)
                    if not self.dir.exists():
                        break
                self.dir = None
            if self._lock_fd is not None:
                unlock_directory(self.outdir, self._lock_fd)
                self._lock_fd = None
            for d in reversed(self._created):
                try:
                    d.rmdir()
                except OSError:
                    break
            self._created = []
        _ACTIVE.discard(self)


def _read_pid(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


_ACTIVE: set[Staging] = set()


def abort_all() -> None:
    """On SIGINT/SIGTERM: remove the temporaries of every product set being written."""
    for st in list(_ACTIVE):
        st.abort()
