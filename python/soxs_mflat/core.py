"""Typed, documented wrappers around the C++ engine ``soxs_mflat._core``.

Conventions (shared with the C++ core):

* images are ``float32`` (converted if needed), masks ``uint8`` with non-zero = bad;
* *axis A* is the cross-dispersion coordinate that edges are measured and fitted along,
  *axis B* runs along the orders; ``a_is_x=True`` means A is the column index;
* polynomials ``A(n, B) = sum_ij c[i, j] n**i B**j`` are in unbinned pixels (pixel centres at
  integers) and are passed as 2-D arrays ``c[i_order, j_b]`` (soxspipe's ``cent_ij`` layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import _core
from .errors import InputError, convert_cpp_errors

# the core's defaults (soxs/mflat.hpp, generated from data/parameters.yaml's SOXS VIS column)
_D = _core.DEFAULTS


@dataclass(frozen=True)
class OrderLayout:
    """Which orders are on the detector, how the polynomials map onto the frame."""

    orders: Sequence[int]
    b_min: Sequence[float]
    b_max: Sequence[float]
    a_is_x: bool = True
    bin_a: int = 1
    bin_b: int = 1

    def __post_init__(self) -> None:
        """Orders whole numbers, a_is_x a bool, binnings positive whole numbers, one range per order: a
        string of digits was read as orders, 1.5 truncated to 1 and a_is_x="False" taken as True."""
        if isinstance(self.orders, (str, bytes)) or not all(_whole(o) for o in self.orders):
            raise InputError(f"OrderLayout: orders must be whole numbers, got {self.orders!r}")
        if not (len(self.orders) == len(self.b_min) == len(self.b_max)):
            raise InputError(f"OrderLayout: {len(self.orders)} orders but {len(self.b_min)} b_min and "
                             f"{len(self.b_max)} b_max values")
        if not isinstance(self.a_is_x, (bool, np.bool_)):
            raise InputError(f"OrderLayout: a_is_x must be True or False, got {self.a_is_x!r}")
        for name in ("bin_a", "bin_b"):
            v = getattr(self, name)
            if not (_whole(v) and v >= 1):
                raise InputError(f"OrderLayout: {name} must be a whole number >= 1, got {v!r}")

    def args(self) -> tuple:
        return (list(map(int, self.orders)), list(map(float, self.b_min)), list(map(float, self.b_max)),
                bool(self.a_is_x), int(self.bin_a), int(self.bin_b))


def _whole(v: Any) -> bool:
    """An integer value (numpy's too), not a bool or a float with a fraction."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    return isinstance(v, (float, np.floating)) and float(v).is_integer()


# detect_edges' keyword parameters (the binding's names) and their types
EDGE_PARAMS = {"slice_length": int, "slice_width": int, "min_pct": float, "max_pct": float, "step_unbinned": float,
               "median_filter": int, "min_width": float, "min_snr": float}


def _edge_params(params: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        kind = EDGE_PARAMS.get(k)
        if kind is None:
            raise InputError(f"detect_edges: unknown parameter {k!r}; known: {', '.join(EDGE_PARAMS)}")
        numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if not numeric or (kind is int and not _whole(v)):
            raise InputError(f"detect_edges: parameter {k} must be {'a whole number' if kind is int else 'a number'}, "
                             f"got {v!r}")
        out[k] = kind(v)
    return out


@dataclass
class StackResult:
    mean: np.ndarray
    error: np.ndarray
    quality: np.ndarray
    n_used: np.ndarray


def _f32(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D image, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":   # complex (its imaginary part dropped with a warning), strings, objects
        raise InputError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _errors(a: Any, name: str) -> np.ndarray:
    """An error map: finite and >= 0 where given (a negative or NaN sigma made NaN errors, or none)."""
    e = _f32(a, name)
    if not (np.isfinite(e) & (e >= 0)).all():
        raise InputError(f"{name}: errors must be finite and >= 0 ({int((~(np.isfinite(e) & (e >= 0))).sum())} "
                         "pixels are not)")
    return e


def _threads(n: Any) -> int:
    if not _whole(n) or not 0 <= n <= 1024:
        raise InputError(f"threads must be a whole number in 0..1024 (0: all cores), got {n!r}")
    return int(n)


def _u8(a: Any | None, name: str) -> np.ndarray | None:
    if a is None:
        return None
    return np.ascontiguousarray(np.asarray(a) != 0, dtype=np.uint8)


def _bits(a: Any) -> np.ndarray:
    """QUAL bit maps keep their bits (unlike masks, which become 0/1)."""
    return np.ascontiguousarray(a, dtype=np.uint8)


def clip_and_stack(frames: Sequence[np.ndarray], errors: Sequence[np.ndarray] | None = None,
                   masks: Sequence[np.ndarray] | None = None, scales: Sequence[float] | None = None,
                   sigma_lower: float = _D["clip"]["sigma_lower"], sigma_upper: float = _D["clip"]["sigma_upper"],
                   max_iters: int = _D["clip"]["max_iters"], threads: int = 0,
                   error_floor: bool = _D["clip"]["error_floor"]) -> StackResult:
    """Sigma-clip (median centre, MAD sigma; astropy semantics) along the stack and average.

    Masked or non-finite samples never take part. ``error = sqrt(sum sigma_i^2 of survivors) /
    n_used`` (the error of their mean; without ``errors``: sample std of survivors / sqrt(n_used)). ``quality`` is 1
    where no sample survived (mean and error are 0 there). ``scales[k]`` multiplies frame k and its
    error before clipping, which normalises frames without copying them. With ``error_floor`` (and
    ``errors``) the clipping sigma is the MAD sigma clamped to [1, 1.5] x the rms of the survivors'
    errors: the MAD of a few samples is often 2-3x too large or too small.
    """
    if len(frames) == 0:
        raise InputError("clip_and_stack: no frames given")
    f = [_f32(x, f"frame {k}") for k, x in enumerate(frames)]
    e = None if errors is None else [_errors(x, f"error map {k}") for k, x in enumerate(errors)]
    m = None if masks is None else [_u8(x, f"mask {k}") for k, x in enumerate(masks)]
    sc = [] if scales is None else [float(v) for v in scales]
    if not all(np.isfinite(v) and v > 0 for v in sc):   # NaN dropped the frame, 0 made a master of zeros
        raise InputError(f"clip_and_stack: scales must be finite and > 0, got {list(scales)}")
    with convert_cpp_errors("clip_and_stack"):
        out = _core.clip_and_stack(f, e, m, sc, sigma_lower, sigma_upper, max_iters, _threads(threads), error_floor)
    return StackResult(*out)


def inner_order_stats(image: np.ndarray, centre: np.ndarray, layout: OrderLayout, window: int,
                      ref: np.ndarray | None = None, mask: np.ndarray | None = None,
                      clip_sigma: float = _D["norm"]["clip_sigma"],
                      clip_iters: int = _D["norm"]["clip_iters"]) -> dict[str, float]:
    """Statistics of the pixels within ``window`` px (centred) of every order centre.

    Returns the sigma-clipped ``mean`` (median/MAD clip), ``median``, ``p10``/``p50``/``p90``
    (numpy linear percentiles) and the pixel count ``n``. With ``ref`` the statistics are of
    ``image / ref`` (the spec's second normalisation pass).
    """
    if not _whole(window):
        raise InputError(f"inner_order_stats: window must be a whole number of pixels, got {window!r}")
    img = _f32(image, "image")
    r = None if ref is None else _f32(ref, "ref")
    with convert_cpp_errors("inner_order_stats"):
        return _core.inner_order_stats(img, r, _u8(mask, "mask"), np.asarray(centre, float), *layout.args(),
                                       int(window), clip_sigma, clip_iters)


def detect_edges(image: np.ndarray, centre: np.ndarray, layout: OrderLayout, error: np.ndarray | None = None,
                 mask: np.ndarray | None = None, threads: int = 0, **params: Any) -> dict[str, np.ndarray]:
    """Measure lower/upper order edges on cross-dispersion slices (positions in unbinned px).

    ``params``: ``slice_length``, ``slice_width``, ``min_pct``, ``max_pct``, ``step_unbinned``,
    ``median_filter``, ``min_width``, ``min_snr``. Each slice is median-collapsed across its width
    and median-filtered; the edge is the sub-pixel crossing (cubic interpolation) of
    ``min + (max - min) * pct / 100``, with pct stepping from ``min_pct`` by 10 up to ``max_pct``.
    """
    img = _f32(image, "image")
    err = None if error is None else _f32(error, "error")
    with convert_cpp_errors("detect_edges"):
        return _core.detect_edges(img, err, _u8(mask, "mask"), np.asarray(centre, float), *layout.args(),
                                  _edge_params(params), _threads(threads))


def fit_global_poly(n: Sequence[float], b: Sequence[float], a: Sequence[float], deg_n: int, deg_b: int,
                    clip_sigma: float = _D["fit"]["clip_sigma"], max_iters: int = _D["fit"]["max_iters"]
                    ) -> dict[str, Any]:
    """Least-squares ``A(n, B)`` power series with median/MAD residual clipping.

    Solved by Householder QR in scaled variables, returned as raw coefficients ``c[i, j]``;
    ``residuals`` are fit minus measured for every point, ``clipped`` flags rejected points.
    """
    with convert_cpp_errors("fit_global_poly"):
        return _core.fit_global_poly(list(map(float, n)), list(map(float, b)), list(map(float, a)),
                                     deg_n, deg_b, clip_sigma, max_iters)


def poly_eval(coeffs: np.ndarray, n: Any, b: Any) -> np.ndarray:
    """Evaluate ``sum_ij c[i, j] n**i b**j`` element-wise (broadcasting n and b)."""
    nn, bb = np.broadcast_arrays(np.asarray(n, float), np.asarray(b, float))
    with convert_cpp_errors("poly_eval"):
        return _core.poly_eval(np.asarray(coeffs, float), nn.ravel(), bb.ravel()).reshape(nn.shape)


def fit_background(image: np.ndarray, lower: np.ndarray, upper: np.ndarray, layout: OrderLayout,
                   mask: np.ndarray | None = None, margin: int = _D["background"]["margin"],
                   spline_deg: int = _D["background"]["spline_deg"],
                   smooth_sigma: float = _D["background"]["smooth_sigma"],
                   outer_width: int = _D["background"]["outer_width"],
                   end_margin: int = _D["background"]["end_margin"], threads: int = 0,
                   halos: bool = _D["background"]["halos"]) -> np.ndarray:
    """Scattered-light model: median level of every inter-order gap (``margin`` px clear of the
    edges, ``outer_width`` px beyond the outermost orders) on every line, Gaussian-smoothed along B,
    interpolated across A (linear for ``spline_deg`` 1, natural cubic spline otherwise). Orders stay
    masked ``end_margin`` lines beyond their B range, where their light fades out. With ``halos``
    (the recipe's way) the orders' own light blurred by Gaussian halos (sigma 10-160 px, a non-
    negative mix fitted to ~8-px pieces of the gaps next to a smooth surface) is modelled first and
    the gap interpolation takes only what the halos leave."""
    img = _f32(image, "image")
    with convert_cpp_errors("fit_background"):
        model, _ = _core.fit_background(img, _u8(mask, "mask"), np.asarray(lower, float), np.asarray(upper, float),
                                        *layout.args(), margin, spline_deg, smooth_sigma, outer_width, end_margin,
                                        _threads(threads), halos)
    return model


def flag_low_sensitivity(flat: np.ndarray, lower: np.ndarray, upper: np.ndarray, layout: OrderLayout,
                         error: np.ndarray | None = None, mask: np.ndarray | None = None,
                         clip_sigma: float = _D["low_sens"]["clip_sigma"],
                         half_window: int = _D["low_sens"]["half_window"], threads: int = 0
                         ) -> tuple[np.ndarray, int]:
    """Flag in-order pixels more than ``clip_sigma`` sigma below a local separable-median model."""
    img = _f32(flat, "flat")
    err = None if error is None else _f32(error, "error")
    with convert_cpp_errors("flag_low_sensitivity"):
        flags, n, _ = _core.flag_low_sensitivity(img, err, _u8(mask, "mask"), np.asarray(lower, float),
                                                 np.asarray(upper, float), *layout.args(), clip_sigma,
                                                 half_window, half_window, _threads(threads))
    return flags, int(n)


def in_order_mask(shape: tuple[int, int], lower: np.ndarray, upper: np.ndarray, layout: OrderLayout) -> np.ndarray:
    """uint8 image, 1 where a pixel lies between the lower and upper edge of some order."""
    if len(shape) != 2 or not all(_whole(v) for v in shape):
        raise InputError(f"in_order_mask: shape must be (ny, nx) of whole numbers, got {shape!r}")
    with convert_cpp_errors("in_order_mask"):
        return _core.in_order_mask(int(shape[0]), int(shape[1]), np.asarray(lower, float),
                                   np.asarray(upper, float), *layout.args())


def master_flat(frames: Sequence[np.ndarray], centre: np.ndarray, layout: OrderLayout,
                errors: Sequence[np.ndarray] | None = None, bpm: np.ndarray | None = None,
                params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole master-flat computation on detrended frames (electrons).

    Two-pass exposure normalisation, clip-and-stack, edge detection and global fits, optional
    background subtraction, low-sensitivity flags (QUAL bit 2), inter-order pixels set to 1, QC.
    ``params`` uses the recipe's parameter names (``stacked_clipping_sigma``, ``order_deg``, ...).
    """
    if len(frames) == 0:
        raise InputError("master_flat: no frames given")
    f = [_f32(x, f"frame {k}") for k, x in enumerate(frames)]
    e = None if errors is None else [_f32(x, f"error map {k}") for k, x in enumerate(errors)]
    checked = _recipe_params(params or {})
    with convert_cpp_errors("master_flat"):
        return _core.master_flat(f, e, _u8(bpm, "bpm"), np.asarray(centre, float), *layout.args(), checked)


def _recipe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's parameters by name, typed and in range as run_mflat takes them (data/parameters.yaml:
    unknown names, "false" for a bool, "2" for an int and out-of-range values were passed on or ignored)."""
    from .settings import cast, range_error
    out = {}
    for k, v in params.items():
        name = str(k).replace("-", "_")
        out[name] = cast(name, v, "master_flat")
        problem = range_error(name, out[name])
        if problem:
            raise InputError(f"master_flat: {problem}")
    return out


def check_params(params: Mapping[str, Any], n_orders: int) -> None:
    """The core's parameter limits that need the order table or tie parameters together: ``order_deg``
    below the number of orders, ``centre_order_window`` below ``slice_length_for_edge_detection``,
    the minimum edge threshold not above the maximum. Raises InputError naming the parameter."""
    with convert_cpp_errors():
        _core.check_params(dict(params), int(n_orders))


def stitch(d: Mapping[str, np.ndarray], q: Mapping[str, np.ndarray], d_lower: np.ndarray, d_upper: np.ndarray,
           crossover: int, layout: OrderLayout, offset: float = _D["stitch"]["offset"], scale: float = 1.0
           ) -> dict[str, Any]:
    """Stitch D2 (orders >= crossover, times ``scale``) and QTH masters along a line ``offset`` px
    beyond the crossover order's edge facing order ``crossover - 1``. ``d``/``q`` hold
    ``flux``, ``error``, ``quality``."""
    a_is_x, bin_a, bin_b = layout.a_is_x, layout.bin_a, layout.bin_b
    for name, m in (("d", d), ("q", q)):
        missing = [k for k in ("flux", "error", "quality") if k not in m]
        if missing:
            raise InputError(f"stitch: {name} lacks {', '.join(missing)} (needs flux, error, quality)")
        qual = np.asarray(m["quality"])
        whole = qual.dtype.kind in "biu" or (qual.dtype.kind == "f" and bool(np.all(np.mod(qual, 1) == 0)))
        if not whole or (qual.size and (qual.min() < 0 or qual.max() > 255)):   # NaN fails np.mod's test
            raise InputError(f"stitch: {name}['quality'] must be bits 0..255 (whole numbers), got dtype {qual.dtype}"
                             + (f", values {qual.min():g}..{qual.max():g}" if qual.size and whole else ""))
    if not _whole(crossover) or int(crossover) not in list(map(int, layout.orders)):
        raise InputError(f"stitch: crossover {crossover!r} is not one of the layout's orders {list(layout.orders)}")
    with convert_cpp_errors("stitch"):
        f, e, qq, line, d_below = _core.stitch(
            _f32(d["flux"], "D flux"), _f32(d["error"], "D error"), _bits(d["quality"]),
            _f32(q["flux"], "Q flux"), _f32(q["error"], "Q error"), _bits(q["quality"]),
            np.asarray(d_lower, float), np.asarray(d_upper, float), int(crossover), a_is_x, bin_a, bin_b,
            offset, scale)
    return {"flux": f, "error": e, "quality": qq, "line": line, "d_below": d_below}
