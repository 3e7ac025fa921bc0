"""Pure-NumPy twins of the C++ kernels: slow, obvious reimplementations used to check the
core on random inputs. They also document what each kernel computes."""
from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

MAD = 1.482602218505602


def clip_and_stack(frames, masks=None, errors=None, scales=None, sl=5.0, su=5.0, iters=5, error_floor=False):
    cube = np.array(frames, dtype=np.float64)
    sc = np.ones(len(cube)) if scales is None else np.asarray(scales, float)
    cube = (cube.astype(np.float32) * sc[:, None, None].astype(np.float32)).astype(np.float64)
    keep = np.isfinite(cube)
    if masks is not None:
        keep &= ~np.asarray(masks, bool)
    for it in range(iters):
        d = np.where(keep, cube, np.nan)
        with np.errstate(all="ignore"), _quiet():
            med = np.nanmedian(d, axis=0)
            sd = MAD * np.nanmedian(np.abs(d - med), axis=0)
            if error_floor:
                e = np.asarray(errors, np.float64) * sc[:, None, None]
                ee = np.sqrt(np.nanmean(np.where(keep, e * e, np.nan), axis=0))
                sd = ee
                if it == 0:   # the first pass only, as the core
                    med = _densest_centre(cube, keep, med, sl * sd, su * sd)
        new = keep & (cube >= med - sl * sd) & (cube <= med + su * sd)
        if (new == keep).all():
            break
        keep = new
    n = keep.sum(0)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, np.where(keep, cube, 0).sum(0) / n, 0)
        if errors is not None:
            e = np.asarray(errors, np.float64) * sc[:, None, None]
            # the error of the mean of n frames: sqrt(sum sigma_k^2) / n
            err = np.where(n > 0, np.sqrt(np.where(keep, e * e, 0).sum(0)) / np.maximum(n, 1), 0)
        else:
            var = np.where(keep, (cube - mean) ** 2, 0).sum(0) / np.maximum(n - 1, 1)
            err = np.where(n > 1, np.sqrt(var) / np.sqrt(np.maximum(n, 1)), 0)
    return mean, err, (n == 0).astype(np.uint8), n


def _densest_centre(cube, keep, med, lw, uw):
    """The clip centre with known noise: the median, unless its window holds at most half of the kept
    samples and the window [x - lw, x + uw] around a kept sample holds strictly more; then the sample
    whose window holds the most (ties: the one whose rank is nearest the median's, then the lower).
    First pass only."""
    def count(c):
        return (keep & (cube >= c - lw) & (cube <= c + uw)).sum(0)
    n = len(cube)
    nk = keep.sum(0)
    # the samples of each pixel in rank order, unusable ones last (ties by frame index)
    order = np.argsort(np.where(keep, cube, np.inf), axis=0, kind="stable")
    best, bm = count(med), med.copy()
    minority = 2 * best <= nk            # the median's window holds at most half: it may move
    bdist = np.full(med.shape, np.iinfo(np.int64).max)
    for r in range(n):   # candidates in rank order, as the core walks its sorted samples
        k = np.take_along_axis(order, np.full((1,) + med.shape, r), axis=0)[0]
        x = np.take_along_axis(cube, k[None], axis=0)[0]
        ok = np.take_along_axis(keep, k[None], axis=0)[0]
        c = count(x)
        dist = np.abs(2 * r - (nk - 1))
        better = minority & ok & ((c > best) | ((c == best) & (bdist != np.iinfo(np.int64).max) & (dist < bdist)))
        best, bm, bdist = np.where(better, c, best), np.where(better, x, bm), np.where(better, dist, bdist)
    return bm


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def poly(c, n, b):
    c = np.asarray(c)
    return sum(c[i, j] * np.asarray(n, float) ** i * np.asarray(b, float) ** j
               for i in range(c.shape[0]) for j in range(c.shape[1]))


def to_binned(x, binning):
    return x / binning   # soxspipe's order-table convention: binned pixel i is unbinned binning * i


def b_range(lo, hi, bin_b, len_b):
    """Binned lines of an order: its B range, extended to a detector edge it stops within max(3, bin_b)
    unbinned px of (the order runs off the detector there)."""
    snap = max(3.0, bin_b)
    b0 = 0 if lo < snap else max(0, int(np.ceil(to_binned(lo, bin_b))))
    b1 = len_b - 1 if hi > bin_b * (len_b - 1) - snap else min(len_b - 1, int(np.floor(to_binned(hi, bin_b))))
    return b0, b1


def inner_values(img, centre, orders, bmin, bmax, window, a_is_x=True, bin_a=1, bin_b=1, mask=None, ref=None):
    im = img if a_is_x else img.T
    mk = None if mask is None else (mask if a_is_x else mask.T)
    rf = None if ref is None else (ref if a_is_x else ref.T)
    vals = []
    for n, lo, hi in zip(orders, bmin, bmax):
        b0, b1 = b_range(lo, hi, bin_b, im.shape[0])
        for b in range(b0, b1 + 1):
            c = to_binned(poly(centre, n, bin_b * b), bin_a)
            a0 = int(np.floor(c - 0.5 * (window - 1) + 0.5))
            for a in range(max(0, a0), min(im.shape[1], a0 + window)):
                v = im[b, a]
                if (mk is not None and mk[b, a]) or not np.isfinite(v):
                    continue
                if rf is not None:
                    if not np.isfinite(rf[b, a]) or rf[b, a] == 0:
                        continue
                    v = np.float64(v) / np.float64(rf[b, a])
                vals.append(float(v))
    return np.array(vals)


def clipped_mean(v, sigma, iters):
    v = np.sort(v)
    for _ in range(iters):
        med = np.median(v)
        sd = MAD * np.median(np.abs(v - med))
        new = v[(v >= med - sigma * sd) & (v <= med + sigma * sd)]
        if len(new) == len(v):
            break
        v = new
    return v.mean()


def fit_poly(n, b, a, dn, db, sigma, iters):
    n, b, a = map(lambda x: np.asarray(x, float), (n, b, a))
    n0, ns = (n.max() + n.min()) / 2, max((n.max() - n.min()) / 2, 1)
    b0, bs = (b.max() + b.min()) / 2, max((b.max() - b.min()) / 2, 1)
    X = np.stack([((n - n0) / ns) ** i * ((b - b0) / bs) ** j for i in range(dn + 1) for j in range(db + 1)], 1)
    clipped = np.zeros(len(a), bool)
    for it in range(iters + 1):
        coef = np.linalg.lstsq(X[~clipped], a[~clipped], rcond=None)[0]
        res = X @ coef - a
        if it == iters:
            break
        r = res[~clipped]
        med = np.median(r)
        sd = MAD * np.median(np.abs(r - med))
        if sd <= 0:
            break
        new = ~clipped & (np.abs(res - med) > sigma * sd)
        if not new.any():
            break
        clipped |= new
    return res, clipped


def median_filter(p, w):
    h = w // 2
    out = np.empty_like(p)
    for k in range(len(p)):
        seg = p[max(0, k - h):k + h + 1]
        seg = seg[np.isfinite(seg)]
        out[k] = np.median(seg) if len(seg) else np.nan
    return out


def background_line(levels_by_a, la, deg):
    """Interpolate one line through (a, level) points; constant beyond the ends."""
    x = np.array(sorted(levels_by_a))
    y = np.array([levels_by_a[k] for k in x])
    grid = np.arange(la, dtype=float)
    if deg >= 2 and len(x) >= 3:
        out = CubicSpline(x, y, bc_type="natural")(np.clip(grid, x[0], x[-1]))
    else:
        out = np.interp(grid, x, y)
    return out


def _pair_median(stack):
    """stack[0] = centre, stack[2d-1], stack[2d] = the pair at distance d: NaN-out incomplete pairs."""
    st = stack.copy()
    for d in range(1, (len(st) - 1) // 2 + 1):
        bad = ~(np.isfinite(st[2 * d - 1]) & np.isfinite(st[2 * d]))
        st[2 * d - 1][bad] = np.nan
        st[2 * d][bad] = np.nan
    with _quiet():
        return np.nanmedian(st, axis=0)


def _shift(img, d, axis):
    out = np.full(img.shape, np.nan)
    if axis == 1:
        if d > 0:
            out[:, :-d] = img[:, d:]
        else:
            out[:, -d:] = img[:, :img.shape[1] + d]
    else:
        if d > 0:
            out[:-d] = img[d:]
        else:
            out[-d:] = img[:img.shape[0] + d]
    return out


def separable_median_model(img, half_a, half_b):
    """Median across A (centre + complete symmetric pairs within ±half_a), then along B the same
    way with the window shrunk symmetrically at the first/last lines; on a (B, A) image."""
    def stack(x, half, axis):
        parts = [x]
        for d in range(1, half + 1):
            parts += [_shift(x, -d, axis), _shift(x, d, axis)]
        return np.array(parts)
    ma = _pair_median(stack(img, half_a, 1))
    sb = stack(ma, half_b, 0)
    nb = img.shape[0]
    q = np.arange(nb)
    h = np.minimum(np.minimum(q, nb - 1 - q), half_b)
    for d in range(1, half_b + 1):
        drop = (h < d)[:, None] & np.ones(img.shape[1], bool)[None, :]
        sb[2 * d - 1][drop] = np.nan
        sb[2 * d][drop] = np.nan
    return _pair_median(sb)
