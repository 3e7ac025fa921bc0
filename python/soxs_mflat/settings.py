"""Recipe parameters: definitions in ``data/parameters.yaml`` (the single source), resolution of
per-instrument / per-arm defaults, user settings files and ``NAME=VALUE`` overrides."""
from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .contract import package_yaml
from .errors import InputError

INSTRUMENTS = ("soxs", "xshooter")
ARMS = ("uvb", "vis", "nir")
_CASTS = {"bool": bool, "int": int, "float": float}
log = logging.getLogger("soxs_mflat")


@lru_cache(maxsize=None)
def definitions() -> dict[str, dict]:
    text = resources.files("soxs_mflat").joinpath("data/parameters.yaml").read_text()
    return package_yaml(text)


def qc_ranges(instrument: str, arm: str, settings_file: str | Path | None = None) -> dict[str, tuple[float, float]]:
    """Acceptable QC ranges: the contract's defaults (data/contract/qc.yaml), then the settings file's
    ``qc-acceptable-ranges`` blocks (soxspipe's format): the top level's, then the arm's, per QC."""
    from .qc import default_ranges
    ranges = default_ranges(instrument, arm)
    if settings_file:
        path = Path(settings_file)
        block = _arm_block(_load(path), arm, path, warn=False).get(QC_KEY)
        if block is not None:
            ranges.update(_ranges(block, str(path)))
    return ranges


def _ranges(block: Any, origin: str) -> dict[str, tuple[float, float]]:
    """qc.parse_ranges: finite bounds (soxspipe's settings give plain numbers; an open end is a large
    number, [0, 1e30], as qc.json cannot hold infinity)."""
    from .qc import parse_ranges
    return parse_ranges(block, origin)


def default(name: str, instrument: str, arm: str) -> Any:
    d = definitions()[name]["default"]
    if isinstance(d, dict):
        d = d.get(instrument.lower(), next(iter(d.values())))
    if isinstance(d, dict):
        d = d.get(arm.lower(), next(iter(d.values())))
    return d


def _unknown(name: str, value: Any, where: str) -> str:
    """An unknown name, with the nearest known ones; a mapping under it is a misspelt arm block (`vsi:`)."""
    import difflib
    if isinstance(value, dict):
        near = difflib.get_close_matches(name.lower(), ARMS, 1, 0.5)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        return (f"unknown parameter or arm block {name!r}{where}{hint}: the arm blocks are "
                f"{', '.join(a + ':' for a in ARMS)}, each a mapping of parameter names to values")
    near = difflib.get_close_matches(name, definitions(), 3, 0.6)
    hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
    return f"unknown parameter {name!r}{where}{hint} (soxs-mflat params lists the parameters)"


def cast(name: str, value: Any, origin: str = "") -> Any:
    """Convert a user value to the parameter's type, with an error naming where it came from."""
    defs = definitions()
    where = f" ({origin})" if origin else ""
    if name not in defs:
        raise InputError(_unknown(name, value, where))
    kind = defs[name]["type"]
    if kind == "bool" and isinstance(value, str):
        low = value.strip().lower()
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise InputError(f"parameter {name}{where} must be true or false, got {value!r}")
        return low in ("true", "1", "yes")
    if isinstance(value, bool) and kind != "bool":   # YAML's true is not 1.0
        raise InputError(f"parameter {name}{where} must be {kind}, got {value!r}")
    if kind == "int":   # 3.5 and '3.5' are refused, as by the plugin
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = None
        if f is not None and not f.is_integer():
            from .rules import rule_error
            raise rule_error("parameter-range", detail=f"parameter {name} must be an integer, got {f:g}{where}")
    try:
        return _CASTS[kind](float(value) if kind == "int" and isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"parameter {name}{where} must be {kind}, got {value!r}") from None


# keys of a whole soxspipe settings file that soxs_mflat reads: its own block and the shared background
# settings, which hold these parameters (soxspipe 0.17.4's soxs_/xsh_default_settings.yaml)
SOXSPIPE_BLOCK, SOXSPIPE_SHARED = "soxs-mflat", "background-subtraction"
SHARED_PARAMS = ("bspline_deg", "gaussian_blur_sigma")
QC_KEY = "qc_acceptable_ranges"   # soxspipe's qc-acceptable-ranges block, as the keys are normalised


def _load(path: Path) -> dict:
    """The file's YAML mapping; any file that is not one (unreadable, not UTF-8 text, not YAML, nested
    too deep) is an input error naming it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read settings: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read settings: not a UTF-8 text (YAML) file (byte {exc.start} is "
                         f"{exc.object[exc.start:exc.start + 1]!r}; a binary file?)") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: cannot read settings: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: cannot read settings: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: settings must be a mapping of parameter names to values")
    return data


def _is_soxspipe_file(data: dict) -> bool:
    """A whole soxspipe settings file (or part of one): it has soxspipe's soxs-mflat or shared
    background-subtraction block; otherwise the file is a bare mapping of soxs-mflat's parameters."""
    return SOXSPIPE_BLOCK in data or SOXSPIPE_SHARED in data


def _soxs_mflat_values(data: dict, path: Path) -> dict:
    """A whole soxspipe settings file's ``soxs-mflat`` block over its ``background-subtraction`` block
    (either may be absent); a bare mapping as it is."""
    if not _is_soxspipe_file(data):
        return data
    shared = data.get(SOXSPIPE_SHARED) or {}
    if not isinstance(shared, dict):
        raise InputError(f"{path}: {SOXSPIPE_SHARED} must be a mapping of parameter names to values")
    for k in shared:
        if str(k).replace("-", "_") not in SHARED_PARAMS:
            raise InputError(f"{path}: unknown setting {k!r} in its {SOXSPIPE_SHARED} block (soxspipe's block "
                             f"holds {', '.join(n.replace('_', '-') for n in SHARED_PARAMS)})")
    block = data.get(SOXSPIPE_BLOCK) or {}
    if not isinstance(block, dict):
        raise InputError(f"{path}: {SOXSPIPE_BLOCK} must be a mapping of parameter names to values")
    return {**{str(k).replace("-", "_"): v for k, v in shared.items()}, **block}


def _misplaced(data: dict, path: Path) -> None:
    """In a soxspipe settings file, soxs-mflat's own names belong in its ``soxs-mflat:`` block: at the
    top level (where soxspipe would not read them either) they are refused, not ignored."""
    for k in data:
        key = str(k).replace("-", "_")
        if key in definitions() or key in ARMS or key == QC_KEY:
            raise InputError(f"{path}: {k!r} is at the top level of a soxspipe settings file (one with a "
                             f"{SOXSPIPE_BLOCK}: or {SOXSPIPE_SHARED}: block); put it in its {SOXSPIPE_BLOCK}: block")


def _arm_block(data: dict, arm: str, path: Path, warn: bool = True) -> dict[str, Any]:
    """The values for one arm: a soxspipe settings file's ``soxs-mflat:`` and ``background-subtraction``
    blocks (other recipes' keys ignored with one warning) or a bare mapping; top-level values first,
    then the arm's sub-block."""
    if _is_soxspipe_file(data):
        _misplaced(data, path)
        other = [str(k) for k in data if k not in (SOXSPIPE_BLOCK, SOXSPIPE_SHARED)]
        if other and warn:
            log.warning("%s: ignoring %d settings that are not soxs-mflat's (%s)", path, len(other),
                        ", ".join(other[:6]) + (", ..." if len(other) > 6 else ""))
    data = _soxs_mflat_values(data, path)
    top, arms = _split_arms(data, path)
    own = arms.get(arm.lower(), {})
    out = {**top, **own}
    if isinstance(top.get(QC_KEY), dict) and isinstance(own.get(QC_KEY), dict):
        out[QC_KEY] = {**top[QC_KEY], **own[QC_KEY]}   # per QC: the arm's range wins, the others stay
    return out


def _split_arms(data: dict, path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Top-level values and each arm's sub-block, names with '-' as '_' (the first of two spellings kept)."""
    top: dict[str, Any] = {}
    arms: dict[str, dict[str, Any]] = {}
    for key, val in data.items():
        key = str(key).replace("-", "_")
        if key in ARMS:
            if not isinstance(val or {}, dict):
                raise InputError(f"{path}: {key} must be a mapping of parameter names to values")
            arms[key] = {}
            for k, v in (val or {}).items():
                arms[key].setdefault(str(k).replace("-", "_"), v)
            continue
        top.setdefault(key, val)
    return top, arms


def _check_every_arm(data: dict, path: Path) -> None:
    """Every value of the file checked, also those of the arms not being reduced: a misspelt name in the
    NIR block would otherwise surface only when a NIR set is (in a night's batch)."""
    top, arms = _split_arms(data, path)
    for where, block in (("", top), *((f" ({a} block)", b) for a, b in arms.items())):
        for k, v in block.items():
            if k == QC_KEY:
                _ranges(v, f"{path}{where}")
            else:
                cast(k, v, f"{path}{where}")


def _from_file(path: Path, instrument: str, arm: str) -> dict[str, Any]:
    data = _load(path)
    out = _arm_block(data, arm, path)
    _check_every_arm(_soxs_mflat_values(data, path), path)
    out.pop(QC_KEY, None)   # read by qc_ranges
    return {k: cast(k, v, str(path)) for k, v in out.items()}


def check_file(settings_file: str | Path) -> None:
    """Every value of a settings file checked as a run of each instrument and arm would check it (names,
    types, declared ranges, QC ranges, every arm's block): batch calls it once, before any set is organised
    or reduced, so that a bad file is one input error and not a failure of every set. The warning about
    other recipes' settings is logged once."""
    from .contract import section
    path = Path(settings_file)
    data = _load(path)
    _check_every_arm(_soxs_mflat_values(data, path), path)
    warn = True
    for instrument, arms in section("inputs")["arms"].items():
        for arm in arms:
            values = _arm_block(data, arm, path, warn=warn)
            warn = False
            _ranges(values.pop(QC_KEY, None) or {}, str(path))
            p = {name: default(name, instrument.lower(), arm.lower()) for name in definitions()}
            p.update({k: cast(k, v, str(path)) for k, v in values.items()})
            _check(p, dict.fromkeys(values, f"{path}, {instrument} {arm}"))


def resolve(instrument: str, arm: str, settings_file: str | Path | None = None,
            overrides: Mapping[str, Any] | Iterable[str] | None = None,
            origins_out: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults for the instrument and arm, then the settings file, then overrides (later wins).
    ``origins_out`` receives, for each parameter not at its default, where it was set (for messages)."""
    p = {name: default(name, instrument, arm) for name in definitions()}
    origins: dict[str, str] = {}
    if settings_file:
        values = _from_file(Path(settings_file), instrument, arm)
        p.update(values)
        origins = dict.fromkeys(values, str(settings_file))
    if isinstance(overrides, str):   # one "NAME=VALUE" (it was read character by character)
        overrides = [overrides]
    if overrides:
        # named as given: the API's params={...} mapping, or the command line's --param NAME=VALUE strings
        given = "params" if isinstance(overrides, Mapping) else "--param"
        items = overrides.items() if isinstance(overrides, Mapping) else (_split(o) for o in overrides)
        for k, v in items:
            k = k.replace("-", "_")
            p[k] = cast(k, v, given)
            origins.pop(k, None)
    _check(p, origins)
    if origins_out is not None:   # the settings file's only: a --param value is named as the plugin names
        origins_out.update({k: f"settings file {v}" for k, v in origins.items()})   # its own (not at all)
    return p


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise InputError(f"--param expects NAME=VALUE, got {item!r}")
    k, v = item.split("=", 1)
    return k.strip(), v.strip()


def range_error(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` against the range ``data/parameters.yaml`` declares for ``name``
    (the plugin has the same rule and text, generated from the same file), or None."""
    d = definitions()[name]
    if d["type"] == "bool":
        return None
    v = float(value)
    for key, ok, sign in (("min", lambda lim: v >= lim, ">="), ("above", lambda lim: v > lim, ">"),
                          ("max", lambda lim: v <= lim, "<=")):
        if key in d and not ok(d[key]):
            return f"parameter {name} must be {sign} {d[key]:g}, got {v:g}"
    if d.get("odd") and v % 2 != 1:
        return f"parameter {name} must be odd, got {v:g}"
    return None


def _check(p: dict[str, Any], origins: Mapping[str, str] | None = None) -> None:
    """Declared ranges (rule parameter-range), then the relations between parameters that the core
    checks (rule parameter-limit); all before any frame is read. ``origins``: the settings file of each
    value that came from one, named in the message (the plugin's text, which has no file, otherwise)."""
    from .rules import rule_error
    origins = origins or {}

    def where(*names: str) -> str:
        files = sorted({origins[n] for n in names if n in origins})
        return f" ({'; '.join(files)})" if files else ""
    for name in definitions():
        msg = range_error(name, p[name])
        if msg:
            raise rule_error("parameter-range", detail=msg + where(name))
    lo, hi = "min_percentage_threshold_for_edge_detection", "max_percentage_threshold_for_edge_detection"
    if p[lo] > p[hi]:
        raise rule_error("parameter-limit", detail=f"parameter {lo} = {p[lo]:g} must not exceed {hi} = {p[hi]:g}"
                         + where(lo, hi))


def check_limits(p: Mapping[str, Any], n_orders: int, table: str = "",
                 origins: Mapping[str, str] | None = None) -> None:
    """The core's limits that need the order table or tie parameters together (rule parameter-limit;
    the plugin calls the same core function): ``order_deg`` below the number of orders, ...
    Called once the order table is read, before any frame is."""
    from . import core
    from .rules import rule_error
    try:
        core.check_params(p, n_orders)
    except InputError as exc:
        text = str(exc)
        where = [f"{k} from the {o}" for k, o in (origins or {}).items() if f"{k} = " in text]   # set where
        raise rule_error("parameter-limit", detail=f"{exc}{f' (order table {table})' if table else ''}"
                         f"{'; ' + ', '.join(where) if where else ''}") from None


def example_yaml(instrument: str | None = None, arm: str | None = None) -> str:
    """A user settings file with every parameter: per-arm defaults described (data/settings.yaml), or, for
    one instrument and arm, its default values and QC ranges."""
    one = instrument is not None and arm is not None
    lines = ["# soxs-mflat settings: copy, edit and pass with `soxs-mflat run SOF -s FILE`.",
             "# Top-level values apply to every arm; an `uvb:`/`vis:`/`nir:` block overrides per arm.",
             f"# Defaults of {instrument.upper()} {arm.upper()}, in its `{arm.lower()}:` block (they apply to that arm "
             "only), generated from data/parameters.yaml and data/contract/qc.yaml." if one else
             "# Generated from data/parameters.yaml; defaults differ per instrument and arm: `soxs-mflat params "
             "--yaml --instrument I --arm A` writes one arm's values and QC ranges (see docs/recipe.md).",
             "soxs-mflat:"]
    pad = "    " if one else "  "
    if one:
        lines.append(f"  {arm.lower()}:")
    for name, d in definitions().items():
        val = default(name, instrument, arm) if one else d["default"]
        shown = val if not isinstance(val, dict) else "instrument/arm dependent, see docs/recipe.md"
        lines.append(f"{pad}# {d['description']}")
        lines.append(f"{pad}# {name}: {str(shown).lower() if isinstance(shown, bool) else shown}")
    if one:
        from .qc import default_ranges
        lines += [f"{pad}# acceptable QC ranges [low, high], inclusive (soxspipe's block, accepted as is):",
                  f"{pad}# qc-acceptable-ranges:"]
        lines += [f"{pad}#   {n.lower().replace(' ', '-')}: [{lo:g}, {hi:g}]"
                  for n, (lo, hi) in default_ranges(instrument, arm).items()]
    return "\n".join(lines) + "\n"


def range_text(d: Mapping[str, Any]) -> str:
    """The declared range as the docs show it: ">= 1, <= 10, odd"."""
    parts = [f"{sign} {d[k]:g}" for k, sign in (("min", ">="), ("above", ">"), ("max", "<=")) if k in d]
    return ", ".join(parts + (["odd"] if d.get("odd") else [])) or "-"


def markdown_table() -> str:
    """The parameter table of docs/recipe.md (generated; a test keeps the doc in sync)."""
    cols = [("soxs", "vis"), ("soxs", "nir"), ("xshooter", "uvb"), ("xshooter", "vis"), ("xshooter", "nir")]
    head = "| parameter | type | range | SOXS VIS | SOXS NIR | XSH UVB | XSH VIS | XSH NIR | description |"
    lines = [head, "|" + "---|" * 9]
    for name, d in definitions().items():
        vals = " | ".join(str(default(name, i, a)).lower() if d["type"] == "bool" else str(default(name, i, a))
                          for i, a in cols)
        desc = d["description"] + (f" (differs from soxspipe: {d['reason']})" if "reason" in d else "")
        lines.append(f"| `{name}` | {d['type']} | {range_text(d)} | {vals} | {desc} |")
    return "\n".join(lines) + "\n"
