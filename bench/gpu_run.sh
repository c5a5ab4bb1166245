#!/usr/bin/env bash
# The GPU run (issue 30): from the repository on a bare GPU machine, install with the pinned constraints,
# run the tests with a device variant, then the benchmarks, each stage under its own time limit so that
# a slow stage cannot eat the rest. Results go to $OUT (bench/results names with a _cuda tag); a stage
# log and a one-line status per stage to $OUT/gpu_run/. Sized for about 10 minutes on one H100.
#
#   OUT=/tmp/out DATA=../shared/datasets/camvid bench/gpu_run.sh            # on the lent machine
#   DRY_RUN=1 DEVICE=cpu OUT=/tmp/dry bench/gpu_run.sh                      # here: same code path, tiny
#
# DRY_RUN=1 runs every stage at a tiny size on the synthetic set (two images), DEVICE picks the device
# (default cuda), PYTHON an interpreter that already has the package (default: install into .venv).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder for results}
DEVICE=${DEVICE:-cuda}
DRY_RUN=${DRY_RUN:-0}
DATA=${DATA:-../shared/datasets/camvid}
mkdir -p "$OUT/gpu_run"
STATUS="$OUT/gpu_run/stages.txt"
: > "$STATUS"
failed=0

stage() {  # stage NAME LIMIT_S COMMAND...: run it, log it, record rc and seconds; go on whatever happens
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/gpu_run/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - start )) limit=$limit" | tee -a "$STATUS"
    [ "$rc" -eq 0 ] || failed=1
    return "$rc"
}

if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
else
    PY=.venv/bin/python
    stage install 300 bash -c "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test,pretrained]'"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

if [ "$DRY_RUN" = 1 ]; then
    "$PY" -m workbench data generate --out "$OUT/gpu_run/synthetic" --size 32x32 --train 2 --val 2 > /dev/null
    DATA="$OUT/gpu_run/synthetic"
    SIZE=32,32; EPOCHS=1; LIMITS=(--limit-train 2 --limit-val 2); IMAGES=2; ROUNDS=1; STEPS=2
    TEST_FILTER=(-k "partial_ce or simformer"); WEAK_SHOT_SMALL=(--epochs 1 --limit-train 2 --limit-val 2)
    BATCH=2; COMPILE=${DRY_RUN_COMPILE:-0}  # compiling on CPU takes minutes: asked for, not by default
else
    SIZE=360,480; EPOCHS=32; LIMITS=(); IMAGES=256; ROUNDS=3; STEPS=100
    TEST_FILTER=(); WEAK_SHOT_SMALL=(); BATCH=8; COMPILE=1
fi

# every method's training step through the loop on the device: autocast, channels_last, then compile
stage tests 120 env WORKBENCH_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/train/test_device.py "${TEST_FILTER[@]}"
if [ "$COMPILE" = 1 ]; then
    stage tests_compile 120 env WORKBENCH_TEST_DEVICE="$DEVICE" WORKBENCH_TEST_COMPILE=1 \
        "$PY" -m pytest -q -p no:cacheprovider tests/train/test_device.py -k "partial_ce or spml"
fi
# the loop against a bare PyTorch loop, and the loader against what the step consumes
stage loop_speed 60 "$PY" bench/loop_speed.py --data "$DATA" --image-size "$SIZE" --images "$IMAGES" --rounds "$ROUNDS" \
    --batch-size "$BATCH" --out "$OUT"
stage loader_speed 45 "$PY" bench/loader_speed.py --data "$DATA" --image-size "$SIZE" --steps "$STEPS" \
    --batch-size "$BATCH" --out "$OUT"
# the converged CamVid rows at full resolution (several processes share the one GPU)
ROWS=(supervised/dense partial_ce/points single_stage/points spml/points)
pids=()
for row in "${ROWS[@]}"; do
    stage "label_efficiency_${row//\//_}" 360 "$PY" bench/label_efficiency.py --dataset camvid --data "$DATA" \
        --regime pretrained --image-size "$SIZE" --epochs "$EPOCHS" --seeds 0 --rows "$row" --channels-last \
        --tag _cuda --out "$OUT" --runs "$OUT/gpu_run/runs" "${LIMITS[@]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
# one SimFormer weak-shot row
stage weak_shot 120 "$PY" bench/weak_shot.py --dataset synthetic --regime pretrained --rows simformer \
    --runs "$OUT/gpu_run/weak_shot_runs" --out "$OUT" "${WEAK_SHOT_SMALL[@]}"
"$PY" -c "import torch; print('device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" >> "$STATUS"
exit $failed
