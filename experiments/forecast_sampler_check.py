"""Does the forecast's tempered SMC sample the same posterior as NUTS? (issue 23)

``cpi-theory forecast`` samples the toy's posterior by adaptive tempered SMC (forward runs of the toy only);
NUTS, through the differentiable minimal engine, is the reference. For a few curves up to an origin, both
samplers run on the same posterior (SMC: the forecast's defaults, 4 replicas x 256 particles; NUTS: 4
chains, window adaptation with a dense mass matrix, started from 4 SMC draws) and are compared on

- each coordinate's 5%, 50% and 95% posterior quantiles, and
- the posterior predictive's 5%, 25%, 50%, 75% and 95% quantiles at the held-out steps (the same
  ``cpi_theory.forecast.predictive`` on either sampler's draws),

with R-hat and ESS for both. Writes ``OUT/sampler_check.json`` and ``OUT/sampler_check.md``.

    python experiments/forecast_sampler_check.py --out figures/forecast
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

import cpi_theory as cpi
from cpi_theory.forecast import SMCSettings, make_problem, nuts_posterior, predictive, smc_posteriors

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from forecast_backtest import collect_curves  # noqa: E402  (a script beside this one)

CASES = (  # (curve of the backtest, origin)
    ("published/lora_alpaca", 300.0),
    ("toy/02", 240.0),
    ("long/moderate/C+S 0.5/seed0", 200.0),
)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def compare(curve: dict, origin: float, *, warmup: int, draws: int, seed: int = 0) -> dict:
    s, y = curve["steps"], curve["values"]
    fit = s <= origin
    problem = make_problem(s[fit], y[fit], s[fit] - s[0])
    started = time.perf_counter()
    (smc,) = smc_posteriors([problem], [4], SMCSettings(), seed=seed)
    smc_seconds = time.perf_counter() - started
    starts = smc.z[:, 0, :]  # one particle of each replica
    started = time.perf_counter()
    nuts = nuts_posterior(problem, starts, chains=4, warmup=warmup, draws=draws, seed=seed)
    nuts_seconds = time.perf_counter() - started
    held = s[~fit]
    out = {"curve": curve["curve"], "origin": origin, "held_steps": held.tolist(), "samplers": {}}
    for name, posterior, seconds in (("smc", smc, smc_seconds), ("nuts", nuts, nuts_seconds)):
        x = posterior.x
        paths = predictive(posterior, held, np.random.default_rng(seed))["paths"]
        d = posterior.diagnostics()
        out["samplers"][name] = {
            "seconds": seconds,
            "max_rhat": d.get("max_rhat"),
            "min_ess": d["min_ess"],
            "draws": d["draws"],
            "info": {k: v for k, v in posterior.info.items() if not isinstance(v, np.ndarray)},
            "parameters": {
                n: np.quantile(x[:, i], [0.05, 0.5, 0.95]).tolist() for i, n in enumerate(problem.names)
            },
            "predictive": np.quantile(paths, QUANTILES, axis=0).tolist(),
        }
    a, b = (np.asarray(out["samplers"][k]["predictive"]) for k in ("smc", "nuts"))
    width = b[-1] - b[0]
    out["predictive_max_abs_difference"] = float(np.max(np.abs(a - b)))
    out["predictive_max_difference_over_nuts_90_width"] = float(
        np.max(np.abs(a - b) / np.maximum(width, 1e-12))
    )
    out["median_max_abs_difference"] = float(np.max(np.abs(a[2] - b[2])))
    return out


def write_markdown(results: list[dict], meta: dict, path: pathlib.Path) -> None:
    lines = [
        "# Tempered SMC against NUTS on the forecast's posterior (issue 23)",
        "",
        f"Made by `{meta['command']}` on the 2-core machine. SMC: the forecast's defaults (4 replicas x 256 "
        f"particles, 25 random-walk moves per stage, {meta['reference']}: the share of the tempering's "
        f"start drawn around the least-squares fit); NUTS: 4 chains, {meta['warmup']} warmup + {meta['draws']} "
        "draws each, dense mass matrix, tree depth up to 10, started from one SMC particle per replica. "
        "Predictive quantiles at the held-out steps, the same function on either sampler's draws.",
        "",
        "| curve @ origin | SMC s | NUTS s | SMC R-hat max / ESS min | NUTS R-hat max / ESS min | NUTS leapfrogs mean (max) | "
        "predictive quantiles: max abs diff | / NUTS 90% width | medians: max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s, n = r["samplers"]["smc"], r["samplers"]["nuts"]
        lines.append(
            f"| {r['curve']} @ {r['origin']:g} | {s['seconds']:.0f} | {n['seconds']:.0f} | {s['max_rhat']:.3f} / "
            f"{s['min_ess']:.0f} | {n['max_rhat']:.3f} / {n['min_ess']:.0f} | {n['info']['mean_leapfrogs']:.0f} "
            f"({n['info']['max_leapfrogs']}) | {r['predictive_max_abs_difference']:.4f} | "
            f"{r['predictive_max_difference_over_nuts_90_width']:.2f} | {r['median_max_abs_difference']:.4f} |"
        )
    lines += ["", "Posterior quantiles (5%, 50%, 95%) per coordinate, SMC / NUTS:", ""]
    for r in results:
        lines += [f"**{r['curve']} @ {r['origin']:g}**", "", "| coordinate | SMC | NUTS |", "|---|---|---|"]
        for name, q in r["samplers"]["smc"]["parameters"].items():
            p = r["samplers"]["nuts"]["parameters"][name]
            lines.append(
                f"| {name} | {q[0]:.3f}, {q[1]:.3f}, {q[2]:.3f} | {p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warmup steps per chain (default 300)")
    parser.add_argument("--draws", type=int, default=300, help="NUTS draws per chain (default 300)")
    args = parser.parse_args(argv)
    cpi.enable_float64()
    curves = {c["curve"]: c for c in collect_curves()}
    results = []
    for name, origin in CASES:
        r = compare(curves[name], origin, warmup=args.warmup, draws=args.draws)
        results.append(r)
        print(
            f"{name} @ {origin:g}: SMC {r['samplers']['smc']['seconds']:.0f} s, NUTS "
            f"{r['samplers']['nuts']['seconds']:.0f} s (R-hat {r['samplers']['nuts']['max_rhat']:.3f}); predictive "
            f"quantiles differ by at most {r['predictive_max_abs_difference']:.4f}",
            flush=True,
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python experiments/forecast_sampler_check.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "warmup": args.warmup,
        "draws": args.draws,
        "reference": f"reference {SMCSettings().reference:g}",
    }
    (out / "sampler_check.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    write_markdown(results, meta, out / "sampler_check.md")
    print(f"wrote {out / 'sampler_check.json'} and {out / 'sampler_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
