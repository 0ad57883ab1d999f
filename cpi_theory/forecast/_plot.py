"""The forecast's figure: the data (fitted part and held-out part), the toy's posterior over the fitted part,
the posterior predictive median with its 50% and 90% bands, the baselines, the stacked forecast and the
late-time limit. PNG + byte-stable PDF, drawn outside pyplot (``draw_forecast`` returns the figure so that
tests can read its labels back)."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _array(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def draw_forecast(report: dict) -> Figure:
    fig = Figure(figsize=(10.5, 4.8), layout="constrained")
    ax, side = fig.subplots(1, 2, width_ratios=[2.4, 1.0])
    side.set_axis_off()
    data, fc, fitted = report["data"], report["forecast"], report["fitted"]
    step, value = _array(data["step"]), _array(data["context_reliance"])
    is_fit = np.asarray(data["fitted"], dtype=bool)
    s = _array(fc["step"])
    ax.fill_between(s, _array(fc["q05"]), _array(fc["q95"]), color="C0", alpha=0.18, lw=0, label="90% band")
    ax.fill_between(s, _array(fc["q25"]), _array(fc["q75"]), color="C0", alpha=0.35, lw=0, label="50% band")
    ax.plot(s, _array(fc["median"]), "-", color="C0", lw=2, label="forecast: posterior predictive median")
    ax.plot(
        _array(fitted["step"]),
        _array(fitted["median"]),
        "-",
        color="C0",
        lw=1,
        alpha=0.8,
        label="toy over the fitted part (posterior median)",
    )
    w = report["stacking"]["weights"]
    ax.plot(
        s,
        _array(fc["stacked"]),
        "--",
        color="C3",
        lw=1.3,
        label=f"stacked (toy {w['toy']:.2f}, persistence {w['persistence']:.2f}, smooth {w['smooth']:.2f})",
    )
    ax.plot(s, _array(fc["persistence"]), ":", color="0.35", lw=1.2, label="persistence (last fitted value)")
    ax.plot(s, _array(fc["smooth"]), "-.", color="C2", lw=1.0, label="smooth baseline (6 parameters)")
    ax.plot(step[is_fit], value[is_fit], "o", ms=3.5, color="k", label="measured, fitted")
    if (~is_fit).any():
        ax.plot(step[~is_fit], value[~is_fit], "o", ms=3.5, mfc="white", mec="k", label="measured, held out")
    ax.axvline(
        report["until"], color="0.5", lw=0.8, label=f"origin (step {report['until']:g}): fitted up to here"
    )
    limit = report["late_time_limit"]
    if limit["median"] is not None:
        ax.axhline(limit["median"], color="C4", lw=0.8, ls=(0, (6, 3)))
        ax.plot([], [], color="C4", lw=0.8, ls=(0, (6, 3)), label="late-time limit (posterior median)")
    peak, below = report["peak"], report["below"]
    posterior = report["posterior"]
    rhat = posterior.get("max_rhat")
    lines = [
        f"P(already peaked) {peak['p_already_peaked']:.2f}",
        f"P(falls below {below['value']:.3g} by step {report['horizon']:g}) {below['p_ever']:.2f}",
        f"late-time limit: {limit['median']:.3f} [{limit['q05']:.3f}, {limit['q95']:.3f}] (90%)"
        if limit["median"] is not None
        else "late-time limit: -",
        "R-hat max " + ("-" if rhat is None else f"{rhat:.3f}") + f", ESS min {posterior['min_ess']:.0f}",
    ]
    if report.get("holdout"):
        h = report["holdout"]
        r = h["rmse"]
        lines.append(
            f"held out ({h['n_points']} points), RMSE: median {r['toy']:.3f},\n  persistence {r['persistence']:.3f}, "
            f"smooth {r['smooth']:.3f}, stacked {r['stacked']:.3f};\n  the 90% band covers {h['coverage90']:.0%}, "
            f"the 50% band {h['coverage50']:.0%}"
        )
    side.text(0.0, 0.0, "\n".join(lines), transform=side.transAxes, fontsize=7.5, va="bottom", ha="left",
              wrap=True)  # fmt: skip
    source = Path(str(report.get("source") or "curve")).name
    ax.set_title(f"forecast of {source} from its points up to step {report['until']:g}", fontsize=10)
    miss = report["misspecification"]
    if miss["misspecified"]:
        lines.append(
            f"misspecified: residuals {miss['residual_rmse']:.3f} RMSE,\n  lag-1 {miss['residual_lag1']:.2f} (see the report)"
        )
    side.texts[0].set_text("\n".join(lines))
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("context reliance M_C")
    handles, labels = ax.get_legend_handles_labels()
    side.legend(handles, labels, fontsize=7.5, loc="upper left", frameon=False)
    # the axes hold the data, the bands and the late-time limit's line (listed in the legend)
    shown = [value, _array(fc["q05"]), _array(fc["q95"])]
    if limit["median"] is not None:
        shown.append(np.asarray([limit["median"]], dtype=np.float64))
    low = np.nanmin(np.concatenate(shown))
    high = np.nanmax(np.concatenate(shown))
    pad = 0.05 * max(high - low, 0.05)
    ax.set_ylim(max(0.0, low - pad), min(1.0, high + 4 * pad))
    return fig


def plot_forecast(report: dict, stem: str | Path) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig = draw_forecast(report)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=130, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths
