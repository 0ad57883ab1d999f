"""Figures: one run (real vs fitted toy, attention per layer) and the study grid. PNG + byte-stable PDF."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=130, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)
    return paths


def plot_run(report: dict, stem: str | Path) -> list[Path]:
    """Left: measured M_C with the time-scale-fitted toy (and the extended fit). Right: attention on context."""
    fig, (ax, ax_att) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    real = report["real"]
    ax.plot(real["step"], real["context_reliance"], "o-", ms=3, color="k", label="real transformer")
    fit = report["fit"]
    ax.plot(
        fit["step"],
        fit["context_reliance"],
        "-",
        color="C0",
        label=f"toy, fitted time scale (RMSE {fit['curve_error']:.3f})",
    )
    ext = report.get("extended_fit")
    if ext:
        ratio = ext["parameters"]["lr_v_ratio"]
        ax.plot(
            ext["step"],
            ext["context_reliance"],
            "--",
            color="C1",
            label=f"toy, init. split from M_C(0), lr_v/lr_kq={ratio:g} (RMSE {ext['curve_error']:.3f})",
        )
    best = report.get("best_fit")
    if best:
        dense = best["dense"]
        ax.plot(
            dense["step"],
            dense["context_reliance"],
            "-",
            color="C2",
            lw=1.8,
            label=f"toy, joint fit (RMSE {best['curve_error']:.3f}, {best['summary']['shape']})",
        )
        if dense.get("band_low") is not None:
            ax.fill_between(
                dense["step"],
                np.clip(dense["band_low"], 0.0, 1.0),
                np.clip(dense["band_high"], 0.0, 1.0),
                color="C2",
                alpha=0.2,
                label="joint fit 95% band (linearized)",
            )
        holdout = report.get("holdout")
        if holdout:
            ax.axvspan(best["fit_until"], real["step"][-1], color="0.9", zorder=0, label="held out")
            ax.plot(
                holdout["step"],
                holdout["smooth"],
                ":",
                color="C3",
                label=f"smooth baseline (held-out RMSE {holdout['smooth_error']:.3f})",
            )
            ax.axhline(
                holdout["persistence"],
                xmin=0,
                xmax=1,
                ls="-.",
                lw=0.8,
                color="C4",
                label=f"persistence (held-out RMSE {holdout['persistence_error']:.3f})",
            )
    ax.set_xlabel("finetuning step (real)")
    ax.set_ylabel("context reliance M_C")
    ax.set_ylim(-0.02, 1.02)
    cs_fraction = report.get("mixture", {}).get("cs_fraction")
    ax.set_title(
        f"{report.get('size', '')} {report.get('regime', '')}, C+S fraction "
        f"{'fitted' if cs_fraction is None else cs_fraction}"
    )
    ax.legend(fontsize=7, loc="best")
    att = np.asarray(real.get("attention_context", []))
    if att.size == 0:  # an external trajectory: only M_C is known
        ax_att.set_axis_off()
        ax_att.text(0.5, 0.5, "no attention measured\n(external trajectory)", ha="center", va="center")
        return _save(fig, Path(stem))
    for layer, row in enumerate(att):
        ax_att.plot(real["step"], row, label=f"layer {layer}")
    ax_att.set_xlabel("finetuning step (real)")
    ax_att.set_ylabel("attention on context (answer position)")
    ax_att.legend(fontsize=7)
    return _save(fig, Path(stem))


def plot_study(cells: list[dict], regimes: list[str], columns: list[str], stem: str | Path) -> list[Path]:
    """Grid: rows = regimes, columns = mixtures/mitigations; real mean +- spread vs fitted toy."""
    fig, axes = plt.subplots(
        len(regimes),
        len(columns),
        figsize=(2.6 * len(columns), 2.2 * len(regimes)),
        sharex=True,
        sharey=True,
        constrained_layout=True,
        squeeze=False,
    )
    by_key = {(c["regime"], c["cell"]): c for c in cells}
    for i, regime in enumerate(regimes):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            cell = by_key.get((regime, column))
            if cell is None:
                ax.set_axis_off()
                continue
            steps = np.asarray(cell["step"])
            mean, spread = np.asarray(cell["real_mean"]), np.asarray(cell["real_std"])
            ax.fill_between(steps, mean - spread, mean + spread, color="0.8")
            ax.plot(steps, mean, color="k", lw=1.5, label="real (mean, ±1 sd)")
            ax.plot(steps, cell["toy_fit_mean"], color="C0", lw=1.2, label="toy, fitted time")
            for key, style, color, label in (
                ("extended_fit", "--", "C1", "toy extended"),
                ("joint_fit", ":", "C3", "toy joint fit"),
            ):
                if cell.get(key):
                    ax.plot(steps, cell[key]["context_reliance"], style, color=color, lw=1.3, label=label)
            ax.set_ylim(-0.02, 1.02)
            if i == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{regime}\nM_C", fontsize=9)
            if i == len(regimes) - 1:
                ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6, loc="best")
    return _save(fig, Path(stem))
