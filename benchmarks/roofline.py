"""The roofline on paper of one config-step of the summaries engine (issue 21): flops, transcendentals and
bytes per config-step from XLA's cost analysis of one step vmapped over runs, and the ceilings they give on
a device with the stated float64 throughput and memory bandwidth (default: one NVIDIA H200).

    python benchmarks/roofline.py [--flops 3.4e13] [--bandwidth 4.8e12] [--exp-flops 20]

XLA counts the bytes of every fusion's inputs and outputs, i.e. what one step moves if each fusion is its own
kernel; the state-resident figure counts only the state and parameters (one read, one write per step), what a
loop that keeps the state in registers moves. Numbers only: no device needed.
"""

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import cpi_theory as cpi  # noqa: E402
from cpi_theory.reduced import Regime, summary_step  # noqa: E402

RUNS = 4096
REGIMES = {"frozen (lr_v = 0)": Regime(False, False, False), "value (lr_v = 0.3)": Regime(True, False, False)}


def cost_per_config_step(regime: Regime) -> dict:
    params = cpi.ToyParams.from_config(cpi.Config(lr_v=0.3 if regime.value_trained else 0.0))
    params = params.map(lambda x: jnp.full((RUNS,), x, dtype=jnp.float64))
    step, state = summary_step(regime, params)
    compiled = jax.jit(step).lower(state, params).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) // RUNS
    param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params)) // RUNS
    return {
        "flops": cost.get("flops", 0.0) / RUNS,
        "transcendentals": cost.get("transcendentals", 0.0) / RUNS,
        "bytes (XLA, per fusion)": cost.get("bytes accessed", 0.0) / RUNS,
        "bytes (state resident)": 2 * state_bytes + param_bytes,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--flops", type=float, default=3.4e13, help="float64 flop/s of the device (H200: ~34 T)"
    )
    parser.add_argument("--bandwidth", type=float, default=4.8e12, help="memory bytes/s (H200: ~4.8 TB/s)")
    parser.add_argument("--exp-flops", type=float, default=20.0, help="flops one float64 exp/log costs")
    args = parser.parse_args(argv)
    print(
        "| regime | flops | transcendentals | bytes (XLA) | bytes (resident) | compute bound | memory bound "
        "(XLA) | memory bound (resident) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, regime in REGIMES.items():
        c = cost_per_config_step(regime)
        compute = args.flops / (c["flops"] + args.exp_flops * c["transcendentals"])
        xla = args.bandwidth / c["bytes (XLA, per fusion)"]
        resident = args.bandwidth / c["bytes (state resident)"]
        print(
            f"| {name} | {c['flops']:.0f} | {c['transcendentals']:.0f} | {c['bytes (XLA, per fusion)']:.0f} | "
            f"{c['bytes (state resident)']:.0f} | {compute:.2e} | {xla:.2e} | {resident:.2e} |"
        )
    print(
        "\nceilings in config-steps/s; the step is the summaries engine's (probe gap, running summary, update)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
