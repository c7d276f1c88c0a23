#!/usr/bin/env bash
# One-shot check of the batched renderer on a CUDA machine: the device tests, then the speed
# tables at 256² and 1024² (numpy, torch cpu, torch cuda rows) and the cuda rows with one plan
# thread against every CPU, so the tables show whether CPU planning or the GPU bounds throughput.
#
#     bash benchmarks/gpu_check.sh [output folder]      # default: $OUT, else ./gpu-check
#
# Run from the repository root with the project's Python on PATH (or PYTHON=/path/to/python).
# Needs torch (CUDA build), numpy, opencv, pyarrow, scikit-image, pytest and accelerate only.
# Writes device.txt, tests.txt and one table per run (*.md); about 5-8 minutes on one H100.
set -uo pipefail

out="${1:-${OUT:-./gpu-check}}"
python="${PYTHON:-python}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u
  nvidia-smi -L 2>&1 || echo "nvidia-smi: not found"
  "$python" -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''); print('usable CPUs', len(os.sched_getaffinity(0)))"
} 2>&1 | tee "$out/device.txt"

# the tests first: the CUDA agreement tests run only where a GPU is present
timeout 300 "$python" -m pytest tests/test_batched.py tests/test_protocol_device.py -q -p no:cacheprovider 2>&1 | tail -n 40 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}

bench() {  # name, then batched_speed.py arguments
  local name="$1"; shift
  echo "== $name: batched_speed.py $*"
  timeout 240 "$python" benchmarks/batched_speed.py "$@" 2>&1 | tee "$out/$name.md"
}
bench synagen_256 --sizes 256 --seeds 24 --batch 64
bench synagen_1024 --sizes 1024 --seeds 16 --batch 64
# where the bound lies: the cuda rows with one plan thread (the default uses every usable CPU)
bench synagen_cuda_1_plan_thread --paths cuda --sizes 256 1024 --seeds 16 --batch 64 --prep-threads 1 --no-protocol
bench other_methods_256 --methods draem fractal foreground_perlin cutpaste --paths cpu cuda --sizes 256 --seeds 8 --batch 64 --no-protocol

echo "tables and test output in $out (tests exit status: $tests)"
exit "$tests"
