"""Figures: one run (measured vs fitted toy, attention per layer) and the study grid. PNG + byte-stable PDF.

Drawn on :class:`matplotlib.figure.Figure` objects, outside pyplot (no backend is selected, no global
figure state); ``draw_run`` returns the figure so that tests can read its labels back.
"""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=130, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths


def _describe(report: dict) -> tuple[str, str]:
    """(the measured curve's legend entry, the figure's title): a bridge run's transformer, or the external
    trajectory a ``bridge fit`` read (its file name), with the C+S fraction given or fitted."""
    cs_fraction = report.get("mixture", {}).get("cs_fraction")
    if "size" in report:  # cpi-theory bridge run
        regime = report.get("regime", "")
        return (
            f"real transformer ({report['size']}, {regime} copying)",
            f"{report['size']} transformer, {regime} copying regime, C+S fraction {cs_fraction:g}: "
            "measured vs toy",
        )
    source = Path(str(report.get("source", "external trajectory"))).name
    mixture = "mixture fitted" if cs_fraction is None else f"C+S fraction {cs_fraction:g} given"
    return f"measured ({source})", f"toy fitted to {source} ({mixture})"


def draw_run(report: dict) -> Figure:
    """Left: measured M_C with the toy fits. Right, when the report has it (a bridge run): attention on the
    context per layer."""
    att = np.asarray(report["real"].get("attention_context", []))
    fig = Figure(figsize=(10, 3.8) if att.size else (6.5, 4.0), layout="constrained")
    axes = fig.subplots(1, 2 if att.size else 1, squeeze=False)[0]
    ax = axes[0]
    real = report["real"]
    measured_label, title = _describe(report)
    ax.plot(real["step"], real["context_reliance"], "o-", ms=3, color="k", label=measured_label)
    fit = report["fit"]
    ax.plot(
        fit["step"],
        fit["context_reliance"],
        "-",
        color="C0",
        label=f"toy a priori, time scale fitted (RMSE {fit['curve_error']:.3f})",
    )
    ext = report.get("extended_fit")
    if ext:
        ratio = ext["parameters"]["lr_v_ratio"]
        ax.plot(
            ext["step"],
            ext["context_reliance"],
            "--",
            color="C1",
            label=f"toy, initial split from $M_C(0)$, lr$_V$/lr$_{{KQ}}$ = {ratio:g} (RMSE {ext['curve_error']:.3f})",
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
    ax.set_xlabel("finetuning step of the measured run")
    ax.set_ylabel("context reliance $M_C$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    if att.size:
        ax_att = axes[1]
        for layer, row in enumerate(att):
            ax_att.plot(real["step"], row, label=f"layer {layer}")
        ax_att.set_xlabel("finetuning step of the measured run")
        ax_att.set_ylabel("attention on the context")
        ax_att.set_title("attention on the context at the answer position, per layer", fontsize=9)
        ax_att.legend(fontsize=7)
    return fig


def plot_run(report: dict, stem: str | Path) -> list[Path]:
    """:func:`draw_run` saved as ``stem.png`` and ``stem.pdf``."""
    return _save(draw_run(report), Path(stem))


def plot_study(cells: list[dict], regimes: list[str], columns: list[str], stem: str | Path) -> list[Path]:
    """Grid: rows = regimes, columns = mixtures/mitigations; real mean +- spread vs fitted toy."""
    fig = Figure(figsize=(2.6 * len(columns), 2.2 * len(regimes)), layout="constrained")
    axes = fig.subplots(len(regimes), len(columns), sharex=True, sharey=True, squeeze=False)
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
