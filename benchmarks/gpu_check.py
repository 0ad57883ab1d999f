"""Every GPU measurement the open issues ask for, in one prepared run (<= 5 minutes on one H100/H200).

    XLA_PYTHON_CLIENT_PREALLOCATE=false python benchmarks/gpu_check.py [--out DIR]   # default DIR: $OUT or .
    python benchmarks/gpu_check.py --tiny --out /tmp/x                                 # CPU smoke test (tests)

Rows (config-steps/s = runs x steps / seconds; each rate beside the peers measured in the same run):

- issue 21: the reduced engine in process on ``--runs`` runs x ``--steps`` steps of the frozen regime
  (``simulate_many``, summaries only; and the bare ``jax.jit(jax.vmap(minimal_summary))``), the hand-written
  JAX loop of the same dynamics (``benchmarks/jax_loop_peer.py``) on the same runs, their agreement, and the
  value regime (lr_v = 0.3) on ``--value-runs`` runs beside them. Targets: >= 1.5e10 and >= 1.0x the loop.
- issue 20: ``cpi-theory sweep`` of the same runs (the whole command, a fresh process) against the in-process
  rate (target >= 80%); ``cpi-theory sweep --engine full`` of ``--full-runs`` runs x 300 steps at lr_v = 0
  and 0.1 (targets >= 3e6 and >= 1e6).

Writes ``gpu_check.md`` (the table, the device named) and ``gpu_check.json`` under the output folder.

Issue 22's grid of round two at ``small`` (at most 8 minutes by that issue) is its own prepared command, run
after this one when the device time allows: ``XLA_PYTHON_CLIENT_PREALLOCATE=false python
experiments/bridge_round2_gpu.py --budget-s 420`` (writes under ``$OUT/round2_small``).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def grid_spec(runs: int, steps: int, *, lr_v: float = 0.0, trajectory_every: int = 0) -> dict:
    """``runs`` runs (lr_kq x delta_m x delta_c around the paper's default; 10 C + 10 C+S points, so every
    run has the shapes of one bucket for either engine) of ``steps`` steps."""
    n_dc = 10
    rest = runs // n_dc
    n_lr = max(d for d in range(1, int(rest**0.5) + 1) if rest % d == 0)
    return {
        "base": {"steps": steps, "lr_v": lr_v},
        "grid": {
            "lr_kq": [0.25 + 3.75 * i / max(n_lr - 1, 1) for i in range(n_lr)],
            "delta_m": [0.5 + 0.4 * i / max(rest // n_lr - 1, 1) for i in range(rest // n_lr)],
            "delta_c": [0.05 + 0.015 * i for i in range(n_dc)],
        },
        "trajectory_every": trajectory_every,
    }


def columns(spec: dict):
    import numpy as np

    from cpi_theory.sweep import SweepSpec, build_run_table

    table = build_run_table(SweepSpec.from_mapping(spec))
    return table.params(np.arange(table.n_total))


def timed(function, repeats: int = 2) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (compilation excluded)."""
    import jax

    jax.block_until_ready(function())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function())
        best = min(best, time.perf_counter() - start)
    return best


def engine_rows(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import cpi_theory as cpi

    sys.path.insert(0, str(HERE))
    from jax_loop_peer import summaries
    from numpy_minimal_peer import peer_inputs

    out = {}
    work = args.runs * args.steps
    params = columns(grid_spec(args.runs, args.steps))
    batch = {}

    def door():
        batch["b"] = cpi.simulate_many(params, steps=args.steps, store_every=0)
        return batch["b"].summary["peak"]

    out["engine_simulate_many"] = work / timed(door, args.repeats)
    frozen = cpi.reduced.Regime(value_trained=False, has_s=False, has_aug=False)
    device_params = params.map(jnp.asarray)
    bare = jax.jit(
        jax.vmap(lambda p: cpi.reduced.minimal_summary(p, steps=args.steps, regime=frozen).records)
    )
    out["engine_vmap_minimal_summary"] = work / timed(lambda: bare(device_params), args.repeats)
    loop_inputs = {k: jnp.asarray(v) for k, v in peer_inputs(params).items()}
    loop = jax.jit(lambda p: summaries(p, args.steps))
    out["hand_written_loop"] = work / timed(lambda: loop(loop_inputs), args.repeats)
    peer = loop(loop_inputs)
    got = batch["b"].summary
    out["agreement_max_abs"] = max(
        float(np.max(np.abs(np.asarray(p) - got[name])))
        for name, p in zip(("start", "peak"), peer[:2], strict=True)
    )
    value = columns(grid_spec(args.value_runs, args.steps, lr_v=0.3))
    out["value_regime_simulate_many"] = (
        args.value_runs * args.steps
        / timed(lambda: cpi.simulate_many(value, steps=args.steps, store_every=0).summary["peak"], 1)
    )  # fmt: skip
    return out


def cli_seconds(spec: dict, *extra: str) -> tuple[float, str]:
    """Wall seconds of one fresh ``cpi-theory sweep`` (start-up, compilation and the write included)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        exe = Path(sys.executable).with_name("cpi-theory")
        command = [
            str(exe),
            "sweep",
            str(path),
            "--out",
            str(Path(tmp) / "out.zarr"),
            "--no-progress",
            *extra,
        ]
        env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stderr.strip().splitlines()[-1]


def cli_rows(args, engine_rate: float) -> dict:
    out = {}
    seconds, line = cli_seconds(grid_spec(args.runs, args.steps))
    out["cli_reduced_rate"] = args.runs * args.steps / seconds
    out["cli_reduced_fraction_of_engine"] = out["cli_reduced_rate"] / engine_rate
    out["cli_reduced_line"] = line
    for lr_v in (0.0, 0.1):
        seconds, line = cli_seconds(grid_spec(args.full_runs, args.full_steps, lr_v=lr_v), "--engine", "full")
        out[f"cli_full_lr_v_{lr_v}"] = args.full_runs * args.full_steps / seconds
        out[f"cli_full_lr_v_{lr_v}_line"] = line
    return out


def device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.device_kind} ({d.platform}, {len(jax.devices())} device(s)); jax {jax.__version__}"


def table(r: dict, args) -> str:
    def row(what, value, target=""):
        return f"| {what} | {value} | {target} |"

    lines = [
        f"Device: {r['device']}; host: {platform.node()} ({os.cpu_count()} cores); "
        f"{args.runs:,} runs x {args.steps:,} steps unless said; wall {r['seconds']:.0f} s.",
        "",
        "| what | measured | target |",
        "| --- | ---: | ---: |",
        row("engine, `simulate_many` (frozen, summaries)", f"{r['engine_simulate_many']:.3g} config-steps/s", ">= 1.5e10"),
        row("engine, `jit(vmap(minimal_summary))`", f"{r['engine_vmap_minimal_summary']:.3g} config-steps/s"),
        row("hand-written JAX loop (jax_loop_peer.py)", f"{r['hand_written_loop']:.3g} config-steps/s"),
        row("engine / loop", f"{r['engine_simulate_many'] / r['hand_written_loop']:.2f}x", ">= 1.0x"),
        row("engine vs loop: max abs difference of start, peak", f"{r['agreement_max_abs']:.1e}", "<= 1e-13"),
        row(f"value regime lr_v = 0.3 ({args.value_runs:,} runs)", f"{r['value_regime_simulate_many']:.3g} config-steps/s"),
    ]  # fmt: skip
    if "cli_reduced_rate" in r:
        lines += [
            row("`cpi-theory sweep` (whole command, .zarr)", f"{r['cli_reduced_rate']:.3g} config-steps/s"),
            row("... of the in-process engine rate", f"{r['cli_reduced_fraction_of_engine']:.0%}", ">= 80%"),
            row(f"`--engine full`, lr_v = 0 ({args.full_runs:,} runs x {args.full_steps})",
                f"{r['cli_full_lr_v_0.0']:.3g} config-steps/s", ">= 3e6"),
            row("`--engine full`, lr_v = 0.1", f"{r['cli_full_lr_v_0.1']:.3g} config-steps/s", ">= 1e6"),
        ]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test sizes (seconds)")
    parser.add_argument("--runs", type=int, default=10_000_000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--value-runs", type=int, default=1_000_000)
    parser.add_argument("--full-runs", type=int, default=100_000)
    parser.add_argument("--full-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.runs, args.steps, args.value_runs, args.full_runs, args.full_steps, args.repeats = (
            200,
            20,
            40,
            40,
            10,
            1,
        )
    import jax

    jax.config.update("jax_enable_x64", True)
    started = time.perf_counter()
    results = {"device": device(), **engine_rows(args)}
    if not args.skip_cli:
        results.update(cli_rows(args, results["engine_simulate_many"]))
    results["seconds"] = time.perf_counter() - started
    text = table(results, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.md").write_text(text + "\n")
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
