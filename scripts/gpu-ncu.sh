#!/usr/bin/env bash
# Nsight Compute on the GPU machine (its runtime reads the hardware counters; clocks left alone):
#   ncu.csv       time, DRAM bytes and occupancy of every kernel of one 7B fp16 forward at cache 512,
#                 n = 1 then a random tree of n = 32 (gpu_check --ncu; kernels run one at a time)
#   ncu-gu.txt    the full report of one gate/up matrix kernel (layer 1, n = 1)
#   ncu-attn.txt  the full report of one attention kernel (layer 1, n = 32)
#   ncu-stalls-{1,32}.csv  stall reasons of layer 1's four matrix kernels at n = 1 and n = 32
# Run after scripts/gpu-suite.sh's set-up (source .device/activate.sh); writes to $OUT.
set -uo pipefail
out=${OUT:-/tmp/casspec-out}
app=$CASSPEC_APP/gpu_check
ncu=(ncu --clock-control none --profile-from-start off)
"${ncu[@]}" --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active \
  "$app" --ncu --out /tmp > "$out/ncu.csv" 2>/dev/null
# Matrix kernels run qkv, o, gate/up, down per layer: the 7th is layer 1's gate/up.
"${ncu[@]}" -k regex:linearKernel --launch-skip 6 --launch-count 1 --set full "$app" --ncu --out /tmp > "$out/ncu-gu.txt" 2>&1
# 32 attention kernels per forward: the 34th is layer 1 of the n = 32 forward.
"${ncu[@]}" -k regex:attnKernel --launch-skip 33 --launch-count 1 --set full "$app" --ncu --out /tmp > "$out/ncu-attn.txt" 2>&1
# Stall reasons (cycles per issued instruction) of layer 1's four matrix kernels, n = 1 (launches
# 5-8) and n = 32 (the n = 1 forward has 32 x 4 + 1 matrix launches: 134-137).
stalls=(--csv --metrics 'gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio')
"${ncu[@]}" -k regex:linearKernel --launch-skip 4 --launch-count 4 "${stalls[@]}" "$app" --ncu --out /tmp > "$out/ncu-stalls-1.csv" 2>/dev/null
"${ncu[@]}" -k regex:linearKernel --launch-skip 133 --launch-count 4 "${stalls[@]}" "$app" --ncu --out /tmp > "$out/ncu-stalls-32.csv" 2>/dev/null
echo "ncu: $(grep -c '"gpu__time_duration.sum"' "$out/ncu.csv") kernels timed; reports $(wc -l < "$out/ncu-gu.txt") + $(wc -l < "$out/ncu-attn.txt") lines"
