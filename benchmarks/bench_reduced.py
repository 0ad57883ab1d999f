"""Reduced vs full engine: GD steps per second at the default configuration and at n_answers = 1000.

Run: ``.venv/bin/python benchmarks/bench_reduced.py [--steps 2000] [--repeats 3]``. Compilation is excluded
(one warm-up call per engine and configuration); the best of ``repeats`` timed runs is reported.
Both engines record only the last step (record_every = steps), so the timing is the update itself.
"""

import argparse
import time

import jax
import numpy as np

import cpi_theory as cpi


def steps_per_second(run, steps: int, repeats: int) -> float:
    jax.block_until_ready(run())  # compile
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - t0)
    return steps / best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="reduced-engine steps per timed run")
    parser.add_argument(
        "--full-steps", type=int, default=2000, help="full-engine steps per timed run at the default config"
    )
    parser.add_argument(
        "--full-steps-large", type=int, default=200, help="full-engine steps per timed run at n_answers=1000"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cpi.enable_float64()
    configs = {
        "default (K_A=50, K_S=40)": (cpi.Config(), args.full_steps),
        "n_answers=1000 (K_S=40)": (cpi.Config(n_answers=1000), args.full_steps_large),
    }
    print(f"{'configuration':28s} {'full steps/s':>14s} {'reduced steps/s':>16s} {'ratio':>8s}")
    for name, (cfg, full_steps) in configs.items():
        world = cpi.build_world(cfg)
        state0 = cpi.pretrained_state(world, cfg.relation_score)
        params = cpi.reduced_params(cfg)

        def run_full(world=world, state0=state0, cfg=cfg, n=full_steps):
            return cpi.train(world, state0, cfg.lr_kq, cfg.lr_v, steps=n, record_every=n).final_state

        def run_reduced(params=params, n=args.steps):
            return cpi.reduced_train(params, steps=n, record_every=n).final_state

        full = steps_per_second(run_full, full_steps, args.repeats)
        reduced = steps_per_second(run_reduced, args.steps, args.repeats)
        print(f"{name:28s} {full:14.0f} {reduced:16.0f} {reduced / full:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
