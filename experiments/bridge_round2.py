"""Issue 22: real transformers that invert, round two (pre-registered: figures/bridge/round2/PREREGISTRATION.md).

Stages, in the pre-registered order (each resumable; finished runs are skipped):

    gate        pretrain seeds 0, 1, ... of each design's model variants, keep the first n that pass the gate
                (delta_M > 2 delta_C, 0.1 < M_C(0) < 0.6); gate.json / gate.md
    controls    finetune every control arm on the gated seeds (runs.jsonl)
    predict     the toy, parametrized from the seed-mean start and calibrated on the C+S-0 control only,
                predicts the C+S arms (predictions.json / predictions.md) -- committed before:
    treatments  finetune the C+S arms (runs.jsonl)
    table       the criterion per cell, predicted vs measured with hits (results.md, results.json), figure

    # one core of the shared 2-core machine, single-threaded XLA; what figures/bridge/round2/ holds (V1, tiny,
    # 4 gated seeds, one cell per call in the pre-registered order; 38 minutes)
    export OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    nice -n 5 .venv/bin/python experiments/bridge_round2.py --designs V1 --size tiny --n-seeds 4 \\
        --cells "h4, GD lr 1" --out figures/bridge/round2      # then "h4, GD lr 3", "h1, GD lr 1", "h1, GD lr 3"
    # V2 then V3 (5 gated seeds each, the designs' default), one cell per call in the pre-registered order
    # (figures/bridge/round2/run_round2.sh and run_v3.sh), then the table of all three designs:
    nice -n 5 .venv/bin/python experiments/bridge_round2.py --designs V2 --size tiny --cells "Adam 1e-3" \\
        --out figures/bridge/round2      # then "GD 0.3"; V3: "LoRA r8 q/k/v/o", "full finetuning"
    .venv/bin/python experiments/bridge_round2.py --designs V1 V2 V3 --size tiny --stage table \\
        --out figures/bridge/round2      # the table stage reads runs.jsonl only (no gate, no pretraining)

``--together`` trains every (seed, arm) of a cell in one vmapped program (meant for a GPU; not run on one yet);
``--size micro`` is the test size. The GPU grid at ``small`` (issue 22, item 5) is
``experiments/bridge_round2_gpu.py``: these stages in one budgeted run. V3's pretraining was calibrated on the
gate alone by ``experiments/bridge_v3_calibration.py``; V3 and V1's 5th seed then ran with
figures/bridge/round2/run_v3_calibrated.sh and run_v1_seed5.sh.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import regime_search as S  # experiments/regime_search.py: round one's criterion (curve_depth), unchanged

import cpi_theory
from cpi_theory.bridge import curve_numbers as toy_curve_numbers
from cpi_theory.bridge import (
    finetune_arms,
    gate_line,
    gated_seeds,
    get_design,
    predict_arms,
    score_prediction,
    write_json,
)

CONTROL_DEPTH_MAX = 0.01  # the rule: < 0.01 in every control of the design


# --- bookkeeping -----------------------------------------------------------------------------------
def run_key(design: str, cell: str, arm: str, seed: int) -> str:
    return json.dumps([design, cell, arm, seed])


def read_runs(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def append_runs(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for record in records:
            handle.write(json.dumps(_clean(record), sort_keys=True, allow_nan=False) + "\n")


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        return _clean(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


# --- the gate --------------------------------------------------------------------------------------
def gate_stage(designs, out: Path, checkpoints, log=print, deadline: float | None = None) -> dict:
    """Gate every (design, model variant); returns {(design, variant): [seed records]} (models attached).
    ``deadline`` (a ``time.perf_counter()`` time): no new seed is pretrained after it."""
    gated = {}
    path = out / "gate.json"
    table = json.loads(path.read_text()) if path.exists() else {}  # other variants' gates are kept
    for name in designs:
        design = designs[name]
        variants = [v for v in design.models if any(c.model == v for c in design.cells)]
        for variant in variants:

            def report(variant, seed, verdict, seconds, design=design):
                log(
                    f"{design.name} {variant} seed {seed}: {gate_line(verdict)} ({seconds:.0f} s pretraining)"
                )

            records = gated_seeds(design, variant, checkpoints, log=report, deadline=deadline)
            gated[(name, variant)] = records
            table[f"{name}/{variant}"] = [
                {k: r[k] for k in ("seed", "start", "gate", "seconds")} for r in records
            ]
    write_json(table, path)
    (out / "gate.md").write_text(gate_table(table))
    return gated


def gate_table(table: dict) -> str:
    lines = [
        "| design / model | seed | delta_M | delta_C | M_C(0) | attention on context (layers) | gate |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = []
    for key, records in table.items():
        for r in records:
            s, g = r["start"], r["gate"]
            att = ", ".join(f"{a:.2f}" for a in s["attention_context"])
            verdict = "pass" if g["passed"] else "FAIL: " + "; ".join(g["failed"])
            lines.append(
                f"| {key} | {r['seed']} | {s['delta_m']:.3f} | {s['delta_c']:.3f} | {s['context_reliance']:.3f} "
                f"| {att} | {verdict} |"
            )
        passed = sum(r["gate"]["passed"] for r in records)
        summary.append(f"- {key}: {passed} of {len(records)} seeds tried pass")
    return "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"


def passing(gated, name, variant) -> dict:
    return {r["seed"]: r["model"] for r in gated[(name, variant)] if r["gate"]["passed"]}


# --- finetuning stages -----------------------------------------------------------------------------
def finetune_stage(designs, gated, out: Path, controls: bool, together: bool, log=print) -> None:
    runs_path = out / "runs.jsonl"
    done = {r["key"] for r in read_runs(runs_path)}
    for name, design in designs.items():
        for cell in design.cells:
            arms = cell.controls if controls else cell.treatments
            models = passing(gated, name, cell.model)
            todo = {
                seed: model
                for seed, model in models.items()
                if any(run_key(name, cell.name, a.name, seed) not in done for a in arms)
            }
            if not todo:
                continue
            # One seed at a time on a CPU: each seed's runs are appended (and survive an interruption) at once.
            batches = [todo] if together else [{seed: model} for seed, model in todo.items()]
            for batch in batches:
                _finetune_batch(name, design, cell, arms, batch, together, runs_path, controls, log)


def _finetune_batch(name, design, cell, arms, todo, together, runs_path, controls, log) -> None:
    started = time.perf_counter()
    trajectories = finetune_arms(design, cell, arms, todo, together=together)
    records = []
    for (seed, arm_name), trajectory in trajectories.items():
        arm = next(a for a in arms if a.name == arm_name)
        records.append(
            {
                "key": run_key(name, cell.name, arm_name, seed),
                "design": name,
                "cell": cell.name,
                "arm": arm_name,
                "control": arm.control,
                "seed": seed,
                "recipe": cell.recipe.to_dict(),
                "arm_world": arm.world,
                "fresh_share": arm.fresh_share,
                "trajectory": {k: v for k, v in trajectory.items()},
            }
        )
    append_runs(runs_path, records)
    finals = ", ".join(
        f"{arm} seed {seed}: M_C {t['context_reliance'][0]:.3f} -> max {max(t['context_reliance']):.3f} "
        f"-> {t['context_reliance'][-1]:.3f}"
        for (seed, arm), t in trajectories.items()
    )
    log(
        f"{name} / {cell.name}: {'controls' if controls else 'treatments'} x seeds {sorted(todo)} in "
        f"{time.perf_counter() - started:.0f} s ({finals})"
    )


def _curves(runs, design, cell, arm):
    rows = sorted(
        (r for r in runs if r["design"] == design and r["cell"] == cell and r["arm"] == arm),
        key=lambda r: r["seed"],
    )
    if not rows:
        return None, [], None
    steps = np.asarray(rows[0]["trajectory"]["step"], dtype=np.float64)
    curves = np.asarray([r["trajectory"]["context_reliance"] for r in rows], dtype=np.float64)
    return curves, [r["seed"] for r in rows], steps


def real_time(recipe, steps) -> np.ndarray:
    """The real learning-rate clock at ``steps``: summed schedule factors (the step count without one)."""
    factors = np.asarray(recipe.schedule_factor(np.arange(recipe.steps)), dtype=np.float64)
    clock = np.concatenate([[0.0], np.cumsum(factors)])
    return clock[np.asarray(steps, dtype=np.int64)]


def seed_mean_start(gated, name, variant) -> dict:
    starts = [r["start"] for r in gated[(name, variant)] if r["gate"]["passed"]]
    return {k: float(np.mean([s[k] for s in starts])) for k in ("delta_m", "delta_c", "context_reliance")}


def predict_stage(designs, gated, out: Path, log=print) -> dict:
    """Predictions of every cell's C+S arms from its start and its C+S-0 control (before the arms run)."""
    runs = read_runs(out / "runs.jsonl")
    path = out / "predictions.json"
    predictions = json.loads(path.read_text()) if path.exists() else {}  # other cells' are kept
    for name, design in designs.items():
        for cell in design.cells:
            if f"{name} / {cell.name}" in predictions:
                continue  # predicted once, before its treatments ran: never redone
            control = next(a for a in cell.controls if a.world.get("cs_as_c") or a.fresh_share == 1.0)
            curves, seeds, steps = _curves(runs, name, cell.name, control.name)
            if curves is None:
                log(f"{name} / {cell.name}: no control runs yet, no prediction")
                continue
            start = seed_mean_start(gated, name, cell.model)
            fractions = {
                arm.name: (1.0 - arm.fresh_share) * arm.world.get("cs_fraction", 0.0)
                for arm in cell.treatments
            }
            clock = real_time(cell.recipe, steps)
            result = predict_arms(start, clock, curves.mean(axis=0), fractions, cell.lr_v_ratio)
            result.update(start=start, control=control.name, seeds=seeds, step=steps.tolist())
            predictions[f"{name} / {cell.name}"] = result
            arms = ", ".join(
                f"{a}: {'inverts' if p['numbers']['inverts'] else 'no inversion'} (depth {p['numbers']['depth']:.3f})"
                for a, p in result["arms"].items()
            )
            log(
                f"{name} / {cell.name}: time scale {result['time_scale']:.3g}, control RMSE {result['control_rmse']:.3f}; {arms}"
            )
    write_json(predictions, out / "predictions.json")
    (out / "predictions.md").write_text(prediction_table(predictions))
    return predictions


def prediction_table(predictions: dict) -> str:
    lines = [
        "| design / cell | arm | toy delta_M, delta_C, beta, lr_v ratio | time scale (control RMSE) | predicted | peak step | depth |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, p in predictions.items():
        toy = p["toy"]
        for arm, a in p["arms"].items():
            n = a["numbers"]
            lines.append(
                f"| {key} | {arm} | {toy['delta_m']:.3f}, {toy['delta_c']:.3f}, {toy['context_bias']:.2f}, "
                f"{toy['lr_v_ratio']:g} | {p['time_scale']:.3g} ({p['control_rmse']:.3f}) | "
                f"{'inverts' if n['inverts'] else 'no inversion'} | {n['peak_step']:.0f} | {n['depth']:.3f} |"
            )
    return "\n".join(lines) + "\n"


# --- the criterion and the tables ------------------------------------------------------------------
def judge_cell(runs, name, cell) -> dict:
    """The pre-registered criterion for each treatment arm of ``cell`` against every control of the cell."""
    controls = {}
    for arm in cell.controls:
        curves, seeds, _ = _curves(runs, name, cell.name, arm.name)
        if curves is not None:
            controls[arm.name] = {"seeds": seeds, **S.curve_depth(curves)}
    arms = {}
    for arm in cell.treatments:
        curves, seeds, steps = _curves(runs, name, cell.name, arm.name)
        if curves is None:
            continue
        t = S.curve_depth(curves)
        failed = []
        if len(seeds) < 3:
            failed.append(f"only {len(seeds)} seeds")
        if not 0 < t["peak_index"] < curves.shape[1] - 1:
            failed.append("no interior peak")
        if not t["rise"] >= S.RISE_MIN:
            failed.append(f"rise {t['rise']:.3f} < {S.RISE_MIN}")
        if not t["depth"] >= S.DEPTH_MIN:
            failed.append(f"depth {t['depth']:.3f} < {S.DEPTH_MIN}")
        if not t["depth"] > S.N_SE * t["se"]:
            failed.append(f"depth not > 2 SE ({2 * t['se']:.3f})")
        treatment_inverts = not failed
        for c_name, c in controls.items():
            if not c["depth"] < CONTROL_DEPTH_MAX:
                failed.append(f"control '{c_name}' falls {c['depth']:.3f}")
        arms[arm.name] = {
            "seeds": seeds,
            "step": steps.tolist(),
            "mean": curves.mean(axis=0).tolist(),
            "treatment": t,
            "treatment_inverts": treatment_inverts,
            "inversion": not failed,
            "failed": failed,
            "peak_step": float(steps[t["peak_index"]]),
        }
    return {"arms": arms, "controls": controls}


def table_stage(designs, out: Path) -> dict:
    runs = read_runs(out / "runs.jsonl")
    predictions = (
        json.loads((out / "predictions.json").read_text()) if (out / "predictions.json").exists() else {}
    )
    results = {}
    lines = [
        "| design / cell | arm | seeds | start | seed-mean peak (step) | final | depth ± SE | controls: depth ± SE | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    oos = [
        "| design / cell | arm | predicted: inverts, peak step, depth, final | measured: inverts, peak step, depth, final | hits (inversion, peak, depth) |",
        "|---|---|---|---|---|",
    ]
    hits = {"inversion": [0, 0], "peak_step": [0, 0], "depth": [0, 0]}
    design_controls = {}
    for name, design in designs.items():
        for cell in design.cells:
            judged = judge_cell(runs, name, cell)
            key = f"{name} / {cell.name}"
            results[key] = judged
            for c in judged["controls"].values():
                design_controls.setdefault(name, []).append(c["depth"])
            ctrl = "; ".join(
                f"{c_name.replace('control: ', '')}: {c['depth']:.3f} ± {c['se']:.3f}"
                for c_name, c in judged["controls"].items()
            )
            for arm_name, a in judged["arms"].items():
                t = a["treatment"]
                verdict = "INVERSION" if a["inversion"] else "no: " + "; ".join(a["failed"])
                lines.append(
                    f"| {key} | {arm_name} | {len(a['seeds'])} | {t['start']:.3f} | {t['peak']:.3f} ({a['peak_step']:.0f}) "
                    f"| {t['final']:.3f} | {t['depth']:.3f} ± {t['se']:.3f} | {ctrl} | {verdict} |"
                )
                p = predictions.get(key, {}).get("arms", {}).get(arm_name)
                if p is None:
                    continue
                measured = toy_curve_numbers(a["step"], a["mean"])
                score = score_prediction(p["numbers"], measured, a["treatment_inverts"])
                a["prediction_hits"] = score
                for k, v in score.items():
                    if v is not None:
                        hits[k][0] += int(v)
                        hits[k][1] += 1
                n = p["numbers"]
                fmt = lambda inv, step, depth, final: (
                    f"{'yes' if inv else 'no'}, {step:.0f}, {depth:.3f}, {final:.3f}"
                )
                mark = lambda v: "-" if v is None else ("hit" if v else "miss")
                oos.append(
                    f"| {key} | {arm_name} | {fmt(n['inverts'], n['peak_step'], n['depth'], n['final'])} | "
                    f"{fmt(a['treatment_inverts'], measured['peak_step'], measured['depth'], measured['final'])} | "
                    f"{mark(score['inversion'])}, {mark(score['peak_step'])}, {mark(score['depth'])} |"
                )
    summary = [
        f"- {name}: every control < {CONTROL_DEPTH_MAX}: {all(d < CONTROL_DEPTH_MAX for d in depths)} "
        f"(control depths {', '.join(f'{d:.3f}' for d in depths)})"
        for name, depths in design_controls.items()
    ]
    hit_line = ", ".join(f"{k}: {h[0]} of {h[1]}" for k, h in hits.items())
    fits = [
        f"{key}: time scale {p['time_scale']:.3g}{' (at its lower bound 1e-3)' if p['time_scale'] <= 1.000001e-3 else ''}, "
        f"control RMSE {p['control_rmse']:.3f}"
        for key, p in predictions.items()
    ]
    text = (
        "## Criterion per cell\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n\n"
        "## The toy out of sample (predicted from the start and the C+S-0 control, before the arms ran)\n\n"
        + "\n".join(oos)
        + f"\n\nHits: {hit_line} (peak step scored only where both invert).\n\n"
        + "The toy's time scale, fitted on each control only:\n\n"
        + "\n".join(f"- {line}" for line in fits)
        + "\n"
    )
    (out / "results.md").write_text(text)
    write_json({"cells": results, "hits": hits}, out / "results.json")
    plot(designs, runs, predictions, out / "round2")
    return results


def plot(designs, runs, predictions, stem: Path) -> None:
    from matplotlib.figure import Figure

    cells = [(name, cell) for name, d in designs.items() for cell in d.cells]
    cells = [(n, c) for n, c in cells if any(r["design"] == n and r["cell"] == c.name for r in runs)]
    if not cells:
        return
    ncols = min(len(cells), 3)  # rows of at most three cells, so that six stay legible
    nrows = -(-len(cells) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.6 * nrows))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.ravel()[len(cells) :]:
        ax.set_visible(False)
    axes = grid.ravel()[: len(cells)]
    colors = ["C3", "C1", "C4"]
    for ax, (name, cell) in zip(axes, cells, strict=True):
        key = f"{name} / {cell.name}"
        for i, arm in enumerate(cell.arms):
            curves, seeds, steps = _curves(runs, name, cell.name, arm.name)
            if curves is None:
                continue
            # the first control is the one the toy's time scale is fitted on (C0, like its dotted fit); a
            # second control (V3's fresh C) gets its own colour
            n_control = sum(a.control for a in cell.arms[:i])
            color = ("C0", "C2")[min(n_control, 1)] if arm.control else colors[i % 3]
            x = np.maximum(steps, 0.5)
            ax.plot(
                x,
                curves.mean(axis=0),
                color=color,
                ls="-",
                lw=1.8,
                label=f"{arm.name}: measured, {len(seeds)} seeds",
            )
            pred = predictions.get(key, {}).get("arms", {}).get(arm.name)
            if pred is not None:
                ax.plot(x, pred["curve"], color=color, ls=":", lw=1.2, label=f"{arm.name}: toy, predicted")
        if key in predictions:
            p = predictions[key]
            ax.plot(
                np.maximum(np.asarray(p["step"]), 0.5),
                p["control_curve"],
                color="C0",
                ls=":",
                lw=1.2,
                label="control: toy, time scale fitted",
            )
        ax.set_xscale("log")
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("finetuning step (step 0 drawn at 0.5)", fontsize=7)
        ax.legend(fontsize=5.5)
    for ax in grid[:, 0]:
        ax.set_ylabel("context reliance M_C (seed mean)")
    fig.suptitle(
        "Round two: seed-mean M_C of each design's arms (solid) and the toy's out-of-sample predictions "
        "(dotted); no cell meets the inversion criterion",
        fontsize=9,
    )
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(f"{stem}.{ext}", dpi=120, metadata={"CreationDate": None} if ext == "pdf" else None)


# --- main ------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stage", choices=("gate", "controls", "predict", "treatments", "table", "all"), default="all"
    )
    parser.add_argument("--designs", nargs="+", default=["V1", "V2"], choices=("V1", "V2", "V3"))
    parser.add_argument("--size", default="tiny", choices=("micro", "tiny", "small", "base"))
    parser.add_argument("--out", default="figures/bridge/round2")
    parser.add_argument("--checkpoints", default="/tmp/bridge_round2_checkpoints")
    parser.add_argument(
        "--together", action="store_true", help="all (seed, arm) of a cell in one vmapped program"
    )
    parser.add_argument(
        "--cells", nargs="+", default=None, metavar="NAME", help="only these cells (by name) of the designs"
    )
    parser.add_argument("--n-seeds", type=int, default=None, help="override the design's seed count (tests)")
    args = parser.parse_args(argv)
    cpi_theory.enable_float64()  # the toy (predict stage) runs in float64; the transformers stay float32
    import dataclasses

    designs = {}
    for name in args.designs:
        design = get_design(name, args.size)
        if args.n_seeds is not None:
            design = dataclasses.replace(design, n_seeds=args.n_seeds)
        if args.cells is not None:
            cells = tuple(c for c in design.cells if c.name in args.cells)
            if not cells:
                parser.error(f"--cells: none of {args.cells} is a cell of {name}")
            design = dataclasses.replace(design, cells=cells)
        designs[name] = design
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages = ("gate", "controls", "predict", "treatments", "table") if args.stage == "all" else (args.stage,)
    # every stage but the table needs the gated checkpoints (cached); the table reads runs.jsonl only
    gated = gate_stage(designs, out, args.checkpoints) if stages != ("table",) else {}
    if "controls" in stages:
        finetune_stage(designs, gated, out, controls=True, together=args.together)
    if "predict" in stages:
        predict_stage(designs, gated, out)
    if "treatments" in stages:
        finetune_stage(designs, gated, out, controls=False, together=args.together)
    if "table" in stages:
        table_stage(designs, out)
    meta = out / "meta.json"
    history = json.loads(meta.read_text()) if meta.exists() else []
    history.append(
        {"stage": args.stage, "designs": args.designs, "size": args.size, "together": args.together,
         "wall_seconds": time.perf_counter() - started}
    )  # fmt: skip
    meta.write_text(json.dumps(history, indent=1) + "\n")


if __name__ == "__main__":
    main()
