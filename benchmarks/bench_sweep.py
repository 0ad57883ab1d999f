"""Sweep throughput: batched sweeps vs the same engine looping over runs one at a time, vs NumPy.

    python benchmarks/bench_sweep.py [--runs 10000] [--loop-runs 40] [--reduced-runs 20000] [--write FILE.md]

Workload: the paper's default configuration (300 steps, every step recorded) with lr_kq drawn uniformly
from [0.5, 1.5] per run (a random sweep spec), so runs differ but share shapes. Reported, in one process:
- the hardware reference: a float64 matmul's GFLOP/s and a large copy's GB/s, at start and end;
- per engine: config-steps/s of a sweep (``run_sweep``, chunks sharded over the CPU devices, timed end
  to end after a warm-up sweep compiled the chunk shape) and of the same jitted engine called once per
  run, timed on ``--loop-runs`` runs right before and right after each sweep (the machine may be shared:
  each ratio uses the loop rate measured around its own sweep);
- per vmap width (runs one device advances together) on a smaller sweep;
- the plain NumPy per-example loop (benchmarks/numpy_baseline.py) on a few short runs;
- bytes per run (state, records, compiled buffers) and XLA's flop/byte count of one step, turned into
  limits against the measured peaks, and the fraction of them reached.
"""

import argparse
import os
import platform
import sys
import time

_ARGS = None


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000, help="runs in the timed full-engine sweep")
    parser.add_argument(
        "--loop-runs", type=int, default=40, help="loop runs timed before and after each sweep"
    )
    parser.add_argument("--numpy-runs", type=int, default=1, help="runs of the NumPy baseline to time")
    parser.add_argument("--numpy-steps", type=int, default=30, help="steps per NumPy run (it is slow)")
    parser.add_argument(
        "--widths", default="1,8", help="vmap widths for the width table ('none': whole shard)"
    )
    parser.add_argument("--width-runs", type=int, default=512, help="runs per sweep in the width table")
    parser.add_argument("--reduced-runs", type=int, default=20000, help="runs in the reduced-engine sweep")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="sweep chunk size (default: the package's)"
    )
    parser.add_argument(
        "--cpu-devices", type=int, default=os.cpu_count(), help="JAX CPU devices (default: cores)"
    )
    parser.add_argument("--write", metavar="FILE.md", help="also write the report (markdown) here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    _ARGS = _parse(sys.argv[1:])

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
if _ARGS is not None:
    jax.config.update("jax_num_cpu_devices", _ARGS.cpu_devices)

import numpy as np  # noqa: E402

import cpi_theory as cpi  # noqa: E402
from cpi_theory.simulation import _registry as registry  # noqa: E402
from cpi_theory.sweep._runner import _compiled_runner, run_sweep, sweep_mesh  # noqa: E402
from cpi_theory.sweep._spec import SweepSpec  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_baseline import numpy_problem, numpy_simulate  # noqa: E402

STEPS = cpi.Config().steps


def hardware_reference(n=2048, copy_mb=512, repeats=3):
    a = np.random.default_rng(0).standard_normal((n, n))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    gflops = 2 * n**3 / best / 1e9
    src = np.ones(copy_mb * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    gbs = 2 * src.nbytes / best / 1e9  # read + write
    return gflops, gbs


def _timed(fn):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def spec_for(runs, seed=0):
    return SweepSpec.from_mapping(
        {"random": {"lr_kq": {"uniform": [0.5, 1.5]}}, "n_runs": runs, "seed": seed, "trajectory_every": 0}
    )


def step_cost_full():
    """XLA's flops and bytes for one recorded step of one run: the trainer's path with W_V frozen (the
    workload has lr_v = 0), i.e. one forward/backward in the relation query q = W_KQ phi(r) from W_V's
    constant value logits, plus the probe."""
    from cpi_theory.model._metrics import (
        frozen_loss_grad_and_class_metrics,
        frozen_probe_metrics,
        frozen_values,
    )

    config = cpi.Config()
    world = cpi.build_world(config)
    state = cpi.pretrained_state(world, config.relation_score)
    values = frozen_values(state, world)
    query = cpi.model.relation_query(state, world)
    step = jax.jit(
        lambda q, w, v: (frozen_loss_grad_and_class_metrics(q, w, v), frozen_probe_metrics(q, w, v))
    )
    cost = step.lower(query, world, values).compile().cost_analysis()
    return float(cost["flops"]), float(cost["bytes accessed"])


def full_loop():
    """The same engine, jitted once, called once per run (world built once: the loop's best case).

    Returns (rate(n): config-steps/s of n runs one at a time, compile seconds)."""
    config = cpi.Config()
    world = cpi.build_world(config)
    one = jax.jit(
        lambda w, lr: cpi.train(w, cpi.pretrained_state(w, config.relation_score), lr, 0.0, steps=STEPS)
    )
    t0 = time.perf_counter()
    jax.block_until_ready(one(world, 1.0))
    compile_s = time.perf_counter() - t0

    def rate(runs):
        lrs = np.random.default_rng(1).uniform(0.5, 1.5, runs)
        t0 = time.perf_counter()
        for lr in lrs:
            jax.block_until_ready(one(world, float(lr)))
        return runs * STEPS / (time.perf_counter() - t0)

    return rate, compile_s


def paired(sweep, loop_rate, loop_runs):
    """Time a loop slice, the sweep, then another loop slice: the machine is shared, so the ratio uses
    the loop rate measured right around the sweep (mean of before and after)."""
    before = loop_rate(loop_runs)
    result, rate = sweep()
    after = loop_rate(loop_runs)
    return result, rate, (before + after) / 2, (before, after)


def timed_sweep(runs, engine="full", vmap_width="engine", chunk_size=None):
    """Warm up (compile) on a one-chunk sweep of the same shapes, then time the whole sweep."""
    chunk = chunk_size or registry.ENGINES[engine].default_chunk_size
    chunk = min(chunk, runs)
    run_sweep(spec_for(chunk, seed=99), engine=engine, vmap_width=vmap_width, chunk_size=chunk)
    result = run_sweep(spec_for(runs), engine=engine, vmap_width=vmap_width, chunk_size=chunk)
    return result, result.config_steps / result.wall_seconds


def compile_seconds(engine="full"):
    """Wall time of a fresh sweep of one run per device (trace + compile + that tiny chunk)."""
    _compiled_runner.cache_clear()
    jax.clear_caches()
    n = len(jax.devices())
    t0 = time.perf_counter()
    run_sweep(spec_for(n, seed=98), engine=engine, chunk_size=n)
    return time.perf_counter() - t0


def step_cost_reduced():
    from cpi_theory.reduced import (
        reduced_initial_state,
        reduced_metrics,
        reduced_params,
        reduced_step,
    )

    params = reduced_params(cpi.Config())
    state = reduced_initial_state(params)
    step = jax.jit(lambda st, p: (reduced_step(st, p), reduced_metrics(st, p)))
    cost = step.lower(state, params).compile().cost_analysis()
    return float(cost["flops"]), float(cost["bytes accessed"])


def reduced_loop():
    """reduced_train (jitted once) called once per run; returns (rate(n), compile seconds)."""
    from cpi_theory.reduced import reduced_params, reduced_train

    config = cpi.Config()
    t0 = time.perf_counter()
    jax.block_until_ready(reduced_train(reduced_params(config), steps=STEPS))
    compile_s = time.perf_counter() - t0

    def rate(runs):
        lrs = np.random.default_rng(1).uniform(0.5, 1.5, runs)
        params = [reduced_params(config.replace(lr_kq=float(lr))) for lr in lrs]
        t0 = time.perf_counter()
        for p in params:
            jax.block_until_ready(reduced_train(p, steps=STEPS))
        return runs * STEPS / (time.perf_counter() - t0)

    return rate, compile_s


def memory_per_run(engine, chunk_size, vmap_width):
    """Bytes per run: the state, the recorded metrics, and XLA's buffers for one compiled chunk."""
    config = cpi.Config()
    n_records = STEPS // config.record_every + 1
    record_scalars = len(cpi.engine.PROBE_METRICS) + 4 * len(cpi.engine.CLASS_METRICS)
    records = n_records * record_scalars * 8
    if engine == "full":
        d = config.n_subjects + config.n_answers + 3
        state = 2 * d * d * 8
    else:
        from cpi_theory.reduced import reduced_state_names

        state = len(reduced_state_names()) * 8
    eng = registry.ENGINES[engine]
    mesh = sweep_mesh()
    shared, per_run = eng.inputs([config] * chunk_size)
    runner = _compiled_runner(eng, STEPS, config.record_every, vmap_width, mesh)
    mem = runner.lower(shared, per_run).compile().memory_analysis()
    # memory_analysis() describes one device's program: multiply by the devices for the whole chunk.
    per_device = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return state, records, per_device * mesh.size / chunk_size


def numpy_rate(runs, steps):
    config = cpi.Config(steps=steps)
    problem = numpy_problem(config)
    t0 = time.perf_counter()
    for _ in range(runs):
        numpy_simulate(config, problem)
    return runs * steps / (time.perf_counter() - t0)


def main(args):
    lines = []
    say = lambda text="": (print(text, flush=True), lines.append(text))
    load_start = os.getloadavg()
    gflops, gbs = hardware_reference()
    n_dev = len(jax.devices())
    chunk = args.chunk_size
    rows = []  # (engine, how, runs timed, rate, loop rate around it, loop runs)

    # Full engine.
    compile_full = compile_seconds()  # clears JAX's caches: run it before compiling the loop
    loop, loop_compile = full_loop()
    full, full_rate, full_loop_rate, full_loops = paired(
        lambda: timed_sweep(args.runs, chunk_size=chunk), loop, args.loop_runs
    )
    rows.append(
        (
            "full",
            f"sweep (chunk {full.chunk_size}, vmap width {registry.FULL.vmap_width}, {n_dev} devices)",
            full.n_runs,
            full_rate,
            full_loop_rate,
        )
    )
    rows.append(
        (
            "full",
            "one run at a time, jitted once (before / after the sweep)",
            2 * args.loop_runs,
            full_loop_rate,
            full_loop_rate,
            full_loops,
        )
    )
    for w in args.widths.split(","):
        width = None if w.strip().lower() == "none" else int(w)
        _, rate, around, _ = paired(
            lambda width=width: timed_sweep(args.width_runs, vmap_width=width, chunk_size=chunk),
            loop,
            args.loop_runs,
        )
        rows.append(("full", f"sweep, vmap width {w.strip()}", args.width_runs, rate, around))
    np_rate = numpy_rate(args.numpy_runs, args.numpy_steps)
    flops, nbytes = step_cost_full()
    mem_full = memory_per_run("full", full.chunk_size, registry.FULL.vmap_width)

    # Reduced engine.
    costs = [("full", flops, nbytes, full_rate, full_loop_rate)]
    mems = [("full", mem_full, full.chunk_size)]
    compiles = [
        f"full: {compile_full:.1f} s for a fresh sweep of one run per device, {loop_compile:.1f} s "
        "for the one-run loop"
    ]
    try:
        registry.get_engine("reduced")
        has_reduced = args.reduced_runs > 0
    except cpi.ConfigError:
        has_reduced = False
    if has_reduced:
        compile_reduced = compile_seconds(engine="reduced")
        r_loop, r_loop_compile = reduced_loop()
        r_result, r_rate, r_loop_rate, r_loops = paired(
            lambda: timed_sweep(args.reduced_runs, engine="reduced", chunk_size=chunk), r_loop, args.loop_runs
        )
        rows.append(
            (
                "reduced",
                f"sweep (chunk {r_result.chunk_size}, whole-shard vmap, {n_dev} devices)",
                r_result.n_runs,
                r_rate,
                r_loop_rate,
            )
        )
        rows.append(
            (
                "reduced",
                "one run at a time, jitted once (before / after the sweep)",
                2 * args.loop_runs,
                r_loop_rate,
                r_loop_rate,
                r_loops,
            )
        )
        r_flops, r_bytes = step_cost_reduced()
        costs.append(("reduced", r_flops, r_bytes, r_rate, r_loop_rate))
        mems.append(("reduced", memory_per_run("reduced", r_result.chunk_size, None), r_result.chunk_size))
        compiles.append(
            f"reduced: {compile_reduced:.1f} s for a fresh sweep of one run per device, "
            f"{r_loop_compile:.1f} s for the one-run loop"
        )
    gflops_end, gbs_end = hardware_reference()
    load_end = os.getloadavg()
    peak_gflops, peak_gbs = max(gflops, gflops_end), max(gbs, gbs_end)  # contention only lowers them

    say("## Sweep benchmark")
    say()
    say(
        f"Machine: 2-core CPU (CI-class machine), no GPU: {_cpu_name()}, {os.cpu_count()} cores "
        f"({platform.machine()}); JAX {jax.__version__} on {n_dev} CPU device(s). Load average "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end: the machine was shared with other "
        "processes, so absolute rates are noisy; each ratio uses the loop rate measured right before and "
        "after its sweep."
    )
    say(f"Command: `python benchmarks/bench_sweep.py {' '.join(sys.argv[1:])}`")
    say()
    say(
        f"Hardware reference (measured in the same script, at start / end): float64 matmul "
        f"{gflops:.1f} / {gflops_end:.1f} GFLOP/s (2048^3, all cores), copy {gbs:.1f} / {gbs_end:.1f} GB/s "
        "(512 MiB, read + write)."
    )
    say()
    say(
        "Workload: paper default (K_A=50, K_S=40, 10 C + 10 C+S, 300 steps, every step recorded), lr_kq ~ "
        "U[0.5, 1.5] per run. Rates are config-steps/s (runs x steps / wall time); sweeps are timed end to "
        "end (host-side inputs and result assembly included) after a warm-up sweep compiled the chunk shape."
    )
    say()
    say(
        "| engine | how | runs timed | config-steps/s | vs same engine one run at a time (adjacent) | vs NumPy |"
    )
    say("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        eng, how, runs, rate, around = row[:5]
        extra = f" ({row[5][0]:,.0f} / {row[5][1]:,.0f})" if len(row) > 5 else ""
        say(
            f"| {eng} | {how} | {runs:,} | {rate:,.0f}{extra} | {rate / around:.2f}x | {rate / np_rate:,.1f}x |"
        )
    if not has_reduced:
        say("| reduced | not measured (the reduced engine is not available) | | | | |")
    say(
        f"| NumPy | per-example loop (benchmarks/numpy_baseline.py), {args.numpy_steps} steps per run | "
        f"{args.numpy_runs} | {np_rate:,.0f} | | 1.0x |"
    )
    say("| full, reduced | on a GPU | not measured: no GPU in this task | | | |")
    say()
    say("Compile (excluded from the rates): " + "; ".join(compiles) + ".")
    say()
    say(
        "Memory per run (bytes): the trained state, the recorded metrics (22 scalars per recorded step), "
        "and XLA's buffers for one compiled chunk (arguments + outputs + temporaries, summed over devices) "
        "divided by the chunk size."
    )
    say()
    say("| engine | state | records | XLA buffers per run (chunk size) |")
    say("| --- | ---: | ---: | ---: |")
    for eng, (state_b, records_b, xla_b), size in mems:
        say(f"| {eng} | {state_b:,.0f} | {records_b:,.0f} | {xla_b:,.0f} ({size}) |")
    say()
    say(
        "Hardware limit: XLA's flop and byte counts for one step of one run (a GD step plus the recorded "
        "metrics). FLOP limit = peak matmul FLOP/s / flops per step; bandwidth limit = copy bandwidth / "
        "bytes per step. XLA counts bytes as if nothing stayed in cache; these per-run states (<= 0.3 MB) "
        "live in cache, so the byte 'limit' is not a real bound (fractions above 100% show the reuse) and "
        "the FLOP fraction is the meaningful one. Peaks: the start-of-run measurement."
    )
    say()
    say(
        "| engine | MFLOP / config-step | MB / config-step (XLA) | FLOP limit | sweep: % of FLOP peak | "
        "loop: % of FLOP peak | byte limit | sweep: % of byte limit |"
    )
    say("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for eng, fl, by, rate, loop_r in costs:
        f_lim, b_lim = peak_gflops * 1e9 / fl, peak_gbs * 1e9 / by
        say(
            f"| {eng} | {fl / 1e6:.3f} | {by / 1e6:.3f} | {f_lim:,.0f} | {rate / f_lim:.1%} | "
            f"{loop_r / f_lim:.1%} | {b_lim:,.0f} | {rate / b_lim:.0%} |"
        )
    report = "\n".join(lines) + "\n"
    if args.write:
        with open(args.write, "w") as f:
            f.write(report)
    return report


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main(_ARGS)
