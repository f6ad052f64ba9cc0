#!/usr/bin/env bash
# One accelerator's throughput figures and the paper protocol estimated from them (benchmarks/gpu.py):
# ViT-L-14-336 at 518 px with random weights on CUDA, within 8 minutes on one GPU. Arguments go to
# gpu.py, e.g. `bash benchmarks/gpu.sh --config tiny --device cpu --quick` (what the tests run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
cd "$here"
exec "$python" gpu.py --device "${DEVICE:-auto}" "$@"
