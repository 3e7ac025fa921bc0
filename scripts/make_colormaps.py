"""Write python/soxs_mflat/data/colormaps.json: the matplotlib colour maps the QC pages use, as 8-bit RGB
tables, so that drawing a page needs no matplotlib import (tests/test_pdfdraw.py checks them against
matplotlib's own). Run after changing MAPS: python scripts/make_colormaps.py"""
import json
from pathlib import Path

import numpy as np
from matplotlib import colormaps

MAPS = ("gray", "viridis", "RdBu_r", "tab20")
OUT = Path(__file__).resolve().parent.parent / "python" / "soxs_mflat" / "data" / "colormaps.json"


def tables() -> dict:
    out = {}
    for name in MAPS:
        cmap = colormaps[name]
        rgb = cmap(np.arange(cmap.N))[:, :3]
        out[name] = np.round(rgb * 255).astype(int).tolist()
    return out


if __name__ == "__main__":
    text = "{\n" + ",\n".join(f'"{k}": {json.dumps(v, separators=(",", ":"))}' for k, v in tables().items()) + "\n}\n"
    OUT.write_text(text)
    print(f"{OUT}: {', '.join(MAPS)}")
