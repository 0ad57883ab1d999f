#!/bin/bash
# V2 and V3 at tiny, in the pre-registered order; no cell started after 03:45 UTC.
cd "$(dirname "$0")/../../.."  # the repository root
export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
run_cell () {
  design=$1; cell=$2
  now=$(date -u +%H%M)
  if [ "$now" -ge 0345 ]; then echo "=== $design / $cell: not started ($now UTC past the stop rule)"; return; fi
  echo "=== $design / $cell at $(date -u +%H:%M:%S)"
  nice -n 5 .venv/bin/python experiments/bridge_round2.py --designs $design --size tiny --cells "$cell" --out figures/bridge/round2
}
run_cell V2 "Adam 1e-3"
run_cell V2 "GD 0.3"
run_cell V3 "LoRA r8 q/k/v/o"
run_cell V3 "full finetuning"
echo "=== done at $(date -u +%H:%M:%S)"
