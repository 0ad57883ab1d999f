"""The minimal reduced engine against its peers, in one run: NumPy batch, single runs, the value regime.

Run: ``.venv/bin/python benchmarks/bench_minimal.py`` (reduced sizes, a few minutes on a 2-core machine);
the issue's headline sizes: ``--runs 100000 --steps 3000``. Measures:

(a) lr_v = 0, R runs x S steps over a grid of lr_kq x delta_m x n_non_context_critical around the default,
    every peer keeping only start / peak / peak_step / final of M_C: the hand-written vectorized NumPy peer
    (``benchmarks/numpy_minimal_peer.py``), the engine through the package's door for many runs
    (``cpi.simulate_many``, summaries only, warm), the plain JAX loop a user would write
    (``benchmarks/jax_loop_peer.py``: ``jit(vmap)`` over every run, and advanced in the engine's CPU groups;
    each also compiled with the engine's own XLA compile options, the loop at its best),
    ``jit(vmap(minimal_train(metrics="context_reliance")))`` over chunks, and the CLI sweep of the same runs
    (the whole command: start-up, planning, compilation, the file).
(b) one run at the default configuration (``--single-steps``, default 3000, every metric recorded):
    ``cpi.simulate(engine=...)`` and ``minimal_train`` alone, median of repeated timings after a warm-up, and
    the first call of ``minimal_train`` in a fresh process (compilation included).
(c) lr_v = 0.3 (W_V trained), a batch: ``minimal_train`` against the general reduced engine
    ``cpi.reduced.general_train`` (166 coordinates), both vmapped over the same batch, recording only the last
    step; and ``cpi.simulate_many`` (summaries) on the CPU kernel against its XLA program.

Rates are config-steps per second (runs x steps / wall time). The machine is shared: the load average is
printed before and after; ratios are taken within this one run.
"""

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import cpi_theory as cpi
from cpi_theory.reduced import Regime, minimal_summary, minimal_train, reduced_params
from cpi_theory.simulation import get_engine, known_compiler_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jax_loop_peer import run_one as loop_run_one  # noqa: E402
from jax_loop_peer import summaries as loop_summaries  # noqa: E402
from numpy_minimal_peer import DEFAULT_BLOCK, peer_inputs, run_numpy  # noqa: E402

# As `cpi-theory sweep` does: one CPU device per core (the engine then advances cache-sized groups per core).
cpi.use_cpu_cores()
FROZEN = Regime(value_trained=False, has_s=False, has_aug=False)
VALUE = Regime(value_trained=True, has_s=False, has_aug=False)
SUMMARY = ("start", "peak", "peak_step", "final")


# ---------------------------------------------------------------------------------------------- helpers
def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


N_CS = 20  # n_non_context_critical = 0..19 (n_context_critical = 10)


def grid_axes(runs: int) -> dict[str, list[float]]:
    """A Cartesian grid of exactly ``runs`` configurations around the default (``runs`` a multiple of 20):
    lr_kq (geometric, 0.25..4) x delta_m (0.45..0.9) x n_non_context_critical (0..19)."""
    if runs % N_CS:
        raise SystemExit(f"--runs must be a multiple of {N_CS}, got {runs}")
    rest = runs // N_CS
    n_lr = max(d for d in range(1, math.isqrt(rest) + 1) if rest % d == 0)
    return {
        "lr_kq": [float(x) for x in np.geomspace(0.25, 4.0, n_lr)],
        "delta_m": [float(x) for x in np.linspace(0.45, 0.9, rest // n_lr)],
        "n_non_context_critical": [float(k) for k in range(N_CS)],
    }


def grid(runs: int, lr_v: float) -> tuple[cpi.ToyParams, str]:
    """The runs of :func:`grid_axes` as ToyParams columns (C order: lr_kq slowest, as the sweep's grid)."""
    axes = grid_axes(runs)
    mesh = np.meshgrid(*[np.asarray(v) for v in axes.values()], indexing="ij")
    base = cpi.ToyParams.from_config(cpi.Config(lr_v=lr_v)).columns()
    columns = {k: np.full(runs, v, dtype=np.float64) for k, v in base.items()}
    columns.update({key: m.ravel() for key, m in zip(axes, mesh, strict=True)})
    sizes = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
    return cpi.ToyParams.from_columns(columns, validate=False), f"{sizes} = {runs} runs"


def chunks(params: cpi.ToyParams, size: int):
    """Consecutive chunks of ``size`` runs as device arrays (the last one padded by repeating its last run,
    so one compiled program serves all), with the number of real runs in each."""
    runs = params.n_runs
    for lo in range(0, runs, size):
        hi = min(lo + size, runs)
        index = np.minimum(np.arange(lo, lo + size), hi - 1)
        yield params.map(lambda v, index=index: jnp.asarray(v[index])), hi - lo


def run_chunked(compiled, params, size: int) -> tuple[dict[str, np.ndarray], float]:
    """Every chunk through ``compiled``; the summaries on the host and the wall time (transfers included)."""
    parts = {k: [] for k in SUMMARY}
    t0 = time.perf_counter()
    for chunk, real in chunks(params, size):
        out = compiled(chunk)
        for k, v in zip(SUMMARY, out, strict=True):
            parts[k].append(np.asarray(v)[:real])
    wall = time.perf_counter() - t0
    return {k: np.concatenate(v) for k, v in parts.items()}, wall


def compile_aot(fn, example) -> tuple[object, float]:
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(fn)).lower(example).compile()
    return compiled, time.perf_counter() - t0


def median_seconds(run, repeats: int) -> float:
    jax.block_until_ready(run())  # warm-up (compiles)
    return timed_median(run, repeats)[1]


def timed_median(run, repeats: int):
    """(the last result, the median wall time) of ``repeats`` timed calls of ``run`` (already warm)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(run())
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def agreement(a: dict, b: dict) -> str:
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in ("start", "peak", "final"))
    steps = int(np.sum(a["peak_step"] != b["peak_step"]))
    return f"max abs diff {worst:.1e}, peak_step differs in {steps} runs"


# ------------------------------------------------------------------------------------------ (a) batch
def summary_by_minimal_summary(steps: int):
    def fn(p):
        r = minimal_summary(p, steps=steps, regime=FROZEN).records
        return r["start"], r["peak"], r["peak_step"], r["final"]

    return fn


def summary_by_minimal_train(steps: int):
    def fn(p):
        mc = minimal_train(p, steps=steps, regime=FROZEN, metrics="context_reliance").records[
            "context_reliance"
        ]
        return mc[0], jnp.max(mc), jnp.argmax(mc), mc[-1]

    return fn


def bench_batch(args, rows: list) -> None:
    params, shape = grid(args.runs, lr_v=0.0)
    work = args.runs * args.steps
    print(f"\n(a) lr_v = 0: {args.runs} runs x {args.steps} steps ({shape})")
    print(
        "    NumPy peer: elementwise ufuncs only (no BLAS call), so OPENBLAS_NUM_THREADS / MKL settings do not "
        f"matter; single-threaded, blocks of {args.block} runs"
    )
    t0 = time.perf_counter()
    peer = run_numpy(peer_inputs(params), args.steps, block=args.block)
    numpy_wall = time.perf_counter() - t0
    numpy_rate = work / numpy_wall
    print(f"    NumPy peer:                  {numpy_rate:12.4g} config-steps/s  ({numpy_wall:.2f} s)")
    rows.append(("(a) lr_v=0 batch", "NumPy peer", f"{numpy_rate:.4g}", f"{numpy_wall:.2f} s", "1.00", ""))

    # The engine through the package's door for many runs (chunks, groups and devices as a sweep runs them),
    # warm: its second call, compilation excluded. On a CPU the door runs the frozen regime on the engine's
    # CPU kernel (cpi_theory.reduced._cpu_kernel); cpu_kernel=False times the XLA program it replaces.
    engine_rates = {}
    for name, kernel in (
        ("engine: simulate_many (summaries)", True),
        ("engine, XLA program (cpu_kernel=False)", False),
    ):
        timed = {}

        def door(kernel=kernel, timed=timed):
            timed["out"] = cpi.simulate_many(
                params, steps=args.steps, store_every=0, cpu_kernel=kernel
            ).summary
            return timed["out"]["peak"]

        t0 = time.perf_counter()
        door()
        compile_door = time.perf_counter() - t0
        wall = median_seconds(door, 1)
        engine_rates[name] = work / wall
        out = {k: timed["out"][k] for k in ("start", "peak", "peak_step", "final")}
        check = agreement(out, peer)
        print(
            f"    {name + ':':28s} {engine_rates[name]:12.4g} config-steps/s  ({wall:.2f} s; first call "
            f"{compile_door:.2f} s; JAX/NumPy {engine_rates[name] / numpy_rate:.2f}x; vs NumPy: {check})"
        )
        rows.append(("(a) lr_v=0 batch", name, f"{engine_rates[name]:.4g}", f"{wall:.2f} s",
                     f"{engine_rates[name] / numpy_rate:.2f}", check))  # fmt: skip
    engine_rate = engine_rates["engine: simulate_many (summaries)"]
    xla_rate = engine_rates["engine, XLA program (cpu_kernel=False)"]
    # The plain JAX loop a user would write (benchmarks/jax_loop_peer.py): jit(vmap(...)) over every run,
    # and the same loop advanced in the engine's CPU groups (lax.map), its best case here.
    loop_inputs = {k: jnp.asarray(v) for k, v in peer_inputs(params).items()}
    # Each also compiled with the engine's own CPU compile options (the older fusion emitter), so that the
    # engine is compared with the loop at its best, not with XLA settings the engine alone enjoys.
    options = known_compiler_options(get_engine("reduced").compiler_options.get("cpu", {}), "cpu")
    loops = {}
    for suffix, opts in (("", None), (", engine's XLA options", options or None)):
        loops["hand-written JAX loop, jit(vmap)" + suffix] = jax.jit(
            lambda p: loop_summaries(p, args.steps), compiler_options=opts
        )
        loops[f"hand-written loop, groups of {args.group}" + suffix] = jax.jit(
            lambda p: jax.lax.map(lambda q: loop_run_one(q, args.steps), p, batch_size=args.group),
            compiler_options=opts,
        )
    for name, fn in loops.items():
        wall = median_seconds(lambda fn=fn: fn(loop_inputs), 1)
        rate = work / wall
        got = fn(loop_inputs)
        check = agreement(
            dict(zip(("start", "peak", "peak_step", "final"), map(np.asarray, got), strict=True)), peer
        )
        print(
            f"    {name + ':':28s} {rate:12.4g} config-steps/s  ({wall:.2f} s; engine / loop "
            f"{engine_rate / rate:.2f}x, its XLA program / loop {xla_rate / rate:.2f}x; vs NumPy: {check})"
        )
        rows.append(("(a) lr_v=0 batch", name, f"{rate:.4g}", f"{wall:.2f} s", f"{rate / numpy_rate:.2f}",
                     f"engine / loop {engine_rate / rate:.2f}x (XLA program {xla_rate / rate:.2f}x)"))  # fmt: skip

    size = min(args.chunk, args.runs)
    example = next(chunks(params, size))[0]
    variants = {"jit(vmap(minimal_train(M_C)))": summary_by_minimal_train(args.steps)}
    for name, fn in variants.items():
        compiled, compile_s = compile_aot(fn, example)
        out, wall = run_chunked(compiled, params, size)
        rate = work / wall
        check = agreement(out, peer)
        print(
            f"    {name + ':':28s} {rate:12.4g} config-steps/s  ({wall:.2f} s; compile {compile_s:.2f} s; "
            f"JAX/NumPy {rate / numpy_rate:.2f}x; vs NumPy: {check})"
        )
        rows.append(
            (
                "(a) lr_v=0 batch",
                f"{name} (chunks of {size})",
                f"{rate:.4g}",
                f"{wall:.2f} s + compile {compile_s:.2f} s",
                f"{rate / numpy_rate:.2f}",
                check,
            )
        )

    # ---- (a2) the CLI sweep on the same runs: start-up, planning and compilation included ------------------
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"base": {"steps": args.steps}, "grid": grid_axes(args.runs), "trajectory_every": 0}
        spec_path, out = Path(tmp) / "spec.json", Path(tmp) / "out.nc"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "cpi_theory.cli", "sweep", str(spec_path), "--out", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        line = done.stderr.strip().splitlines()[-1]
        in_process = float(re.search(r"([\d.e+]+) config-steps/s", line).group(1))
        import xarray as xr

        ds = xr.load_dataset(out, engine="scipy")
        cli = {k: ds[k].values.reshape(-1) for k in ("start", "peak", "peak_step", "final")}
        computed_by = ds.attrs.get("computed_by", "?")
    rate = work / wall
    check = agreement(cli, peer)
    print(f"    CLI sweep (cpi-theory sweep, {computed_by}):")
    print(
        f"    {'CLI, whole command:':28s} {rate:12.4g} config-steps/s  ({wall:.2f} s wall, start-up and compile "
        f"included; JAX/NumPy {rate / numpy_rate:.2f}x; vs NumPy: {check})"
    )
    print(
        f"    {'CLI, its own rate:':28s} {in_process:12.4g} config-steps/s  (the sweep's summary line: {line})"
    )
    rows.append(
        (
            "(a) lr_v=0 batch",
            "CLI sweep, whole command",
            f"{rate:.4g}",
            f"{wall:.2f} s",
            f"{rate / numpy_rate:.2f}",
            check,
        )
    )
    rows.append(
        (
            "(a) lr_v=0 batch",
            "CLI sweep, in-process rate",
            f"{in_process:.4g}",
            "",
            f"{in_process / numpy_rate:.2f}",
            "",
        )
    )


# ------------------------------------------------------------------------------------ (b) single run
COLD = """
import json, time
t0 = time.perf_counter()
import jax
import cpi_theory as cpi
from cpi_theory.reduced import minimal_train
cpi.enable_float64()
params = cpi.reduced_params(cpi.Config())
t1 = time.perf_counter()
jax.block_until_ready(minimal_train(params, steps=300))
t2 = time.perf_counter()
jax.block_until_ready(minimal_train(params, steps=300))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2}))
"""


def bench_single(args, rows: list) -> None:
    config = cpi.Config(steps=args.single_steps)
    steps = config.steps
    print(
        f"\n(b) one run at the default configuration, {steps} steps, every metric recorded (median of {args.repeats})"
    )
    params = reduced_params(config)
    runs = {
        'cpi.simulate(engine="full")': lambda: cpi.simulate(config, engine="full").context_reliance,
        'cpi.simulate(engine="reduced")': lambda: cpi.simulate(config, engine="reduced").context_reliance,
        f"minimal_train(reduced_params(Config()), steps={steps})": lambda: minimal_train(params, steps=steps),
    }
    rates = {}
    for name, run in runs.items():
        rates[name] = steps / median_seconds(run, args.repeats)
    full = rates['cpi.simulate(engine="full")']
    for name, rate in rates.items():
        print(f"    {name:52s} {rate:10.4g} steps/s  (vs full engine {rate / full:.2f}x)")
        rows.append(
            (f"(b) one run, {steps} steps", name, f"{rate:.4g}", "", f"{rate / full:.2f}", "ratio vs full")
        )

    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    done = subprocess.run(
        [sys.executable, "-c", COLD],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parent,
    )
    cold = json.loads(done.stdout.strip().splitlines()[-1])
    first = cold["first"]
    print(
        f"    fresh process: import {cold['import']:.2f} s, first minimal_train call {first:.2f} s "
        f"(second {cold['second'] * 1e3:.1f} ms; compilation ~ {first - cold['second']:.2f} s)"
    )
    rows.append(
        (
            "(b) one run, 300 steps",
            "minimal_train first call, fresh process",
            "",
            f"{first:.2f} s (import {cold['import']:.2f} s)",
            "",
            "compile + one run",
        )
    )


# --------------------------------------------------------------------------------- (c) value regime
def bench_value(args, rows: list) -> None:
    params, shape = grid(args.value_runs, lr_v=0.3)
    steps = args.value_steps
    work = args.value_runs * steps
    print(f"\n(c) lr_v = 0.3: {args.value_runs} runs x {steps} steps ({shape}), only the last step recorded")
    batch = params.map(jnp.asarray)

    def minimal(p):
        out = minimal_train(p, steps=steps, record_every=steps, regime=VALUE)
        return out.records["context_reliance"][-1]

    def general(p):
        return cpi.reduced.general_train(p, steps=steps, record_every=steps).records["context_reliance"][-1]

    results, rates = {}, {}
    for name, fn in (("minimal_train (value regime)", minimal), ("cpi.reduced.general_train", general)):
        compiled, compile_s = compile_aot(fn, batch)
        results[name] = np.asarray(compiled(batch))  # also the warm-up
        _, wall = timed_median(lambda compiled=compiled: compiled(batch), args.value_repeats)
        rates[name] = work / wall
        print(
            f"    {name + ':':32s} {rates[name]:12.4g} config-steps/s  ({wall:.2f} s; compile {compile_s:.2f} s)"
        )
        rows.append(
            ("(c) lr_v=0.3 batch", name, f"{rates[name]:.4g}", f"{wall:.2f} s + compile {compile_s:.2f} s")
        )
    names = list(rates)
    ratio = rates[names[0]] / rates[names[1]]
    diff = float(np.max(np.abs(results[names[0]] - results[names[1]])))
    print(f"    minimal / general: {ratio:.2f}x  (final M_C max abs diff {diff:.1e})")
    rows[-2] = (*rows[-2], f"{ratio:.2f}", f"vs general; final M_C max abs diff {diff:.1e}")
    rows[-1] = (*rows[-1], "1.00", "")
    # The door for many runs, summaries only: the value regime on the CPU kernel and on the XLA program.
    door = {}
    for name, kernel in (
        ("simulate_many (value regime), CPU kernel", True),
        ("simulate_many, XLA program", False),
    ):
        t0 = time.perf_counter()
        cpi.simulate_many(params, steps=steps, store_every=0, cpu_kernel=kernel)
        first = time.perf_counter() - t0
        door[name], wall = timed_median(
            lambda kernel=kernel: (
                cpi.simulate_many(params, steps=steps, store_every=0, cpu_kernel=kernel).summary
            ),
            args.value_repeats,
        )
        rates[name] = work / wall
        print(
            f"    {name + ':':42s} {rates[name]:12.4g} config-steps/s  ({wall:.2f} s; first call {first:.2f} s)"
        )
        rows.append(
            ("(c) lr_v=0.3 batch", name, f"{rates[name]:.4g}", f"{wall:.2f} s + first call {first:.2f} s")
        )
    a, b = door.values()
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in ("start", "peak", "final"))
    same = int(np.sum(a["peak_step"] != b["peak_step"]))
    ratio = rates["simulate_many (value regime), CPU kernel"] / rates["simulate_many, XLA program"]
    print(
        f"    CPU kernel / XLA program: {ratio:.2f}x  (max abs diff {diff:.1e}, peak_step differs in {same} runs)"
    )
    rows[-2] = (
        *rows[-2],
        f"{ratio:.2f}",
        f"vs the XLA program; max abs diff {diff:.1e}, peak_step differs in {same}",
    )
    rows[-1] = (*rows[-1], "1.00", "")


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=10000, help="(a) runs, a multiple of 20 (headline: 100000)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="(a) steps per run (headline: 3000)")
    parser.add_argument("--chunk", type=int, default=4096, help="(a) JAX runs per vmapped chunk")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="(a) NumPy peer runs per block")
    parser.add_argument("--group", type=int, default=4096, help="(a) the loop's runs per lax.map group")
    parser.add_argument("--repeats", type=int, default=9, help="(b) timed repeats (median)")
    parser.add_argument("--single-steps", type=int, default=3000, help="(b) steps of the one run")
    parser.add_argument("--value-runs", type=int, default=2000, help="(c) runs, a multiple of 20")
    parser.add_argument("--value-steps", type=int, default=300, help="(c) steps per run")
    parser.add_argument("--value-repeats", type=int, default=3, help="(c) timed repeats (median)")
    parser.add_argument("--only", choices=("a", "b", "c"), action="append", help="run only these parts")
    args = parser.parse_args(argv)
    cpi.enable_float64()
    parts = args.only or ["a", "b", "c"]

    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, os.cpu_count()={os.cpu_count()}, "
        f"load average {load()} (1/5/15 min)"
    )
    print(
        f"python {platform.python_version()}, jax {jax.__version__} ({jax.default_backend()}, "
        f"{jax.device_count()} device(s)), numpy {np.__version__}, float64; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (use_cpu_cores adds the vector width on AVX-512)"
    )
    rows: list[tuple] = []
    t0 = time.perf_counter()
    if "a" in parts:
        bench_batch(args, rows)
    if "b" in parts:
        bench_single(args, rows)
    if "c" in parts:
        bench_value(args, rows)
    print(f"\nload average after: {load()}; total {time.perf_counter() - t0:.0f} s\n")

    print("| part | what | rate (config-steps/s) | time | ratio | note |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
