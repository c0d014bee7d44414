#!/usr/bin/env bash
# The GPU session's measurements in one device call (../shared/GPU-NOTES.md; issue 12 and BENCHMARKS.md
# section 12). The lent GPU machine has python3 3.12 with torch but no Prefect, Dask, lifelines or
# pydantic-settings, reaches no package registry and does not see ../shared. So:
#
#   bash benchmarks/gpu_kit.sh prepare   # here: wheels the device lacks + FD001 into .gpu-kit/ (ignored)
#   bash benchmarks/gpu_kit.sh check     # here: install the kit into a fresh Python 3.12 target and import it
#
# then one `run` call of the device tool with carry [".gpu-kit"] and the command
#
#   bash benchmarks/gpu_kit.sh run       # there: install the kit, measure, write everything under $OUT
#
# `run` fits in about 8 minutes: bench_fused.py --device cuda (aten ops, CUDA kernels and step times
# of both fused recurrences against separate training, paper, lstm_basic and transformer_basic, groups of 16) and
# bench_gpu.py --sections fused --quick --extra --window-stride 4 (16 paper and 16 lstm_basic FD001 experiments as sweeps one per
# GPU, packed 8 per GPU and fused: experiments per hour, speed-ups, NVML utilisation), each under a
# timeout so that one slow part cannot eat the session's device time.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.gpu-kit
# what the project needs beyond the device image (KINDS.md lists the image's packages), at the
# versions constraints.txt pins (the suite's)
NEEDS=(prefect prefect-dask distributed dask lifelines pydantic-settings pydantic)
# packages the device image already has (../.library/device/KINDS.md "Python packages already there"):
# their wheels are dropped from the kit, so one version of each is installed there
DEVICE_HAS="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

PY312=${PY312:-$(command -v python3.12 >/dev/null && python3.12 -c '' 2>/dev/null && echo python3.12 || \
    ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -1)}  # `check` only

canonical() { echo "$1" | tr '[:upper:]_.' '[:lower:]--'; }

prepare() {
    rm -rf "$KIT" && mkdir -p "$KIT/whl" "$KIT/data/cmapss"
    # the suite's versions, less those published as source only (no wheel to carry: autograd-gamma 0.5.0)
    grep -v -i '^autograd-gamma==' constraints.txt > "$KIT/constraints.txt"
    python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -c "$KIT/constraints.txt" -d "$KIT/whl" "${NEEDS[@]}"
    for wheel in "$KIT"/whl/*.whl; do
        name=$(canonical "$(basename "$wheel" | cut -d- -f1)")
        if grep -qw -- "$name" <<<"$(for p in $DEVICE_HAS; do canonical "$p"; done)"; then rm "$wheel"; fi
    done
    local data=${DDRSA_DATA_DIR:-../shared/data}
    cp "$data"/cmapss/*FD001* "$KIT/data/cmapss/"
    echo "kit: $(ls "$KIT"/whl | wc -l) wheels, $(du -sh "$KIT" | cut -f1) in $KIT (carry it: run(carry=[\"$KIT\"]))"
}

install_kit() {  # into $1, with no index: what the device can do
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$1" "$KIT"/whl/*.whl
}

check() {  # a fresh Python 3.12: is the kit complete, given what the image has? does it import?
    local work
    work=$(mktemp -d)
    # resolve the project's needs with PyPI and the kit: every package must come from the kit or the image
    "$PY312" -m pip install -q --dry-run --ignore-installed --only-binary=:all: --find-links "$KIT/whl" \
        --report "$work/report.json" "${NEEDS[@]}" >/dev/null
    "$PY312" - "$work/report.json" "$KIT/whl" $DEVICE_HAS > "$work/standins.txt" <<'PY'
import json, pathlib, re, sys
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
report, kit, device = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2]), {canon(n) for n in sys.argv[3:]}
in_kit = {canon(w.name.split("-")[0]) for w in kit.glob("*.whl")}
names = {canon(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
missing = sorted(n for n in names if n not in in_kit and n not in device)
if missing:
    sys.exit(f"the kit lacks {', '.join(missing)} (not in the device image either)")
print("\n".join(f"{n}=={v}" for n, v in names.items() if n not in in_kit))  # the image's, as stand-ins
PY
    # the device's way: the kit with --no-deps into a target, the image's packages beside it
    "$PY312" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$KIT"/whl/*.whl
    "$PY312" -m pip install -q --no-deps --only-binary=:all: --target "$work/image" -r "$work/standins.txt"
    PYTHONPATH="$work/site:$work/image" "$PY312" -c "import prefect, prefect_dask, distributed, lifelines, \
pydantic_settings; print('kit complete and imports on Python 3.12: prefect', prefect.__version__, 'distributed', \
distributed.__version__, 'lifelines', lifelines.__version__, '+ $(wc -l < "$work/standins.txt") packages of the image')"
    rm -rf "$work"
}

run() {
    OUT=${OUT:-gpu_out}
    mkdir -p "$OUT"
    install_kit /tmp/site
    export PYTHONPATH=/tmp/site:$PWD DDRSA_DATA_DIR=$PWD/$KIT/data DDRSA_DATA_SOURCE=real
    export PREFECT_SERVER_ANALYTICS_ENABLED=false
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
    timeout 150 python3 benchmarks/bench_fused.py --device cuda --members 16 --models paper lstm_basic transformer_basic \
        --json "$OUT/bench_fused.json" \
        > "$OUT/bench_fused.log" 2>&1 || echo "bench_fused exit $?" >> "$OUT/bench_fused.log"
    # every 4th window: 4x shorter epochs, the same comparison (each row prints as it ends, so a
    # timeout keeps the rows before it in the log)
    timeout 300 python3 benchmarks/bench_gpu.py --out "$OUT" --sections fused --quick --extra --window-stride 4 \
        > "$OUT/bench_gpu_fused.log" 2>&1 || echo "bench_gpu exit $?" >> "$OUT/bench_gpu_fused.log"
    tail -n 20 "$OUT"/bench_fused.log "$OUT"/bench_gpu_fused.log
}

case "${1:-}" in
    prepare) prepare ;;
    check) check ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_kit.sh prepare|check|run" >&2; exit 2 ;;
esac
