"""Throughput of the bridge's jitted finetuning step (full-batch, all parameters and QK-only).

    python benchmarks/bench_bridge.py --size tiny            # 2-core CPU
    python benchmarks/bench_bridge.py --size base --steps 200  # on a GPU (not run in the task that wrote this)

Times ``scan_steps`` (a lax.scan of ``--chunk`` optimizer steps, compile excluded and reported separately)
on a freshly initialized model of the size's shape and its finetuning set, and prints steps/s and
tokens/s (tokens = batch x sequence length per step), with the device named. Measurements (``measure``)
are not included: they run every ``measure_every`` steps and are timed by the study's wall clock.
"""

import argparse
import dataclasses
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cpi_theory.bridge import (
    Transformer,
    fact_world_config,
    get_size,
    init_optimizer,
    make_fact_world,
    make_tx,
    model_config,
    qk_filter,
    scan_steps,
)


def bench(size_name: str, params: str, steps: int, chunk: int, repeats: int) -> dict:
    size = get_size(size_name)
    fact_world = make_fact_world(fact_world_config(size, "moderate", 0))
    data = fact_world.finetune_set()
    model = Transformer(model_config(size, fact_world.config, 0))
    trainable_filter = qk_filter() if params == "qk" else nnx.Param
    graphdef, trainable, frozen = nnx.split(model, trainable_filter, ...)
    ft = dataclasses.replace(size.finetune, params=params)
    tx = make_tx(ft.optimizer, ft.lr)
    opt_state = init_optimizer(tx, trainable)
    idx = np.broadcast_to(np.arange(len(data)), (chunk, len(data)))
    tokens = jnp.asarray(data.tokens[idx], dtype=jnp.int32)
    targets = jnp.asarray(data.targets[idx], dtype=jnp.int32)
    started = time.perf_counter()
    out = scan_steps(graphdef, tx, trainable, frozen, opt_state, tokens, targets)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - started
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        state = (trainable, opt_state)
        for _ in range(max(steps // chunk, 1)):
            t, o, _ = scan_steps(graphdef, tx, *state[:1], frozen, state[1], tokens, targets)
            state = (t, o)
        jax.block_until_ready(state)
        best = min(best, time.perf_counter() - t0)
    n_steps = max(steps // chunk, 1) * chunk
    return {
        "size": size_name,
        "params": params,
        "batch": len(data),
        "seq_len": fact_world.config.seq_len,
        "compile_s": compile_s,
        "steps_per_s": n_steps / best,
        "tokens_per_s": n_steps * len(data) * fact_world.config.seq_len / best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # as in the package: the bridge must run beside float64 theory
    device = jax.devices()[0]
    print(
        f"device: {device.platform} ({device.device_kind}); host: {platform.machine()}, jax {jax.__version__}"
    )
    for params in ("all", "qk"):
        r = bench(args.size, params, args.steps, args.chunk, args.repeats)
        print(
            f"{r['size']:>5} {r['params']:>3}: batch {r['batch']} x {r['seq_len']} tokens, "
            f"{r['steps_per_s']:.1f} steps/s, {r['tokens_per_s']:.0f} tokens/s (compile {r['compile_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
