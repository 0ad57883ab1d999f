"""Issue 20's CPU targets for the whole ``cpi-theory sweep`` command, each measured in fresh processes.

    python benchmarks/bench_sweep_cli.py [--runs-one-step 1000000] [--runs 100000] [--steps 3000]
                                         [--grid-runs 100000000] [--skip-grid] [--out FILE.md]

1. ``cpi-theory sweep`` of ``--runs-one-step`` runs x 1 step, summaries only (target: <= 15 s for the whole
   command on the 2-core machine), beside the same runs in process (``simulate_many``, warm: the engine's
   own time) so the command's overhead is visible;
2. ``--runs`` runs x ``--steps`` steps with ``"trajectory_every": --steps`` (records at 0 and the last step)
   against ``"trajectory_every": 0`` (target: within 1.3x);
3. a ``--grid-runs`` grid sweep into a Zarr store, its peak resident memory (target: < 2 GB), with the
   in-memory netCDF path's estimate beside it.

Every row is one fresh ``cpi-theory`` process (start-up and compilation included), timed by the wall clock
and its peak RSS read from ``getrusage(RUSAGE_CHILDREN)`` of a one-child wrapper. Prints a Markdown table
(and writes it to ``--out``) with the machine and its load.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:]).returncode; t = time.perf_counter() - t\n"
    "print(f'BENCH {rc} {t:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr)\n"
)


def grid_spec(runs: int, steps: int, trajectory_every: int) -> dict:
    """A grid of ``runs`` runs (lr_kq x delta_m x n_non_context_critical, W_V frozen) of ``steps`` steps."""
    n_cs = 10
    if runs % n_cs:
        raise SystemExit(f"--runs {runs}: must be a multiple of {n_cs}")
    rest = runs // n_cs
    n_lr = max(d for d in range(1, int(rest**0.5) + 1) if rest % d == 0)
    n_dm = rest // n_lr
    lr = [0.25 + 1.75 * i / max(n_lr - 1, 1) for i in range(n_lr)]
    dm = [0.45 + 0.5 * i / max(n_dm - 1, 1) for i in range(n_dm)]
    return {
        "base": {"steps": steps, "n_context_critical": 10},
        "grid": {"lr_kq": lr, "delta_m": dm, "n_non_context_critical": list(range(1, n_cs + 1))},
        "trajectory_every": trajectory_every,
    }


def run_cli(spec: dict, out: Path, *extra: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in GB, the command's last stderr line) of one fresh ``cpi-theory sweep``."""
    spec_path = out.with_suffix(".json")
    spec_path.write_text(json.dumps(spec))
    exe = Path(sys.executable).with_name("cpi-theory")
    command = [sys.executable, "-c", WRAPPER, str(exe), "sweep", str(spec_path), "--out", str(out),
               "--no-progress", *extra]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    bench = next(line for line in lines if line.startswith("BENCH "))
    rc, seconds, rss_kb = bench.split()[1:]
    if int(rc) != 0:
        raise RuntimeError(f"cpi-theory sweep failed ({rc}):\n{proc.stderr[-3000:]}")
    said = next((line for line in lines if line.startswith("cpi-theory sweep:")), "")
    return float(seconds), int(rss_kb) / 1024**2, said


def in_process_rate(runs: int, steps: int) -> float:
    """config-steps/s of ``simulate_many`` on the same grid (summaries only), the second (warm) call."""
    code = f"""
import json, sys, time, numpy as np
import cpi_theory as cpi
cpi.enable_float64()
spec = cpi.SweepSpec.from_mapping({grid_spec(runs, steps, 0)!r})
from cpi_theory.sweep import build_run_table
table = build_run_table(spec)  # the spec's runs as columns
params = table.params(np.arange(table.n_total))
cpi.simulate_many(params, steps={steps}, store_every=0)
t = time.perf_counter()
cpi.simulate_many(params, steps={steps}, store_every=0)
print(json.dumps({{"seconds": time.perf_counter() - t}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return runs * max(steps, 1) / seconds


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} at the start"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-one-step", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--grid-runs", type=int, default=100_000_000)
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [f"Machine: {machine()}; jax {__import__('jax').__version__}.", ""]
    rows += ["| what | measured | target |", "| --- | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = args.runs_one_step
        seconds, rss, said = run_cli(grid_spec(n, 1, 0), tmp / "one_step.nc")
        rate = in_process_rate(n, 1)
        rows.append(f"| `cpi-theory sweep`, {n:,} runs x 1 step, summaries only (whole command) | {seconds:.1f} s "
                    f"(peak {rss:.2f} GB) | <= 15 s |")  # fmt: skip
        rows.append(f"| the same runs in process (`simulate_many`, warm) | {n / rate:.2f} s | - |")
        every_0, _, said_0 = run_cli(grid_spec(args.runs, args.steps, 0), tmp / "t0.nc")
        every_s, rss_s, _ = run_cli(grid_spec(args.runs, args.steps, args.steps), tmp / "ts.nc")
        rows.append(f"| {args.runs:,} runs x {args.steps:,} steps, `trajectory_every: 0` | {every_0:.1f} s "
                    f"({args.runs * args.steps / every_0:.3g} config-steps/s) | - |")  # fmt: skip
        rows.append(
            f"| the same, `trajectory_every: {args.steps}` | {every_s:.1f} s (peak {rss_s:.2f} GB) | - |"
        )
        rows.append(f"| ratio | {every_s / every_0:.2f}x | <= 1.3x |")
        engine = in_process_rate(args.runs, args.steps)
        rows.append(f"| the same runs in process (`simulate_many`, warm), `trajectory_every: 0` | "
                    f"{engine:.3g} config-steps/s; the command: {args.runs * args.steps / every_0 / engine:.0%} "
                    "of it | - |")  # fmt: skip
        if not args.skip_grid:
            g = args.grid_runs
            seconds, rss, said = run_cli(grid_spec(g, 1, 0), tmp / "grid.zarr")
            rows.append(f"| {g:,}-run grid x 1 step into a Zarr store: peak resident memory | {rss:.2f} GB "
                        f"({seconds:.0f} s) | < 2 GB |")  # fmt: skip
    text = "\n".join(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
