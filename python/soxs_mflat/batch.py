"""Batch reduction on Dask: every complete set of an archive tree (or every SOF given) is one task
on persistent workers (a LocalCluster by default, or a running scheduler), products under
``OUT/reduced/<night>/soxs-mflat/<set>/`` (organise.yaml ``product_dir``), resumable, one failing
set never stopping the others, and a QC summary of every set at the end (summary.py)."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .contract import section
from .errors import InputError
from .output import OutputBusy, lock_directory, unlock_directory

log = logging.getLogger("soxs_mflat")

EXIT_OK, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_BUSY = 0, 2, 3, 5


@dataclass
class Job:
    """One set to reduce (or the reason it is not reduced)."""
    name: str
    night: str
    instrument: str
    arm: str
    setup: str
    sof: Path | None
    outdir: Path
    missing: list[str] = field(default_factory=list)
    status: str = "pending"          # done, skipped (products verified), incomplete, failed
    reason: str = ""
    products: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    peak_rss_mib: float | None = None   # of the worker process, when the set ran


def _product_dir(out: Path, night: str, name: str) -> Path:
    return out / section("organise")["product_dir"].format(night=night, sof_name=name)


def jobs_from_tree(root: Path, out: Path, unusable: list[str] | None = None) -> list[Job]:
    """Organise ``root``; the SOF of each complete set goes to OUT/sof/ (kept: what was run). ``unusable``,
    when given, receives the organiser's line for each file it set aside (unreadable, a path no SOF can
    hold, a duplicate of another frame), naming the file and why."""
    from .organise import organise
    o = organise(root, out / "sof")
    if unusable is not None:
        unusable += o.set_aside()
    return [Job(s.name, s.night, s.instrument, s.arm, s.setup, s.sof, _product_dir(out, s.night, s.name),
                list(s.missing), "pending" if s.complete else "incomplete",
                "" if s.complete else "missing " + ", ".join(s.missing)) for s in o.sets]


def jobs_from_sofs(sofs: list[Path], out: Path) -> list[Job]:
    """One job per SOF, named by the SOF (soxspipe's layout); night and setup from its first flat."""
    from .frames import load_frames
    from .organise import FlatSet, group_key
    from .errors import SoxsMflatError
    jobs = []
    for sof in sofs:
        try:   # one bad SOF is one failed set (named, with its rule), not the end of the batch
            flats = [f for f in load_frames(sof) if f.is_raw_flat]
            if not flats:
                raise ValueError(f"{sof}: no raw lamp flats")
        except (SoxsMflatError, ValueError) as exc:
            jobs.append(Job(sof.stem, "", "", "", "", sof, out / "sof" / sof.stem, status="failed",
                            reason=f"{sof}: {exc}"))
            continue
        s = FlatSet(dict(group_key(min(flats, key=lambda f: f.mjd))), flats)
        s.key.setdefault("exptime", None)
        jobs.append(Job(sof.stem, s.night, s.instrument, s.arm, s.setup, sof, _product_dir(out, s.night, sof.stem)))
    return jobs


def products_verify(outdir: Path) -> bool:
    """A finished set: its qc.json names its products, and every FITS product is there with a
    DATAMD5 equal to its data units and valid checksums (a half-written or altered set is reduced again)."""
    return verify_problem(outdir) is None


def verify_problem(outdir: Path, plots: bool = False) -> str | None:
    """Why a set's products do not verify (None when they do): what batch reports when it redoes a set.
    ``plots``: QC PDFs are wanted, so a set reduced without them (--plots none) is redone."""
    import json
    qc_json = outdir / section("qc")["json"]["file"]
    try:
        record = json.loads(qc_json.read_text())
        products = record.get("products") if isinstance(record, dict) else None
        if not isinstance(products, dict) or not all(isinstance(n, str) for n in products.values()):
            return f"{qc_json.name} does not list the products by name"
        names = list(products.values())
        if plots and not any(n.endswith(".pdf") for n in names):
            return "it was reduced without its QC PDFs (--plots none)"
        for name in names:
            path = outdir / name
            if not path.is_file():
                return f"{name} is missing"
            problem = _fits_problem(path) if path.suffix == ".fits" else _pdf_problem(path) if path.suffix == ".pdf" \
                else None
            if problem:
                return f"{name}: {problem}"
    except FileNotFoundError:
        return f"no {qc_json.name}"
    except Exception as exc:   # noqa: BLE001 - a damaged product: astropy raises TypeError, OSError, ...; redo it
        return f"{qc_json.name} or a product cannot be read ({type(exc).__name__})"
    return None


def _fits_problem(path: Path) -> str | None:
    """A FITS product's DATAMD5 against its data units, then the CHECKSUM and DATASUM of every HDU (an
    edited header keeps DATAMD5: the data units are unchanged); the file is read from disk once."""
    import io
    import warnings
    from astropy.io import fits
    from .products import file_datamd5
    content = path.read_bytes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(io.BytesIO(content), checksum=True, memmap=False) as hl:
            hl.readall()
            stored = hl[0].header.get("DATAMD5")
    if stored != file_datamd5(path, content):
        return "its data do not match its DATAMD5"
    if any("verification failed" in str(w.message).lower() for w in caught):
        return "its CHECKSUM or DATASUM does not verify"
    return None


def _pdf_problem(path: Path) -> str | None:
    """A QC page that is not a whole PDF: its header first, its %%EOF marker in the last kilobyte."""
    with open(path, "rb") as fh:
        head = fh.read(5)
        fh.seek(max(0, path.stat().st_size - 1024))
        tail = fh.read()
    return None if head == b"%PDF-" and b"%%EOF" in tail else "not a complete PDF"


def reduce_set(sof: str, outdir: str, settings_file: str | None, plots: bool) -> dict:
    """The Dask task: one set, into a fresh folder renamed into place when complete (a set's
    products appear all at once). Never raises: a failure is returned with its reason."""
    import logging
    import resource
    from .errors import InputError, ProcessingError
    from .recipe import run_mflat
    logging.getLogger("soxs_mflat").setLevel(logging.ERROR)
    final = Path(outdir)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _recover(final)
    t0 = time.perf_counter()
    try:
        res = run_mflat(sof, tmp, settings_file, None, False, None, plots)
    except (InputError, ProcessingError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"status": "failed", "reason": str(exc), "seconds": time.perf_counter() - t0}
    except Exception as exc:   # noqa: BLE001 - one broken set must not stop the batch; say what happened
        shutil.rmtree(tmp, ignore_errors=True)
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}
    _swap_in(tmp, final)
    return {"status": "done", "reason": "", "seconds": time.perf_counter() - t0,
            "products": {k: p.name for k, p in res.products.items()},
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _old_twin(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def _swap_in(tmp: Path, final: Path) -> None:
    """``tmp`` becomes ``final``; the old folder's files besides this recipe's products (a user's notes) move
    across. Two renames, then the moves: killed at any point, every file of the user's is in ``final`` or in
    its ``.<name>.old`` twin, which the set's next reduction takes back (_recover). The user's files were
    moved into the staging folder first, and lost with it when the batch was killed before the rename."""
    old = _old_twin(final)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        _keep_others(old, final)
        shutil.rmtree(old)


def _recover(final: Path) -> None:
    """After a batch killed inside _swap_in: the old folder back in place, or its user's files moved into
    the new one (whose products are complete: the rename had happened)."""
    old = _old_twin(final)
    if not old.is_dir():
        return
    if not final.exists():
        os.replace(old, final)
        return
    _keep_others(old, final)
    shutil.rmtree(old)


def _keep_others(old: Path, new: Path) -> None:
    """Move what ``old`` holds besides this recipe's products (any arm's and lamp's names, qc.json, the
    lock and staging) into ``new``: a redone set replaced only its products (a user's notes.txt was lost)."""
    from .recipe import QC_JSON, product_paths
    from .uvb import lamp_tags
    ours = {QC_JSON} | {p.name for arm in ("UVB", "VIS", "NIR") for tag in ("", *lamp_tags())
                        for p in product_paths(Path("."), arm, tag).values()}
    for entry in old.iterdir():
        if entry.name not in ours and not entry.name.startswith(".") and not (new / entry.name).exists():
            os.replace(entry, new / entry.name)


def make_client(workers: int | None, scheduler: str | None):
    """A Dask client and what to close after: on the scheduler at ``scheduler`` (a cluster run by
    someone else: only the client is closed), else on a LocalCluster of ``workers`` single-threaded
    worker processes (the recipe's core and writers use their own threads)."""
    from dask.distributed import Client, LocalCluster
    if scheduler:
        client = Client(scheduler)
        return client, _Closer(client)
    # SIGINT ignored while the worker processes start: they inherit it (Python keeps an ignored SIGINT), so
    # a Ctrl-C (the terminal's SIGINT to the process group) reaches this process only, which closes the
    # cluster: the workers printed KeyboardInterrupt and CommClosedError tracebacks. No dashboard, and the
    # scheduler's HTTP endpoints on a free local port (dashboard_address=None took 127.0.0.1:8787).
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        cluster = LocalCluster(n_workers=max(1, workers or 1), threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                               silence_logs=logging.CRITICAL)
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
    return Client(cluster), cluster


class _Closer:
    """Closes only the client of a cluster this process did not start."""

    def __init__(self, client):
        self.client = client

    def close(self) -> None:
        pass


def _warm(client, plots: bool = True) -> None:
    """Import the recipe (and, with PDFs, the drawing layer) once per worker, not once per set."""
    def load():
        import soxs_mflat.recipe  # noqa: F401
        if plots:
            import soxs_mflat.plots  # noqa: F401
        return os.getpid()
    client.run(load)


def run_jobs(jobs: list[Job], client, settings_file: str | None, plots: bool, overwrite: bool,
             progress: bool = True) -> list[Job]:
    """Submit every pending job; skip those whose products exist and verify (unless overwrite)."""
    from dask.distributed import as_completed
    todo = []
    for j in jobs:
        if j.status != "pending":
            continue
        problem = None if overwrite else verify_problem(j.outdir, plots)
        if not overwrite and problem is None:
            j.status, j.reason = "skipped", "products exist and verify (use --overwrite to redo)"
            continue
        if problem and j.outdir.exists():   # a set done before whose products no longer verify: say why
            j.reason = f"redone: {problem}"
        j.outdir.parent.mkdir(parents=True, exist_ok=True)
        todo.append(j)
    if not todo:
        return jobs
    _warm(client, plots)
    futures = {client.submit(reduce_set, str(j.sof), str(j.outdir), settings_file, plots, key=f"mflat-{j.name}",
                             pure=False): j for j in todo}
    t0, n = time.perf_counter(), 0
    for fut in as_completed(futures):
        j = futures[fut]
        try:
            r = fut.result()
        except Exception as exc:   # noqa: BLE001 - a worker died: that set failed, the others go on
            r = {"status": "failed", "reason": f"worker lost: {type(exc).__name__}: {exc}", "seconds": 0.0}
        j.status, j.seconds = r["status"], r["seconds"]
        j.reason = r["reason"] or (j.reason if j.status == "done" else "")
        j.products, j.peak_rss_mib = r.get("products", {}), r.get("peak_rss_mib")
        n += 1
        if progress:
            _bar(n, len(todo), time.perf_counter() - t0, j)
    return jobs


def _bar(n: int, total: int, elapsed: float, j: Job) -> None:
    width = 30
    fill = int(width * n / total)
    sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {n}/{total} sets, {elapsed:6.1f} s  "
                     f"{j.status:6s} {j.name[:60]}\n" if not sys.stderr.isatty() else
                     f"\r\033[K[{'#' * fill}{'.' * (width - fill)}] {n}/{total} sets, {elapsed:6.1f} s")
    if sys.stderr.isatty() and n == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def exit_code(jobs: list[Job]) -> int:
    """0 when every complete set succeeded (reduced now or before); otherwise EXIT_FAILED."""
    return EXIT_OK if all(j.status in ("done", "skipped", "incomplete") for j in jobs) else EXIT_FAILED


def report(jobs: list[Job]) -> str:
    lines = []
    for j in jobs:
        lines.append(f"{j.status:10s} {j.name}" + (f"  ({j.reason})" if j.reason else ""))
    counts = {s: sum(j.status == s for j in jobs) for s in ("done", "skipped", "failed", "incomplete")}
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)


def plan(inputs: list[Path], out: Path, unusable: list[str] | None = None) -> list[Job]:
    """The jobs of a directory tree (organised; its unusable files into ``unusable``) or of SOF files."""
    from .errors import InputError
    absent = [str(p) for p in inputs if not Path(p).exists()]
    if absent:   # a directory or a SOF: neither is there (it was reported as a missing SOF file)
        raise InputError(f"no such directory or SOF file: {', '.join(absent)}")
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        root = Path(inputs[0]).absolute()
        if any(c.isspace() for c in str(root)):   # every file would be unusable: the batch did nothing, exit 0
            raise InputError(f"{root}: the directory's path holds whitespace, which no SOF line can hold (esorex "
                             "splits its lines at whitespace); give a link to it whose path has none")
        return jobs_from_tree(Path(inputs[0]), out, unusable)
    jobs = jobs_from_sofs([Path(p) for p in inputs], out)
    seen: dict[Path, Job] = {}
    for j in jobs:   # two SOFs of one name (other folders) wrote into one set folder at once
        other = seen.setdefault(j.outdir, j)
        if other is not j:
            raise InputError(f"{other.sof} and {j.sof}: both SOFs are named {j.name}, so their products would go "
                             f"into one folder ({j.outdir}); rename one" if other.sof != j.sof else
                             f"{j.sof}: given twice")
    return jobs


def batch(inputs: list[Path], out: Path, client=None, workers: int = 2, scheduler: str | None = None,
          settings_file: str | None = None, plots: bool = True, overwrite: bool = False,
          progress: bool = True, unusable: list[str] | None = None) -> tuple[list[Job], list[Path]]:
    """Plan, reduce on Dask (``client``, else one made from ``workers`` / ``scheduler`` and closed
    afterwards) and write the QC summary (CSV, Parquet; the trends PDF unless ``plots`` is False:
    no PDF at all). Returns the jobs and the summary files; ``unusable`` receives the files of a tree
    that are in no set, each with its reason."""
    from .summary import write_summary
    out = Path(out)
    if settings_file:    # a bad settings file is one input error, found before any set is organised or run
        from .settings import check_file
        check_file(settings_file)
    if progress:   # reading every header of a tree before the first set: nothing was shown meanwhile
        tree = len(inputs) == 1 and Path(inputs[0]).is_dir()
        what = f"the frames of {inputs[0]}" if tree else f"{len(inputs)} SOF file{'s' * (len(inputs) > 1)}"
        print(f"soxs-mflat batch: reading {what}", file=sys.stderr, flush=True)
    created = [d for d in (out, *out.parents) if not d.exists()]
    lock = _lock_batch(out)   # before the organiser writes OUT/sof: a second batch touches nothing
    try:
        try:
            jobs = plan(inputs, out, unusable)
        except Exception:   # bad input: nothing of this batch stays, not even the OUT it created
            unlock_directory(out, lock)
            lock = None
            for d in created:
                try:
                    d.rmdir()
                except OSError:
                    break
            raise
        _run_planned(jobs, client, workers, scheduler, settings_file, plots, overwrite, progress)
        return jobs, write_summary(jobs, out, plots)
    finally:
        if lock is not None:
            unlock_directory(out, lock)


def _run_planned(jobs, client, workers, scheduler, settings_file, plots, overwrite, progress) -> None:
    own = None
    try:
        pending = sum(j.status == "pending" for j in jobs)
        if client is None and pending:   # no more worker processes than sets: each would start for nothing
            client, own = make_client(min(workers, pending), scheduler)
        run_jobs(jobs, client, settings_file, plots, overwrite, progress)
    finally:
        if own is not None:
            try:
                client.close()
            finally:
                own.close()


def _lock_batch(out: Path) -> int:
    """One batch at a time into ``out`` (two reduced the same sets at once: OutputBusy, exit 5), then the
    half-written set folders of batches that were killed (SIGTERM to the process group, SIGKILL) removed:
    with the lock held, no live batch owns one."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output directory ({exc.strerror})") from None
    fd = lock_directory(out, "batch")
    for d in sorted(out.glob(section("organise")["product_dir"].format(night="*", sof_name=".*.partial-*"))):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
            log.warning("%s: removed the half-written products of an interrupted batch", d)
    return fd


def run_batch(args) -> int:
    """soxs-mflat batch: exit 0 when every complete set succeeded, 3 otherwise, 2 on bad input."""
    unusable: list[str] = []
    try:
        jobs, paths = batch(args.inputs, Path(args.out), None, args.workers, args.scheduler, args.settings,
                            args.plots == "pdf", args.overwrite, not args.quiet, unusable)
    except OutputBusy as exc:
        print(f"soxs-mflat batch: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (ValueError, OSError) as exc:
        print(f"soxs-mflat batch: input error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except InputError as exc:
        print(f"soxs-mflat batch: input error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for line in unusable:
        print(f"unusable: {line}", file=sys.stderr)
    try:
        print(report(jobs))
        print("summary: " + ", ".join(str(p) for p in paths), flush=True)
    except BrokenPipeError:   # `batch ... | head`: the sets' outcome is still the exit code (3 if one failed)
        from .cli import quiet_stdout
        quiet_stdout()
    return exit_code(jobs)
