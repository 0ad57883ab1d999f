"""F4 Mitigations of the inversion: filtering C+S points, counterfactual augmentation, training W_V too
(a sweep of lr_v / lr_kq), and adding subject-only S points (Proposition 2).
"""

import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..config import Config, ToyParams
from ..engine._loop import recorded_steps
from ..engine._summary import summarize
from ..simulation import simulate_many
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F4"
TITLE = "Mitigations: filtering, counterfactual augmentation, training W_V, adding S points"
STEM = "f4_mitigations"

BASE = Config()  # paper default: 10 C + 10 C+S, lr_kq = 1, lr_v = 0
# Each family varies one knob of the paper default; (label, config overrides, lr_v).
FAMILIES = {
    "filtering": [
        (f"{f:.0%} of C+S removed", {"n_non_context_critical": 10 - k}, 0.0)
        for k, f in zip(range(0, 11, 2), np.linspace(0, 1, 6), strict=True)
    ],
    "augmentation": [
        (f"{k} counterfactual points", {"n_counterfactual_augmented": k}, 0.0) for k in (0, 2, 4, 6, 8, 10)
    ],
    "value_training": [(f"lr_v / lr_kq = {r:g}", {}, r) for r in (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)],
    "subject_only": [(f"{k} S points", {"n_subject_only": k}, 0.0) for k in (0, 3, 6, 10, 15)],
}
FAMILY_TITLES = {
    "filtering": "filter C+S points",
    "augmentation": "counterfactual augmentation",
    "value_training": "also train $W_V$ (lr$_V$ / lr$_{KQ}$)",
    "subject_only": "add S points (Proposition 2)",
}
# Long horizon: partial filtering or augmentation delays the fall by hundreds of steps.
FULL = {"steps": 3000, "record_every": 5}
QUICK = {"steps": 600, "record_every": 3}


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    runs = [
        (family, label, overrides, lr_v)
        for family, items in FAMILIES.items()
        for label, overrides, lr_v in items
    ]
    lr_v = np.asarray([r[3] for r in runs]) * BASE.lr_kq
    params = ToyParams.stack(
        [
            ToyParams.from_config(BASE.replace(**overrides, lr_v=v))
            for (_, _, overrides, _), v in zip(runs, lr_v, strict=True)
        ]
    )
    # One batch through the full d x d engine (runs of one shape bucket share a compiled program).
    batch = simulate_many(
        params,
        steps=cfg["steps"],
        record_every=cfg["record_every"],
        metrics=("context_reliance", "attention_context"),
        engine="full",
    )
    batch.raise_if_diverged()
    return xr.Dataset(
        {
            "context_reliance": (("run", "step"), batch.trajectory["context_reliance"]),
            "attention_context": (("run", "step"), batch.trajectory["attention_context"]),
        },
        coords={
            "run": np.arange(len(runs)),
            "family": ("run", [r[0] for r in runs]),
            "label": ("run", [r[1] for r in runs]),
            "lr_v": ("run", lr_v),
            "step": recorded_steps(cfg["steps"], cfg["record_every"]),
        },
        attrs={
            "description": "M_C on the counterfactual test point for each mitigation; paper default otherwise"
        },
    )


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, axes = new_figure(1, 4, figsize=(16, 4), sharey=True)
    families = list(dict.fromkeys(str(f) for f in ds.family.values))
    for ax, family in zip(axes, families, strict=False):
        members = np.flatnonzero(ds.family.values == family)
        for j, i in enumerate(members):
            ax.plot(
                ds.step.values[1:],
                ds.context_reliance.values[i, 1:],
                color=PALETTE[j % 8],
                label=str(ds.label.values[i]),
            )
        ax.set(
            xscale="log",
            xlabel="step $t$ (steps, log scale; lr$_{KQ}$ = 1)",
            title=FAMILY_TITLES[family],
            ylim=(0, 1.02),
        )
        ax.legend(loc="lower right")
    axes[0].set_ylabel("context reliance $M_C$")
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    mc = ds.context_reliance.values
    steps = int(ds.step.values[-1])
    numbers = {}
    for i in range(mc.shape[0]):
        s = summarize(ds.step.values, mc[i])
        numbers[f"{ds.family.values[i]}: {ds.label.values[i]}: final M_C (step {steps}) / depth"] = (
            f"{s.final:.3f} / {s.depth:.3f}"
        )
    summary = lambda i: summarize(ds.step.values, mc[i])
    members = lambda family: np.flatnonzero(ds.family.values == family)
    filt, aug, vt, so = (members(f) for f in ("filtering", "augmentation", "value_training", "subject_only"))
    no_s, most_s = summary(so[0]), summary(so[-1])
    full_v = summary(vt[-1])
    notes = [
        f"Filtering all C+S points leaves depth {summary(filt[-1]).depth:.3f} (no C+S: M_C rises and stays); "
        f"the paper default has depth {summary(filt[0]).depth:.3f}.",
        f"Counterfactual augmentation with {ds.label.values[aug[-1]]} gives depth {summary(aug[-1]).depth:.3f}.",
        "Partial filtering or augmentation mostly delays the fall (hundreds of steps) and raises the plateau; "
        f"depths are measured at step {steps}, so a fall that starts later is not counted.",
        "Paper vs toy: training W_V at the same rate as W_KQ (lr_v / lr_kq = 1) "
        + ("removes" if full_v.depth < 0.01 else "does not remove")
        + f" the inversion here (final M_C {full_v.final:.3f}, depth {full_v.depth:.3f}). Smaller ratios keep "
        f"it; with lr_v / lr_kq = {ds.lr_v.values[vt[-2]] / 1.0:g} the fall is slower but ends lower "
        f"(final {summary(vt[-2]).final:.3f} vs {summary(vt[0]).final:.3f} with W_V frozen). "
        "The paper's analysis freezes W_V.",
        f"Adding S points (Proposition 2): with {ds.label.values[so[-1]]} the peak is {most_s.peak:.3f} "
        f"(vs {no_s.peak:.3f}) and the final M_C {most_s.final:.3f} (vs {no_s.final:.3f}). "
        + (
            "Over the whole trajectory the S points barely change the fall and slightly raise the plateau: "
            "Proposition 2's stronger push toward the subject (a statement about the early gradient) does not "
            "show up as a deeper or lower-ending inversion in this configuration."
            if most_s.final >= no_s.final
            else "The S points push the plateau down, as Proposition 2 suggests."
        ),
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
