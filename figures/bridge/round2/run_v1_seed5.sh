#!/bin/bash
# V1's 5th gated seed per model (PREREGISTRATION.md, third part); one cell per call, in the pre-registered order.
cd "$(dirname "$0")/../../.."  # the repository root
export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
for cell in "h4, GD lr 1" "h4, GD lr 3" "h1, GD lr 1" "h1, GD lr 3"; do
  now=$(date -u +%H%M)
  if [ "$now" -ge 0615 ]; then echo "=== V1 / $cell: not started ($now UTC past the stop rule)"; continue; fi
  echo "=== V1 / $cell at $(date -u +%H:%M:%S)"
  nice -n 5 .venv/bin/python experiments/bridge_round2.py --designs V1 --size tiny --cells "$cell" --out figures/bridge/round2
done
echo "=== done at $(date -u +%H:%M:%S)"
