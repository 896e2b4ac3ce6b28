#!/usr/bin/env bash
# The GPU figures in one prepared run: the 50 m Hintereisferner century, the
# scaling benchmark up to the largest grid that fits in its time budget, and a
# 4-job sweep pinned to one GPU (bench/RESULTS.md records them with the GPU's
# name).
#
# Usage, from the repository root:
#   bash bench/gpu_check.sh [full|smoke]
# full (default): needs an NVIDIA GPU that TensorFlow sees.
# smoke: the same steps on tiny grids, on any machine (the CPU test of this
#   script, tests/test_bench_smoke.py).
#
# Environment:
#   IGM_PYTHON  a Python with igm-core installed; when unset, the script makes
#               a virtual environment in /tmp/igm-gpu-venv (system packages
#               visible) and installs this checkout and its dependencies
#               offline from the wheels in WHEELS (tensorflow[and-cuda] and
#               what the machine lacks: pip download them beforehand).
#   WHEELS      folder of wheels (default .whl)
#   OUT         folder for the results (default bench/gpu_out): gpu_check.md
#               (the tables), century.json, scaling.json, scaling.png, the log
#   BUDGET_S    seconds the scaling benchmark may start new grids (default 600)
set -euo pipefail

mode=${1:-full}
case $mode in
  full | smoke) ;;
  *) echo "gpu_check: unknown mode '$mode' (expected full or smoke)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${OUT:-$here/gpu_out}
wheels=${WHEELS:-$root/.whl}
budget=${BUDGET_S:-600}
mkdir -p "$out"
work=$(mktemp -d /tmp/igm-gpu-check.XXXXXX)
log=$out/gpu_check.log
exec > >(tee "$log") 2>&1

python=${IGM_PYTHON:-}
if [ -z "$python" ]; then
  venv=/tmp/igm-gpu-venv
  if ! ls "$wheels"/*.whl > /dev/null 2>&1; then
    echo "gpu_check: no IGM_PYTHON and no wheels in $wheels to install from" >&2
    exit 2
  fi
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --no-index --find-links "$wheels" \
    --no-build-isolation "$root[cuda]"
  python=$venv/bin/python
fi
export PATH=$(dirname "$python"):$PATH

"$python" - "$mode" <<'EOF'
import sys

import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
print(f"tensorflow {tf.__version__}: {len(gpus)} GPU(s) {[g.name for g in gpus]}")
if sys.argv[1] == "full" and not gpus:
    sys.exit("gpu_check: TensorFlow sees no GPU (mode full needs one; mode smoke runs on the CPU)")
EOF
gpu_name=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  2> /dev/null | head -1 || true)

if [ "$mode" = full ]; then
  century=(--ratios 1 2 --years 1900 2000 --save 10)
  sizes=(100 200 400 800 1200 2000 3000)
  years=20
  sweep=(--sweep-ratio 2 --sweep-years 1900 1910)
else
  century=(--ratios 8 --years 1900 1902 --save 1)
  sizes=(40 60)
  years=2
  sweep=(--sweep-ratio 8 --sweep-years 1900 1901)
fi
gpu0=(--ours "core.hardware.visible_gpus=[0]")
[ "$mode" = smoke ] && gpu0=()

echo "== century and 4-job sweeps (basic; joblib, 2 jobs at a time on GPU 0)"
"$python" "$here/compare_igm.py" --models ours "${century[@]}" --no-reference \
  --solve-ratios --workdir "$work/century" --json "$out/century.json" \
  --sweep --sweep-launchers basic joblib "${sweep[@]}" "${gpu0[@]}" | tee "$work/century.txt"

echo "== scaling (budget ${budget} s)"
"$python" "$here/bench_scaling.py" --models ours --sizes "${sizes[@]}" --years "$years" \
  --budget "$budget" --timeout "$budget" --workdir "$work/scaling" \
  --json "$out/scaling.json" | tee "$work/scaling.txt" || true  # the largest may time out

{
  echo "# gpu_check ($mode), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "GPU: ${gpu_name:-none found by nvidia-smi}"
  echo
  echo "## Hintereisferner century and sweeps"
  grep -E '^\|' "$work/century.txt" || true
  echo
  echo "## Scaling"
  grep -E '^\||cells\^' "$work/scaling.txt" || true
} > "$out/gpu_check.md"
"$python" - "$out" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
runs = json.loads((out / "century.json").read_text())["runs"]
rows = json.loads((out / "scaling.json").read_text())["rows"]
ok = [r for r in rows if r["status"] == "ok"]
print(f"gpu_check: {len(runs)} century runs, {len(ok)} of {len(rows)} grids "
      f"(largest {max((r['side'] for r in ok), default=0)}^2) measured; wrote {out}")
bad = [r["label"] for r in runs if r["status"] != "ok"]
if bad or not ok:
    sys.exit(f"gpu_check: failed: {', '.join(bad) or 'no scaling grid ran'}")
EOF
