#!/bin/bash
# The issue-5 acceptance run: a 10,000-run sweep of the paper default from the CLI, uninterrupted, then
# again killed (SIGKILL) once KILL_AFTER chunk files exist, resumed, and compared byte for byte.
#   bash benchmarks/sweep_kill_resume.sh [WORKDIR] [KILL_AFTER]
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SPEC=$HERE/sweep_paper_default_10k.json
CLI=${CLI:-cpi-theory}
WORK=${1:-sweep_kill_resume}
KILL_AFTER=${2:-10}
mkdir -p "$WORK" && cd "$WORK" || exit 1
rm -rf uninterrupted.nc uninterrupted.nc.chunks resumed.nc resumed.nc.chunks

time $CLI sweep "$SPEC" --out uninterrupted.nc

$CLI sweep "$SPEC" --out resumed.nc 2> part1.log &
PID=$!
while [ "$(ls resumed.nc.chunks/chunk_*.nc 2>/dev/null | wc -l)" -lt "$KILL_AFTER" ]; do sleep 1; done
kill -9 $PID
wait $PID 2>/dev/null
echo "killed pid $PID with $(ls resumed.nc.chunks/chunk_*.nc | wc -l) chunk files written; final file exists: $(test -e resumed.nc && echo yes || echo no)"
time $CLI sweep "$SPEC" --out resumed.nc --resume
cmp uninterrupted.nc resumed.nc && echo "IDENTICAL: resumed.nc == uninterrupted.nc byte for byte"
