#!/usr/bin/env bash
# Builds .gpubin/gpu_check (git-ignored): engine + CPU backend (g++) + native/cuda + scripts/gpu
# (nvcc, sm_90a SASS + compute_90 PTX, static cudart). Only cudart is needed: no cuBLAS.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out=.gpubin
mkdir -p "$out/obj"
NV="nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 --expt-relaxed-constexpr -lineinfo -DCASSPEC_WITH_CUDA=1 -Xcompiler -Wall,-Wno-unused-parameter"
CXX="g++ -std=c++17 -O3 -DCASSPEC_WITH_CUDA=1 -Wall -Wextra -Wno-unused-parameter -pthread"
newest_header=$(ls -t native/*/*.h native/*/*.cuh 2>/dev/null | head -1)
objs=()
jobs_pids=()
build() {  # src obj cmd...
  local src=$1 obj=$2; shift 2
  objs+=("$obj")
  if [[ ! -f $obj || $src -nt $obj || $newest_header -nt $obj || $0 -nt $obj ]]; then
    echo "compile $src"
    "$@" -c "$src" -o "$obj" &
    jobs_pids+=($!)
    if (( ${#jobs_pids[@]} >= ${JOBS:-2} )); then wait "${jobs_pids[0]}"; jobs_pids=("${jobs_pids[@]:1}"); fi
  fi
}
for f in native/engine/*.cpp native/cpu/*.cpp; do build "$f" "$out/obj/$(basename "${f%.*}").o" $CXX; done
for f in native/cuda/*.cu scripts/gpu/*.cu; do build "$f" "$out/obj/cu_$(basename "${f%.*}").o" $NV; done
for p in "${jobs_pids[@]}"; do wait "$p"; done
$NV -o "$out/gpu_check" "${objs[@]}" -cudart static -lpthread
echo "built $out/gpu_check"
