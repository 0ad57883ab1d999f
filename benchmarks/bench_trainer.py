"""Jitted JAX trainer vs a plain NumPy per-example loop of the same model, on the default config, one run.

    python benchmarks/bench_trainer.py [--repeats 5] [--numpy-steps 30]

Prints steps/s of both, their ratio, and the JAX compile time (reported separately, not in the ratio).
"""

import argparse
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import cpi_theory as cpi  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_baseline import numpy_problem, numpy_simulate  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed JAX runs (best is reported)")
    parser.add_argument("--numpy-steps", type=int, default=30, help="steps of the (slow) NumPy loop to time")
    args = parser.parse_args(argv)

    config = cpi.Config()
    world = cpi.build_world(config)
    state0 = cpi.pretrained_state(world, config.relation_score)
    run = lambda lr: cpi.train(world, state0, lr, 0.0, steps=config.steps, record_every=config.record_every)

    t0 = time.perf_counter()
    jax.block_until_ready(run(1.0))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(1.0 + 1e-3 * i))  # new learning rate each time: no retrace
        times.append(time.perf_counter() - t0)
    jax_steps_per_s = config.steps / min(times)

    np_config = config.replace(steps=args.numpy_steps)
    problem = numpy_problem(np_config)
    numpy_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        mc_np, _ = numpy_simulate(np_config, problem)
        numpy_times.append(time.perf_counter() - t0)
    numpy_steps_per_s = args.numpy_steps / min(numpy_times)
    mc_jax = np.asarray(run(1.0).records["context_reliance"])[: args.numpy_steps + 1]
    max_diff = float(np.abs(mc_np - mc_jax).max())

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, {jax.devices()[0].platform}"
    )
    print(
        f"config: paper default (d={world.embeddings.shape[0]}, {world.n_points} points, {config.steps} steps, "
        f"record_every={config.record_every}), float64"
    )
    print(f"JAX compile (first call, incl. one run): {compile_s:.2f} s")
    print(f"JAX jitted scan:   {jax_steps_per_s:12.1f} steps/s (best of {args.repeats})")
    print(f"NumPy per-example: {numpy_steps_per_s:12.1f} steps/s ({args.numpy_steps} steps, best of 3)")
    print(
        f"ratio JAX / NumPy: {jax_steps_per_s / numpy_steps_per_s:.1f}x   (max |M_C difference| {max_diff:.1e})"
    )


if __name__ == "__main__":
    main()
