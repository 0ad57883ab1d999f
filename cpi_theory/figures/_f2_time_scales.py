"""F2 Time scales: M_C curves for several learning rates collapse when plotted against lr*t (gradient flow
time); at a large learning rate the one-step regime of Theorem 1 (M_C(1) > M_C(0) and M_C(1) > M_C(2)).
"""

import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..config import Config, ToyParams
from ..paper._paper import eta_star
from ..simulation import simulate_many
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F2"
TITLE = "Time scales: collapse in lr*t, and the one-step regime of Theorem 1"
STEM = "f2_time_scales"

CONFIG = Config()  # paper default, W_V frozen
# Learning rates of the collapse panel; every run covers gradient-flow time lr*t in [0, FLOW_TIME].
FULL = {"lrs": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0), "flow_time": 400.0}
QUICK = {"lrs": (0.5, 1.0, 2.0, 4.0), "flow_time": 200.0}
# Large learning rates for Theorem 1: a log grid, a few steps each.
ONE_STEP_LRS = np.round(np.logspace(0, 3, 31), 6)
ONE_STEP_STEPS = 6


def _full_engine_curves(lrs, steps: int) -> np.ndarray:
    """M_C at every step of the full d x d engine, one run per learning rate (lr_kq), W_V frozen."""
    params = ToyParams.stack(
        [ToyParams.from_config(CONFIG).replace(lr_kq=float(lr)) for lr in np.atleast_1d(lrs)]
    )
    batch = simulate_many(params, steps=steps, engine="full")
    batch.raise_if_diverged()
    return batch.trajectory["context_reliance"]


def collapse_runs(lrs, flow_time):
    """M_C at every step, one run per lr up to step flow_time / lr (NaN after a run's last step)."""
    n_max = int(round(flow_time / min(lrs)))
    curves = np.full((len(lrs), n_max + 1), np.nan)
    for i, lr in enumerate(lrs):
        # steps differ per lr (different compiled shapes), so these are separate calls.
        steps = int(round(flow_time / lr))
        curves[i, : steps + 1] = _full_engine_curves(lr, steps)[0]
    return curves


def analytic_eta_star(quick: bool) -> float:
    """Proposition 1's eta* from the reduced model (cpi_theory.paper._paper).

    NaN in quick mode: building the symbolic reduced model takes tens of seconds.
    """
    if quick:
        return float("nan")
    return float(eta_star(CONFIG))


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    curves = collapse_runs(cfg["lrs"], cfg["flow_time"])
    one = _full_engine_curves(ONE_STEP_LRS, ONE_STEP_STEPS)
    return xr.Dataset(
        {
            "context_reliance": (("lr", "step"), curves),
            "one_step_context_reliance": (
                ("large_lr", "one_step"),
                one,
            ),
            # Proposition 1's analytic eta* (NaN: not computed).
            "eta_star": ((), analytic_eta_star(quick)),
        },
        coords={
            "lr": np.asarray(cfg["lrs"], dtype=np.float64),
            "step": np.arange(curves.shape[1]),
            "large_lr": ONE_STEP_LRS,
            "one_step": np.arange(ONE_STEP_STEPS + 1),
        },
        attrs={
            "description": "M_C per step for several lr (NaN past lr*t = flow_time); M_C for the first steps at large lr"
        },
    )


def collapse_deviation(ds: xr.Dataset) -> np.ndarray:
    """Per lr: max over its steps k of |M_C(lr, k) - M_C_ref(lr * k)|, the reference being the smallest lr
    (closest to gradient flow), linearly interpolated in lr*t."""
    lrs, curves = ds.lr.values, ds.context_reliance.values
    step = ds.step.values
    ref_valid = np.isfinite(curves[0])
    ref_t, ref = step[ref_valid] * lrs[0], curves[0][ref_valid]
    out = []
    for lr, curve in zip(lrs, curves, strict=True):
        valid = np.isfinite(curve)
        out.append(float(np.max(np.abs(curve[valid] - np.interp(step[valid] * lr, ref_t, ref)))))
    return np.asarray(out)


def theorem1_holds(ds: xr.Dataset) -> np.ndarray:
    mc = ds.one_step_context_reliance.values
    return (mc[:, 1] > mc[:, 0]) & (mc[:, 1] > mc[:, 2])


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    lrs = ds.lr.values
    step = ds.step.values
    for i, lr in enumerate(lrs):
        curve = ds.context_reliance.values[i]
        valid = np.isfinite(curve)
        axes[0].plot(step[valid][1:], curve[valid][1:], color=PALETTE[i % 8], label=f"lr = {lr:g}")
        axes[1].plot(
            step[valid] * lr, curve[valid], color=PALETTE[i % 8], label=f"lr = {lr:g}", lw=2.2 - 0.25 * i
        )
    axes[0].set(
        xscale="log",
        xlabel="step $t$ (steps, log scale; $t \\geq 1$)",
        ylabel="context reliance $M_C$",
        title="vs steps",
    )
    axes[1].set(
        xlabel="lr $\\cdot t$ (gradient-flow time)",
        ylabel="context reliance $M_C$",
        title="vs lr$\\cdot t$: collapse",
    )
    axes[0].legend()
    axes[1].legend()
    mc = ds.one_step_context_reliance.values
    large = ds.large_lr.values
    holds = theorem1_holds(ds)
    ax = axes[2]
    ax.plot(large, mc[:, 1] - mc[:, 0], color=PALETTE[0], label="$M_C(1) - M_C(0)$")
    ax.plot(large, mc[:, 1] - mc[:, 2], color=PALETTE[1], label="$M_C(1) - M_C(2)$")
    ax.plot(large[holds], (mc[:, 1] - mc[:, 2])[holds], "o", ms=4, color=PALETTE[1], label="Theorem 1 holds")
    ax.axhline(0, color="k", lw=0.8)
    eta = float(ds.eta_star.values)
    if np.isfinite(eta):
        ax.axvline(eta, color=PALETTE[2], ls="--", label=f"analytic $\\eta^*$ = {eta:.3f} (Prop. 1)")
    ax.set(
        xscale="log",
        xlabel="learning rate lr$_{KQ}$",
        ylabel="change of $M_C$",
        title="one-step regime (Theorem 1)",
    )
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(loc="lower right")  # the upper right holds M_C(1) - M_C(0) near its maximum
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    dev = collapse_deviation(ds)
    holds = theorem1_holds(ds)
    mc = ds.one_step_context_reliance.values
    numbers = {
        f"max |M_C - M_C(lr={ds.lr.values[0]:g})| vs lr*t, lr={lr:g}": float(d)
        for lr, d in zip(ds.lr.values[1:], dev[1:], strict=True)
    }
    large = ds.large_lr.values
    numbers["large lrs where Theorem 1 holds"] = (
        ", ".join(f"{x:.4g}" for x in large[holds]) if holds.any() else "none on the grid"
    )
    best = int(np.argmax(np.where(holds, mc[:, 1] - mc[:, 2], -np.inf))) if holds.any() else None
    if best is not None:
        numbers["largest drop M_C(1) - M_C(2) (lr)"] = (
            f"{mc[best, 1] - mc[best, 2]:.3g} (lr={large[best]:.4g})"
        )
        numbers["M_C(0), M_C(1), M_C(2) at that lr"] = ", ".join(f"{v:.4f}" for v in mc[best, :3])
    eta = float(ds.eta_star.values)
    if np.isfinite(eta):
        numbers["analytic eta* (Proposition 1, reduced model)"] = eta
        below = large < eta
        numbers["Theorem 1 holds on grid lrs below eta*"] = "yes" if holds[below].any() else "no"
        numbers["Theorem 1 holds at the first grid lr above eta*"] = "yes" if holds[~below][0] else "no"
    beyond = large > large[holds].max() if holds.any() else np.zeros_like(holds)
    saturation = (
        [
            f"Above lr = {large[holds].max():.4g} the strict inequality fails again on the grid: one step saturates "
            f"the attention and M_C(2) - M_C(1) is at rounding level (max |M_C(2) - M_C(1)| = "
            f"{np.abs(mc[beyond, 2] - mc[beyond, 1]).max():.1e})."
        ]
        if beyond.any()
        else []
    )
    notes = [
        "Curves plotted against lr*t collapse onto the gradient-flow curve as lr -> 0; the deviation grows with lr "
        "(discrete-step effects), as the table shows.",
        "Theorem 1 (M_C(1) > M_C(0) and M_C(1) > M_C(2)) needs a learning rate large enough that one step "
        "overshoots; the drop after step 1 is tiny in this configuration (see the table). "
        + (
            "The analytic eta* of Proposition 1 (theta_C gradient flips sign at t = 1) is drawn; the brute-force "
            "grid agrees with it as the table shows."
            if np.isfinite(eta)
            else "The analytic eta* is not drawn in quick mode (the symbolic reduced model takes tens of seconds)."
        ),
        *saturation,
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
