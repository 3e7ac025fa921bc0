"""Products do not depend on the number of threads, bit for bit (issue 14): the chunks of the
core's parallel loop depend on the problem size only, the stack's vector path covers every pixel
(the last, partial block through padded buffers) and the no-error-map clipping rule is one rule."""
from __future__ import annotations

import numpy as np
import pytest

import soxs_mflat as sm
import synth_orders as so
import twins

THREADS = (1, 2, 3, 4, 7, 16)


def _stack_inputs(n, shape=(301, 203), seed=0):
    """npix = 61103: not a multiple of 16, and a dozen chunks of the parallel loop."""
    rng = np.random.default_rng(seed)
    frames = [rng.normal(1000, 30, shape).astype(np.float32) for _ in range(n)]
    for f in frames:
        k = min(500, f.size // 10)
        f.flat[rng.choice(f.size, k, replace=False)] = rng.choice([5e4, np.nan, np.inf, -1e4], k)
    errors = [np.full(shape, 30, np.float32) * rng.uniform(0.8, 1.2, shape).astype(np.float32) for _ in range(n)]
    masks = [rng.random(shape) < 0.05 for _ in range(n)]
    return frames, errors, masks


def _bits(r):
    return [np.asarray(a).tobytes() for a in (r.mean, r.error, r.quality, r.n_used)]


@pytest.mark.parametrize("n,with_errors", [(5, True), (5, False), (16, True), (23, True), (23, False)])
def test_stack_bitwise_equal_at_any_thread_count(n, with_errors):
    frames, errors, masks = _stack_inputs(n)
    kw = dict(errors=errors if with_errors else None, masks=masks, scales=np.linspace(0.9, 1.1, n),
              error_floor=True, max_iters=5)
    ref = _bits(sm.clip_and_stack(frames, threads=1, **kw))
    for t in THREADS[1:]:
        assert _bits(sm.clip_and_stack(frames, threads=t, **kw)) == ref, f"threads={t}"


@pytest.mark.parametrize("n", [3, 16])
def test_stack_pixel_result_does_not_depend_on_its_position(n):
    """The vector path (blocks of 16 pixels) and the last, partial block give identical bits: each
    pixel's stack alone (a 1-pixel image, all tail) equals the same pixel inside a large image."""
    frames, errors, masks = _stack_inputs(n, shape=(7, 45), seed=1)
    full = sm.clip_and_stack(frames, errors=errors, masks=masks, error_floor=True)
    for y, x in [(0, 0), (3, 17), (6, 44), (5, 31)]:
        one = sm.clip_and_stack([f[y:y + 1, x:x + 1] for f in frames], errors=[e[y:y + 1, x:x + 1] for e in errors],
                                masks=[m[y:y + 1, x:x + 1] for m in masks], error_floor=True)
        assert one.mean[0, 0].tobytes() == full.mean[y, x].tobytes()
        assert one.error[0, 0].tobytes() == full.error[y, x].tobytes()
        assert one.n_used[0, 0] == full.n_used[y, x]


@pytest.mark.parametrize("n", [5, 23])
def test_error_floor_without_error_maps_is_plain_mad_clipping(n):
    """Without error maps there is no floor: both paths (vector for <= 16 frames, scalar above) clip on
    the MAD sigma, as the NumPy twin does (the scalar path used to clip nothing)."""
    frames, _, masks = _stack_inputs(n, shape=(13, 21), seed=2)
    a = sm.clip_and_stack(frames, masks=masks, error_floor=True)
    b = sm.clip_and_stack(frames, masks=masks, error_floor=False)
    assert a.mean.tobytes() == b.mean.tobytes() and a.n_used.tobytes() == b.n_used.tobytes()
    mean, _, _, nused = twins.clip_and_stack(frames, masks=masks)
    np.testing.assert_array_equal(a.n_used, nused)
    np.testing.assert_allclose(a.mean, mean, rtol=2e-6)


def test_master_flat_bitwise_equal_at_any_thread_count():
    """The whole core on a frame whose size is not a multiple of 16 (597 x 419 px)."""
    rng = np.random.default_rng(4)
    lay = sm.OrderLayout([1, 2, 3, 4], [0] * 4, [596] * 4)
    illum = so.frame(ny=597, nx=419, level=20000.0) + 100.0
    frames = [rng.poisson(s * illum).astype(np.float32) for s in (1.0, 1.02, 0.98, 1.01)]
    errors = [np.sqrt(f + 9.0).astype(np.float32) for f in frames]
    p = dict(order_deg=2, disp_axis_deg=3, gaussian_blur_sigma=20)
    runs = {t: sm.master_flat(frames, so.centre_coeffs(), lay, errors=errors, params={**p, "threads": t})
            for t in THREADS}
    for t in THREADS[1:]:
        for key in ("flux", "error", "quality", "background", "stacked"):
            assert runs[t][key].tobytes() == runs[1][key].tobytes(), f"{key} at threads={t}"
        for side in ("lower", "upper"):
            assert runs[t]["edges"][side]["coeffs"].tobytes() == runs[1]["edges"][side]["coeffs"].tobytes()
        assert runs[t]["qc"] == runs[1]["qc"]


def test_whole_run_bitwise_equal_across_threads_and_front_ends(tmp_path):
    """X-shooter NIR (where 21/91/230 pixels differed at 4/8/16 threads): the CLI at 1 and 7 threads and
    esorex at 16 threads write the same data, bit for bit."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    from astropy.io import fits

    from soxs_mflat.recipe import run_mflat
    from soxs_mflat.simulate.run import simulate_set
    w = simulate_set("xshooter", "nir", tmp_path / "set", nflats=2, seed=11)
    dirs = []
    for t in (1, 7):
        run_mflat(w["sof"], tmp_path / f"py{t}", params={"threads": t})
        dirs.append(tmp_path / f"py{t}")
    plugin = Path(os.environ.get("SOXS_ESOREX_PLUGIN_DIR", Path(__file__).parent.parent / "build/esorex/recipes"))
    if shutil.which("esorex") and (plugin / "soxs_mflat.so").exists():
        for t in (16,):
            out = tmp_path / f"es{t}"
            out.mkdir()
            r = subprocess.run(["esorex", f"--recipe-dir={plugin}", f"--output-dir={out}", f"--log-dir={out}",
                                "soxs_mflat", f"--threads={t}", str(w["sof"])], capture_output=True, text=True,
                                cwd=out, timeout=600)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
            dirs.append(out)
    names = sorted(p.name for p in dirs[0].glob("*.fits") if p.name != "qc.json")
    assert "master_flat_nir.fits" in names
    for d in dirs[1:]:
        for name in names:
            with fits.open(dirs[0] / name) as a, fits.open(d / name) as b:
                for ext in range(len(a)):
                    if a[ext].data is None:
                        continue
                    x, y = np.asarray(a[ext].data), np.asarray(b[ext].data)
                    if x.dtype.names:   # tables: every column (the writers' integer widths may differ)
                        for c in x.dtype.names:
                            np.testing.assert_array_equal(np.asarray(x[c], float), np.asarray(y[c], float),
                                                          err_msg=f"{d.name} {name} {c}")
                    else:
                        np.testing.assert_array_equal(x, y, err_msg=f"{d.name} {name} {ext}")
