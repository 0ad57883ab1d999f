"""F1 The inversion: context reliance M_C rises, peaks and falls to a plateau (paper default configuration).

Panels: M_C and attention on the context of the counterfactual test point; attention on context for the
C and C+S training points; per-class training loss. Start, peak and plateau are annotated.
"""

import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..config._config import Config
from ..engine._summary import summarize
from ..paper import _analysis
from ..simulation._simulate import simulate
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F1"
TITLE = "The inversion (paper default configuration)"
STEM = "f1_inversion"

# Paper default (SPEC §5): K_A=50, K_S=40, 10 C + 10 C+S, delta_C=0.2, delta_M=0.6, lr_kq=1, lr_v=0.
CONFIG = Config()
FULL = {"steps": 1000, "record_every": 1}
QUICK = {"steps": 300, "record_every": 1}


def analytic(config, quick: bool) -> dict[str, float]:
    """The closed-form late-time plateau and the exact reduced engine's peak, from
    ``cpi_theory.paper._analysis``."""
    del quick  # the reduced engine compiles in about a second: the quick run has the peak too
    out = {"analytic_plateau": _analysis.plateau(config).context_reliance}
    peak = _analysis.inversion_peak(config)
    out["reduced_peak"], out["reduced_peak_step"] = peak.peak, float(peak.peak_step)
    return out


def compute(quick: bool) -> xr.Dataset:
    config = CONFIG.replace(**(QUICK if quick else FULL))
    traj = simulate(config)
    theory = {name: ((), float(value)) for name, value in analytic(config, quick).items()}
    classes = list(traj.per_class)
    per_class = {
        m: (("class", "step"), np.stack([traj.per_class[c][m] for c in classes]))
        for m in ("attention_context", "attention_subject", "loss")
    }
    ds = xr.Dataset(
        {
            "context_reliance": ("step", traj.context_reliance),
            "probe_attention_context": ("step", traj.attention_context),
            "probe_attention_subject": ("step", traj.attention_subject),
            "loss": ("step", traj.loss),
            **{f"class_{m}": v for m, v in per_class.items()},
            **theory,
        },
        coords={"step": traj.step, "class": classes},
        attrs={f"config_{k}": v for k, v in config.to_dict().items()},
    )
    return ds


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    step = ds.step.values
    mc = ds.context_reliance.values
    s = summarize(step, mc)
    # The peak is drawn at a float step, as it always was (summarize keeps the int step type).
    peak_step = float(s.peak_step)
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(step, mc, color=PALETTE[0], label="context reliance $M_C$")
    ax.plot(step, ds.probe_attention_context.values, "--", color=PALETTE[1], label="attention on $c^*$")
    ax.plot(step, ds.probe_attention_subject.values, ":", color=PALETTE[2], label="attention on $s^*$")
    ax.plot([0], [s.start], "o", color="k")
    ax.annotate(f"start {s.start:.3f}", (0, s.start), xytext=(10, -14), textcoords="offset points")
    ax.plot([peak_step], [s.peak], "o", color="k")
    ax.annotate(
        f"peak {s.peak:.3f} (step {peak_step:.0f})",
        (peak_step, s.peak),
        xytext=(8, 6),
        textcoords="offset points",
    )
    ax.axhline(s.final, color="0.4", lw=0.8, ls="-.")
    ax.annotate(
        f"plateau {s.final:.3f} (step {step[-1]})",
        (step[-1], s.final),
        xytext=(-130, -14),
        textcoords="offset points",
    )
    plateau = float(ds.analytic_plateau.values)
    if np.isfinite(plateau):
        ax.axhline(
            plateau,
            color=PALETTE[3],
            lw=1.2,
            ls="--",
            label=f"analytic plateau $M_C(\\infty)$ = {plateau:.3f}",
        )
    ax.set(xlabel="step $t$ (steps, lr$_{KQ}$ = 1)", ylabel="probability", title="counterfactual test point")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    labels = {"context_critical": "C points", "non_context_critical": "C+S points"}
    for i, cls in enumerate(ds["class"].values):
        name = labels.get(str(cls), str(cls))
        axes[1].plot(step, ds.class_attention_context.values[i], color=PALETTE[i], label=name)
        axes[2].plot(step, ds.class_loss.values[i], color=PALETTE[i], label=name)
    axes[1].plot(
        step,
        ds.probe_attention_context.values,
        "--",
        color=PALETTE[1 + len(ds["class"])],
        label="test point $c^*$",
    )
    axes[2].plot(step, ds.loss.values, "k:", label="total (mean)")
    axes[1].set(
        xlabel="step $t$ (steps)", ylabel="attention on context", title="attention on context", ylim=(0, 1.05)
    )
    axes[2].set(xlabel="step $t$ (steps)", ylabel="cross-entropy (nats)", title="training loss per class")
    axes[1].legend()
    axes[2].legend()
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    s = summarize(ds.step.values, ds.context_reliance.values)
    steps = int(ds.step.values[-1])
    numbers = {
        "M_C start": s.start,
        "M_C peak": s.peak,
        "peak step": int(s.peak_step),
        f"M_C final (step {steps})": s.final,
        "inversion depth (peak - final)": s.depth,
        "attention on c* at peak": float(
            ds.probe_attention_context.values[int(np.argmax(ds.context_reliance.values))]
        ),
        f"attention on c* at step {steps}": float(ds.probe_attention_context.values[-1]),
    }
    plateau = float(ds.analytic_plateau.values)
    if np.isfinite(plateau):
        numbers["analytic plateau M_C(inf) (closed form, cpi_theory.paper._analysis)"] = plateau
    if np.isfinite(float(ds.reduced_peak.values)):
        numbers["peak by the exact reduced engine (step)"] = (
            f"{float(ds.reduced_peak.values):.4f} ({int(ds.reduced_peak_step.values)})"
        )
    notes = [
        (
            f"The dashed line is the closed-form late-time plateau M_C(inf) = {plateau:.4f} of cpi_theory.paper._analysis; "
            f"the full model is at {s.final:.4f} at step {steps} and still approaching it."
            if np.isfinite(plateau)
            else "No analytic plateau: the closed form of cpi_theory.paper._analysis gave no finite value."
        ),
        "The peak is brute force (full model); in the full run the exact reduced engine's peak is listed as a "
        "cross-check.",
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
