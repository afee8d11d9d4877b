#!/usr/bin/env bash
# The GPU path of c2f measured in one run (docs/measurements/gpu.md): the CUDA tests, the CNNs'
# frames/s and MFU per format, phase one end to end with its decode-bound share, `c2f predict`'s
# compute time per method, and phase two's videos/s at the papers' sizes. Everything goes into
# RESULTS: one log per step, steps.tsv, the JSON and CSV tables and summary.md.
#
#   bash bench/gpu.sh RESULTS [--device cuda|cpu] [--wheels DIR]
#
#   --device cpu   the same steps at small sizes (seconds): the suite's smoke test (tests/test_bench.py)
#   --wheels DIR   first install the wheels in DIR (PyAV, the MobileNetV2 checkpoint's wheel) into a
#                  folder of their own, without dependencies, beside the machine's own torch
#                  (docs/install.md, "A machine that cannot download")
#   PYTHON=...     the interpreter (default python3)
#
# Each step has a time limit; a step that fails or runs out of time is logged and the next one runs,
# so that one CUDA failure does not lose the other measurements. On a GPU it ends within about 8.5
# minutes at worst, and in well under that when every step works. Scratch files (videos, the demo,
# the synthetic caches) go to $C2F_GPU_WORK (default /tmp/c2f-gpu-work), not into RESULTS.
set -u

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
RESULTS="" DEVICE=cuda WHEELS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=${2:?--device needs a value}; shift 2 ;;
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "gpu.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$RESULTS" ] || { echo "gpu.sh: one RESULTS folder, not $RESULTS and $1" >&2; exit 2; }
           RESULTS=$1; shift ;;
    esac
done
[ -n "$RESULTS" ] || { usage >&2; exit 2; }
case "$DEVICE" in cpu|cuda|cuda:[0-9]*) ;; *) echo "gpu.sh: --device cpu or cuda, not $DEVICE" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
if [ -n "$WHEELS" ]; then
    [ -d "$WHEELS" ] || { echo "gpu.sh: --wheels $WHEELS is not a folder" >&2; exit 2; }
    WHEELS=$(cd "$WHEELS" && pwd)
fi
WORK=${C2F_GPU_WORK:-/tmp/c2f-gpu-work}
mkdir -p "$WORK"
cd "$REPO" || exit 1
: > "$RESULTS/steps.tsv"
export C2F_OFFLINE=1 PYTHONUNBUFFERED=1     # never download: the device machine has no network

# step NAME SECONDS COMMAND...: run it under a time limit, its output to RESULTS/NAME.log; a row in steps.tsv
step() {
    local name=$1 limit=$2 started rc seconds
    shift 2
    echo "== $name (at most ${limit} s): $*"
    started=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
    rc=$?
    seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$*" >> "$RESULTS/steps.tsv"
    if [ "$rc" -eq 0 ]; then
        echo "   ok in ${seconds} s"
    else
        echo "   FAILED (exit status $rc; 124: out of time) after ${seconds} s; the end of $name.log:"
        tail -n 15 "$RESULTS/$name.log" | sed 's/^/   | /'
    fi
    return 0
}

if [ -n "$WHEELS" ]; then
    SITE=$WORK/site
    step install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}     # c2f from this checkout, on the machine's own torch

step env 60 "$PY" bench/_gpu.py env "$RESULTS" "$DEVICE"       # the versions; MobileNetV2's checkpoint if packaged
command -v nvidia-smi > /dev/null && nvidia-smi > "$RESULTS/nvidia-smi.log" 2>&1
df -h /dev/shm /tmp > "$RESULTS/disk.log" 2>&1        # decoding workers hand their frames over in /dev/shm

if [ "$DEVICE" = cpu ]; then
    SETS=(--backbone mobilenet_v2@112 --backbone resnet18@64)
    FORMATS=(--batch-size 2 --compute-frames 2)
    VIDEOS=(--make-videos 2 --video-size 96x64 --video-seconds 2 --repeat 1 --workers 1 --batch-size 2)
    DEMO=(--tiny) PREDICT=(--videos 2 --batch-size 2)
    PHASE_TWO=(--smoke)
    LIMITS=(600 600 600 600 600 600)       # a smoke test of the plumbing, on a CPU maybe shared: no race
else
    SETS=(--backbone mobilenet_v2@112 --backbone resnet101@224)
    FORMATS=(--batch-size 256 --compute-frames 2048)
    # 32 synthetic 640x360 videos of 30 s at 25 fps, each read 8 times: 7,680 frames at 1 fps
    VIDEOS=(--make-videos 32 --video-size 640x360 --video-seconds 30 --repeat 8 --workers 15 --batch-size 256)
    DEMO=() PREDICT=(--videos 100 --batch-size 16)
    PHASE_TWO=(--videos 2000 --frames 25 --adafocus-videos 256)
    LIMITS=(90 45 75 150 40 80)
fi

step tests "${LIMITS[0]}" "$PY" -m pytest -q -p no:cacheprovider -m cuda $(grep -l "mark.cuda" tests/*.py) \
    --junitxml="$RESULTS/cuda_tests.xml"
step extract_formats "${LIMITS[1]}" "$PY" bench/extract.py --device "$DEVICE" --formats "${SETS[@]}" "${FORMATS[@]}" \
    --json "$RESULTS/extract_formats.json"
step extract_e2e "${LIMITS[2]}" "$PY" bench/extract.py --device "$DEVICE" "${SETS[@]}" "${VIDEOS[@]}" \
    --json "$RESULTS/extract_e2e.json"
step demo "${LIMITS[3]}" "$PY" bench/_gpu.py demo "$WORK/demo_$DEVICE" ${DEMO[@]+"${DEMO[@]}"}
cp "$WORK/demo_$DEVICE/weights.json" "$RESULTS/demo_weights.json" 2> /dev/null
step predict "${LIMITS[4]}" "$PY" bench/predict.py --part 1 --device "$DEVICE" --demo "$WORK/demo_$DEVICE/out" \
    --data "$WORK/demo_$DEVICE/data" "${PREDICT[@]}" --json "$RESULTS/predict.json"
step phase_two "${LIMITS[5]}" "$PY" bench/train_head.py --device "$DEVICE" "${PHASE_TWO[@]}" \
    --root "$WORK/phase_two" --json "$RESULTS/phase_two.json"

"$PY" bench/_gpu.py summary "$RESULTS" > "$RESULTS/summary.log" 2>&1 || tail -n 20 "$RESULTS/summary.log"
echo
cat "$RESULTS/summary.md" 2> /dev/null
