#!/bin/bash
# V3 at tiny with its calibrated pretraining (PREREGISTRATION.md, third part); one cell per call, in order.
cd "$(dirname "$0")/../../.."  # the repository root
export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
for cell in "LoRA r8 q/k/v/o" "full finetuning"; do
  now=$(date -u +%H%M)
  if [ "$now" -ge 0615 ]; then echo "=== V3 / $cell: not started ($now UTC past the stop rule)"; continue; fi
  echo "=== V3 / $cell at $(date -u +%H:%M:%S)"
  nice -n 5 .venv/bin/python experiments/bridge_round2.py --designs V3 --size tiny --cells "$cell" --out figures/bridge/round2
done
echo "=== done at $(date -u +%H:%M:%S)"
