#!/usr/bin/env bash
# Time the lab's training (benchmarks/gpu_lab.py) with Keras 3 on JAX, on a GPU machine that
# has Python, NumPy and JAX but no Keras and no network.
#
#   bash benchmarks/gpu-kit/run.sh          (from the repository root, or from anywhere)
#
# Installs the wheels in wheels/ (Keras and what it needs) into a temporary folder with
# `pip --no-index --no-deps --target`, puts it on PYTHONPATH with KERAS_BACKEND=jax, then runs
# the lab for float32 and bfloat16 (20 epochs each), and extra runs while the budget lasts.
# Writes under $OUT (default ./out): lab-<precision>[-<tag>].json per run, <run>.log,
# environment.json, nvidia-smi.txt, summary.json (and partial-lab-*.json: the epochs of a run
# stopped by its timeout).
#
# Environment: OUT, PYTHON (the interpreter that has JAX), BUDGET_S (seconds for all runs,
# default 300), EXTRAS=0 to skip the extra runs; for a check off the GPU machine,
# REQUIRE_GPU=0 and LAB_ARGS="--epochs 1 --limit 2000" (added to every run).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUDGET_S="${BUDGET_S:-300}"
START=$SECONDS

say() { printf '[run.sh %4ds] %s\n' "$((SECONDS - START))" "$*" | tee -a "$OUT/run.log"; }

# --- the interpreter: $PYTHON, else the first of python3, python that imports jax ---
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import jax" >/dev/null 2>&1; then
      PY="$candidate"
      break
    fi
  done
fi
if [ -z "$PY" ]; then
  say "error: no python3/python that imports jax (set PYTHON=...)"
  exit 2
fi
say "python: $(command -v "$PY") ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# --- install the kit's wheels into a temporary folder ---
SITE="$(mktemp -d "${TMPDIR:-/tmp}/gpu-kit-site.XXXXXX")"
trap 'rm -rf "$SITE"' EXIT
PACKAGES="keras absl-py namex optree h5py rich markdown-it-py mdurl pygments"
# What JAX (or torch) already brought stays theirs: a copy on PYTHONPATH would shadow it.
for pair in ml_dtypes:ml-dtypes packaging:packaging typing_extensions:typing-extensions; do
  if "$PY" -c "import ${pair%%:*}" >/dev/null 2>&1; then
    say "kept the machine's ${pair#*:}: $("$PY" -c "import importlib.metadata as m; print(m.version('${pair#*:}'))" 2>/dev/null || echo '?')"
  else
    PACKAGES="$PACKAGES ${pair#*:}"
  fi
done
say "installing into $SITE: $PACKAGES"
if "$PY" -m pip --version >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$PY" -m pip install --no-index --no-deps --find-links "$HERE/wheels" --target "$SITE" \
    --disable-pip-version-check --no-warn-script-location --quiet $PACKAGES 2>&1 | tee -a "$OUT/run.log"
  status=${PIPESTATUS[0]}
else
  say "no pip: unpacking the wheels instead"
  # shellcheck disable=SC2086
  "$PY" - "$HERE/wheels" "$SITE" $PACKAGES <<'EOF' 2>&1 | tee -a "$OUT/run.log"
import re, sys, zipfile
from pathlib import Path
wheels, site, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
for name in names:
    key = re.sub(r"[-_.]+", "_", name).lower()
    found = [w for w in wheels.glob("*.whl") if w.name.split("-")[0].lower() == key]
    if not found:
        sys.exit(f"no wheel for {name} in {wheels}")
    with zipfile.ZipFile(found[0]) as wheel:
        wheel.extractall(site)
    print("unpacked", found[0].name)
EOF
  status=${PIPESTATUS[0]}
fi
if [ "$status" -ne 0 ]; then
  say "error: installing the wheels failed (exit $status)"
  exit 2
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax

# --- what the machine is ---
if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
"$PY" - "$OUT/environment.json" <<'EOF' 2>&1 | tee -a "$OUT/run.log"
import json, os, platform, sys
import jax, keras, numpy
info = {
    "python": sys.version, "executable": sys.executable, "platform": platform.platform(),
    "numpy": numpy.__version__, "jax": jax.__version__, "keras": keras.__version__,
    "keras_file": keras.__file__, "keras_backend": keras.config.backend(),
    "jax_default_backend": jax.default_backend(),
    "jax_devices": [repr(d) for d in jax.devices()],
    "device_kinds": [getattr(d, "device_kind", "?") for d in jax.devices()],
    "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA", "JAX", "CUDA", "KERAS"))},
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(json.dumps({k: info[k] for k in ("jax", "keras", "jax_default_backend", "jax_devices")}))
EOF

# --- the runs ---
cd "$HERE" || exit 2
GPU_FLAG="--require-gpu"
[ "${REQUIRE_GPU:-1}" = 0 ] && GPU_FLAG=""
HAS_TIMEOUT=0
command -v timeout >/dev/null 2>&1 && HAS_TIMEOUT=1

run_one() {  # run_one NAME SECONDS ARGS...: one gpu_lab.py run, its log in $OUT/NAME.log
  local name="$1" limit="$2"
  shift 2
  say "run $name (at most ${limit}s): gpu_lab.py $*"
  local t0=$SECONDS
  # shellcheck disable=SC2086
  if [ "$HAS_TIMEOUT" = 1 ]; then
    timeout --kill-after=10 "$limit" "$PY" ../gpu_lab.py --data data --out "$OUT" $GPU_FLAG ${LAB_ARGS:-} "$@" \
      > "$OUT/$name.log" 2>&1
  else
    "$PY" ../gpu_lab.py --data data --out "$OUT" $GPU_FLAG ${LAB_ARGS:-} "$@" > "$OUT/$name.log" 2>&1
  fi
  local rc=$?
  LAST_SECONDS=$((SECONDS - t0))
  grep -vE '^(WARNING|I0000|W0000)' "$OUT/$name.log" | tail -n 6
  [ -f "$OUT/partial-lab-$name.json" ] && say "run $name stopped early: epochs so far in partial-lab-$name.json"
  say "run $name: exit $rc after ${LAST_SECONDS}s"
  return $rc
}

remaining() { echo $((BUDGET_S - (SECONDS - START))); }

run_one float32 150 --precision float32
FP32_SECONDS=$LAST_SECONDS
left=$(remaining)
run_one bfloat16 $((left > 150 ? 150 : (left < 90 ? 90 : left))) --precision bfloat16

# Extras, each only while the budget still holds a run as long as the float32 one:
#  per-batch-noise: training batches from the uint8 images with fresh noise per batch
#  fp32-highest: float32 without TF32 (jax_default_matmul_precision=highest)
#  spe16: 16 batches per device call, how much of an epoch is Python and dispatch
if [ "${EXTRAS:-1}" != 0 ]; then
  for extra in "float32 per-batch-noise --noise-draw per-batch" \
               "float32 fp32-highest --matmul-precision highest" \
               "float32 spe16 --steps-per-execution 16" \
               "bfloat16 spe16 --steps-per-execution 16"; do
    read -r precision tag args <<< "$extra"
    left=$(remaining)
    if [ "$left" -lt $((FP32_SECONDS + 20)) ]; then
      say "skipped $precision-$tag: ${left}s left of the ${BUDGET_S}s budget"
      continue
    fi
    # shellcheck disable=SC2086
    run_one "$precision-$tag" "$left" --precision "$precision" --tag "$tag" $args
  done
fi

# --- summary ---
"$PY" - "$OUT" <<'EOF' 2>&1 | tee -a "$OUT/run.log"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for path in sorted(out.glob("lab-*.json")):
    d = json.loads(path.read_text())
    rows.append({k: d.get(k) for k in (
        "precision", "device", "fit_seconds", "first_epoch_seconds",
        "mean_epoch_seconds_after_first", "test_mse_mean", "test_mse_median", "final_val_loss")}
        | {"file": path.name, "settings": d.get("settings")})
(out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
print(f"{'file':32} {'fit s':>8} {'1st ep s':>9} {'later ep s':>10} {'MSE mean':>9} {'MSE med':>9} {'val_loss':>9}")
for r in rows:
    print(f"{r['file']:32} {r['fit_seconds']:8.2f} {r['first_epoch_seconds']:9.2f} "
          f"{(r['mean_epoch_seconds_after_first'] or 0):10.3f} {r['test_mse_mean']:9.5f} "
          f"{r['test_mse_median']:9.5f} {r['final_val_loss']:9.5f}")
print("device:", rows[0]["device"] if rows else None)
EOF
say "done in $((SECONDS - START))s; results in $OUT"
[ -f "$OUT/lab-float32.json" ] && [ -f "$OUT/lab-bfloat16.json" ]
