"""F6 With vs without context (Lee et al.): the same new facts trained with context ([a, s, r] -> a),
without ([s, r] -> a) or mixed; context attention, memorization in W_V, counterfactual reliance and
closed-book performance; one mixed model vs two separately trained models with a router.
"""

import jax
import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..engine._loop import recorded_steps
from ..phenomena import _with_without_context as with_without
from ..phenomena._batch import train_batch
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F6"
TITLE = "Training new facts with vs without context; mixed model vs router"
STEM = "f6_with_without_context"

N_FACTS, DELTA_C, DELTA_M = 10, 0.2, 0.6
LR_KQ, LR_V, RELATION_SCORE = 1.0, 1.0, -30.0  # W_V trains: memorization needs it
MIXED = 0.5  # the single mixed model of the comparison
FULL = {"fractions": (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), "steps": 300, "record_every": 1}
QUICK = {"fractions": (0.0, 0.5, 1.0), "steps": 300, "record_every": 3}
SUITE = with_without.SUITE_METRICS


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    facts = with_without.new_facts(N_FACTS, delta_c=DELTA_C, delta_m=DELTA_M)
    worlds = [with_without.context_mix_world(facts, f) for f in cfg["fractions"]]
    result = train_batch(
        worlds,
        LR_KQ,
        LR_V,
        relation_score=RELATION_SCORE,
        steps=cfg["steps"],
        record_every=cfg["record_every"],
    )
    predictions = []
    for i, world in enumerate(worlds):
        state = jax.tree.map(lambda x, i=i: x[i], result.final_state)
        predictions.append(with_without.suite_predictions(state, world, facts))
    summaries = [with_without.suite_summary(p) for p in predictions]
    fractions = list(cfg["fractions"])
    routed = with_without.routed_summary(predictions[fractions.index(1.0)], predictions[fractions.index(0.0)])
    mixed = summaries[fractions.index(MIXED)]
    queries = list(with_without.QUERY_TYPES)
    systems = ["mixed model (50/50)", "router (context model | closed-book model)"]
    table = np.asarray(
        [
            [[s[f"{q}_{kind}"] for q in queries] for kind in ("accuracy", "probability")]
            for s in (mixed, routed)
        ]
    )
    return xr.Dataset(
        {
            **{m: ("context_fraction", np.asarray([s[m] for s in summaries])) for m in SUITE},
            "probe_context_reliance": (
                ("context_fraction", "step"),
                np.asarray(result.records["context_reliance"]),
            ),
            "suite": (("system", "kind", "query"), table),
        },
        coords={
            "context_fraction": np.asarray(fractions, dtype=np.float64),
            "step": recorded_steps(cfg["steps"], cfg["record_every"]),
            "system": systems,
            "kind": ["accuracy", "probability"],
            "query": queries,
        },
        attrs={
            "n_facts": N_FACTS,
            "delta_c": DELTA_C,
            "delta_m": DELTA_M,
            "lr_kq": LR_KQ,
            "lr_v": LR_V,
            "steps": cfg["steps"],
            "description": "context_fraction = weight of the with-context copy of each fact (1 - it: without); "
            "suite metrics are means over the new facts at the last step",
        },
    )


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, axes = new_figure(1, 3, figsize=(15, 4))
    f = ds.context_fraction.values
    ax = axes[0]
    for j, (m, label) in enumerate(
        (
            ("memorized_probability", "memorized in $W_V$: softmax$(v(s))_a$"),
            ("closed_book_probability", "closed-book p(a | [s, r])"),
            ("attention_context", "attention on context (counterfactual query)"),
            ("counterfactual_reliance", "counterfactual reliance $M_C$ (new facts)"),
        )
    ):
        style = "x--" if m == "closed_book_probability" else "o-"  # equals memorized (attention on s ~ 1)
        ax.plot(f, ds[m].values, style, color=PALETTE[j], label=label, ms=7 if style == "x--" else 5)
    ax.set(
        xlabel="fraction of training weight with context",
        ylabel="probability",
        title="after training (new facts)",
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    for i, frac in enumerate(f):
        ax.plot(
            ds.step.values,
            ds.probe_context_reliance.values[i],
            color=PALETTE[i % 8],
            label=f"with-context weight {frac:g}",
        )
    ax.set(
        xlabel="step $t$ (steps, lr$_{KQ}$ = lr$_V$ = 1)",
        ylabel="context reliance $M_C$",
        title="pretrained counterfactual probe",
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7)
    ax = axes[2]
    queries = [str(q) for q in ds["query"].values]
    x = np.arange(len(queries))
    for k, system in enumerate(ds.system.values):
        values = ds.suite.sel(system=system, kind="probability").values
        ax.bar(x + (k - 0.5) * 0.38, values, width=0.36, color=PALETTE[k], label=str(system))
    ax.set_xticks(
        x, ["closed-book\n[s, r] -> a", "with context\n[a, s, r] -> a", "counterfactual\n[c', s, r] -> c'"]
    )
    ax.set(
        xlabel="query type: input -> right answer",
        ylabel="probability of the right answer",
        title="test suite: mixed model vs router",
        ylim=(0, 1.02),
    )
    ax.legend(fontsize=7)
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    numbers = {}
    for i, frac in enumerate(ds.context_fraction.values):
        numbers[
            f"with-context weight {frac:g}: attention on context / memorized in W_V / M_C (new facts) / closed-book p"
        ] = (
            f"{ds.attention_context.values[i]:.3f} / {ds.memorized_probability.values[i]:.3f} / "
            f"{ds.counterfactual_reliance.values[i]:.3f} / {ds.closed_book_probability.values[i]:.3f}"
        )
    for system in ds.system.values:
        for kind in ("accuracy", "probability"):
            v = ds.suite.sel(system=system, kind=kind).values
            numbers[f"{system}: {kind} closed-book / with context / counterfactual (mean)"] = (
                " / ".join(f"{x:.3f}" for x in v) + f" ({v.mean():.3f})"
            )
    mem = ds.memorized_probability.values
    probe_final = ds.probe_context_reliance.values[:, -1]
    router_p, mixed_p = (
        ds.suite.sel(system=s, kind="probability").values.mean() for s in ds.system.values[::-1]
    )
    notes = [
        f"Training with context memorizes less in W_V: softmax(v(s))_a is {mem[0]:.3f} without context and "
        f"{mem[-1]:.3f} with context only (attention moves to the context, so the subject's value gets little gradient).",
        f"Router vs one mixed model (mean probability of the right answer over the three query types): "
        f"{router_p:.3f} vs {mixed_p:.3f}"
        + (
            " - the router wins, as Lee et al. report."
            if router_p > mixed_p
            else " - the router does NOT win here."
        ),
        "Per query type (probability): "
        + ", ".join(
            f"{q}: router {r:.3f} vs mixed {m:.3f}"
            for q, r, m in zip(
                ds["query"].values,
                ds.suite.sel(system=ds.system.values[1], kind="probability").values,
                ds.suite.sel(system=ds.system.values[0], kind="probability").values,
                strict=True,
            )
        )
        + ".",
        f"On the pretrained counterfactual probe, a small share of with-context data is the worst case: final M_C "
        f"{probe_final.min():.3f} at with-context weight {ds.context_fraction.values[int(probe_final.argmin())]:g} "
        f"(start {ds.probe_context_reliance.values[0, 0]:.3f}): the new facts, memorized through W_V, make the "
        "few context points subject-predictable (C+S-like, Proposition 3) and attention returns to the subject.",
        "Argmax accuracies saturate in this toy (an unknown subject's value row is uniform, so any gain makes the "
        "trained answer the argmax); the probabilities show the differences.",
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
