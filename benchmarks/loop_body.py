"""What one step of the compiled sweep loop costs on this machine's XLA: the while loop's body of
``jax.jit(jax.vmap(minimal_summary))`` (frozen regime, summaries only), read from the optimized HLO.

    python benchmarks/loop_body.py [--runs 1000] [--steps 3000] [--timing]

Prints the body's elementwise transcendentals (exponential, log), divides, multiplies and adds (each one op
per run and step), the number of fusions the body is split into (each one pass over the group's arrays: a
kernel launch and its inputs and outputs through memory) and the arrays carried from step to step. Issue 21's
question "does the step stay in registers" is answered by the fusion count: 1 would mean yes.

``--timing`` also measures, on this machine: float64 exponentials per second in an XLA loop and in NumPy
(one core each), and ``simulate_many`` on one device at several group sizes (20,000 runs x 3,000 steps).
"""

import argparse
import re
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent))

OPS = ("exponential", "log", "divide", "multiply", "add", "subtract", "maximum", "select", "compare")


def computations(hlo: str) -> dict[str, str]:
    """The named computations of an HLO module's text: name -> body."""
    found = re.finditer(r"\n(?:ENTRY )?(%[\w.\-]+) \([^\n]*\{\n(.*?)\n\}", hlo, re.S)
    return {m.group(1): m.group(2) for m in found}


def while_body_counts(hlo: str) -> dict:
    """Op counts of the (largest) while loop's body, its fusions followed, in an optimized HLO text."""
    comps = computations(hlo)
    bodies = re.findall(r"while\((?:[^()]|\([^()]*\))*\), condition=[%\w.\-]+, body=(%[\w.\-]+)", hlo)
    if not bodies:
        raise ValueError("no while loop in the module")
    name = max(bodies, key=lambda b: len(comps.get(b, "")))
    body = comps[name]
    fusions = len(re.findall(r" fusion\(", body))
    text, seen, stack = body, set(), [body]
    while stack:
        for callee in re.findall(r"calls=(%[\w.\-]+)", stack.pop()):
            if callee not in seen and callee in comps:
                seen.add(callee)
                stack.append(comps[callee])
                text += comps[callee]
    counts = {op: len(re.findall(rf" {op}\(", text)) for op in OPS}
    # the loop state: the body's parameter(0), a tuple whose f64 arrays are carried from step to step
    state = next((line for line in body.splitlines() if "parameter(0)" in line), "")
    n_carried = len(re.findall(r"f64\[\d+\]", state))
    return {"body": name, "fusions": fusions, "carried_f64_arrays": n_carried, **counts}


def exp_rates(n: int = 4096, repeats: int = 2000) -> dict[str, float]:
    """float64 exponentials per second: XLA (a jitted loop of exp over ``n`` numbers) and NumPy (in place)."""
    import time

    import numpy as np

    x = np.random.default_rng(0).uniform(-30.0, 0.0, n)
    loop = jax.jit(lambda y: jax.lax.fori_loop(0, repeats, lambda i, v: jax.numpy.exp(v) * 0.5 - 3.0, y))
    xj = jax.numpy.asarray(x)
    loop(xj).block_until_ready()
    start = time.perf_counter()
    loop(xj).block_until_ready()
    xla = n * repeats / (time.perf_counter() - start)
    y = x.copy()
    start = time.perf_counter()
    for _ in range(repeats):
        np.exp(y, out=y)
        y *= 0.5
        y -= 3.0
    return {"XLA": xla, "NumPy": n * repeats / (time.perf_counter() - start)}


def group_rates(groups=(128, 256, 512, 1024, 2048), runs: int = 20_000, steps: int = 3000) -> dict:
    """``simulate_many`` (summaries) config-steps/s on one device for each group size (best of 2)."""
    import time

    from bench_minimal import grid

    import cpi_theory as cpi

    params, _ = grid(runs, lr_v=0.0)
    out = {}
    for group in groups:

        def run(group=group):
            return cpi.simulate_many(params, steps=steps, store_every=0, group=group, devices=1).summary[
                "peak"
            ]

        jax.block_until_ready(run())
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            jax.block_until_ready(run())
            best = min(best, time.perf_counter() - start)
        out[group] = runs * steps / best
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--timing", action="store_true", help="also time exponentials and group sizes")
    args = parser.parse_args(argv)
    if args.timing:  # as `cpi-theory sweep` runs: one device per core (before the backend starts)
        import cpi_theory

        cpi_theory.use_cpu_cores()
    from bench_minimal import grid

    from cpi_theory.reduced import Regime, minimal_summary

    params, _ = grid(args.runs, lr_v=0.0)
    frozen = Regime(value_trained=False, has_s=False, has_aug=False)
    program = jax.jit(jax.vmap(lambda p: minimal_summary(p, steps=args.steps, regime=frozen).records["peak"]))
    from jax_loop_peer import summaries
    from numpy_minimal_peer import peer_inputs

    inputs = {k: jax.numpy.asarray(v) for k, v in peer_inputs(params).items()}
    peer = jax.jit(lambda p: summaries(p, args.steps)[1])
    sides = {
        "engine (minimal_summary)": while_body_counts(program.lower(params).compile().as_text()),
        "hand-written loop peer": while_body_counts(peer.lower(inputs).compile().as_text()),
    }
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; {args.runs} runs vmapped, frozen regime")
    print("per step of the loop body (each op once per run):")
    print(f"  {'':20s} " + " ".join(f"{name:>26s}" for name in sides))
    for key in sides["engine (minimal_summary)"]:
        if key != "body":
            print(f"  {key:20s} " + " ".join(f"{side[key]:>26}" for side in sides.values()))
    if args.timing:
        rates = exp_rates()
        print(
            "float64 exponentials per second, one core: "
            + ", ".join(f"{k} {v:.3g}" for k, v in rates.items())
        )
        for group, rate in group_rates().items():
            print(f"simulate_many, 1 device, group {group:5d}: {rate:.3g} config-steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
