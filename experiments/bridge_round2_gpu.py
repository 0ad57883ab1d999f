"""Issue 22, item 5: round two's grid of one design at a GPU size, in one prepared run with a time budget.

    XLA_PYTHON_CLIENT_PREALLOCATE=false python experiments/bridge_round2_gpu.py        # V3 at small, <= 8 min
    python experiments/bridge_round2_gpu.py --design V3 --size micro --budget-s 120 --out /tmp/x   # CPU test

Stages, the pre-registered order of ``experiments/bridge_round2.py`` (figures/bridge/round2/PREREGISTRATION.md):
the gate (seeds 0, 1, ... pretrained one after another, each checkpoint saved, until the design's seed count
passes, ``design.max_seed`` seeds are tried, or ``--gate-share`` of the budget is spent), then every cell's
controls, the toy's out-of-sample prediction (written before the treatments), the treatments and the table.
Every (seed, arm) of a cell is trained in one vmapped program (``--together``: on a GPU one seed's arms
are too small to fill the device). Finished runs are skipped on a rerun (``runs.jsonl``), so a run cut by
the budget resumes where it stopped.

Writes under ``--out`` (default ``$OUT/round2_<size>``): gate.json / gate.md, runs.jsonl, predictions.json /
.md, results.json / .md, round2.png, and ``timing.json`` (seconds per stage, the device named). A cell not
started because the budget ran out is listed there as not run.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bridge_round2 as R  # noqa: E402  (experiments/bridge_round2.py: the stages, unchanged)

import cpi_theory  # noqa: E402
from cpi_theory.bridge import get_design  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--design", default="V3", choices=("V1", "V2", "V3"))
    parser.add_argument("--size", default="small", choices=("micro", "tiny", "small", "base"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--checkpoints", default=None, help="default: OUT/checkpoints")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget (default 8 min)")
    parser.add_argument("--gate-share", type=float, default=0.6, help="share of the budget for pretraining")
    parser.add_argument("--n-seeds", type=int, default=None, help="override the design's seed count")
    args = parser.parse_args(argv)
    # written as "not (good)" so that NaN is refused too
    if not 0 < args.budget_s < float("inf"):
        parser.error(f"--budget-s: must be a finite number of seconds > 0, got {args.budget_s}")
    if not 0 < args.gate_share <= 1:
        parser.error(f"--gate-share: must lie in (0, 1], got {args.gate_share}")
    if args.n_seeds is not None and args.n_seeds < 1:
        parser.error(f"--n-seeds: must be >= 1, got {args.n_seeds}")
    cpi_theory.enable_float64()  # the toy's predictions; the transformers stay float32 (precision set)
    import jax

    started = time.perf_counter()
    out = Path(args.out or Path(os.environ.get("OUT", ".")) / f"round2_{args.size}")
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = args.checkpoints or str(out / "checkpoints")
    design = get_design(args.design, args.size)
    if args.n_seeds is not None:
        design = dataclasses.replace(design, n_seeds=args.n_seeds)
    designs = {design.name: design}
    timing = {
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
        "design": design.name, "size": args.size, "budget_s": args.budget_s, "stages": {}, "not_run": [],
    }  # fmt: skip

    def stage_done(name, t0):
        timing["stages"][name] = round(time.perf_counter() - t0, 1)
        (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")

    t0 = time.perf_counter()
    deadline = started + args.gate_share * args.budget_s
    gated = R.gate_stage(
        designs, out, checkpoints, log=lambda line: print(line, flush=True), deadline=deadline
    )
    stage_done("gate", t0)
    for cell in design.cells:
        if time.perf_counter() - started > args.budget_s:
            timing["not_run"].append(cell.name)
            continue
        one = {design.name: dataclasses.replace(design, cells=(cell,))}
        for stage in ("controls", "predict", "treatments"):
            t0 = time.perf_counter()
            if stage == "predict":
                R.predict_stage(one, gated, out)
            else:
                R.finetune_stage(one, gated, out, controls=stage == "controls", together=True)
            stage_done(f"{cell.name}: {stage}", t0)
    t0 = time.perf_counter()
    R.table_stage(designs, out)
    stage_done("table", t0)
    timing["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    print(f"round two, {design.name} at {args.size}: {timing['wall_s']} s on {timing['device']}; "
          f"not run: {timing['not_run'] or 'none'}; {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
