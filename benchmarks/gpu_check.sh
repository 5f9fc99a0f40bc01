#!/usr/bin/env bash
# The GPU check (issue 17): install, the CUDA test subset, then the GPU timings, in one call of at
# most 8 minutes; each part under its own time limit, so one slow part cannot eat the rest.
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine; results under $OUT (./gpu-check-out)
#   bash benchmarks/gpu_check.sh --dry-run  # the same steps on the CPU with tiny settings (CI)
#
# Every part writes OUT/NAME.log; the timings write JSON beside it; OUT/summary.json holds each
# part's exit code and seconds, and OUT/gpu-check.md the table of figures against the targets
# (benchmarks/gpu_summary.py). Exits non-zero when any part failed, after running all of them.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-./gpu-check-out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, installed or not
export PYTHONUNBUFFERED=1
BUDGET=${GPU_CHECK_SECONDS:-480}  # the whole check, install included
START=$(date +%s)
PARTS=()

# part NAME LIMIT_SECONDS COMMAND...: run it under `timeout`, capped by what is left of BUDGET
part() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  [ "$left" -lt 0 ] && left=0
  [ "$left" -lt "$limit" ] && limit=$left
  local t0 rc
  t0=$(date +%s.%N)
  if [ "$limit" -lt 5 ]; then
    echo "no time left for $name" >"$OUT/$name.log"
    rc=124
  else
    echo "== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
    # bash -c: a part may be one of the functions below (exported), not only a program
    timeout --kill-after=10 "$limit" bash -c '"$@"' part "$@" >>"$OUT/$name.log" 2>&1
    rc=$?
  fi
  local seconds
  seconds=$(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" \
    "$t0" "$(date +%s.%N)")
  echo "   $name: rc $rc, ${seconds}s" | tee -a "$OUT/$name.log"
  PARTS+=("$name $rc $seconds $limit")
}

# timed NAME COMMAND...: the command's wall-clock seconds into OUT/NAME.json
timed() {
  local name=$1
  shift
  python3 - "$OUT/$name.json" "$@" <<'PY'
import json, subprocess, sys, time
path, cmd = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
rc = subprocess.run(cmd).returncode
result = {"command": " ".join(cmd), "seconds": round(time.perf_counter() - started, 2), "rc": rc}
open(path, "w").write(json.dumps(result, indent=2) + "\n")
print(json.dumps(result))
sys.exit(rc)
PY
}

# bench_each DEVICE ARGS...: `aezoo bench` one model at a time into one results folder (the runs
# merge there), each model with its own limit, so one slow model leaves the others their time
bench_each() {
  local device=$1 per_model=$2 models=$3
  shift 3
  local failed=0
  [ -n "$models" ] || { echo "no models to bench: does aezoo import?"; return 1; }
  for model in ${models//,/ }; do
    echo "-- $model"
    timeout --kill-after=10 "$per_model" python3 -m aezoo bench --models "$model" \
      --device "$device" --out "$OUT/bench" --no-scaling --quiet "$@" || failed=1
  done
  return $failed
}

export OUT
export -f timed bench_each
ALL_MODELS=$(python3 -c "from aezoo.models import MODELS; print(','.join(MODELS))" 2>/dev/null)
if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # CI's cores are shared
  echo "dry run: the steps on the CPU with tiny settings, results under $OUT"
  part install 5 echo "dry run: no pip install"
  part tests 120 python3 -m pytest tests/test_cuda.py -m device --device cpu -q -rs \
    -p no:cacheprovider
  part dense-vae-30 60 timed dense-vae-30 python3 -m aezoo train dense-vae --epochs 1 \
    --train-subset 1000 --test-subset 200 --device cpu --quiet --out "$OUT/runs/dense-vae-30"
  part vqvae-speed 60 python3 benchmarks/vqvae.py --cases speed-128x32 --device cpu \
    --epochs 1 --train-subset 1000 --test-subset 200 --no-classifier --results "$OUT/vqvae"
  part bench 120 bench_each cpu 60 dense-ae,conv-vqvae --quick --no-quality --train-images 1000
  part zoo 120 timed zoo python3 -m aezoo zoo --models dense-ae,conv-vqvae --epochs 1 \
    --train-subset 500 --test-subset 200 --device cpu --quiet --out "$OUT/runs/zoo"
else
  DEVICE=cuda
  # The README's install; it keeps the torch that is there. Offline it fails fast (no retries),
  # and the tests and timings still run from this checkout (PYTHONPATH) with what is installed.
  part install 60 pip install -q --retries 0 --timeout 10 -e ".[dev]"
  python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" \
    >"$OUT/device.txt" 2>&1
  part tests 150 python3 -m pytest -m device --device cuda -q -rs -p no:cacheprovider \
    --junitxml="$OUT/tests.xml"
  part dense-vae-30 45 timed dense-vae-30 python3 -m aezoo train dense-vae --epochs 30 \
    --device cuda --quiet --out "$OUT/runs/dense-vae-30"
  part vqvae-speed 45 python3 benchmarks/vqvae.py --cases speed-128x32 --device cuda \
    --no-classifier --results "$OUT/vqvae"
  # every model beside the tutorial pipeline: 10,000 images, one timed epoch after a warm-up
  part bench 150 bench_each cuda 25 "$ALL_MODELS" --train-images 10000 --repeats 1 \
    --quality-epochs 5
  # last, as the longest: it gets at least what the parts before left
  part zoo 190 timed zoo python3 -m aezoo zoo --device cuda --quiet --out "$OUT/runs/zoo"
fi

python3 - "$OUT" "$DEVICE" "$DRY" "$BUDGET" "${PARTS[@]}" <<'PY'
import json, sys
out, device, dry, budget, *parts = sys.argv[1:]
rows = []
for line in parts:
    name, rc, seconds, limit = line.split()
    rows.append({"part": name, "rc": int(rc), "seconds": float(seconds), "limit_s": int(limit)})
summary = {"device": device, "dry_run": dry == "1", "budget_s": int(budget), "parts": rows,
           "total_seconds": round(sum(r["seconds"] for r in rows), 1)}
open(f"{out}/summary.json", "w").write(json.dumps(summary, indent=2) + "\n")
PY
python3 benchmarks/gpu_summary.py "$OUT" | tee "$OUT/gpu-check.md"
echo "results: $OUT"
python3 -c "import json, sys; sys.exit(any(p['rc'] for p in json.load(open(sys.argv[1]))['parts']))" \
  "$OUT/summary.json"
