"""One shared figure style: colour-blind-safe palette (Okabe-Ito), labelled axes, byte-stable files.

Figures are drawn on :class:`matplotlib.figure.Figure` objects, outside pyplot: importing or using this
module neither selects a backend nor registers figures in pyplot's global state. ``savefig`` picks the
Agg / PDF canvas for the file format. The style applies only inside :func:`figure_style`.
"""

import os

import matplotlib
from matplotlib.figure import Figure

# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "svg.hashsalt": "cpi_theory",
    "pdf.compression": 6,
}


def figure_style():
    """The figure style in effect for a block or, as ``@figure_style()``, for a drawing function.

    rcParams are read when the figure, its artists and its files are made, so drawing and saving both
    happen inside; the caller's rcParams are restored afterwards.
    """
    return matplotlib.rc_context(STYLE)


def new_figure(nrows: int, ncols: int, *, figsize: tuple[float | int, float | int], **subplots_kwargs):
    """``(figure, axes)``: a constrained-layout figure with an ``nrows`` x ``ncols`` grid of axes."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **subplots_kwargs)


def _metadata(fmt: str) -> dict:
    # No creation dates or software versions in the files: same inputs, same bytes.
    return {"CreationDate": None, "ModDate": None} if fmt == "pdf" else {"Software": None}


def save_figure(fig, path_stem: str, formats=("png", "pdf")) -> list[str]:
    """Save ``fig`` as ``path_stem.png`` and ``path_stem.pdf`` with creation metadata stripped (byte-stable)."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for fmt in formats:
        path = f"{path_stem}.{fmt}"
        fig.savefig(path, format=fmt, metadata=_metadata(fmt))
        paths.append(path)
    return paths


@figure_style()
def plot_trajectory(traj, path: str) -> None:
    """M_C and attention on the test point, per-class attention on context, and losses vs step."""
    fig, axes = new_figure(1, 3, figsize=(12, 3.4))
    ax = axes[0]
    ax.plot(traj.step, traj.context_reliance, label="context reliance $M_C$")
    ax.plot(traj.step, traj.attention_context, "--", label="attention on $c^*$")
    s = traj.summary()
    ax.plot([s.peak_step], [s.peak], "o", color=PALETTE[1], label=f"peak {s.peak:.3f}")
    ax.set(xlabel="step $t$", ylabel="probability", title="counterfactual test point", ylim=(0, 1))
    ax.legend()
    for name, series in traj.per_class.items():
        axes[1].plot(traj.step, series["attention_context"], label=name)
        axes[2].plot(traj.step, series["loss"], label=name)
    axes[2].plot(traj.step, traj.loss, "k:", label="total")
    axes[1].set(xlabel="step $t$", ylabel="attention on context", title="per data class", ylim=(0, 1))
    axes[2].set(xlabel="step $t$", ylabel="cross-entropy (nats)", title="training loss")
    axes[1].legend()
    axes[2].legend()
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    # The format follows the file name (PNG or PDF); savefig infers it too.
    fig.savefig(path, metadata=_metadata(os.path.splitext(path)[1].lstrip(".").lower()))
