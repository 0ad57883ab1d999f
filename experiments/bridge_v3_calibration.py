"""Issue 22, V3 at ``tiny``: calibrate the pretraining of V3's world so that its checkpoints pass the gate.

V3's pre-registered world (4,096 fixed points, 2,112 memorized facts) failed the gate at 12 of 12 seeds with
the round-two regime pretrained for 800 steps (M_C(0) 0.87-0.99; figures/bridge/round2/gate.md). This script
pretrains candidate regimes of that world and prints each checkpoint's gate (delta_M > 2 delta_C,
0.1 < M_C(0) < 0.6). It only pretrains and measures the starting point: no finetuning run is made, so the
choice of a regime cannot see any finetuning outcome. Every (candidate, seed) tried is appended to
``calibration.jsonl`` (resumable: tried pairs are skipped) and tabulated in ``calibration.md``.

    export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    nice -n 5 .venv/bin/python experiments/bridge_v3_calibration.py --candidates steps3x agree0.05 \\
        --seeds 0 1 --out figures/bridge/round2/v3_calibration
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from cpi_theory.bridge import ROUND2_REGIME, V3_REGIME, gate_line, gated_checkpoint, get_design

# Candidate pretraining regimes of V3's world: (world overrides, pretraining overrides), with the reason.
CANDIDATES = {
    "preregistered": ({}, {}, "V3 as pre-registered (800 steps of the round-two regime)"),
    "steps3x": ({}, {"steps": 2400}, "8x V1's facts: 3x the pretraining steps to memorize them"),
    "agree0.05": ({"agree_rate": 0.05}, {}, "fewer agreeing contexts (they teach copying on known subjects)"),
    "copynoise0.9": ({"copy_noise": 0.9}, {}, "noisier copy labels (a weaker copy pathway)"),
    "steps3x_agree0.05": ({"agree_rate": 0.05}, {"steps": 2400}, "both of the first two"),
    "steps3x_copynoise0.9": ({"copy_noise": 0.9}, {"steps": 2400}, "3x steps and noisier copy labels"),
    "steps3x_agree0.05_copynoise0.9": (
        {"agree_rate": 0.05, "copy_noise": 0.9},
        {"steps": 2400},
        "all three levers",
    ),
    "agree0": ({"agree_rate": 0.0}, {}, "no agreeing contexts"),
    "factnoise0.1": ({"fact_noise": 0.1}, {}, "cleaner fact labels (a stronger memory pathway)"),
    "agree0.05_factnoise0.1": (
        {"agree_rate": 0.05, "fact_noise": 0.1},
        {},
        "fewer agreeing contexts and cleaner fact labels",
    ),
    "steps3x_agree0.05_factnoise0.1": (
        {"agree_rate": 0.05, "fact_noise": 0.1},
        {"steps": 2400},
        "3x steps, fewer agreeing contexts, cleaner fact labels",
    ),
    "copyrate0.1": ({"copy_rate": 0.1}, {}, "fewer copy examples (context formats less tied to copying)"),
    "copyrate0.1_factnoise0.1": (
        {"copy_rate": 0.1, "fact_noise": 0.1},
        {},
        "fewer copy examples and cleaner fact labels",
    ),
    "copyrate0.05_factnoise0.1": (
        {"copy_rate": 0.05, "fact_noise": 0.1},
        {},
        "still fewer copy examples and cleaner fact labels",
    ),
    "agree0.05_factnoise0.1_copynoise0.9": (
        {"agree_rate": 0.05, "fact_noise": 0.1, "copy_noise": 0.9},
        {},
        "fewer agreeing contexts, cleaner fact labels, noisier copy labels",
    ),
    "agree0.02_factnoise0.05_copynoise0.9": (
        {"agree_rate": 0.02, "fact_noise": 0.05, "copy_noise": 0.9},
        {},
        "the same levers pushed further",
    ),
    "agree0.05_factnoise0.1_copynoise0.85": (
        {"agree_rate": 0.05, "fact_noise": 0.1, "copy_noise": 0.85},
        {},
        "between the two above (copying emerges at some seeds)",
    ),
}


def candidate_design(name: str, size: str = "tiny"):
    """V3 at ``size`` with candidate ``name``'s pretraining (world and pretraining overrides)."""
    world, pretrain, _ = CANDIDATES[name]
    design = get_design("V3", size)
    # candidates are changes of the pre-registered world (the round-two regime), not of the chosen V3_REGIME
    preregistered = {**design.world, **{k: ROUND2_REGIME[k] for k in V3_REGIME}}
    return dataclasses.replace(
        design,
        world={**preregistered, **world},
        pretrain=dataclasses.replace(design.pretrain, **pretrain),
    )


def read_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _seconds(row: dict) -> str:
    # the pre-registered rows come from gate.json, whose pretraining times were overwritten by a cached load
    return "(gate.json)" if row["seconds"] is None else f"{row['seconds']:.0f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| candidate | seed | delta_M | delta_C | M_C(0) | gate | pretraining s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["gate"]
        verdict = "pass" if g["passed"] else "FAIL: " + "; ".join(g["failed"])
        lines.append(
            f"| {r['candidate']} | {r['seed']} | {g['delta_m']:.3f} | {g['delta_c']:.3f} | "
            f"{g['context_reliance']:.3f} | {verdict} | {_seconds(r)} |"
        )
    names = list(dict.fromkeys(r["candidate"] for r in rows))
    summary = [
        f"- {n}: {sum(r['gate']['passed'] for r in rows if r['candidate'] == n)} of "
        f"{sum(r['candidate'] == n for r in rows)} seeds pass ({CANDIDATES[n][2]})"
        for n in names
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", nargs="+", default=["steps3x"], choices=sorted(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--size", default="tiny", choices=("micro", "tiny", "small"))
    parser.add_argument("--out", default="figures/bridge/round2/v3_calibration")
    parser.add_argument("--checkpoints", default="/tmp/bridge_round2_checkpoints")
    args = parser.parse_args(argv)
    if min(args.seeds) < 0:
        parser.error(f"--seeds: must be >= 0, got {min(args.seeds)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "calibration.jsonl"
    done = {(r["candidate"], r["seed"]) for r in read_rows(path)}
    for name in args.candidates:
        design = candidate_design(name, args.size)
        for seed in args.seeds:
            if (name, seed) in done:
                continue
            _, start, verdict, seconds = gated_checkpoint(design, "h4", seed, args.checkpoints)
            row = {"candidate": name, "seed": seed, "gate": verdict, "seconds": seconds}
            with path.open("a") as handle:
                handle.write(json.dumps(row, sort_keys=True) + "\n")
            print(f"{name} seed {seed}: {gate_line(verdict)} ({seconds:.0f} s pretraining)", flush=True)
    (out / "calibration.md").write_text(table(read_rows(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
