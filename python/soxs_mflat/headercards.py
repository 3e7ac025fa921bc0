"""Header cards read from a file's bytes before astropy or CFITSIO parses them, with the checks both front
ends make (the plugin's soxs_mflat_verify.cpp: parse_card, read_header_at): every value a FITS value, every
keyword one that CPL can write into a product and none given twice with different values."""
from __future__ import annotations

import math
import re
import sys
from decimal import Decimal

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[EeDd][+-]?\d+)?")


def valued_cards(raw: bytes):
    """(key, value field, HIERARCH?) of each card with a value indicator, as the plugin's parse_card splits
    it: "KEY     = ..." or "HIERARCH KEY KEY = ..." (the key stripped; "" when a HIERARCH card has no "=")."""
    text = raw.decode("latin-1")   # byte for byte, as the plugin compares them
    for at in range(0, len(text), 80):
        c = text[at:at + 80]
        if c == _END_CARD:   # what follows END is no card (the plugin's walk stops there too)
            return
        if c.startswith("HIERARCH "):
            eq = c.find("=", 9)
            yield (c[9:eq].strip(" "), c[eq + 1:], True) if eq > 0 else ("", "", True)
        elif c[8:10] == "= ":
            yield c[:8].strip(" "), c[10:], False


def non_ascii(raw: bytes) -> tuple[int, str, int] | None:
    """(card number from 1, its keyword, the byte) of the first card before END holding a byte that is not
    printable ASCII (FITS 4.0, section 4.1.1), as the plugin's read_header_at finds it; None when there is
    none. astropy read such a byte as '?' and CFITSIO dropped it: the front ends' products differed."""
    for at in range(0, len(raw), 80):
        c = raw[at:at + 80]
        if c == _END_CARD.encode():
            return None
        byte = next((x for x in c if not 32 <= x <= 126), None)
        if byte is not None:
            text = c.decode("latin-1")
            eq = text.find("=", 9)
            key = text[9:eq] if text.startswith("HIERARCH ") and eq > 0 else text[:8]
            return at // 80 + 1, "".join(ch if 32 <= ord(ch) <= 126 else "?" for ch in key.strip(" ")), byte
    return None


def invalid_card(raw: bytes) -> tuple[str, str] | None:
    """(key, value text) of the first card whose value is no FITS value (FITS 4.0, section 4.2: a quoted
    string, T or F, an integer, a real, a complex, or empty), e.g. an unquoted NaN; None when all are."""
    for key, v, _ in valued_cards(raw):
        v = v.strip(" ")
        if not key or not v or key in ("COMMENT", "HISTORY", "CONTINUE") or v[0] == "(":   # as the plugin
            continue
        if v[0] == "'":
            if not closed(v):
                return key, v
            continue
        v = v.split("/", 1)[0].rstrip(" ")
        if v and v not in ("T", "F") and not _NUMBER.fullmatch(v):
            return key, v
    return None


def closed(v: str) -> bool:
    """A string value has its closing quote ('' is a quote inside it)."""
    i = 1
    while i < len(v):
        if v[i] == "'":
            if v[i + 1:i + 2] == "'":
                i += 2
                continue
            return True
        i += 1
    return False


def out_of_range(raw: bytes) -> tuple[str, str] | None:
    """(key, value text) of the first real value that a double cannot hold (beyond 1.8e308, or a non-zero
    value below 2.2e-308 before rounding: subnormal, 0 or DBL_MIN): CFITSIO, and so the plugin, cannot read
    such a header, while astropy took it for inf, 0 or a subnormal; None when there is none."""
    for key, v, _ in valued_cards(raw):
        v = v.split("/", 1)[0].strip(" ") if "'" not in v.split("/", 1)[0] else ""
        if not key or key in ("COMMENT", "HISTORY", "CONTINUE") or not _NUMBER.fullmatch(v) or _INT.fullmatch(v):
            continue
        exact = Decimal(v.translate(_D_TO_E))   # below the smallest normal double before rounding, as strtod's
        if math.isinf(float(exact)) or (exact != 0 and abs(exact) < _DBL_MIN):   # ERANGE (CFITSIO) tells
            return key, v
    return None


_INT = re.compile(r"[+-]?\d+")
_DBL_MIN = Decimal(sys.float_info.min)   # exactly 2.2250738585072013830902...e-308
_D_TO_E = str.maketrans("Dd", "Ee")
_END_CARD = "END" + " " * 77
_KEY = re.compile(r"[A-Za-z0-9_-]+")             # FITS 4.0, section 4.1.2.1 (lower case: CPL upper-cases it)
_HIERARCH_KEY = re.compile(r"[A-Za-z0-9_ -]+")   # ESO's HIERARCH convention: such words, blanks between


def keyword_problem(raw: bytes) -> str | None:
    """Why a header's keywords cannot be trusted, or None: a keyword with a character other than A-Z, a-z,
    0-9, '-', '_' (and blanks after HIERARCH), which CPL refuses to write into a product (the plugin
    failed after all the processing), or a keyword given twice with different values (the recipe used the
    first and the products said the last)."""
    seen: dict[str, str] = {}
    for key, v, hierarch in valued_cards(raw):
        if not key or key in ("COMMENT", "HISTORY", "CONTINUE"):
            continue
        allowed = _HIERARCH_KEY if hierarch else _KEY
        if not allowed.fullmatch(key):
            ch = next(ch for ch in key if not allowed.fullmatch(ch))
            return (f"the keyword '{key}' has a character that FITS keywords may not have ('{ch}'; only "
                    "letters, digits, '-', '_' and, after HIERARCH, blanks)")
        value, k = value_text(v), key.upper()
        if k in seen and not same_value(seen[k], value):
            return (f"the keyword {key} is given twice with different values ({seen[k]} and {value}): the "
                    "recipe cannot tell which one holds")
        seen.setdefault(k, value)
    return None


def same_value(a: str, b: str) -> bool:
    """Two values of one keyword the same: as written, or as numbers (1.0, 1.00 and 1.0D0 are one value)."""
    if a == b:
        return True
    if not (_NUMBER.fullmatch(a) and _NUMBER.fullmatch(b)):
        return False
    return float(a.replace("D", "E").replace("d", "e")) == float(b.replace("D", "E").replace("d", "e"))


def value_text(v: str) -> str:
    """A card's value as written, for comparing: a string up to its closing quote without its trailing
    blanks ('a  ' is 'a'), anything else up to its comment."""
    v = v.strip(" ")   # blanks only: the plugin trims no tab
    if v.startswith("'"):
        i = 1
        while i < len(v) and not (v[i] == "'" and v[i + 1:i + 2] != "'"):
            i += 2 if v[i] == "'" else 1
        return "'" + v[1:i].rstrip(" ") + "'"
    return v.split("/", 1)[0].rstrip(" ")
