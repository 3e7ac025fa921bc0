"""The soxs_mflat recipe: SOF (or directory / file list) in, DFS products and a QC table out."""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from astropy.io import fits

from . import _core, contract, core, settings
from .detrend import detrend
from .frames import expected_tag, load_frames
from .ordertable import CentreTable, order_table_hdus, read_centre_table
from .errors import InputError, ProcessingError
from .prepare import binning_of
from .rules import rule_error
from .output import Staging, product_bytes
from .plotserver import PlotError, PlotInfo, PlotServer
from .products import (base_header, data_product_cards, master_flat_hdus, prefetch_datamd5, product_header,
                       write_atomic_bytes, write_fits)
from .qc import QCRow, log_failures, qc_json_bytes, qc_record, qc_table
from .verify import InputSet, verify

log = logging.getLogger("soxs_mflat")
Progress = Callable[[str], None]
PRODUCTS = contract.section("products")["products"]   # label -> file, PRO CATG/TYPE/TECH (data/contract)
PRODUCT_CATGS = tuple(d["catg"] for d in PRODUCTS.values() if "catg" in d)   # + "_<ARM>"; EDPS classifies these
QC_JSON, QC_LABEL = contract.section("qc")["json"]["file"], "QC JSON"   # data/contract/qc.yaml (the plugin's too)
KIND_GROUP = {k: d["group"] for k, d in contract.section("inputs")["kinds"].items()}   # kind -> esorex group


@dataclass
class RecipeResult:
    products: dict[str, Path]
    qc: list[QCRow]
    arm: str
    seconds: float
    warnings: list[str] = field(default_factory=list)
    qc_per_lamp: dict[str, list[QCRow]] = field(default_factory=dict)   # UVB: "DLAMP"/"QLAMP" tables


def product_paths(outdir: Path, arm: str, tag: str = "") -> dict[str, Path]:
    """Labels (tag " DLAMP" etc.) to file paths (suffix "_dlamp")."""
    a, t = arm.lower(), tag.lower().replace(" ", "_")
    return {f"{label}{tag}": Path(outdir) / d["file"].format(arm=a, tag=t) for label, d in PRODUCTS.items()}


def run_mflat(inputs: str | Path | Iterable[str | Path], outdir: str | Path = ".",
              settings_file: str | Path | None = None, params: Mapping[str, Any] | Iterable[str] | None = None,
              overwrite: bool = False, progress: Progress | None = None, plots: bool = True,
              plot_server: PlotServer | None = None) -> RecipeResult:
    """Run the recipe. Verification errors raise before anything is written. ``plots=False``: no QC
    PDFs (batch runs of many sets; the FITS products and qc.json are unchanged). ``plot_server``: one
    started earlier (the command line starts it before its imports); else one is started here. Either
    way it is closed when the run ends."""
    t0 = time.perf_counter()
    for name, flag in (("overwrite", overwrite), ("plots", plots)):   # "no" is a true string
        if type(flag).__name__ not in ("bool", "bool_"):
            raise InputError(f"run_mflat: {name} must be True or False, got {flag!r}")
    if plots and plot_server is None:
        plot_server = PlotServer.start()   # the drawing layer loads in that process while this one computes
    elif not plots and plot_server is not None:
        plot_server.close()
        plot_server = None
    try:
        return _run(inputs, outdir, settings_file, params, overwrite, progress or (lambda msg: None), plots,
                    plot_server, t0)
    finally:
        if plot_server is not None:
            plot_server.close()


def _run(inputs, outdir, settings_file, params, overwrite: bool, say: Progress, plots: bool,
         server: PlotServer | None, t0: float) -> RecipeResult:
    say("reading and verifying input frames")
    frames = load_frames(inputs)
    # the calibrations' DATAMD5 (the products' provenance keys) hashed in a thread from here on: it
    # overlaps the verification's Python instead of competing with the detrending for the cores
    prefetch_datamd5([f for f in frames if KIND_GROUP.get(f.kind) == "CALIB"])
    s = verify(frames)
    origins: dict[str, str] = {}
    p = settings.resolve(s.arm.instrument, s.arm.arm, settings_file, params, origins)
    for lamp, table in s.order_tabs.items():   # limits that need the order table, before any frame is read
        s.centre_tables[lamp] = read_centre_table(table)   # read once: process_lamp uses it
        settings.check_limits(p, len(s.centre_tables[lamp].layout_orders), table.name, origins)
        check_table_geometry(s, lamp, s.centre_tables[lamp], table)
    ranges = settings.qc_ranges(s.arm.instrument, s.arm.arm, settings_file)
    _log_run(s, p, ranges, settings_file)
    outdir = Path(outdir)
    planned = planned_paths(s, p, outdir)
    paths = without_plots(planned, plots)
    refuse_overwriting_inputs(frames, paths)
    ny, nx = frame_shape(next(iter(s.flats.values()))[0])
    # without plots, QC PDFs left by an earlier run would describe other products: replaced by nothing
    unwritten = [f for label, f in planned.items() if label not in paths]
    with Staging(outdir, paths.values(), overwrite, product_bytes(paths.values(), ny, nx), unwritten) as st:
        if server is not None:
            st.plot_server = server
            st.workers.append(server)   # killed (with the pages it renders) when the run is aborted
        per_lamp: dict[str, list[QCRow]] = {}
        if s.arm.arm == "UVB":
            from .uvb import run_uvb
            products, qc, per_lamp = run_uvb(s, p, ranges, paths, st, say)
        else:
            lamp = next(iter(s.flats))
            res, ct, layout, flats = process_lamp(s, lamp, p, say)
            qc = qc_table(res["qc"], ranges)
            log_failures(qc)
            say("writing products")
            products = write_lamp_products(s, lamp, p, res, ct, layout, flats, qc, paths, st, "")
        per_lamp = {k.strip(): v for k, v in per_lamp.items()}   # "DLAMP", "QLAMP": as qc.json names them
        record = qc_record(qc, run_description(s, products), per_lamp)
        try:
            write_atomic_bytes(qc_json_bytes(record), st.path(paths[QC_LABEL]), False)
        except OSError as exc:
            raise ProcessingError(f"{paths[QC_LABEL]}: cannot write the product ({exc})") from None
        products[QC_LABEL] = paths[QC_LABEL]
        if server is not None:
            t_wait = time.perf_counter()
            try:
                server.wait()
            except PlotError as exc:
                raise ProcessingError(str(exc)) from None
            server.close()
            log.info("QC pages ready %.2f s after the other products", time.perf_counter() - t_wait)
        products = st.commit(products)
    return RecipeResult(products, qc, s.arm.arm, time.perf_counter() - t0, list(s.warnings), per_lamp)


def planned_paths(s: InputSet, p: dict, outdir: Path) -> dict[str, Path]:
    """Every product of the run (label -> path), known before processing."""
    if s.arm.arm == "UVB":
        from .uvb import lamp_tags
        tags = ("", *lamp_tags())
    else:
        tags = ("",)
    paths: dict[str, Path] = {}
    for tag in tags:
        paths.update(product_paths(outdir, s.arm.arm, tag))
    if not p["subtract_background"]:
        paths = {k: v for k, v in paths.items() if "BKGROUND" not in k}
    elif s.arm.arm == "UVB":   # the stitched UVB flat has the per-lamp backgrounds only
        paths = {k: v for k, v in paths.items() if k not in ("BKGROUND", "BKGROUND FITS")}
    paths[QC_LABEL] = outdir / QC_JSON
    return paths


def table_layout(s: InputSet, lamp: str, ct: CentreTable):
    """The order layout of ``lamp``'s table at its flats' binning, and the (ny, nx) of the prepared frames."""
    bx, by = binning_of(s.flats[lamp][0].header, s.arm)
    layout = ct.layout(bx if ct.a_is_x else by, by if ct.a_is_x else bx)
    return layout, (s.arm.science_shape[0] // by, s.arm.science_shape[1] // bx)


def check_table_geometry(s: InputSet, lamp: str, ct: CentreTable, table) -> None:
    """Rule order-table, before any pixel is read: what the core checks of the table on entry (orders
    listed once, finite ranges, every centre on the detector; the plugin calls the same function)."""
    layout, (ny, nx) = table_layout(s, lamp, ct)
    try:
        _core.check_order_table(ct.centre, *layout.args(), ny, nx)
    except ValueError as exc:
        raise rule_error("order-table", file=table.path, detail=f"{exc} ({len(s.flats[lamp])} {lamp} frames of "
                         f"{ny} x {nx} px)") from None


def refuse_overwriting_inputs(frames, paths: Mapping[str, Path]) -> None:
    """Rule product-is-input: no product may replace an input (--overwrite would): the same resolved
    path, or the same file through a hard link."""
    finals = {os.path.realpath(p): Path(p) for p in paths.values()}
    existing = [Path(p) for p in paths.values() if Path(p).exists()]
    for f in frames:
        hit = finals.get(os.path.realpath(f.path)) or next((p for p in existing if os.path.samefile(p, f.path)), None)
        if hit is not None:
            raise rule_error("product-is-input", file=f.path, product=hit)


def frame_shape(f) -> tuple[int, int]:
    """(ny, nx) of a frame from its header (an estimate of the products' size before reading pixels)."""
    try:
        return int(f.header.get("NAXIS2", 0)), int(f.header.get("NAXIS1", 0))
    except (TypeError, ValueError):
        return 0, 0


def _log_run(s: InputSet, p: dict, ranges: dict, settings_file) -> None:
    log.info("%s %s: %s", s.arm.instrument, s.arm.arm, "; ".join(f"{lamp} x{len(fs)}" for lamp, fs in s.flats.items()))
    for group, frames in (("raw", [f for fs in s.flats.values() for f in fs] + list(s.lampoff)),
                          ("calib", [s.bias, s.dark, *s.order_tabs.values(), s.bpm])):
        for f in frames:
            if f is not None:
                log.info("input %-5s %-18s %s", group, f.tag or expected_tag(f), f.path)
    log.info("settings file: %s", settings_file or "none (defaults)")
    for k, v in p.items():
        log.info("parameter %s = %s", k, v)
    for k, (lo, hi) in ranges.items():
        log.info("QC range %s = [%g, %g]", k, lo, hi)


def run_description(s: InputSet, products: Mapping[str, Path]) -> dict[str, Any]:
    """What qc.json says about the run besides the QC values."""
    from . import __version__
    flats = [f for lamp in s.flats.values() for f in lamp]
    offs = list(s.lampoff) if s.dark is None else []   # lamp-off frames are raw inputs when used (as in the headers)
    cals = [f for f in (s.bias, s.dark, *s.order_tabs.values(), s.bpm) if f is not None]
    first = min(flats, key=lambda f: f.get("MJD-OBS", 0.0))   # the earliest flat dates the set (its night)
    return {"front_end": "python", "pipeline": f"soxs-mflat/{__version__}", "instrument": s.arm.instrument,
            "arm": s.arm.arm, "date_obs": first.get("DATE-OBS"), "n_flats": len(flats),
            "inputs": [{"name": f.name, "catg": f.tag or expected_tag(f), "group": group}
                       for group, fs in (("raw", flats + offs), ("calib", cals)) for f in fs],
            "products": {label: Path(path).name for label, path in products.items()}}


def without_plots(paths: dict[str, Path], plots: bool) -> dict[str, Path]:
    return paths if plots else {k: v for k, v in paths.items() if v.suffix != ".pdf"}


def process_lamp(s: InputSet, lamp: str, p: dict, say: Progress):
    ct = s.centre_tables.get(lamp) or read_centre_table(s.order_tabs[lamp])   # refused before the detrending
    say(f"detrending {len(s.flats[lamp])} {lamp} frames")
    d = detrend(s, lamp, int(p["threads"]))
    layout = table_layout(s, lamp, ct)[0]
    say("normalising, stacking, tracing edges, background, low-sensitivity pixels (C++ core)")
    # the core maps parameter names itself and ignores those it does not use (scale_d2_to_qth)
    try:
        res = core.master_flat(d.data, ct.centre, layout, errors=d.error, bpm=d.mask, params=p)
    except InputError as exc:   # the core's checks of the geometry: name the table that defines it
        raise InputError(f"{s.order_tabs[lamp].name} (order table) with {len(d.frames)} {lamp} frames: {exc}") from None
    return res, ct, layout, d.frames   # the detrended frames are released here


def per_order_meta(edges: dict) -> dict[str, list]:
    """The order table's per-order edge statistics, as the core computed them (the plugin writes the same)."""
    return {"maxvalue": list(map(float, edges["peak_per_order"])),
            "minThreshold": list(map(float, edges["min_threshold"])),
            "maxThreshold": list(map(float, edges["max_threshold"])),
            "level_pct": list(map(float, edges["level_pct_per_order"])),
            "n_slices": list(map(int, edges["points"]["n_slices_per_order"])),
            "n_edges_used": list(map(int, edges["n_used_per_order"]))}


def write_lamp_products(s: InputSet, lamp: str, p: dict, res: dict, ct: CentreTable, layout, flats: list,
                        qc: list[QCRow], paths: dict[str, Path], st: Staging, tag: str,
                        cals_extra=()) -> dict[str, Path]:
    """One lamp's (or the final) products, written into the staging directory; returns label -> final path.
    ``res``'s images are left in FITS byte order (see _big_endian)."""
    info = plot_info(s, lamp, p, flats, qc, tag)
    plots = {f"ORDER LOC RES{tag}": ("order_loc_pdf", (res["stacked"], res["edges"], layout, info))}
    if res["background"] is not None:
        plots[f"BKGROUND{tag}"] = ("background_pdf", (res["stacked"], res["background"], res["edges"], layout, info))
    plots = {label: job for label, job in plots.items() if label in paths}   # none with --plots none
    for label, (name, args) in plots.items():   # rendered by the plot server while the FITS are written
        st.plot_server.submit(name, args, st.path(paths[label]))
    t_write = time.perf_counter()
    cals = [f for f in (s.bias, s.dark, s.order_tabs[lamp], *cals_extra, s.bpm) if f is not None]
    offs = list(s.lampoff) if s.dark is None else []   # lamp-off frames count as inputs when used
    base = base_header(flats[0], list(flats) + offs, cals, p)
    # each written as soon as it is built: its MD5, checksums and file write release the GIL, so the
    # images are hashed and written while the order table (Python: astropy's table keywords) is built
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = {label: pool.submit(write_fits, hl, st.path(paths[label]), False)
                for label, hl in iter_product_hdus(s.arm.arm, base, res, ct, layout, p, qc, tag, True,
                                                                  st.plot_server)}
        for label, job in jobs.items():
            try:
                job.result()
            except OSError as exc:   # e.g. the disk filled up after the check
                raise ProcessingError(f"{paths[label]}: cannot write the product ({exc})") from None
    log.info("%d FITS products%s built and written in %.2f s", len(jobs), tag.lower(), time.perf_counter() - t_write)
    fits_labels = [f"{k}{tag}" for k in ("MFLAT", "ORDER LOC", "BKGROUND FITS") if f"{k}{tag}" in jobs]
    return {label: paths[label] for label in (*fits_labels, *plots)}


LAMP_NAMES = {" DLAMP": "D2 lamp (DLAMP)", " QLAMP": "QTH lamp (QLAMP)"}


def plot_info(s: InputSet, lamp: str, p: dict, flats: list, qc: list[QCRow], tag: str):
    """The header block of the QC PDFs."""
    from .qc import night_of
    if tag:
        name = LAMP_NAMES.get(tag, tag.strip())
    elif s.arm.arm == "UVB":
        cross = next((r.value for r in qc if r.name == "CROSSOVER ORDER"), "?")
        name = f"D2 + QTH stitched (D2 from order {cross})"
    else:
        name = "lamp flats"
    raws = [f for f in flats if f.kind in ("FLAT", "DFLAT", "QFLAT")] or list(flats)
    date = min(raws, key=lambda f: f.get("MJD-OBS", 0.0)).get("DATE-OBS") if raws else None
    return PlotInfo(s.arm.instrument, s.arm.arm, name, date, night_of(date), len(raws), list(qc), dict(p))


def pro(label: str, arm: str) -> tuple[str, str, str]:
    """ESO PRO CATG, TYPE and TECH of a product (data/contract/products.yaml)."""
    d = PRODUCTS[label]
    return f"{d['catg']}_{arm}", d["type"], d["tech"]


def _big_endian(res: dict, key: str, in_place: bool, server: PlotServer | None):
    """``res[key]`` in FITS byte order, once, up front: astropy's write, its checksum and our DATAMD5 then
    copy nothing. ``in_place``: ``res`` is the run's own result, which nothing reads once its products are
    built, so its images are swapped in place (a copy is a fresh 13 MB per SOXS VIS image: 15-20 ms of page
    faults each in a new process), once the plot server has its copy of them; ``res[key]`` becomes the
    big-endian view (the same values). Else copied."""
    a = res[key]
    be = a.dtype.newbyteorder(">")
    if a.dtype == be:
        return a
    if not (in_place and a.flags.writeable and a.flags.c_contiguous):
        return a.astype(be)
    if server is not None:
        server.copied(a)
    a.byteswap(inplace=True)
    res[key] = a = a.view(be)
    return a


def iter_product_hdus(arm: str, base, res: dict, ct: CentreTable, layout, p: dict, qc: list[QCRow], tag: str,
                      in_place: bool = False, server: PlotServer | None = None):
    """(label, HDUList) of MASTER_FLAT (FLUX, QUAL, ERRS), with background subtraction MFLAT_BKGROUND, and
    ORDER_TAB, in this order (the images first: see write_lamp_products): names, PRO keys and ESO
    data-product keys from data/contract/products.yaml. ``in_place``: see _big_endian (``server``: the plot
    server that may still be copying res's images)."""
    flux, err = (_big_endian(res, k, in_place, server) for k in ("flux", "error"))
    mf = master_flat_hdus({"FLUX": flux, "QUAL": res["quality"], "ERRS": err},
                          product_header(base, *pro("MFLAT", arm), qc))
    yield f"MFLAT{tag}", mf
    if res["background"] is not None:
        bh = product_header(base, *pro("BKGROUND FITS", arm))
        for k, v, comment in data_product_cards(contract.section("products")["background_keys"], classified=False):
            bh[k] = (v, comment)
        bkg = _big_endian(res, "background", in_place, server)
        yield f"BKGROUND FITS{tag}", fits.HDUList([fits.PrimaryHDU(bkg, bh)])
    th = product_header(base, *pro("ORDER LOC", arm), qc)
    yield f"ORDER LOC{tag}", order_table_hdus(ct, res["edges"]["lower"]["coeffs"], res["edges"]["upper"]["coeffs"],
                                               per_order_meta(res["edges"]), th)
