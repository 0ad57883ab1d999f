"""Where the late-time law stops: training W_V too (lr_v > 0), measured, not derived.

The late-time law (cpi_theory.paper.late_time_law) is closed form for W_V frozen. With lr_v > 0 this
script runs the exact reduced engine to 10^6 steps and reports, per (lr_v / lr_kq, C+S fraction of 20
points), M_C and the probe's score gap D at 10^4, 10^5 and 10^6 steps and D's drift per decade over the last
decade: a numerical description, not a certified limit. The lr_v = 0 rows print the law's prediction beside
the run (its check). Writes figures/late_time/value_training.md.

    .venv/bin/python experiments/late_time_value_training.py
"""

import argparse
import time
from pathlib import Path

import numpy as np

import cpi_theory as cpi
from cpi_theory.paper import late_time_law
from cpi_theory.reduced import minimal_train, reduced_params

HORIZONS = (10_000, 100_000, 1_000_000)


def measure(config: cpi.Config) -> dict:
    records = minimal_train(reduced_params(config), steps=HORIZONS[-1], record_every=HORIZONS[0]).records
    mc = np.asarray(records["context_reliance"])
    gap = np.log(np.asarray(records["attention_context"]) / np.asarray(records["attention_subject"]))
    at = [h // HORIZONS[0] for h in HORIZONS]
    return {"mc": mc[at], "gap": gap[at], "drift": float(gap[at[-1]] - gap[at[-2]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures/late_time")
    args = parser.parse_args()
    cpi.enable_float64()
    started = time.perf_counter()
    lines = [
        "# M_C at long horizons with W_V trained (exact reduced engine; numerical, not a certified limit)",
        "",
        "20 points (C + C+S), paper default otherwise. D = the probe's score gap log(attention on c* / on s*);",
        "drift = D(1e6) - D(1e5). lr_v = 0 rows: the late-time law's M_C(1e6) and limit beside the run.",
        "",
        "| lr_v / lr_kq | C+S fraction | M_C(1e4) | M_C(1e5) | M_C(1e6) | D(1e6) | drift per decade | law M_C(1e6) | law limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ratio in (0.0, 0.1, 0.3, 1.0):
        for n_cs in (6, 10, 14):
            config = cpi.Config(n_context_critical=20 - n_cs, n_non_context_critical=n_cs, lr_v=ratio)
            m = measure(config)
            law = late_time_law(config)
            law_cols = (
                f"{float(law.context_reliance(HORIZONS[-1])):.4f} | {law.limit:.4f} ({law.limit_kind})"
                if law.closed_form
                else "not derived | not derived"
            )
            lines.append(
                f"| {ratio:g} | {n_cs / 20:.2f} | "
                + " | ".join(f"{v:.4f}" for v in m["mc"])
                + f" | {m['gap'][-1]:.3f} | {m['drift']:+.3f} | {law_cols} |"
            )
            print(lines[-1], flush=True)
    lines += ["", f"{time.perf_counter() - started:.0f} s on the machine that ran it."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "value_training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
