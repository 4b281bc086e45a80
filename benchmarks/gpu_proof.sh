#!/usr/bin/env bash
# GPU proof kit: on a machine with an NVIDIA GPU and a Python that already has torch (no network
# needed), install dlrig from a carried wheel folder and record verify, bench, nvidia-smi -q and
# resolve for the card found, all into one output folder, within 5 minutes.
#
#   benchmarks/gpu_proof.sh [--wheels DIR] [--out DIR] [--python PY] [--device cuda|cpu] [--gpu 10de:xxxx]
#
# --gpu names the card for `dlrig resolve` when none is found (a run without a GPU, --device cpu).
#
# Build the wheel folder first, on a machine with PyPI (README, "GPU proof kit"):
#   benchmarks/gpu_proof.sh --build-wheels [DIR]
set -u

WHEELS=benchmarks/wheels
OUT="gpu-proof-$(date -u +%Y%m%dT%H%M%SZ)"
PY=python3
DEVICE=""
BUILD=""
GPU_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) WHEELS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --gpu) GPU_ARG=$2; shift 2 ;;
        --build-wheels) BUILD=1; [ $# -gt 1 ] && [ "${2#--}" = "$2" ] && { WHEELS=$2; shift; }; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "gpu_proof.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in ""|cuda|cpu) ;; *) echo "gpu_proof.sh: --device must be cuda or cpu" >&2; exit 2 ;; esac

if [ -n "$BUILD" ]; then
    # dlrig's wheel plus its dependencies' wheels for CPython 3.12 (PROOF_PYTHON_VERSION) on x86_64 Linux (no torch).
    set -e
    mkdir -p "$WHEELS"
    "$PY" -m pip wheel --no-deps -w "$WHEELS" .
    "$PY" -m pip download -d "$WHEELS" --only-binary=:all: --python-version "${PROOF_PYTHON_VERSION:-3.12}" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --platform any "$(ls "$WHEELS"/dlrig-*.whl | head -1)"
    du -sh "$WHEELS"
    exit 0
fi

T0=$(date +%s)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
step() {  # step NAME SECONDS FILE CMD...: run with a time limit, stdout to FILE, stderr to FILE.err
    local name=$1 limit=$2 file=$3; shift 3
    local s; s=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$file" 2> "$OUT/$file.err"
    local rc=$?
    printf '%-10s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(( $(date +%s) - s ))" "$*" >> "$SUMMARY"
    return 0
}

echo "gpu_proof $(date -u +%FT%TZ) host=$(hostname) python=$("$PY" -V 2>&1)" > "$SUMMARY"

# 1. dlrig from the carried wheels, in a venv that sees the system's torch.
step venv 60 venv.log "$PY" -m venv --system-site-packages "$OUT/venv"
step install 120 install.log "$OUT/venv/bin/python" -m pip install --no-index --find-links "$WHEELS" --ignore-installed dlrig
DLRIG="$OUT/venv/bin/dlrig"
step version 20 dlrig-version.txt "$OUT/venv/bin/python" -c "import dlrig, sys; print(dlrig.__file__, sys.version)"

# 2. The card: nvidia-smi's PCI device id (0x268410DE -> 10de:2684), else lspci -nn.
GPU_ID=""
if command -v nvidia-smi >/dev/null 2>&1; then
    step smi 30 nvidia-smi-q.txt nvidia-smi -q
    GPU_ID=$(nvidia-smi --query-gpu=pci.device_id --format=csv,noheader 2>/dev/null | head -1 |
             sed -E 's/^0x([0-9A-Fa-f]{4})10[dD][eE].*/10de:\1/' | tr 'A-F' 'a-f')
else
    echo "no nvidia-smi on this machine" > "$OUT/nvidia-smi-q.txt"
fi
if [ -z "$GPU_ID" ] && command -v lspci >/dev/null 2>&1; then
    GPU_ID=$(lspci -nn | grep -E '\[03(00|02|80)\].*\[10de:[0-9a-f]{4}\]' | head -1 | grep -oE '10de:[0-9a-f]{4}')
fi
lspci -nn > "$OUT/lspci-nn.txt" 2>&1 || true
if [ -z "$GPU_ID" ] && [ -n "$GPU_ARG" ]; then
    GPU_ID=$GPU_ARG
    echo "no NVIDIA GPU found: resolve uses --gpu $GPU_ARG" >> "$SUMMARY"
fi

# 3. dlrig's own checks and benchmark.
step verify 120 verify.json "$DLRIG" verify --local --json --python "$PY"
BENCH_ARGS=(bench --json --plot "$OUT/bench.png" --python "$PY")
[ -n "$DEVICE" ] && BENCH_ARGS+=(--device "$DEVICE")
step bench 150 bench.json "$DLRIG" "${BENCH_ARGS[@]}"

# 4. What dlrig would install for this card, on every supported OS.
if [ -n "$GPU_ID" ]; then
    for os in ubuntu-22.04 ubuntu-24.04 debian-12 debian-13; do
        step resolve 20 "resolve-$os.json" "$DLRIG" resolve --gpu "$GPU_ID" --os "$os" --json
    done
else
    echo "no NVIDIA GPU found (nvidia-smi, lspci): resolve skipped" >> "$SUMMARY"
fi

echo "gpu=${GPU_ID:-none} total=$(( $(date +%s) - T0 ))s out=$OUT" >> "$SUMMARY"
cat "$SUMMARY"
