#!/usr/bin/env bash
# One prepared GPU check of jeq (run once on a lent GPU machine; never part of CI).
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh
#
# Runs, each under its own time limit so one failure cannot eat the others' time:
#   1. benchmarks.gemm_gpu        Pallas (Triton) matmul tuning + XLA GEMM-autotuner flags vs jnp.dot
#   2. benchmarks.bench_equilibrium --epochs 20   OptEq/MON/DEQ step times and accuracy in the PyTorch reference settings
#   3. benchmarks.bench_eqprop --quick        EP step throughput vs batch, Laborieux setting epoch time
#   4. benchmarks.bench_pathsgd               path-SGD / SGD step-time ratio (fused and separate kappa)
#   5. benchmarks.bench_sharding --no-force --devices 1   examples/s of the data-parallel steps on one GPU
# Everything is written under a work folder and packed into $OUT/gpu_results.tgz, with the console log in
# $OUT/session.log. Python packages the GPU image lacks (jaxopt, mlxtend) are installed from ./.whl when present.
set -u
OUT=${OUT:-/tmp/jeq_gpu_out}
WORK=/tmp/jeq_gpu_work
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1 JEQ_NO_PROGRESS=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  echo "--- $name rc=$rc in $((SECONDS - t0))s; last lines:"
  tail -n 40 "$WORK/$name.log"
}
step gemm_gpu 220 python3 -m benchmarks.gemm_gpu --out "$WORK/gemm" --pallas-budget 32 --deadline-s 160
step bench_equilibrium 150 python3 -m benchmarks.bench_equilibrium --epochs 20 --budget 1.0 --out "$WORK/results"
step bench_eqprop 90 python3 -m benchmarks.bench_eqprop --quick --out "$WORK/results"
step bench_pathsgd 60 python3 -m benchmarks.bench_pathsgd --budget-s 1.5 --no-kappa2 --cases adding_T100 seqmnist14 charlm_quick
step bench_sharding 45 python3 -m benchmarks.bench_sharding --no-force --devices 1 --budget-s 1.0 --out "$WORK/results"
tar czf "$OUT/gpu_results.tgz" -C "$WORK" .
echo "=== done in ${SECONDS}s; packed $(du -h "$OUT/gpu_results.tgz" | cut -f1)"
