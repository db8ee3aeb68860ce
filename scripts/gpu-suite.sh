#!/usr/bin/env bash
# The GPU test suite and benchmarks, run ON the GPU machine in one command (it forgets everything
# between calls). Prepare here first:  scripts/gpu/build.sh && scripts/gpu-pack.sh
# then call the device tool with carry [".device"] and command:
#   bash scripts/gpu-suite.sh [checks] [prefill] [bench] [quant] [peers] [soak]   (default: checks bench)
# Logs and JSON/SVG go to $OUT; the last lines printed are the summary table.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source .device/activate.sh
out=${OUT:-/tmp/casspec-out}
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(checks bench)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
summary=()
step() {  # name command...: runs, logs to $out/<name>.log, records PASS/FAIL
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  summary+=("$(printf '%-18s %s (%ds)' "$name" "$([ "$rc" = 0 ] && echo PASS || echo "FAIL rc=$rc")" $((SECONDS - t0)))")
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/device.txt"
cli="$CASSPEC_APP/dist/cli.js"

if want checks; then
  if [ -x "$CASSPEC_APP/gpu_check" ]; then
    python3 scripts/gpu/prepare_models.py "$CASSPEC_MODELS" /tmp/gpu-models pycode-tiny pycode-small >/dev/null
    step kernels-check "$CASSPEC_APP/gpu_check" --check --bench --models /tmp/gpu-models --out "$out"
  fi
  step api-checks node scripts/gpu-checks.mjs
  step doctor node "$cli" doctor
fi
if want quant; then
  # int8 W8A8 draft forwards vs full precision, n = 1..64 at cache 512.
  step quant-7b node "$cli" bench --kernels --dummy llama-2-7b --backend cuda --kernel-caches 512 --quant 1
  step quant-small node "$cli" bench --kernels --model "$CASSPEC_MODELS/pycode-small" --backend cuda --kernel-caches 512 --quant 1
fi
if want bench; then
  step bench node "$cli" bench --model "$CASSPEC_MODELS/pycode-small" --prompts "$CASSPEC_PROMPTS" --backend cuda \
    --max-new-tokens "${BENCH_TOKENS:-256}" --warmup 2 --repeats "${BENCH_REPEATS:-1}" ${BENCH_LIMIT:+--limit $BENCH_LIMIT} \
    ${BENCH_STRATEGIES:+--strategies $BENCH_STRATEGIES} ${BENCH_DRAFT_QUANT:+--draft-quant $BENCH_DRAFT_QUANT} --json "$out/bench.json" --chart "$out/bench.svg"
  [ "${BENCH_KERNELS:-1}" = 1 ] && step bench-kernels node "$cli" bench --kernels --dummy llama-2-7b --backend cuda
fi
if want prefill; then
  step prefill node scripts/gpu-prefill.mjs
  step kernels-small node "$cli" bench --kernels --model "$CASSPEC_MODELS/pycode-small" --backend cuda
fi
if want peers; then
  step hf-peers python3 scripts/peers/hf_bench.py --model "$CASSPEC_MODELS/pycode-small" --prompts "$CASSPEC_PROMPTS" \
    --max-new-tokens "${BENCH_TOKENS:-256}" --limit "${PEER_LIMIT:-30}" --warmup 2 --json "$out/hf.json"
fi
if want soak && [ -f scripts/soak/gpu-concurrency.mjs ]; then
  step gpu-concurrency node scripts/soak/gpu-concurrency.mjs --backend cuda
fi

echo
echo "==================== summary ($(head -1 "$out/device.txt"))"
for s in "${summary[@]}"; do echo "$s"; done
[ -f "$out/api-checks.log" ] && grep -E '^(PASS|FAIL)' "$out/api-checks.log" | sed 's/^/  /'
for f in quant-7b quant-small; do [ -f "$out/$f.log" ] && { echo "--- $f"; tail -14 "$out/$f.log"; }; done
[ -f "$out/bench.log" ] && sed -n '/^category/,$p' "$out/bench.log" | head -40
