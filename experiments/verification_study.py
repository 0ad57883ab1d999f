"""The verification study: pretrained regimes x mixtures (+ two mitigations) x seeds, toy vs real per cell.

Each (regime, seed) is pretrained once; every cell of that row finetunes the same checkpoint. For each run
the toy is parametrized from that checkpoint's measured start (delta_M, delta_C) and the cell's class
fractions, and predicts the shape before any finetuning; then its time scale is fitted to the measured
curve. Per cell, the seeds' curves are averaged and two toys are fitted to the mean: the extended toy
(M_C(0)-calibrated delta_C, fitted lr_v / lr_kq) and the joint fit (:func:`cpi_theory.bridge.joint_fit`:
the measured delta_M, delta_C and the cell's fractions fixed, as a user who measured them would; the
initial attention split, the time scale and lr_v / lr_kq fitted, with intervals).
"""

import collections
import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cpi_theory.bridge import (
    CLASS_LOSS_KEYS,
    REGIMES,
    fact_world_config,
    finetune_and_fit,
    get_size,
    make_fact_world,
    measure_model,
    plot_study,
    pretrained_model,
    start_state,
    write_json,
)
from cpi_theory.config import DataClass
from cpi_theory.fit import fit_curve, joint_fit, summary_record, toy_parameters

# Columns of the grid: the four mixtures, filtering (the 0.5 mixture without its C+S points) and QK-only
# finetuning (the 0.5 mixture, only query/key weights train).
CELLS = {
    "C+S 0": dict(cs_fraction=0.0),
    "C+S 0.25": dict(cs_fraction=0.25),
    "C+S 0.5": dict(cs_fraction=0.5),
    "C+S 0.75": dict(cs_fraction=0.75),
    "filter C+S (0.5)": dict(cs_fraction=0.5, filter_cs=True),
    "QK-only (0.5)": dict(cs_fraction=0.5, params="qk"),
}


def _majority(labels: list[str]) -> str:
    counts = collections.Counter(labels).most_common()
    return counts[0][0] if counts[0][1] > len(labels) / 2 else "mixed(" + ", ".join(sorted(set(labels))) + ")"


def _mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def run_study(
    size_name: str = "tiny",
    seeds=(0, 1, 2),
    regimes=tuple(REGIMES),
    cells: dict | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    finetune_steps: int | None = None,
) -> dict:
    """Run the grid; returns {"runs": [...], "cells": [...], "meta": {...}} (and writes it with the figure)."""
    size = get_size(size_name)
    if finetune_steps is not None:
        size = dataclasses.replace(size, finetune=dataclasses.replace(size.finetune, steps=finetune_steps))
    cells = CELLS if cells is None else cells
    started = time.perf_counter()
    runs = []
    bar = tqdm(total=len(regimes) * len(seeds) * (1 + len(cells)), desc="study", disable=not progress)
    for regime in regimes:
        for seed in seeds:
            model, pretraining_world, pretrain_seconds = pretrained_model(
                size_name, regime, seed, progress=False
            )
            start = start_state(measure_model(model, pretraining_world))
            bar.update(1)
            for cell, spec in cells.items():
                mixture = {k: v for k, v in spec.items() if k != "params"}
                fact_world = make_fact_world(fact_world_config(size, regime, seed, **mixture))
                ft = dataclasses.replace(size.finetune, seed=seed, params=spec.get("params", "all"))
                report = finetune_and_fit(model, fact_world, ft, start, extensions=False, progress=False)
                runs.append(
                    {
                        "regime": regime,
                        "seed": seed,
                        "cell": cell,
                        "start": start,
                        "pretrain_seconds": pretrain_seconds,
                        **report,
                    }
                )
                bar.update(1)
    bar.close()
    cell_rows = summarize_cells(runs, regimes, cells)
    result = {
        "meta": {
            "size": size_name,
            "seeds": list(seeds),
            "regimes": {r: REGIMES[r] for r in regimes},
            "cells": cells,
            "finetune": dataclasses.asdict(size.finetune),
            "pretrain": dataclasses.asdict(size.pretrain),
            "wall_seconds": time.perf_counter() - started,
        },
        "cells": cell_rows,
        "runs": runs,
    }
    if out_dir is not None:
        write_study(result, out_dir, list(regimes), list(cells))
    return result


def _summarize_cell(regime: str, cell: str, runs: list[dict]) -> dict:
    steps = np.asarray(runs[0]["real"]["step"], dtype=np.float64)
    curves = np.stack([r["real"]["context_reliance"] for r in runs])
    mean = curves.mean(axis=0)
    std = curves.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
    toy_fits = np.stack([r["fit"]["context_reliance"] for r in runs])
    starts = [r["start"] for r in runs]
    counts = runs[0]["class_counts"]  # report JSON: keyed by DataClass.label
    n = sum(counts.values())
    # The extended toy on the seed-mean curve, from the seed-mean start.
    params = toy_parameters(
        float(np.mean([s["delta_m"] for s in starts])),
        float(np.mean([s["delta_c"] for s in starts])),
        counts[DataClass.NON_CONTEXT_CRITICAL.label] / n,
        counts[DataClass.SUBJECT_ONLY.label] / n,
    )
    extended_out = fit_curve(steps, mean, params)
    extended = extended_out["extended_fit"]
    joint = _joint_fit_cell(steps, mean, starts, counts)
    per_seed = [r["measured"] for r in runs]
    summary = {
        "regime": regime,
        "cell": cell,
        "n_seeds": len(runs),
        "class_counts": counts,
        "start": {k: _mean_std([s[k] for s in starts]) for k in ("delta_m", "delta_c", "context_reliance")},
        "toy_notes": sorted({note for r in runs for note in r["prediction"]["parameters"]["notes"]}),
        "predicted_shape": _majority([r["prediction"]["summary"]["shape"] for r in runs]),
        "predicted_inversion": _majority([str(r["prediction"]["summary"]["inversion"]) for r in runs]),
        "observed_shape": _majority([m["shape"] for m in per_seed]),
        "observed_shapes": [m["shape"] for m in per_seed],
        "observed_inversion": _majority([str(m["inversion"]) for m in per_seed]),
        "mean_curve": summary_record(steps, mean),
        "peak_step": _mean_std([m["peak_step"] for m in per_seed]),
        "peak": _mean_std([m["peak"] for m in per_seed]),
        "final": _mean_std([m["final"] for m in per_seed]),
        "fit_error": _mean_std([r["fit"]["curve_error"] for r in runs]),
        "time_scale": _mean_std([r["fit"]["time_scale"] for r in runs]),
        "fitted_toy_shape": _majority([r["fit"]["summary"]["shape"] for r in runs]),
        "extended_fit": extended,
        "joint_fit": joint,
        # Reference for the RMSEs: a curve that never leaves its start.
        "constant_rmse": float(np.sqrt(np.mean((mean - mean[0]) ** 2))),
        "predicted_shape_calibrated": extended_out["prediction_calibrated"]["summary"]["shape"],
        "attention_context_final": np.mean(
            [np.asarray(r["real"]["attention_context"])[:, -1] for r in runs], axis=0
        ).tolist(),
        "attention_context_start": np.mean(
            [np.asarray(r["real"]["attention_context"])[:, 0] for r in runs], axis=0
        ).tolist(),
        "final_class_losses": {
            k: _mean_std([r["real"][k][-1] if r["real"][k][-1] is not None else np.nan for r in runs])
            for k in CLASS_LOSS_KEYS.values()
        },
        "step": steps.tolist(),
        "real_mean": mean.tolist(),
        "real_std": std.tolist(),
        "toy_fit_mean": toy_fits.mean(axis=0).tolist(),
    }
    return summary


def _joint_fit_cell(steps, mean, starts, counts: dict) -> dict:
    """The joint fit of a cell's seed-mean curve, with what the study measured fixed: delta_M, delta_C
    (left free when the measured pair breaks the toy's rule 2 delta_C < delta_M) and the class fractions."""
    n = sum(counts.values())
    delta_m = float(np.mean([s["delta_m"] for s in starts]))
    delta_c = float(np.mean([s["delta_c"] for s in starts]))
    fixed_c = 0.0 < 2.0 * delta_c < delta_m < 1.0
    out = joint_fit(
        steps,
        mean,
        delta_m=delta_m if 0.0 < delta_m < 1.0 else None,
        delta_c=delta_c if fixed_c else None,
        cs_fraction=counts[DataClass.NON_CONTEXT_CRITICAL.label] / n,
        s_fraction=counts[DataClass.SUBJECT_ONLY.label] / n,
        lr_v_ratio=None,
        n_starts=4,
    )["best_fit"]
    return {
        "curve_error": out["curve_error"],
        "summary": out["summary"],
        "context_reliance": out["context_reliance"],
        "parameters": out["parameters"],
        "undetermined": out["uncertainty"]["undetermined"],
        "notes": out["notes"] + ([] if fixed_c else ["measured 2 delta_C >= delta_M: delta_C fitted"]),
    }


def _pm(pair, fmt=".2f") -> str:
    return f"{pair[0]:{fmt}} ± {pair[1]:{fmt}}"


def study_table(result: dict) -> str:
    """Markdown table of predicted vs observed per cell.

    Shapes: "toy predicts" is the a-priori toy (paper init, measured delta_M / delta_C); "split-calibrated"
    is the same toy started at the measured M_C(0) via the initial attention split; "observed" is the
    majority over seeds (each seed in parentheses) and "mean curve" the shape of the seed-mean curve.
    RMSEs: the time-scale fit (mean ± sd over seeds), the extended fit on the seed-mean curve (split from
    M_C(0) + fitted lr_v / lr_kq), the joint fit on the same curve (its RMSE and fitted shape) and the
    constant-at-M_C(0) baseline on the same curve.
    """
    head = (
        "| regime | cell | delta_M | delta_C | M_C(0) | toy predicts | toy predicts, split-calibrated | "
        "observed (per seed) | mean curve | inversion pred / obs | peak step | peak | final | fit RMSE | "
        "ext. RMSE (lr_v/lr_kq) | joint RMSE (shape) | const. RMSE |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in result["cells"]:
        ext = c["extended_fit"]
        lines.append(
            f"| {c['regime']} | {c['cell']} | {_pm(c['start']['delta_m'])} | {_pm(c['start']['delta_c'])} | "
            f"{_pm(c['start']['context_reliance'])} | {c['predicted_shape']} | {c['predicted_shape_calibrated']} | "
            f"{c['observed_shape']} ({', '.join(c['observed_shapes'])}) | {c['mean_curve']['shape']} | "
            f"{c['predicted_inversion']} / {c['observed_inversion']} | {_pm(c['peak_step'], '.0f')} | "
            f"{_pm(c['peak'])} | {_pm(c['final'])} | {_pm(c['fit_error'], '.3f')} | "
            f"{ext['curve_error']:.3f} ({ext['parameters']['lr_v_ratio']:g}) | "
            f"{c['joint_fit']['curve_error']:.3f} ({c['joint_fit']['summary']['shape']}) | {c['constant_rmse']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def summarize_cells(runs: list[dict], regimes, cells) -> list[dict]:
    """One summary per (regime, cell), in grid order, from the per-run records."""
    return [
        _summarize_cell(regime, cell, [r for r in runs if r["regime"] == regime and r["cell"] == cell])
        for regime in regimes
        for cell in cells
    ]


def write_study(result: dict, out_dir: str | Path, regimes: list[str], columns: list[str]) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(result, out / "study_report.json")
    (out / "study_table.md").write_text(study_table(result))
    return [
        out / "study_report.json",
        out / "study_table.md",
        *plot_study(result["cells"], regimes, columns, out / "study"),
    ]
