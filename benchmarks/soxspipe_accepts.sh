#!/usr/bin/env bash
# Check that soxspipe 0.17.4 (PyPI, own venv, plus `six`) accepts a simulated SOXS VIS set and that
# its mflat recipe completes on it. Usage: bash benchmarks/soxspipe_accepts.sh [WORKDIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/soxspipe-accept}"
venv="${SOXSPIPE_VENV:-$work/soxspipe-venv}"
mkdir -p "$work"
if [ ! -x "$venv/bin/soxspipe" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q soxspipe==0.17.4 six   # fundamentals imports six without declaring it
fi
cd "$work"
rm -rf set reduced qc sessions
"${SOXS_PY:-$root/.venv/bin/python}" -m soxs_mflat.cli simulate --instrument soxs --arm vis --out set --nflats 5
settings="$("$venv/bin/python" -c 'import soxspipe, os; print(os.path.join(os.path.dirname(soxspipe.__file__), "soxs_default_settings.yaml"))')"
sed "s#/Users/Dave/.config/soxspipe/soxspipe.log#$work/soxspipe.log#" "$settings" > soxspipe.yaml
sof="$(ls set/soxspipe/*.sof)"
"$venv/bin/soxspipe" mflat "$sof" -s ./soxspipe.yaml -x | tee soxspipe-run.log
ls reduced/*/soxs-mflat/*.fits
grep -q "MASTER_FLAT_VIS" <("$venv/bin/python" -c "
from astropy.io import fits; import glob
print(fits.getval(sorted(glob.glob('reduced/*/soxs-mflat/*MFLAT*.fits'))[0], 'ESO PRO CATG'))")
echo "soxspipe 0.17.4 completed its mflat recipe on the simulated SOXS VIS set"
