"""F5 Learning or self-aligning (Ren et al.): closed-book finetuning on facts whose targets are harmonious
(the true memorized answer), incompatible (new, conflicting answers) or self-aligning (the model's own
answer, which can be wrong), and mixes of incompatible and self-aligning targets. Held-out memorized facts
are measured before and after: accuracy and knowledge consistency (rank correlation, KL).
"""

import jax
import matplotlib
import numpy as np
import xarray as xr

from .._precision import enable_float64
from ..model._pretrained import pretrained_state
from ..phenomena import _self_aligning as self_aligning
from ..phenomena._batch import partial_correlation, train_batch
from ._data import write_figure_data
from ._plotting import PALETTE, figure_style, new_figure, save_figure

FIGURE = "F5"
TITLE = "Learning or self-aligning: finetuning targets vs held-out knowledge"
STEM = "f5_self_aligning"

BANK = {"n_finetune": 20, "n_held_out": 40, "n_answers": 30, "strength_range": (0.3, 0.8)}
LR_KQ, LR_V, RELATION_SCORE = 1.0, 1.0, -30.0  # W_V must train: in the toy, knowledge lives in W_V
FULL = {"seeds": tuple(range(8)), "ratios": (0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0), "steps": 300}
QUICK = {"seeds": (0, 1, 2), "ratios": (0.0, 0.2, 0.6, 1.0), "steps": 300}
# Fraction of subjects whose wrong answer is memorized more strongly than the true one, per seed: varying
# it varies the pretrained accuracy across seeds (needed to control for it in the partial correlation).
WRONG_FRACTION_RANGE = (0.1, 0.5)
METRICS = (
    "accuracy_pre",
    "accuracy_post",
    "rank_correlation",
    "kl",
    "true_probability_change",
    "finetune_fit",
)


def conditions(ratios):
    """Condition names: harmonious, then incompatible fraction r among incompatible + self-aligning."""
    return ["harmonious"] + [f"incompatible={r:g}" for r in ratios]


def compute(quick: bool) -> xr.Dataset:
    cfg = QUICK if quick else FULL
    seeds, ratios = cfg["seeds"], cfg["ratios"]
    wrong_fractions = np.linspace(*WRONG_FRACTION_RANGE, len(seeds))
    k = BANK["n_finetune"]
    worlds, banks, pre = [], [], []
    for seed, wrong in zip(seeds, wrong_fractions, strict=True):
        bank = self_aligning.fact_bank(seed, wrong_fraction=float(wrong), **BANK)
        base = self_aligning.finetuning_world(bank, bank.true_answer[:k])
        state0 = pretrained_state(base, RELATION_SCORE)
        dist = np.asarray(
            self_aligning.answer_distributions(state0, base, bank.vocab, np.arange(bank.n_subjects))
        )
        own = np.argmax(dist, axis=-1)
        incompatible = self_aligning.finetuning_targets(bank, own, ["incompatible"] * k, seed=10_000 + seed)
        targets = [bank.true_answer[:k]]
        for r in ratios:
            kinds = np.asarray(self_aligning.mixture_kinds(k, r))
            targets.append(np.where(kinds == "incompatible", incompatible, own[:k]))
        for t in targets:
            worlds.append(self_aligning.finetuning_world(bank, t))
            banks.append(bank)
            pre.append(dist)
    result = train_batch(
        worlds, LR_KQ, LR_V, relation_score=RELATION_SCORE, steps=cfg["steps"], record_every=cfg["steps"]
    )
    values = np.zeros((len(worlds), len(METRICS)))
    for i, (world, bank, dist) in enumerate(zip(worlds, banks, pre, strict=True)):
        state = jax.tree.map(lambda x, i=i: x[i], result.final_state)
        post = np.asarray(
            self_aligning.answer_distributions(state, world, bank.vocab, np.arange(bank.n_subjects))
        )
        report = self_aligning.consistency_report(bank, dist[k:], post[k:])
        target = np.asarray(world.target) - bank.vocab.n_subjects
        report["finetune_fit"] = float(np.mean(np.argmax(post[:k], axis=-1) == target))
        values[i] = [report[m] for m in METRICS]
    names = conditions(ratios)
    values = values.reshape(len(seeds), len(names), len(METRICS))
    return xr.Dataset(
        {m: (("seed", "condition"), values[..., j]) for j, m in enumerate(METRICS)},
        coords={
            "seed": np.asarray(seeds),
            "condition": names,
            "incompatible_ratio": ("condition", np.asarray([np.nan, *ratios], dtype=np.float64)),
            "wrong_fraction": ("seed", wrong_fractions),
        },
        attrs={
            "lr_kq": LR_KQ,
            "lr_v": LR_V,
            "steps": cfg["steps"],
            **{f"bank_{key}": str(v) for key, v in BANK.items()},
            "description": "held-out memorized facts before/after closed-book finetuning; rank correlation pooled "
            "over (fact, answer) log-probabilities; KL(pre || post) averaged over facts",
        },
    )


def partial_correlations(ds: xr.Dataset) -> dict[str, float]:
    """Across all runs (seeds x conditions): consistency vs held-out accuracy, controlling for pre-accuracy."""
    acc, pre = ds.accuracy_post.values, ds.accuracy_pre.values
    return {
        "rank_correlation": partial_correlation(ds.rank_correlation.values, acc, pre),
        "kl": partial_correlation(ds.kl.values, acc, pre),
    }


@figure_style()
def plot(ds: xr.Dataset, path_stem: str):
    fig, axes = new_figure(1, 4, figsize=(17, 4))
    mixed = np.isfinite(ds.incompatible_ratio.values)
    ratio = ds.incompatible_ratio.values[mixed]
    panels = (
        ("accuracy_post", "held-out accuracy after finetuning", "accuracy (fraction of facts)"),
        ("rank_correlation", "consistency: rank correlation pre vs post", "Spearman rank correlation"),
        ("kl", "consistency: KL(pre || post)", "KL divergence (nats)"),
    )
    for ax, (metric, title, ylabel) in zip(axes, panels, strict=False):
        v = ds[metric].values
        ax.errorbar(
            ratio,
            v[:, mixed].mean(0),
            yerr=v[:, mixed].std(0),
            color=PALETTE[0],
            marker="o",
            capsize=3,
            label="incompatible + self-aligning mix",
        )
        ax.axhline(v[:, ~mixed].mean(), color=PALETTE[1], ls="--", label="harmonious (true answers)")
        if metric == "accuracy_post":
            ax.axhline(ds.accuracy_pre.values.mean(), color="0.3", ls=":", label="before finetuning")
        ax.set(xlabel="fraction of incompatible targets (0 = self-aligning)", ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
    ax = axes[3]
    change = ds.accuracy_post.values - ds.accuracy_pre.values
    # The incompatible share is ordered: one sequential colour scale for it, black squares for harmonious.
    shades = matplotlib.colormaps["viridis"]
    for j, name in enumerate(ds.condition.values):
        name = str(name)
        if name == "harmonious":
            style = ("s", "k")
        else:
            style = ("o", shades(0.9 * float(name.partition("=")[2])))
        ax.plot(ds.rank_correlation.values[:, j], change[:, j], style[0], ms=4, color=style[1], label=name)
    pc = partial_correlations(ds)
    ax.set(
        xlabel="rank correlation pre vs post",
        ylabel="held-out accuracy change (post - pre)",
        title=f"partial corr. (consistency, accuracy | pre-acc.) = {pc['rank_correlation']:.2f}",
    )
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))  # beside the points, not on them
    save_figure(fig, path_stem)
    return fig


def run(outdir: str, quick: bool) -> dict:
    enable_float64()
    ds, files = write_figure_data(compute(quick), outdir, STEM, plot)
    mean = lambda metric, cond: float(ds[metric].sel(condition=cond).mean())
    names = list(ds.condition.values)
    self_name, incompat_name = names[1], names[-1]
    numbers = {"held-out accuracy before finetuning (mean over seeds)": float(ds.accuracy_pre.mean())}
    for name in names:
        numbers[f"{name}: held-out accuracy / rank corr. / KL / finetune fit"] = (
            f"{mean('accuracy_post', name):.3f} / {mean('rank_correlation', name):.3f} / "
            f"{mean('kl', name):.4f} / {mean('finetune_fit', name):.2f}"
        )
    pc = partial_correlations(ds)
    numbers["partial corr. (rank correlation, accuracy | pre-accuracy)"] = pc["rank_correlation"]
    numbers["partial corr. (KL, accuracy | pre-accuracy)"] = pc["kl"]
    better = (
        mean("accuracy_post", self_name) > mean("accuracy_post", incompat_name)
        and mean("rank_correlation", self_name) > mean("rank_correlation", incompat_name)
        and mean("kl", self_name) < mean("kl", incompat_name)
    )
    notes = [
        f"Self-aligning targets ({self_name}: the model's own, sometimes wrong, answers) keep held-out accuracy at "
        f"{mean('accuracy_post', self_name):.3f} vs {mean('accuracy_post', incompat_name):.3f} for all-incompatible "
        + (
            "targets, and keep knowledge more consistent (higher rank correlation, lower KL): Ren et al.'s finding holds in the toy."
            if better
            else "targets: Ren et al.'s finding does NOT hold here."
        ),
        f"Harmonious targets (the true answers) give {mean('accuracy_post', 'harmonious'):.3f}: correcting the "
        "facts whose distractor is stronger moves W_V through the shared subject direction and disturbs held-out facts.",
        f"Across all runs, knowledge consistency predicts held-out accuracy beyond pre-finetuning accuracy: partial "
        f"correlation {pc['rank_correlation']:.2f} for the rank correlation and {pc['kl']:.2f} for KL "
        + (
            "(same direction as Ren et al.)."
            if pc["rank_correlation"] > 0 > pc["kl"]
            else "(NOT the direction Ren et al. report)."
        ),
        "Mechanism: every subject embedding shares theta_S, so a W_V update for a finetuned subject moves every "
        "held-out subject's answer distribution by half as much; incompatible targets need large updates.",
    ]
    return {"files": files, "numbers": numbers, "notes": notes}
