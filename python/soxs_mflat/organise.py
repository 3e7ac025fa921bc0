"""The data organiser: a directory tree of raw frames and calibrations in, master-flat sets out.

Every FITS file is classified by the input contract; raw flats are grouped into sets and each set
gets its calibrations by the rules of ``data/contract/organise.yaml`` (the EDPS workflow reads the
same file). A set without a required calibration is reported with what is missing, never given
one of another setup.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .contract import section
from .frames import RAW_KINDS as RAW_GROUP_KINDS   # every raw kind (lamp-off frames too)
from .frames import Frame, accepted_tags, byte_digests, classify, is_compressed, read_header, same_exposure
from .keywords import detector_value, text
from .qc import night_of
from .rules import VerificationError, rule_error

RAW_KINDS = ("FLAT", "DFLAT", "QFLAT")


def _rules() -> dict:
    return section("organise")


def frame_of(path: Path) -> Frame:
    """Header and kind of one file, by the input contract (raises VerificationError if unreadable)."""
    header, hdu = read_header(path)
    return Frame(path, header, classify(header), None, hdu)


def value(f: Frame, name: str):
    """The value of logical key ``name`` (organise.yaml ``keys``) for frame ``f``; None if absent."""
    if name == "night":
        return night_of(f.get("DATE-OBS"))
    if name == "lamp":
        return f.kind
    spec = _rules()["keys"][name]
    inst, arm = f.instrument or "", f.arm or ""
    if "detector" in spec:
        if inst not in section("inputs")["detector_keys"]:
            return None
        if spec["detector"] == "readout":   # a text value, as verify compares it
            return text(f.header, (section("inputs")["detector_keys"][inst]["readout"] or [""])[0])
        if arm == "NIR":                      # NIR detectors are never binned
            return 1
        v = detector_value(f.header, inst, spec["detector"], str(f.path))
        return 1 if v is None else v
    key = spec["fits"].get("*") or spec["fits"].get(f"{inst} {arm}")
    if key is None:
        return None
    if name == "exptime":
        v = f.get("EXPTIME")
        return None if v is None else round(float(v), _rules()["exptime_decimals"])
    return text(f.header, key)


@dataclass
class FlatSet:
    """One master-flat set: its flats, the calibrations chosen and what is missing."""
    key: dict
    flats: list[Frame]
    calibs: dict[str, list[Frame]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    sof: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def first(self) -> Frame:
        return min(self.flats, key=lambda f: f.mjd)

    @property
    def instrument(self) -> str:
        return self.key["instrument"]

    @property
    def arm(self) -> str:
        return self.key["arm"]

    @property
    def night(self) -> str:
        return self.key["night"]

    @property
    def setup(self) -> str:
        k = self.key
        exps = sorted({str(value(f, "exptime")) for f in self.flats})
        return f"{k['binx']}x{k['biny']} {k['readout']} {k['slit']} {'/'.join(exps)}s"

    @property
    def lamp(self) -> str:
        return _rules()["lamp_label"][self.flats[0].kind]

    @property
    def name(self) -> str:
        """The SOF name (without .sof) as soxspipe's data organiser makes it."""
        r, f = _rules(), self.first
        date = str(f.get("DATE-OBS", "")).split(".")[0].replace("-", "").replace(":", "")
        readout = str(self.key["readout"])
        rospeed = next((v for k, v in r["rospeed"].items() if readout.upper().startswith(k)), readout)
        name = r["sof_name"].format(date=date, arm=self.arm, binx=self.key["binx"], biny=self.key["biny"],
                                    rospeed=rospeed, lamp=self.lamp, slit=self.key["slit"],
                                    exptime=value(f, "exptime"), instrument=self.instrument)
        name = name.upper().replace(".", "_")
        # a header value with '/' or whitespace (a slit name) must not make a folder or a broken file name
        name = "".join("_" if c == "/" or c.isspace() or not c.isprintable() else c for c in name)
        while "__" in name:
            name = name.replace("__", "_")
        return name

    def frames(self) -> list[Frame]:
        return sorted(self.flats, key=lambda f: f.mjd) + [c for cs in self.calibs.values() for c in cs]

    def sof_text(self) -> str:
        lines = []
        for f in self.frames():
            path = sof_path(f.path)
            problem = sof_path_problem(path)
            if problem:    # scan() sets such files aside; never write a line esorex would split
                raise ValueError(f"{path}: {problem}")
            lines.append(f"{path} {accepted_tags(f)[0]}\n")
        return "".join(lines)

    def record(self) -> dict:
        return {"name": self.name, "night": self.night, "instrument": self.instrument, "arm": self.arm,
                "setup": self.setup, "binning": f"{self.key['binx']}x{self.key['biny']}",
                "readout": self.key["readout"], "slit": self.key["slit"], "lamp": self.lamp,
                "n_flats": len(self.flats), "flats": [str(f.path) for f in sorted(self.flats, key=lambda f: f.mjd)],
                "calibrations": {k: [str(c.path) for c in v] for k, v in self.calibs.items()},
                "complete": self.complete, "missing": list(self.missing),
                "sof": None if self.sof is None else str(self.sof)}


# reasons a file is in no set; those of NOTED also have a line of their own in ``Organised.notes``
NOT_FITS, NOT_INPUT = "not FITS", "not a master-flat input"
UNREADABLE, BAD_PATH, DUPLICATE = "unreadable", "path unusable in a SOF", "duplicate"
NOTED = (UNREADABLE, BAD_PATH, DUPLICATE)


@dataclass
class Organised:
    sets: list[FlatSet]
    ignored: dict[str, list[Path]]          # reason -> files
    notes: dict[Path, str] = field(default_factory=dict)   # file -> why it is unusable, naming it (reasons NOTED)

    @property
    def n_ignored(self) -> int:
        """Files that are no input of this recipe (not FITS, another kind): counted only."""
        return sum(len(v) for k, v in self.ignored.items() if k not in NOTED)

    @property
    def n_unusable(self) -> int:
        """Files that would be inputs but cannot be used (reasons NOTED): each listed by ``set_aside``."""
        return sum(len(v) for k, v in self.ignored.items() if k in NOTED)

    def counts(self) -> str:
        """'17 files ignored (17 not FITS); 3 unusable (3 unreadable)': each file counted once."""
        def part(n: int, what: str, noted: bool) -> str:
            why = [f"{len(v)} {k}" for k, v in self.ignored.items() if (k in NOTED) == noted and v]
            return f"{n} {what}" + (f" ({', '.join(why)})" if why else "")
        return part(self.n_ignored, "files ignored", False) + "; " + part(self.n_unusable, "unusable", True)

    def set_aside(self) -> list[str]:
        """One line per unusable file (unreadable, a path no SOF line can hold, a duplicate): the file and why."""
        return list(self.notes.values())


def sof_path(path: Path) -> str:
    """The path as a SOF line gives it: absolute, not resolved (a link is listed as the link, so a file
    under a path with whitespace can be given through a link without)."""
    return os.path.abspath(os.fspath(path))


def sof_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written in a SOF line, or None. esorex's dialect is 'PATH TAG [GROUP]'
    split at whitespace, in UTF-8: a path with whitespace (or with bytes that are not UTF-8) has no
    spelling there."""
    if any(c.isspace() for c in path):
        return ("its path contains whitespace, which a SOF line cannot hold (esorex's 'PATH TAG' format; "
                "rename it, or link it from a path without whitespace)")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "its path is not valid UTF-8, which a SOF line cannot hold (rename it)"
    return None


def scan(root: str | Path, notes: dict[Path, str] | None = None) -> tuple[list[Frame], dict[str, list[Path]]]:
    """Every file under ``root`` (recursively): the frames of a kind the recipe reads, and the rest
    by reason (not FITS, unreadable, a path no SOF can hold, another kind, a duplicate of another
    frame). ``notes``, when given, receives a line naming each unusable file and why (reasons NOTED):
    the input rule's message ("[rule] file: ...") where there is one."""
    suffixes = tuple(section("inputs")["sof"]["suffixes"])
    frames, ignored = [], defaultdict(list)
    notes = {} if notes is None else notes
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.endswith(suffixes):
                ignored[NOT_FITS].append(path)
                continue
            try:
                f = frame_of(path)
                if f.kind not in ("UNKNOWN", "SPECTRAL_FORMAT_TAB"):
                    group_key(f), f.mjd        # bad header values: refused here, not half-way through
            except VerificationError as exc:
                ignored[UNREADABLE].append(path)
                notes[path] = str(exc)
                continue
            if f.kind in ("UNKNOWN", "SPECTRAL_FORMAT_TAB"):
                ignored[NOT_INPUT].append(path)
                continue
            problem = sof_path_problem(sof_path(path))
            if problem:
                ignored[BAD_PATH].append(path)
                notes[path] = f"{path}: {problem}"
                continue
            frames.append(f)
    frames = drop_duplicates(frames, ignored, notes)
    return frames, dict(ignored)


def _preference(f: Frame) -> tuple:
    """Of several copies of one exposure the uncompressed file is kept, then the first path in sorted order."""
    compressed = not f.path.name.endswith(".fits") or f.hdu != 0 or is_compressed(f.path)
    return (compressed, str(f.path))


def _exposure(f: Frame) -> tuple[str, str] | None:
    """(ARCFILE, DATE-OBS) of a raw frame (either may be ""), None for a calibration."""
    if f.kind not in RAW_GROUP_KINDS:
        return None
    return (text(f.header, "ARCFILE") or "").strip(), (text(f.header, "DATE-OBS") or "").strip()


def drop_duplicates(frames: list[Frame], ignored: dict[str, list[Path]], notes: dict[Path, str]) -> list[Frame]:
    """One frame of each file and each exposure, by the input contract's duplicate-input rule: the same
    file (links included), byte-identical files, and two raw frames of the same exposure (the same
    ARCFILE when both have one, else the same DATE-OBS; of one instrument and arm: the arms of one
    instrument expose at once). The others are set aside (reason DUPLICATE), each naming the frame kept."""
    digest = byte_digests(frames)
    kept: list[Frame] = []
    by_real: dict[str, Frame] = {}
    by_md5: dict[str, Frame] = {}
    by_arc: dict[tuple, Frame] = {}
    by_date: dict[tuple, list[Frame]] = defaultdict(list)
    for f in sorted(frames, key=_preference):
        real = os.path.realpath(f.path)
        exp = _exposure(f)
        where = (f.instrument, f.arm)
        other, how = by_real.get(real), "the same file"
        if other is None and id(f) in digest:
            other, how = by_md5.get(digest[id(f)]), "identical bytes"
        if other is None and exp is not None:   # candidates by key; frames.same_exposure decides (and words it)
            arc, date = exp
            for k in ([by_arc[(where, arc)]] if arc and (where, arc) in by_arc else []) + by_date.get((where, date), []):
                how = same_exposure(f, k)
                if how:
                    other = k
                    break
        if other is not None:
            ignored.setdefault(DUPLICATE, []).append(f.path)
            # the rule's own words ("listed twice") are a run's: in a tree nothing was listed
            notes[f.path] = f"[duplicate-input] {f.path}: {how} as {other.path}, which is used instead"
            continue
        kept.append(f)
        by_real[real] = f
        if id(f) in digest:
            by_md5[digest[id(f)]] = f
        if exp is not None:
            if exp[0]:
                by_arc[(where, exp[0])] = f
            if exp[1]:
                by_date[(where, exp[1])].append(f)
    order = {id(f): i for i, f in enumerate(frames)}
    return sorted(kept, key=lambda f: order[id(f)])


def group_key(f: Frame) -> tuple:
    r = _rules()
    together = r["lamps_together"].get(f"{f.instrument} {f.arm}", {})
    names = [k for k in r["group_by"] if k not in together.get("ungrouped", [])]
    return tuple((k, value(f, k)) for k in names)


def group_flats(frames: list[Frame]) -> list[FlatSet]:
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.kind in RAW_KINDS:
            groups[group_key(f)].append(f)
    sets = [FlatSet(dict(k), fl) for k, fl in groups.items()]
    for s in sets:
        s.key.setdefault("exptime", value(s.first, "exptime"))
    return sorted(sets, key=lambda s: (s.night, s.first.mjd))


def _candidates(s: FlatSet, kind: str, pool: dict[str, list[Frame]]) -> list[Frame]:
    spec = _rules()["associate"][kind]
    ref = s.first
    out = []
    for c in pool.get(kind, []):
        if all(value(c, k) == (s.key[k] if k in s.key else value(ref, k)) for k in spec["match"]):
            dt = abs(c.mjd - ref.mjd)
            if spec["max_days"] is None or dt <= spec["max_days"]:
                out.append(c)
    return sorted(out, key=lambda c: abs(c.mjd - ref.mjd))


def _per_lamp(s: FlatSet, found: list[Frame]) -> tuple[list[Frame], list[str]]:
    kinds = sorted({f.kind for f in s.flats})
    if len(kinds) == 1:
        return found[:1], [] if found else ["ORDER_TAB"]
    objects = section("inputs")["order_objects"]
    chosen, missing = [], []
    for k in kinds:
        match = [c for c in found if text(c.header, "OBJECT") == objects[k]]
        (chosen.append(match[0]) if match else missing.append(f"ORDER_TAB ({objects[k]})"))
    return chosen, missing


def associate(s: FlatSet, pool: dict[str, list[Frame]]) -> None:
    """Choose the set's calibrations from ``pool`` (kind -> frames); record what is missing."""
    rules = _rules()["associate"]
    together = _rules()["lamps_together"].get(f"{s.instrument} {s.arm}")
    if together and sorted({f.kind for f in s.flats}) != sorted(together["kinds"]):
        have = {f.kind for f in s.flats}
        s.missing += [f"{k} flats" for k in together["kinds"] if k not in have]
    for kind, spec in rules.items():
        if "arms" in spec and s.arm not in spec["arms"]:
            continue
        alt = spec.get("alternative_to")
        if alt and s.calibs.get(alt):
            continue
        found = _candidates(s, kind, pool)
        if spec.get("per_lamp"):
            found, missing = _per_lamp(s, found)
            s.missing += missing
        elif not spec.get("all"):
            found = found[:1]
        if found:
            s.calibs[kind] = found
        elif spec["required"] and not spec.get("per_lamp") and not any(
                r.get("alternative_to") == kind and "arms" in r and s.arm in r["arms"] for r in rules.values()):
            s.missing.append(kind if not alt else f"{alt} or {kind}")


def organise(root: str | Path, sof_dir: str | Path | None = None) -> Organised:
    """Classify, group and associate everything under ``root``; with ``sof_dir``, write one SOF per
    complete set there (named as soxspipe's organiser names them)."""
    notes: dict[Path, str] = {}
    frames, ignored = scan(root, notes)
    pool: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        pool[f.kind].append(f)
    sets = group_flats(frames)
    for s in sets:
        associate(s, pool)
    if sof_dir is not None:
        write_sofs(sets, Path(sof_dir))
    return Organised(sets, ignored, notes)


def write_sofs(sets: list[FlatSet], sof_dir: Path) -> None:
    sof_dir.mkdir(parents=True, exist_ok=True)
    for s in sets:
        if s.complete:
            sof = sof_dir / f"{s.name}.sof"
            tmp = sof.with_name(f".{sof.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(s.sof_text(), encoding="utf-8")
                os.replace(tmp, sof)   # a SOF appears whole or not at all
            finally:
                if tmp.exists():
                    tmp.unlink()
            s.sof = sof


def _short(c: list[Frame]) -> str:
    return ",".join(f.path.name for f in c)


def format_table(o: Organised) -> str:
    """The sets as a text table, then the ignored-file counts."""
    # columns as wide as their widest cell; the calibrations' file names (unbounded) come last
    width = max([len("missing")] + [len(", ".join(s.missing) or "-") for s in o.sets])
    setup = max([len("setup")] + [len(s.setup) for s in o.sets])
    head = (f"{'night':10s} {'instrument':10s} {'arm':3s} {'setup':{setup}s} {'flats':>5s}  "
            f"{'missing':{width}s}  calibrations")
    lines = [head, "-" * len(head)]
    for s in o.sets:
        cals = "; ".join(f"{k}={_short(v) if k != 'LAMPOFF' else f'{len(v)} frames'}" for k, v in s.calibs.items())
        lines.append(f"{s.night:10s} {s.instrument:10s} {s.arm:3s} {s.setup:{setup}s} {len(s.flats):5d}  "
                     f"{', '.join(s.missing) or '-':{width}s}  {cals}")
    n_ok = sum(s.complete for s in o.sets)
    lines.append(f"\n{len(o.sets)} sets ({n_ok} complete, {len(o.sets) - n_ok} incomplete); {o.counts()}")
    aside = o.set_aside()
    if aside:
        lines.append("unusable files (in no set):")
        lines += [f"  {line}" for line in aside]
    return "\n".join(lines)


def to_json(o: Organised) -> str:
    return json.dumps([s.record() for s in o.sets], indent=1)
