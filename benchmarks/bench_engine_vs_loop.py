"""Issue 21's CPU comparison, interleaved: the engine (``cpi.simulate_many``, summaries only) and the plain JAX
loop a user would write (``benchmarks/jax_loop_peer.py``, ``jax.jit(jax.vmap(...))``) on the same runs,
timed alternately ``--rounds`` times, each side's best kept (on a shared machine the other jobs' load moves
both the same way within a round).

    python benchmarks/bench_engine_vs_loop.py [--runs 100000] [--steps 3000] [--rounds 3]
"""

import argparse
import os
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cpi_theory as cpi  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_minimal import grid  # noqa: E402
from jax_loop_peer import summaries  # noqa: E402
from numpy_minimal_peer import peer_inputs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    params, shape = grid(args.runs, lr_v=0.0)
    inputs = {k: jnp.asarray(v) for k, v in peer_inputs(params).items()}
    loop = jax.jit(lambda p: summaries(p, args.steps))
    sides = {
        "engine (simulate_many)": lambda: cpi.simulate_many(params, steps=args.steps, store_every=0).summary[
            "peak"
        ],
        "hand-written loop (jit(vmap))": lambda: loop(inputs)[1],
    }
    best = dict.fromkeys(sides, float("inf"))
    for fn in sides.values():
        jax.block_until_ready(fn())  # compile
    print(f"{shape}; load average {os.getloadavg()[0]:.2f} at the start")
    for round_ in range(args.rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            seconds = time.perf_counter() - start
            best[name] = min(best[name], seconds)
            print(f"round {round_ + 1}: {name:32s} {args.runs * args.steps / seconds:.4g} config-steps/s")
    work = args.runs * args.steps
    engine, loop_s = best["engine (simulate_many)"], best["hand-written loop (jit(vmap))"]
    agree = np.max(np.abs(np.asarray(sides["engine (simulate_many)"]()) - np.asarray(loop(inputs)[1])))
    print(f"best: engine {work / engine:.4g}, loop {work / loop_s:.4g} config-steps/s; engine / loop {loop_s / engine:.2f}x; "
          f"peaks agree to {agree:.1e}; load average {os.getloadavg()[0]:.2f} at the end")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
